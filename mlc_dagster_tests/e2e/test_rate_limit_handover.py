"""A backfill bigger than the rate-limit allowance, with default behaviour: no run fails.

The demo seed (300 POs, ~70 invoices) against a Procore sandbox that allows 100 calls per
5-second window, with MLC_PROCORE_MAX_WAIT_SECONDS=0.05: once the window is used up, its
reset is a wait the step will not sit through, as an hour's reset is at the real 600/h
against the default 120 s (time compressed ~700x). Each run writes what the
window allows, defers the rest, ends green and `continuing`; the continuation sensor requests
the next run just before the allowance returns, and that run sends nothing before then. The
checks: every run succeeded, 0 x 429 in the sandbox's call log, no window over its limit, and
the end state is what the independent oracle says X3 implies, with no duplicate.
"""

from __future__ import annotations

import functools
import time

import dagster as dg
import pytest

from mlc_dagster.ledger.store import Ledger
from mlc_dagster.procore_writes.continuation import read_continuation
from mlc_dagster.resources.procore import NOT_BEFORE_TAG
from mlc_dagster_tests.reliability.harness import (
    SYNC_JOB,
    assert_converged,
    open_world,
    resource_run_config,
    run_errors,
)
from mlc_sandbox.seed import SeedData, build_seed

LIMIT, WINDOW = 100, 5
MAX_RUNS = 20


@functools.cache
def demo_seed() -> SeedData:
    return build_seed(42, "small")


def run_sync(instance, tags: dict | None = None) -> dg.ExecuteInProcessResult:
    from mlc_dagster.definitions import defs

    return defs.resolve_job_def(SYNC_JOB).execute_in_process(
        instance=instance, raise_on_error=False, run_config=resource_run_config(),
        tags=tags or {})


def tick(sensor_name: str, instance, **resources):
    from mlc_dagster.definitions import build_resources, defs

    built = build_resources()
    with dg.build_sensor_context(instance=instance, cursor=None, resources={
            name: built[name] for name in resources or ("ledger",)}) as context:
        return defs.resolve_sensor_def(sensor_name).evaluate_tick(context)


def step_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    events = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in events[-1].metadata.items()} if events else {}


def windows_over_limit(calls: list[dict]) -> list[tuple[float, int]]:
    """Sliding check of the sandbox's log: any WINDOW-second span holding more than LIMIT
    accepted calls (a stricter test than the sandbox's own fixed windows)."""
    times = sorted(c["at"] for c in calls if c.get("status") != 429 and "at" in c)
    over, start = [], 0
    for end, at in enumerate(times):
        while at - times[start] >= WINDOW:
            start += 1
        if end - start + 1 > LIMIT * 2:  # two adjacent fixed windows can meet inside a span
            over.append((at, end - start + 1))
    return over


@pytest.fixture
def limited_world(monkeypatch, tmp_path):
    with open_world(monkeypatch, tmp_path, seed=demo_seed(),
                    extra_env={"MLC_PROCORE_MAX_WAIT_SECONDS": "0.05"}) as world:
        world.configure("procore", spike_limit=LIMIT, spike_window_seconds=WINDOW)
        yield world


def test_a_backfill_over_the_allowance_hands_over_between_green_runs(limited_world):
    world = limited_world
    ledger = Ledger(world.ledger_url)
    runs: list[dict] = []
    with dg.instance_for_test() as instance:
        tags: dict = {}
        while len(runs) < MAX_RUNS:
            result = run_sync(instance, tags)
            assert result.success, run_errors(result)
            commitments = step_metadata(result, "procore_commitments")
            runs.append({"tags": tags, "commitments": commitments,
                         "requisitions": step_metadata(result, "procore_requisitions")})
            if read_continuation(ledger) is None:
                break
            if len(runs) == 1:  # while the allowance is out, nothing else starts a run
                for sensor in ("x3_purchase_order_changes", "x3_purchase_invoice_changes"):
                    skipped = tick(sensor, instance, sage_x3=True, ledger=True)
                    assert not skipped.run_requests
                    assert "allowance is used up until" in skipped.skip_message
            request = None
            deadline = time.time() + 2 * WINDOW
            while request is None and time.time() < deadline:
                evaluated = tick("procore_rate_limit_continuation", instance)
                request = evaluated.run_requests[0] if evaluated.run_requests else None
                time.sleep(0.1)
            assert request is not None, "the continuation sensor never asked for the next run"
            assert float(request.tags[NOT_BEFORE_TAG]) >= time.time() - 1.0
            tags = request.tags

    assert 3 <= len(runs) < MAX_RUNS, len(runs)
    first = runs[0]["commitments"]
    assert first["continuing"] is True and first["deferred_rate_limit"] > 0, first
    assert "resumes_at" in first and first["rate_limit_limit"] == LIMIT
    continued = [r for r in runs if r["commitments"].get("continuing")
                 or r["requisitions"].get("continuing")]
    assert len(continued) == len(runs) - 1  # every run but the last handed over
    assert runs[-1]["commitments"]["continuing"] is False

    calls = world.calls("procore")
    assert [c for c in calls if c.get("status") == 429] == []
    assert windows_over_limit(calls) == []
    states = ledger.states("purchase_order")
    assert not [k for k, s in states.items() if s.status in ("deferred", "failed")]
    assert not [k for k, s in ledger.states("purchase_invoice").items()
                if s.status in ("deferred", "failed")]
    deferred_events = [e for key in states for e in ledger.events("purchase_order", key)
                       if e["status"] == "deferred"]
    assert deferred_events and all(e["reason"].startswith("Procore rate limit: allowance used up")
                                   for e in deferred_events)
    ledger.dispose()
    assert_converged(world)


def test_a_run_that_ignores_the_hand_over_meets_a_429(limited_world):
    """The 0 x 429 check above can fail: a run started at once after a hand-over, without the
    continuation's not-before time, sends into the exhausted window."""
    world = limited_world
    world.configure("procore", spike_limit=LIMIT, spike_window_seconds=60)  # still out at run 2
    with dg.instance_for_test() as instance:
        first = run_sync(instance)
        assert first.success and step_metadata(first, "procore_commitments")["continuing"]
        run_sync(instance)  # no NOT_BEFORE_TAG
    assert [c for c in world.calls("procore") if c.get("status") == 429]
