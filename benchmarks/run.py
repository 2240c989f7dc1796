#!/usr/bin/env python
"""ml-connector benchmarks: API-call efficiency, backfill time against the rate-limit floor,
change latency and memory (issue #8).

    make benchmark                                   # every scenario, results/<host>-<date>
    python benchmarks/run.py --scenario all --latency-ms 50 --name NAME
    python benchmarks/run.py --scenario backfill --scale backfill --latency-ms 50
    python -m benchmarks.run --merge A.json B.json --name combined

This file is the command line only. The Procore and Sage X3 sandboxes run in the benchmark's
process (threads) with the chosen seed, scale, per-call latency and rate limits; the sync
under test is the real Dagster job `sync_sage_x3_to_procore` through `execute_in_process`
(benchmarks/harness.py). Calls are counted from the sandboxes' own call logs
(benchmarks/calls.py).

Scenarios (`--scenario`, comma-separated, or `all`), one module each in benchmarks/scenarios/:

1. backfill  20 x 250 POs x 10 lines from empty. Twice: latency-bound (no rate limit), then
             against 600/h and 25/10 s compressed in time (benchmarks/limits.py), with the
             connector's default waits (so it never hands over).
2. noop      nothing changed: one tick of each X3 change sensor (the poll; runs requested,
             X3 and Procore calls, wall time), then a whole sync run (what the fallback
             schedule costs): X3 calls, Procore calls, writes on both systems, wall time;
             then the same run one fallback-schedule gap later (reference reuse clock moved).
3. delta     0.2 %, 1 % and 2 % of POs amended through the X3 REST `$edit` API, a run after each.
4. latency   `dagster dev` (webserver + daemon, sensors every 10 s) as a subprocess; 20 POs
             created through X3 REST at random moments over 300 s; seconds until Procore's
             REST API shows each commitment with all its lines (benchmarks/procore_watcher.py).
5. staging   20 x 1000 x 20 = 400k lines through staging, validation and mapping alone, in a
             fresh child process (time and peak RSS), plus a per-row call profile.
6. baseline  the same backfill done naively (its own HTTP client; the connector's refuses
             these writes): one POST per contract and one POST per line item.
7. real_limit the backfill at 600/h + 25/10 s compressed C times (both windows) with the
             connector's waits scaled too: runs hand over to the next (the real continuation
             sensor, evaluated as the daemon would) until done.
8. x3_load   X3 calls per changed PO on REST and GraphQL: list pages, detail reads,
             line-stamp polls.

Groups of scenarios run in fresh processes (benchmarks/suite.py). Calls are compared with the
floor of benchmarks/floor.py, computed from the seed and the mapping file alone. Results go
to benchmarks/results/<name>.json (no per-call dumps) and <name>.md (benchmarks/report.py).
Nothing here asserts times; `mlc_dagster_tests/benchmarks/test_smoke.py` runs a tiny version
in CI and guards the call counts.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/run.py` as well as `benchmarks.run`
    sys.path.insert(0, str(REPO))
from benchmarks.config import (  # noqa: E402 - after the path it needs
    RESULTS_DIR,
    SCALES,
    BenchConfig,
    config_from_json,
)
from benchmarks.report import merge_results, to_markdown, write_results  # noqa: E402
from benchmarks.scenarios.staging import measure_staging  # noqa: E402
from benchmarks.suite import SCENARIOS, run_benchmarks, run_group  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="all",
                        help="all, or a comma-separated list of: " + ", ".join(SCENARIOS))
    parser.add_argument("--scale", default="backfill", choices=sorted(SCALES))
    parser.add_argument("--projects", type=int)
    parser.add_argument("--pos-per-project", type=int)
    parser.add_argument("--lines-per-po", type=int)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--latency-ms", type=int, default=50, help="per Procore call")
    parser.add_argument("--x3-latency-ms", type=int, help="per X3 call (default: --latency-ms)")
    parser.add_argument("--rate-compression", type=float, default=60.0,
                        help="time compression of the 600/h limit for the rate-limited "
                             "backfill (0 = skip it)")
    parser.add_argument("--delta-fractions", default="0.002,0.01,0.02")
    parser.add_argument("--staging-scale", default="large", choices=sorted(SCALES))
    parser.add_argument("--staging-profile-fraction", type=float, default=0.1)
    parser.add_argument("--baseline-projects", type=int, default=0,
                        help="naive writes for the first N projects only, scaled up (0 = all)")
    parser.add_argument("--latency-scale", default="backfill", choices=sorted(SCALES))
    parser.add_argument("--latency-pos", type=int, default=20,
                        help="POs created in X3 during the change-latency scenario")
    parser.add_argument("--latency-window", type=float, default=300.0,
                        help="seconds over which those POs are created, at random moments")
    parser.add_argument("--sensor-interval", type=int, default=10,
                        help="MLC_SENSOR_INTERVAL_SECONDS for the change-latency scenario")
    parser.add_argument("--latency-poll", type=float, default=0.5,
                        help="seconds between the Procore API watcher's polls (its resolution)")
    parser.add_argument("--real-limit-compression", type=float, default=60.0,
                        help="real_limit: time compression C of both limits (600 per 3600/C s, "
                             "25 per 10/C s) and of the connector's waits")
    parser.add_argument("--real-limit-latency-ms", type=int,
                        help="real_limit: per-call latency on both APIs (default: --latency-ms "
                             "and --x3-latency-ms divided by C, i.e. compressed with time)")
    parser.add_argument("--real-limit-timeout", type=float, default=0.0,
                        help="real_limit: give up after this many seconds (0 = 3 x the rate "
                             "floor + 15 min)")
    parser.add_argument("--x3-load-scale", default="small", choices=sorted(SCALES))
    parser.add_argument("--x3-load-changes", default="0,20,220",
                        help="x3_load: POs amended before each measured run")
    parser.add_argument("--x3-load-apis", default="rest,graphql")
    parser.add_argument("--name", help="results file name (default: <host>-<UTC time>)")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    parser.add_argument("--in-process", action="store_true",
                        help="run every group in this process (peak RSS is then shared)")
    parser.add_argument("--merge", nargs="+", metavar="RESULT_JSON",
                        help="merge earlier results into --name instead of running anything")
    parser.add_argument("--internal-group", help=argparse.SUPPRESS)
    parser.add_argument("--internal-config", help=argparse.SUPPRESS)
    parser.add_argument("--internal-out", help=argparse.SUPPRESS)
    parser.add_argument("--internal-workdir", help=argparse.SUPPRESS)
    parser.add_argument("--internal-staging-child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(
        scale=args.scale, projects=args.projects, pos_per_project=args.pos_per_project,
        lines_per_po=args.lines_per_po, seed=args.seed, latency_ms=args.latency_ms,
        x3_latency_ms=args.x3_latency_ms, rate_compression=args.rate_compression,
        delta_fractions=tuple(float(x) for x in args.delta_fractions.split(",") if x.strip()),
        staging_scale=args.staging_scale, staging_profile_fraction=args.staging_profile_fraction,
        baseline_projects=args.baseline_projects, latency_scale=args.latency_scale,
        latency_pos=args.latency_pos, latency_window_s=args.latency_window,
        sensor_interval_s=args.sensor_interval, latency_poll_s=args.latency_poll,
        real_limit_compression=args.real_limit_compression,
        real_limit_timeout_s=args.real_limit_timeout,
        real_limit_latency_ms=args.real_limit_latency_ms,
        x3_load_scale=args.x3_load_scale,
        x3_load_changes=tuple(int(x) for x in args.x3_load_changes.split(",") if x.strip()),
        x3_load_apis=tuple(x.strip() for x in args.x3_load_apis.split(",") if x.strip()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.internal_staging_child:
        print(json.dumps(measure_staging(json.loads(args.internal_staging_child),
                                         args.staging_profile_fraction)))
        return 0
    if args.internal_group:
        cfg = config_from_json(args.internal_config)
        part = run_group(args.internal_group, cfg, set(args.scenario.split(",")),
                         Path(args.internal_workdir))
        Path(args.internal_out).write_text(json.dumps(part, default=str))
        return 0
    if args.merge:
        name = args.name or "merged"
        merged = merge_results([json.loads(Path(p).read_text()) for p in args.merge], name)
        json_path, md_path = write_results(merged, Path(args.out), name)
        print(to_markdown(merged))
        print(f"wrote {json_path} and {md_path}", file=sys.stderr)
        return 0
    cfg = config_from_args(args)
    scenarios = list(SCENARIOS) if args.scenario == "all" else [
        s.strip() for s in args.scenario.split(",") if s.strip()]
    name = args.name or f"{socket.gethostname()}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    results = run_benchmarks(cfg, scenarios, isolate=not args.in_process, name=name)
    json_path, md_path = write_results(results, Path(args.out), name)
    print(to_markdown(results))
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
