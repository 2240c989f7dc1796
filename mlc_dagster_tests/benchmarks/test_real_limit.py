"""CI guard for issue #15 part 1: a backfill that needs several rate-limit windows ends with
no failed run and no 429, handed over from run to run by the real continuation sensor.

benchmarks/scenarios/real_limit.py on a tiny seed (2 projects x 10 POs x 3 lines: a floor of
36 Procore calls, benchmarks/floor.py) against limits small enough to spend the hourly
allowance three times over: 12 calls per 8 s "hour" and 50 per 1 s spike window, with the
connector willing to wait 1.5 s at most (MLC_PROCORE_MAX_WAIT_SECONDS). The real job runs
in-process; the sensor `procore_rate_limit_continuation` is evaluated every 0.25 s with the
ledger resource, as the daemon would, and its RunRequests are executed with their tags.
Nothing asserts a time; the counts are calls, runs, 429s and POs, from the sandbox's call log
and state. How many runs it takes depends on the machine's speed (a slow run lets windows
pass), so only "at least one hand-over" is asserted.
"""

from __future__ import annotations

import pytest

from benchmarks.config import BenchConfig
from benchmarks.limits import RateLimits
from benchmarks.scenarios import real_limit

pytestmark = pytest.mark.slow

SEED = {"projects": 2, "pos_per_project": 10, "lines_per_po": 3}
LIMITS = RateLimits(hourly_limit=12, spike_limit=50, spike_window_seconds=1.0,
                    hourly_window_seconds=8.0, description="CI: 12 per 8 s, 50 per 1 s")
ENV = {"MLC_PROCORE_MAX_WAIT_SECONDS": "1.5", "MLC_PROGRESS_LOG_SECONDS": "0.5"}


def run_tiny(tmp_path) -> dict:
    cfg = BenchConfig(**SEED, latency_ms=0, real_limit_timeout_s=240)
    return real_limit.bench_real_limit(cfg, tmp_path / "real_limit", limits=LIMITS, env=ENV,
                                       tick_s=0.25)


def runs_text(r: dict) -> str:
    """What each run did, for assertion messages."""
    return "\n".join(f"{run['trigger']}: {run['status']}, {run['procore_calls']} calls, "
                     f"{run['status_429']} x 429, {run['by_endpoint']}, {run['failures']}"
                     for run in r["per_run"])


def test_a_backfill_over_several_windows_hands_over_and_never_fails(tmp_path):
    r = run_tiny(tmp_path)
    assert not r["timed_out"], runs_text(r)
    assert r["floor"]["total"] == 36
    # three windows' worth: the first run cannot do it all, continuation runs finish it
    assert r["runs"] >= 2 and r["continuation_runs"] == r["runs"] - 1, runs_text(r)
    assert r["fallback_runs"] == 0, runs_text(r)
    assert r["failed_runs"] == 0, runs_text(r)
    assert [run["status"] for run in r["per_run"]] == (
        ["continuing"] * (r["runs"] - 1) + ["done"]), runs_text(r)
    assert r["status_429"] == 0, runs_text(r)
    assert r["max_in_window"]["hourly"] <= 12 and r["max_in_window"]["spike"] <= 50, (
        r["max_in_window"], r["calls_per_hourly_window"])
    # every PO the floor expects is in Procore, nothing else, nothing left deferred
    assert r["pos_check"]["missing"] == [] and r["pos_check"]["unexpected"] == []
    assert r["left_over"] == {"continuation": False,
                              "deferred": {"purchase_order": 0, "purchase_invoice": 0}}
    # each continuation waited for its not-before time: no call before the allowance returned
    for run in r["per_run"][1:]:
        assert run["not_before"] and run["first_call_at"] >= run["not_before"] - 0.05, run
    assert sum(run["pos_written"] for run in r["per_run"]) == r["pos_check"]["expected"]
