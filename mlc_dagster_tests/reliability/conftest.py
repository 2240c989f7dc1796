"""Fixtures of the reliability suite, and the summary it prints at the end of every run."""

from __future__ import annotations

from collections import Counter

import pytest

from mlc_dagster_tests.reliability.harness import (
    REPORT,
    SYNC_JOB,
    EndState,
    amend_x3,
    differences,
    ledger_disagreements,
    open_world,
    run_errors,
    unaccounted,
)


@pytest.fixture
def world(monkeypatch, tmp_path):
    """Fresh sandboxes from the small seed (4 projects x 8 POs), REST X3, scratch ledger."""
    with open_world(monkeypatch, tmp_path) as w:
        yield w


@pytest.fixture(scope="session")
def fault_free(tmp_path_factory):
    """The fault-free end state per (seed, scenario, job, X3 API, X3 write mode), computed
    once per session.

    scenario `seed`: one sync of the seeded data; `amend`: that, then `amend_x3`, then a
    second sync. Every fault case is compared with the matching fault-free state (same X3
    API: a held reason quotes X3 values as that API spells them).
    """
    cache: dict[tuple[str, ...], EndState] = {}

    def get(seed_kind: str = "small", scenario: str = "seed", job: str = SYNC_JOB,
            x3_api: str = "rest", x3_writes: str = "import_file") -> EndState:
        key = (seed_kind, scenario, job, x3_api, x3_writes)
        if key not in cache:
            with pytest.MonkeyPatch.context() as mp, open_world(
                    mp, tmp_path_factory.mktemp(f"fault-free-{seed_kind}-{scenario}"),
                    seed_kind, x3_api=x3_api, x3_writes=x3_writes) as w:
                result = w.run(job)
                assert result.success, run_errors(result)
                get.writes[key] = len(w.procore_writes())
                if scenario == "amend":
                    amend_x3(w)
                    w.sync()
                state = w.end_state()
                assert not unaccounted(w, state, job), unaccounted(w, state, job)[:10]
            assert not state.duplicates, state.duplicates
            assert not ledger_disagreements(state)
            statuses = [s.status for records in state.ledger.values() for s in records.values()]
            assert "synced" in statuses and "failed" not in statuses, statuses
            # the fault-free state is itself stable: equal to itself
            assert not differences(state, state)
            cache[key] = state
        return cache[key]

    get.writes = {}  # cache key -> Procore writes of the fault-free first run
    return get


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not any(REPORT.values()):
        return
    tr = terminalreporter
    tr.section("reliability suite: faults tried and records checked")
    faults = REPORT["faults"]
    if faults:
        tr.write_line(f"fault matrix: {len(faults)} fault case(s)")
        for row in faults:
            tr.write_line(f"  {row['case']:<44} {row['system']:<8} hits={row['hits']:<3} "
                          f"faulted run: {row['faulted']:<48} records={row['records']}")
        tr.write_line(f"  total records compared with the fault-free state: "
                      f"{sum(r['records'] for r in faults)}")
    for line in crash_summary(REPORT["crashes"]):
        tr.write_line(line)
    for line in bad_input_summary(REPORT["generated"]):
        tr.write_line(line)
    for line in oracle_summary(REPORT.get("oracle", [])):
        tr.write_line(line)
    checks = REPORT["checks"]
    if checks:
        tr.write_line(f"other checks: {len(checks)}")
        for row in checks:
            tr.write_line(f"  {row['test']:<44} {row['detail']}")


def crash_summary(rows: list[dict]) -> list[str]:
    """Kill points covered, by step, and how many landed after a partial ledger flush."""
    if not rows:
        return []
    distinct = {(r["scenario"], r["position"]) for r in rows}
    by_step = Counter(r["at_step"] for r in rows)
    seeds = sorted({r["soak_seed"] for r in rows if "soak_seed" in r})
    out = [f"crash safety: {len(rows)} kill point(s), {len(distinct)} distinct write(s), "
           f"{sum(bool(r['partial_flush']) for r in rows)} after a partial ledger flush; by step: "
           + ", ".join(f"{step} {n}" for step, n in sorted(by_step.items()))]
    gaps = [r for r in rows if r.get("audit_gaps")]
    if gaps:
        out.append(f"  known audit gap (ledger `vendor` record of an X3 supplier created from a "
                   f"Procore vendor lost with the killed run) at: "
                   f"{', '.join(r['case'] for r in gaps)}")
    if seeds:
        out.append(f"  soak seed(s) {', '.join(map(str, seeds))} (replay: MLC_CRASH_SEED=<seed> "
                   "make soak; one point: MLC_KILL_POINTS=<point> make soak)")
    for r in rows:
        partial = f" (partial flush: {', '.join(r['partial_flush'])})" if r["partial_flush"] else ""
        out.append(f"  {r['case']:<30} write {r['position']:>3} of the run: {r['write']:<58} "
                   f"outcomes recorded before the kill={r['flushed']}{partial}; "
                   f"records checked={r['records']}")
    return out


def bad_input_summary(rows: list[dict]) -> list[str]:
    """Generated bad X3 records: per API they were read through, and what became of them."""
    if not rows:
        return []
    total = sum(r["cases"] for r in rows)
    out = [f"bad input: {total} generated X3 record(s) in "
           f"{sum(r['examples'] for r in rows)} batch(es)/example(s)"]
    per_api: Counter = Counter()
    created: Counter = Counter()
    outcomes: Counter = Counter()
    for r in rows:
        per_api.update(r.get("apis") or {})
        created.update(r.get("created") or {})
        outcomes.update(r.get("outcomes") or {})
    if created:
        out.append("  created through: " + ", ".join(f"{k} {n}" for k, n in sorted(created.items())))
    if per_api:
        out.append("  read by the job through X3's: "
                   + ", ".join(f"{api} {n}" for api, n in sorted(per_api.items())))
    if outcomes:
        out.append("  outcomes: " + ", ".join(f"{k} {n}" for k, n in sorted(outcomes.items())))
    for r in rows:
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(r["kinds"].items()))
        out.append(f"  {r['test']}: {r['examples']} batch(es), {r['cases']} record(s): {kinds}")
    return out


def oracle_summary(rows: list[dict]) -> list[str]:
    """Oracle and duplicate comparisons (rows from harness.World.oracle_problems and
    duplicate_problems): how many, and the records they covered."""
    if not rows:
        return []
    out = []
    for check in sorted({r.get("check", "oracle") for r in rows}):
        chosen = [r for r in rows if r.get("check", "oracle") == check]
        totals: Counter = Counter()
        for r in chosen:
            totals.update({k: v for k, v in r.items() if isinstance(v, int)
                           and not isinstance(v, bool)})
        out.append(f"{check} comparisons: {len(chosen)}; "
                   + ", ".join(f"{k} {n}" for k, n in sorted(totals.items())))
    return out
