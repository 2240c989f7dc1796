#!/usr/bin/env python
"""How the Procore client's pacing behaves when BOTH target limits apply in real time.

The main benchmark compresses the 600/h limit in time (see `limits.scaled_limits`), which
leaves the 25/10 s spike limit out. This probe looks at the two together, uncompressed:

    python benchmarks/pacing_probe.py simulate            # seconds: pacer + sandbox limiter, fake clock
    python benchmarks/pacing_probe.py live --minutes 20   # the real job against the sandbox

`simulate` drives the connector's own `RatePacer` against the Procore sandbox's own
`RateLimiter` on a fake clock, for the backfill floor at 58 ms per call (the whole job's, from
the seed by benchmarks/floor.py: 6,089 calls at the benchmark's 5,000 POs), and
counts the waits longer than the client's `max_wait_seconds` (120 s), each of which raises
`WaitTooLong` and becomes a Dagster `RetryRequested`. `live` runs the real job in-process
against sandboxes limited to 600/h and 25/10 s on a smaller seed (default 2 x 400 POs, ~800
calls, more than one hour's budget) and reports the calls, 429s and step retries it saw.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.calls import CallLog, summarize_calls  # noqa: E402
from benchmarks.config import BenchConfig, build_seed_for  # noqa: E402
from benchmarks.harness import configure, started_sandboxes, sync_environment  # noqa: E402
from benchmarks.limits import RateLimits  # noqa: E402

TARGET = RateLimits(600, 25, 10, "600/h and 25/10 s, real time")


def simulate(calls: int | None = None, per_call_s: float = 0.058,
             max_wait_s: float = 120.0) -> dict:
    """`calls`: None = the backfill floor of the benchmark's seed."""
    import httpx

    import mlc_sandbox.procore.rate_limit as procore_app
    from mlc_dagster.resources.http_core import RatePacer
    from mlc_sandbox.controls import SandboxConfig

    if calls is None:
        from benchmarks.floor import backfill_floor

        seed = build_seed_for(BenchConfig())
        calls = backfill_floor(seed, seed.mapping_csv).total
    out = {"calls": calls}
    cases = {"600/h + 25/10s": SandboxConfig(hourly_limit=600, spike_limit=25),
             "600/h only": SandboxConfig(hourly_limit=600, spike_limit=10**9),
             "compressed 60x (benchmark)": SandboxConfig(hourly_limit=36000, spike_limit=600,
                                                          spike_window_seconds=60)}
    real_time = procore_app.time
    try:
        for label, config in cases.items():
            now = [1_000_000.0]

            def clock(now=now) -> float:
                return now[0]

            procore_app.time = type("FakeTime", (), {"time": staticmethod(clock)})
            limiter, pacer = procore_app.RateLimiter(), RatePacer(clock=clock)
            too_long, first, rejected, paced = 0, None, 0, 0.0
            for i in range(calls):
                delay = pacer.delay()
                if delay > max_wait_s:
                    too_long += 1
                    first = first if first is not None else {"call": i, "wait_s": round(delay)}
                else:
                    paced += delay
                now[0] += delay  # a WaitTooLong retry also waits this long before going on
                allowed, headers = limiter.take(config)
                rejected += not allowed
                now[0] += per_call_s
                pacer.observe(httpx.Headers(headers))
            out[label] = {"hours": round((now[0] - 1_000_000.0) / 3600, 2), "429s": rejected,
                          "waits_over_max_wait": too_long, "first_over_max_wait": first,
                          "paced_s": round(paced)}
    finally:
        procore_app.time = real_time
    return out


def live(minutes: float, projects: int, pos: int, latency_ms: int) -> dict:
    """Run the real job against 600/h + 25/10 s until it ends or `minutes` pass."""
    cfg = BenchConfig(projects=projects, pos_per_project=pos, lines_per_po=10,
                      latency_ms=latency_ms)
    seed = build_seed_for(cfg)
    workdir = Path(tempfile.mkdtemp(prefix="mlc-pacing-"))
    result: dict = {}
    with started_sandboxes(seed) as handles, sync_environment(handles, workdir):
        configure(handles, latency_ms=latency_ms, x3_latency_ms=latency_ms, limits=TARGET)
        log = CallLog(handles["procore"])
        import dagster as dg

        from mlc_dagster.definitions import defs

        instance_cm = dg.instance_for_test()
        instance = instance_cm.__enter__()

        def execute():
            job = defs.resolve_job_def("sync_sage_x3_to_procore")
            outcome = job.execute_in_process(instance=instance, raise_on_error=False, run_config={
                "loggers": {"console": {"config": {"log_level": "WARNING"}}}})
            result["success"] = outcome.success
            result["run_id"] = outcome.run_id

        started = time.time()
        worker = threading.Thread(target=execute, daemon=True)
        worker.start()
        worker.join(timeout=minutes * 60)
        calls = log.since_mark()
        result.update({
            "finished": not worker.is_alive(), "observed_s": round(time.time() - started),
            "procore": {k: v for k, v in summarize_calls(calls, latency_ms).items()
                        if k in ("total", "writes", "status_429", "by_endpoint")},
            "first_call_at_s": round(calls[0]["at"] - started, 1) if calls else None,
            "calls_by_minute": _by_minute(calls, started)})
        run_id = result.get("run_id") or next(iter(r.run_id for r in instance.get_runs()), None)
        if run_id:
            events = instance.all_logs(run_id)
            result["step_retries"] = [
                {"step": e.step_key, "at_s": round(e.timestamp - started, 1),
                 "message": (e.dagster_event.message or "")[:160]}
                for e in events if e.dagster_event is not None
                and e.dagster_event.event_type_value in ("STEP_UP_FOR_RETRY", "STEP_FAILURE")]
    return result


def _by_minute(calls: list[dict], started: float) -> list[int]:
    if not calls:
        return []
    buckets = [0] * (int((calls[-1]["at"] - started) // 60) + 1)
    for call in calls:
        buckets[int((call["at"] - started) // 60)] += 1
    return buckets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("simulate")
    live_parser = sub.add_parser("live")
    live_parser.add_argument("--minutes", type=float, default=20)
    live_parser.add_argument("--projects", type=int, default=2)
    live_parser.add_argument("--pos-per-project", type=int, default=400)
    live_parser.add_argument("--latency-ms", type=int, default=50)
    args = parser.parse_args()
    if args.mode == "simulate":
        print(json.dumps(simulate(), indent=1))
    else:
        print(json.dumps(live(args.minutes, args.projects, args.pos_per_project,
                              args.latency_ms), indent=1, default=str))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    import os

    code = main()
    os._exit(code)  # a still-running job thread (live mode, time cap) must not keep us alive
