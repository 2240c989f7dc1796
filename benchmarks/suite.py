"""Which scenarios run together, and in which process.

Scenario groups that share state run in one process; each group gets a fresh process under
`run_benchmarks(isolate=True)` (the command line's default), so peak RSS is per group and
one group's garbage never counts for another. A group that fails is reported under
`errors`; the other groups' numbers are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.config import REPO, RUN_SCRIPT, BenchConfig
from benchmarks.harness import SyncSession
from benchmarks.limits import scaled_limits
from benchmarks.machine import machine_info
from benchmarks.report import comparisons, summary_rows
from benchmarks.scenarios import (
    backfill,
    baseline,
    delta,
    latency,
    noop,
    real_limit,
    staging,
    x3_load,
)

SCENARIOS = ("backfill", "noop", "delta", "latency", "staging", "baseline", "real_limit",
             "x3_load")
GROUPS = {"sync": ("backfill", "noop", "delta"), "staging": ("staging",),
          "baseline": ("baseline",), "latency": ("latency",), "real_limit": ("real_limit",),
          "x3_load": ("x3_load",)}


def run_sync_group(cfg: BenchConfig, scenarios: set[str], workdir: Path) -> dict:
    """backfill, noop and delta on one session; then the rate-limited backfill on its own."""
    out: dict = {}
    with SyncSession(cfg, workdir / "sync") as session:
        if "backfill" in scenarios:
            out["backfill"] = backfill.bench_backfill(session)
        else:  # noop / delta need a synced state: build it without measuring (no latency)
            session.set_latency(0, 0)
            setup = session.measured_run()
            out["setup_backfill"] = {"wall_s": setup["wall_s"], "success": setup["success"]}
            session.set_latency(cfg.latency_ms, cfg.x3_latency)
        if "noop" in scenarios:
            out["noop"] = noop.bench_noop(session)
        if "delta" in scenarios:
            out["delta"] = delta.bench_delta(session, cfg.delta_fractions)
            out["noop_after_delta"] = noop.bench_noop(session)
    if "backfill" in scenarios and cfg.rate_compression:
        limits = scaled_limits(cfg.rate_compression)
        with SyncSession(cfg, workdir / "rate_limited", limits=limits) as session:
            out["backfill_rate_limited"] = backfill.bench_backfill(session)
    return out


def run_group(group: str, cfg: BenchConfig, scenarios: set[str], workdir: Path) -> dict:
    """One group in this process: scenario name -> its results."""
    if group == "sync":
        return run_sync_group(cfg, scenarios, workdir)
    if group == "staging":
        return {"staging": staging.bench_staging(cfg, workdir)}
    if group == "baseline":
        return {"baseline": baseline.bench_baseline(cfg, workdir)}
    if group == "latency":
        return {"latency": latency.bench_latency(cfg, workdir)}
    if group == "real_limit":
        return {"real_limit": real_limit.bench_real_limit(cfg, workdir / "real_limit")}
    if group == "x3_load":
        return {"x3_load": x3_load.bench_x3_load(cfg, workdir / "x3_load")}
    raise ValueError(group)


def run_benchmarks(cfg: BenchConfig, scenarios: list[str], *, isolate: bool = True,
                   workdir: Path | None = None, name: str = "benchmark") -> dict:
    """Run scenarios; with `isolate`, each group in a fresh `python run.py` process."""
    chosen = set(scenarios)
    unknown = chosen - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenario(s) {sorted(unknown)}; choose from {SCENARIOS}")
    results: dict = {"name": name, "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                     **machine_info(), "settings": settings(cfg), "scenarios": {}, "errors": {}}
    own_tmp = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="mlc-bench-")) if own_tmp else workdir
    try:
        for group, members in GROUPS.items():
            wanted = chosen & set(members)
            if not wanted:
                continue
            started = time.perf_counter()
            print(f"[benchmark] {group}: {', '.join(sorted(wanted))} ...", file=sys.stderr,
                  flush=True)
            try:
                if isolate:
                    part = run_group_subprocess(group, cfg, wanted, workdir)
                else:
                    part = run_group(group, cfg, wanted, workdir / group)
                results["scenarios"].update(part)
            except Exception as exc:  # keep the other groups' numbers
                results["errors"][group] = f"{type(exc).__name__}: {exc}"[:2000]
            print(f"[benchmark] {group} done in {time.perf_counter() - started:.0f} s",
                  file=sys.stderr, flush=True)
    finally:
        if own_tmp:
            shutil.rmtree(workdir, ignore_errors=True)
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["comparisons"] = comparisons(results["scenarios"])
    results["summary"] = summary_rows(results)
    return results


def run_group_subprocess(group: str, cfg: BenchConfig, scenarios: set[str],
                         workdir: Path) -> dict:
    """One group in a fresh `run.py --internal-group` process; its results come back as JSON."""
    part = workdir / f"{group}.json"
    cmd = [sys.executable, str(RUN_SCRIPT), "--internal-group", group,
           "--internal-config", json.dumps(asdict(cfg)), "--internal-out", str(part),
           "--internal-workdir", str(workdir / group), "--scenario", ",".join(sorted(scenarios))]
    subprocess.run(cmd, cwd=REPO, check=True)
    return json.loads(part.read_text())


def settings(cfg: BenchConfig) -> dict:
    """The results' `settings`: the config, the effective X3 latency and rate limits, and
    the connector settings taken from the environment."""
    out = asdict(cfg)
    out["x3_latency_ms"] = cfg.x3_latency
    out["rate_limited_backfill_limits"] = (asdict(scaled_limits(cfg.rate_compression))
                                           if cfg.rate_compression else None)
    out["connector_env"] = {k: os.environ.get(k, "(default)") for k in (
        "MLC_MAX_POS_PER_RUN", "MLC_X3_OVERLAP_SECONDS", "SAGE_X3_API", "MLC_X3_READ_CONCURRENCY")}
    return out
