"""Fixtures of the reliability suite, and the summary it prints at the end of every run."""

from __future__ import annotations

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
    crashes = REPORT["crashes"]
    if crashes:
        tr.write_line(f"crash safety: {len(crashes)} scenario(s)")
        for row in crashes:
            tr.write_line(f"  {row['case']:<44} kills={row['kills']} "
                          f"writes before each kill={row['writes_at_kill']} "
                          f"records checked={row['records']}")
    generated = REPORT["generated"]
    if generated:
        tr.write_line(f"bad input: {sum(r['cases'] for r in generated)} generated X3 record(s) "
                      f"in {sum(r['examples'] for r in generated)} hypothesis example(s)")
        for row in generated:
            kinds = ", ".join(f"{k} x{n}" for k, n in sorted(row["kinds"].items()))
            tr.write_line(f"  {row['test']}: {row['examples']} example(s), {row['cases']} "
                          f"record(s): {kinds}")
    checks = REPORT["checks"]
    if checks:
        tr.write_line(f"other checks: {len(checks)}")
        for row in checks:
            tr.write_line(f"  {row['test']:<44} {row['detail']}")
