"""A sustained Procore outage, tried as a new user would: the demo seed (20 projects x 15 POs)
with every `line_items/sync` answering 500, default settings (6 attempts a call).

Without the circuit breaker one run went on for many minutes, about one failing call a
second, and left 285 `failed` POs. Now the run stops sending within a bounded number of
calls, records the POs it did not try as `deferred`, and ends red with "Procore unavailable
since ... (N records deferred; the next run picks them up)"; after the outage, replay and the
next run converge to what a fault-free run writes (and to the independent oracle).
"""

from __future__ import annotations

import functools
import time
from collections import Counter

import pytest

from mlc_dagster.resources.breaker import DEFAULT_RECORDS
from mlc_dagster_tests.reliability.harness import (
    REPLAY_JOB,
    SYNC_JOB,
    WRITE_METHODS,
    differences,
    ledger_disagreements,
    open_world,
    run_errors,
)
from mlc_sandbox.seed import SeedData, build_seed

LINE_SYNC = r"PATCH /rest/v1.0/purchase_order_contracts/\d+/line_items/sync$"
MAX_SECONDS = 60
MAX_CALLS = 30
PO = "purchase_order"


@functools.cache
def demo_seed() -> SeedData:
    return build_seed(42, "small")  # what `make demo` serves: 300 POs


@pytest.fixture
def default_settings(monkeypatch):
    """The settings a new user has: no MLC_PROCORE_* tuning at all."""
    for name in ("MLC_PROCORE_MAX_ATTEMPTS", "MLC_PROCORE_BREAKER_RECORDS",
                 "MLC_PROCORE_BREAKER_ATTEMPTS", "MLC_PROCORE_TIMEOUT_SECONDS",
                 "MLC_PROCORE_MAX_WAIT_SECONDS", "MLC_MAX_POS_PER_RUN"):
        monkeypatch.delenv(name, raising=False)


def outage_run(world) -> dict:
    """One sync run during the outage: its calls, duration, errors and the ledger after it."""
    world.fault("procore", route=LINE_SYNC, status=500, count=-1)
    mark = len(world.calls("procore"))
    started = time.monotonic()
    result = world.run(SYNC_JOB)
    seconds = time.monotonic() - started
    state = world.end_state()
    return {"result": result, "seconds": seconds, "calls": world.calls("procore")[mark:],
            "errors": "\n".join(run_errors(result)), "state": state}


def during_outage(calls: list[dict]) -> list[dict]:
    """The calls from Procore's first 5xx answer to the end of the run."""
    first = next((n for n, c in enumerate(calls) if (c.get("status") or 0) >= 500), None)
    return calls[first:] if first is not None else []


def procore_writes(calls: list[dict]) -> list[dict]:
    return [c for c in calls if c["method"] in WRITE_METHODS and c["path"].startswith("/rest/")]


def outage_problems(run: dict) -> list[str]:
    """Every way the outage run breaks its promises (empty: kept)."""
    calls, state = run["calls"], run["state"]
    during, writes = during_outage(calls), procore_writes(calls)
    statuses = state.statuses(PO)
    problems = []
    if run["seconds"] >= MAX_SECONDS:
        problems.append(f"the run took {run['seconds']:.0f}s (bound {MAX_SECONDS}s)")
    if not during:
        problems.append("Procore never answered 5xx: the outage was not tried")
    if len(during) >= MAX_CALLS:
        problems.append(f"{len(during)} Procore calls from the first 5xx to the end of the run "
                        f"(bound {MAX_CALLS})")
    if len(writes) >= MAX_CALLS:
        problems.append(f"{len(writes)} Procore write calls (bound {MAX_CALLS})")
    if statuses["failed"] > DEFAULT_RECORDS:
        problems.append(f"{statuses['failed']} POs failed: more than the {DEFAULT_RECORDS} the "
                        "breaker needs to open")
    if not statuses["deferred"]:
        problems.append(f"no PO deferred (ledger: {dict(statuses)})")
    if run["result"].success:
        problems.append("the run ended green during an outage")
    for text in ("Procore unavailable since ", "records deferred; the next run picks them up"):
        if text not in run["errors"]:
            problems.append(f"the run's failure does not say {text!r}: {run['errors'][:300]!r}")
    return problems


def test_an_outage_stops_the_run_quickly_defers_the_rest_and_the_next_runs_converge(
        monkeypatch, tmp_path, default_settings):
    for name in ("fault-free", "outage"):
        (tmp_path / name).mkdir()
    with open_world(monkeypatch, tmp_path / "fault-free", seed=demo_seed()) as clean:
        clean.sync()
        expected = clean.end_state()
    with open_world(monkeypatch, tmp_path / "outage", seed=demo_seed()) as world:
        run = outage_run(world)
        assert outage_problems(run) == [], run["errors"]
        print(f"outage run: {run['seconds']:.1f}s, {len(run['calls'])} Procore calls in all, "
              f"{len(during_outage(run['calls']))} from the first 5xx on, "
              f"{len(procore_writes(run['calls']))} writes; ledger "
              f"{dict(run['state'].statuses(PO))}")
        state = run["state"]
        statuses = state.statuses(PO)
        line_calls = sum(c["path"].endswith("/line_items/sync") for c in run["calls"])
        # default settings: 6 attempts a call, so two POs' calls (12 attempts) open it
        assert line_calls == 12 and statuses["failed"] == 2, (line_calls, statuses)
        assert statuses["deferred"] == 283 and statuses["held"] == 15, statuses
        assert not any(c["path"].startswith("/rest/v1.1/requisitions") and c["method"] == "POST"
                       for c in run["calls"])  # the invoice step never ran
        deferred = {k: s for k, s in state.ledger[PO].items() if s.status == "deferred"}
        ledger = world_ledger(world)
        for key, record in deferred.items():
            assert record.reason.startswith("Procore unavailable since ")
            assert [(e["action"], e["status"]) for e in ledger.events(PO, key)] == [
                ("defer", "deferred")]
        # the project being written when Procore went down: its headers got through and their
        # commitment ids are kept, so the next run updates them instead of creating them
        kept = {k: s.procore_id for k, s in deferred.items() if s.procore_id}
        assert kept and all(state.contract_ids[f"X3:PO:{k}"] == v for k, v in kept.items())

        world.clear_faults()
        replay = world.run(REPLAY_JOB)
        assert replay.success, run_errors(replay)
        after = world.end_state()
        assert after.statuses(PO) == Counter({"synced": 285, "held": 15})
        for key in deferred:
            assert ledger.events(PO, key)[-1]["action"] == "replay"
        assert {f"X3:PO:{k}": v for k, v in kept.items()} == {
            f"X3:PO:{k}": after.contract_ids[f"X3:PO:{k}"] for k in kept}

        follow_up = world.run(SYNC_JOB)  # the ordinary next run: invoices, then nothing left
        assert follow_up.success, run_errors(follow_up)
        final = world.end_state()
        assert not final.duplicates and not ledger_disagreements(final)
        assert differences(final, expected) == []
        assert_oracle(world)
        ledger.dispose()


def test_the_outage_checks_fail_without_the_breaker(monkeypatch, tmp_path, default_settings):
    """The checks above can fail: with the breaker switched off (and one attempt a call, to
    keep the broken run short) the same outage fails every PO in turn."""
    monkeypatch.setenv("MLC_PROCORE_BREAKER_RECORDS", "0")
    monkeypatch.setenv("MLC_PROCORE_MAX_ATTEMPTS", "1")
    with open_world(monkeypatch, tmp_path, seed=demo_seed(),
                    extra_env={"MLC_PROCORE_BREAKER_RECORDS": "0",
                               "MLC_PROCORE_MAX_ATTEMPTS": "1"}) as world:
        run = outage_run(world)
        problems = outage_problems(run)
    assert run["state"].statuses(PO)["failed"] == 285
    assert any("Procore calls from the first 5xx" in p for p in problems), problems
    assert any("Procore write calls" in p for p in problems), problems
    assert any("POs failed" in p for p in problems), problems
    assert any("no PO deferred" in p for p in problems), problems
    assert any("ended green" in p for p in problems), problems


def world_ledger(world):
    from mlc_dagster.ledger.store import Ledger

    return Ledger(world.ledger_url)


def assert_oracle(world) -> None:
    """The independent oracle and user-visible duplicates (reliability harness), when the
    oracle module is there."""
    try:
        import mlc_dagster_tests.oracle  # noqa: F401
        from mlc_dagster_tests.reliability.harness import assert_converged
    except ImportError:
        return
    assert_converged(world)
