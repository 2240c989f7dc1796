#!/usr/bin/env python
"""ml-connector benchmarks: API-call efficiency, backfill time against the rate-limit floor,
change latency and memory (issue #8).

    make benchmark                                   # every scenario, results/<host>-<date>
    python benchmarks/run.py --scenario all --latency-ms 50 --name NAME
    python benchmarks/run.py --scenario backfill --scale backfill --latency-ms 50

The Procore and Sage X3 sandboxes run in this process (threads) with the chosen seed, scale,
per-call latency and rate limits. The sync under test is the real one: the Dagster job
`sync_sage_x3_to_procore` through `execute_in_process`, on a temporary Dagster instance and a
temporary SQLite ledger, with the environment pointed at the sandboxes exactly as the tests'
`sync_env` fixture does. Calls are counted from the sandboxes' own call logs.

Scenarios (`--scenario`, comma-separated, or `all`):

1. backfill  20 x 250 POs x 10 lines from empty. Twice: latency-bound (no rate limit), then
             against 600/h and 25/10 s compressed in time (see `scaled_limits`), with the
             connector's default waits (so it never hands over).
2. noop      nothing changed: one tick of each X3 change sensor (the poll; runs requested,
             X3 and Procore calls, wall time), then a whole sync run (what the fallback
             schedule costs): X3 calls, Procore calls, writes on both systems, wall time;
             then the same run one fallback-schedule gap later (reference reuse clock moved).
3. delta     0.2 %, 1 % and 2 % of POs amended through the X3 REST `$edit` API, a run after each.
4. latency   `dagster dev` (webserver + daemon, sensors every 10 s) as a subprocess; 20 POs
             created through X3 REST at random moments over 300 s; seconds until Procore's
             REST API shows each commitment with all its lines (benchmarks/latency.py).
5. staging   20 x 1000 x 20 = 400k lines through staging, validation and mapping alone, in a
             fresh child process (time and peak RSS), plus a per-row call profile.
6. baseline  the same backfill done naively (its own HTTP client; the connector's refuses
             these writes): one POST per contract and one POST per line item.
7. real_limit the backfill at 600/h + 25/10 s compressed C times (both windows) with the
             connector's waits scaled too: runs hand over to the next (the real continuation
             sensor, evaluated as the daemon would) until done (benchmarks/real_limit.py).
8. x3_load   X3 calls per changed PO on REST and GraphQL: list pages, detail reads,
             line-stamp polls (benchmarks/x3_load.py).

Calls are compared with the floor of benchmarks/floor.py, computed from the seed and the
mapping file alone. Results go to benchmarks/results/<name>.json (no per-call dumps) and
<name>.md. Nothing here asserts times; `mlc_dagster_tests/benchmarks/test_smoke.py` runs a
tiny version in CI and guards the call counts.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import importlib.metadata
import json
import math
import os
import pickle
import platform
import pstats
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/run.py` as well as `benchmarks.run`
    sys.path.insert(0, str(REPO))
from benchmarks import floor as call_floor  # noqa: E402 - after the path it needs

RESULTS_DIR = REPO / "benchmarks" / "results"
JOB = "sync_sage_x3_to_procore"
WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}
CONTRACTS = "/rest/v1.0/purchase_order_contracts"
SCENARIOS = ("backfill", "noop", "delta", "latency", "staging", "baseline", "real_limit",
             "x3_load")
# Scenario groups that share state run in one process; each group gets a fresh process
# under `all`, so peak RSS is per group and one group's garbage never counts for another.
GROUPS = {"sync": ("backfill", "noop", "delta"), "staging": ("staging",),
          "baseline": ("baseline",), "latency": ("latency",), "real_limit": ("real_limit",),
          "x3_load": ("x3_load",)}
TARGETS = {
    "calls_over_floor": 1.05, "noop_writes": 0, "noop_wall_s": 2.0, "latency_p95_s": 30.0,
    "staging_s": 20.0, "staging_peak_mib": 2048.0, "backfill_429s": 0,
}
# Procore endpoints of the PO -> commitment flow (writes, the adoption scan and the reference
# reads). Anything else the job calls belongs to another flow and is reported separately; a
# commitment's show read (`GET .../purchase_order_contracts/{id}`) is the invoice flow's here
# (it confirms invoicing is disabled): the benchmark seeds have no approved or hand-made
# commitments, the PO flow's only reasons to read one.
PO_FLOW = re.compile(
    r"^(POST /oauth/token|GET /rest/v1\.0/(projects|vendors|cost_codes|line_item_types)$"
    r"|GET /rest/v1\.0/purchase_order_contracts$"
    r"|(?!GET)[A-Z]+ /rest/v1\.0/purchase_order_contracts"
    r"|GET /rest/v1\.0/purchase_order_contracts/\{id\}/line_items"
    r"|[A-Z]+ /rest/v1\.0/(change_order_packages|potential_change_orders))")
OTHER_FLOW_STEP = re.compile(r"invoice|requisition|supplier|dimension")
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SCALES = {  # name: (projects, POs per project, lines per PO); mirrors sandbox/seed.py
    "small": (20, 15, None), "medium": (20, 100, None), "backfill": (20, 250, 10),
    "large": (20, 1000, 20),
}


# --- configuration ------------------------------------------------------------------------

@dataclass(frozen=True)
class RateLimits:
    """What the Procore sandbox enforces: two fixed windows, hourly and spike, each with its
    own limit and length (seconds, may be fractions: time compression)."""

    hourly_limit: int
    spike_limit: int
    spike_window_seconds: float
    description: str
    hourly_window_seconds: float = 3600.0

    def sandbox_config(self) -> dict:
        return {"hourly_limit": self.hourly_limit, "spike_limit": self.spike_limit,
                "spike_window_seconds": self.spike_window_seconds,
                "hourly_window_seconds": self.hourly_window_seconds}

    @property
    def allowed_per_second(self) -> float:
        return min(self.spike_limit / self.spike_window_seconds,
                   self.hourly_limit / self.hourly_window_seconds)

    def windows(self) -> dict[str, tuple[float, int]]:
        """name -> (length s, limit), for replaying the sandbox's windows on a call log."""
        return {"hourly": (self.hourly_window_seconds, self.hourly_limit),
                "spike": (self.spike_window_seconds, self.spike_limit)}


UNLIMITED = RateLimits(10**9, 10**9, 10, "none (latency-bound run)")


def scaled_limits(compression: float, hourly: int = 600, spike: int = 25,
                  spike_window: float = 10, hour: float = 3600) -> RateLimits:
    """The target limits (600/h and 25/10 s) with time compressed `compression` times.

    At 600/h a 5,000-PO backfill needs ~10 h whatever the client does, so the run compresses
    time instead of changing the budget: both windows shrink together and keep their
    limits, 600 calls per 3600/C s (one emulated hour) and 25 per 10/C s. The sandbox sends
    X-Rate-Limit-Reset as an integer epoch, as Procore does, so a compressed window's reset
    can read up to 1 s late (see `compression_check`).
    """
    hour_s, spike_s = hour / compression, spike_window / compression
    return RateLimits(
        hourly_limit=hourly, spike_limit=spike, spike_window_seconds=spike_s,
        hourly_window_seconds=hour_s,
        description=(f"{hourly}/h and {spike}/{spike_window:g}s compressed {compression:g}x in "
                     f"time: {hourly} calls per {hour_s:g} s (= 1 emulated hour) and {spike} "
                     f"per {spike_s:.3g} s"))


@dataclass(frozen=True)
class BenchConfig:
    scale: str = "backfill"
    projects: int | None = None
    pos_per_project: int | None = None
    lines_per_po: int | None = None
    seed: int = 42
    latency_ms: int = 50
    x3_latency_ms: int | None = None  # None: same as latency_ms
    rate_compression: float = 60.0  # 0 = skip the rate-limited backfill
    delta_fractions: tuple[float, ...] = (0.002, 0.01, 0.02)
    staging_scale: str = "large"
    staging_projects: int | None = None
    staging_pos_per_project: int | None = None
    staging_lines_per_po: int | None = None
    staging_subprocess: bool = True
    staging_profile_fraction: float = 0.1  # profile per-row calls on this share of POs
    baseline_projects: int = 0  # 0 = every project; N = first N projects, scaled up
    latency_scale: str = "backfill"
    latency_pos: int = 20
    latency_window_s: float = 300.0
    latency_grace_s: float = 90.0
    sensor_interval_s: int = 10
    latency_poll_s: float = 0.5  # how often the API watcher asks Procore (its resolution)
    real_limit_compression: float = 60.0
    real_limit_latency_ms: int | None = None  # None = --latency-ms compressed too (/ C)
    real_limit_timeout_s: float = 0.0  # 0 = 3 x the rate floor + 15 min
    x3_load_scale: str = "small"
    x3_load_changes: tuple[int, ...] = (0, 20, 220)  # 220 > one list page of 200
    x3_load_apis: tuple[str, ...] = ("rest", "graphql")

    @property
    def x3_latency(self) -> int:
        return self.latency_ms if self.x3_latency_ms is None else self.x3_latency_ms

    def shape(self, which: str = "sync") -> tuple[int, int, int | None]:
        if which == "staging":
            base = SCALES[self.staging_scale]
            return (self.staging_projects or base[0], self.staging_pos_per_project or base[1],
                    self.staging_lines_per_po or base[2])
        if which == "latency":
            base = SCALES[self.latency_scale]
            return (self.projects or base[0], self.pos_per_project or base[1],
                    self.lines_per_po or base[2])
        if which == "x3_load":
            base = SCALES[self.x3_load_scale]
            return (self.projects or base[0], self.pos_per_project or base[1],
                    self.lines_per_po or base[2])
        base = SCALES[self.scale]
        return (self.projects or base[0], self.pos_per_project or base[1],
                self.lines_per_po or base[2])


def build_seed_for(cfg: BenchConfig, which: str = "sync"):
    from mlc_sandbox.seed import build_seed

    scale = {"staging": cfg.staging_scale, "latency": cfg.latency_scale,
             "x3_load": cfg.x3_load_scale}.get(which, cfg.scale)
    projects, pos, lines = cfg.shape(which)
    return build_seed(cfg.seed, scale, projects=projects, pos_per_project=pos,
                      lines_per_po=lines)


# --- machine, memory and CPU accounting --------------------------------------------------

def _proc_status_kib(name: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{name}:\s+(\d+)\s+kB", text, re.M)
    return int(match.group(1)) if match else None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0), so peaks are per phase."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak resident set size since the last reset (VmHWM), else since process start."""
    kib = _proc_status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(kib / 1024, 1)


def rss_mib() -> float:
    kib = _proc_status_kib("VmRSS")
    return round(kib / 1024, 1) if kib is not None else peak_rss_mib()


def _machine_busy_seconds() -> float | None:
    """CPU-seconds the whole machine spent busy since boot (all cores)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Meter:
    """Wall time, load average and how busy the machine was with work that isn't ours."""

    def __init__(self) -> None:
        self.load_start = [round(x, 2) for x in os.getloadavg()]
        self.busy0 = _machine_busy_seconds()
        self.own0 = _own_cpu_seconds()
        self.t0 = time.perf_counter()

    def stop(self) -> dict:
        wall = time.perf_counter() - self.t0
        busy1, own1 = _machine_busy_seconds(), _own_cpu_seconds()
        out = {"wall_s": round(wall, 2), "load_avg_start": self.load_start,
               "load_avg_end": [round(x, 2) for x in os.getloadavg()],
               "own_cpu_cores": round((own1 - self.own0) / wall, 2) if wall else None}
        if busy1 is not None and self.busy0 is not None and wall > 0:
            machine = (busy1 - self.busy0) / wall
            out["machine_busy_cores"] = round(machine, 2)
            out["others_busy_cores"] = round(max(0.0, machine - out["own_cpu_cores"]), 2)
        return out


def _git(*args: str, cwd: Path) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict:
    import mlc_dagster

    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = None
    with contextlib.suppress(OSError, AttributeError):
        mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    versions = {"python": platform.python_version()}
    for dist in ("dagster", "pandas", "pandera", "numpy", "httpx", "sqlalchemy", "uvicorn"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    source = Path(mlc_dagster.__file__).resolve().parent.parent
    dirty = _git("status", "--porcelain", "--untracked-files=no", cwd=source)
    return {
        "machine": {"cpu_count": os.cpu_count(), "cpu_model": model or platform.processor(),
                    "ram_gib": round(mem_kib / 1024**2, 1) if mem_kib else None,
                    "platform": platform.platform(), "hostname": socket.gethostname()},
        "versions": versions,
        "git": {"commit": _git("rev-parse", "HEAD", cwd=source),
                "subject": _git("log", "-1", "--format=%s", cwd=source),
                "dirty_files": dirty.splitlines()[:30] if dirty else [],
                "code_under_test": str(source)},
    }


# --- sandboxes, environment, the job ----------------------------------------------------

@contextlib.contextmanager
def started_sandboxes(seed_data):
    from mlc_sandbox.server import running_sandboxes

    with running_sandboxes(seed_data=seed_data) as handles:
        yield handles


def configure(handles, *, latency_ms: int, x3_latency_ms: int, limits: RateLimits) -> None:
    """Through each sandbox's /_sandbox/config, as any client of the sandbox would."""
    import httpx

    httpx.post(f"{handles['procore'].url}/_sandbox/config",
               json={"latency_ms": latency_ms, **limits.sandbox_config()}).raise_for_status()
    httpx.post(f"{handles['sage_x3'].url}/_sandbox/config",
               json={"latency_ms": x3_latency_ms}).raise_for_status()


@contextlib.contextmanager
def sync_environment(handles, workdir: Path, extra: dict | None = None):
    """Like mlc_dagster_tests/conftest.py `sync_env`: sandbox URLs and credentials, a
    temporary SQLite ledger and DAGSTER_HOME, a writable copy of the GL mapping CSV."""
    from mlc_dagster.settings import sample_mapping_path
    from mlc_sandbox.server import sandbox_env

    workdir.mkdir(parents=True, exist_ok=True)
    mapping = workdir / "gl_map.csv"
    if not mapping.exists():
        shutil.copy(sample_mapping_path(), mapping)
    # SAGE_X3_API in the benchmark's own environment picks the X3 API (default rest).
    env = sandbox_env(handles["procore"].url, handles["sage_x3"].url,
                      os.environ.get("SAGE_X3_API") or "rest")
    env.update({"MLC_LEDGER_URL": f"sqlite:///{workdir / 'ledger.sqlite'}",
                "DAGSTER_HOME": str(workdir), "MLC_GL_MAPPING_CSV": str(mapping)})
    env.update(extra or {})
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _plain(value):
    value = getattr(value, "value", value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    text = str(value)
    return text if len(text) <= 80 else None  # markdown tables etc. are left out


def run_sync_job(instance=None, tags: dict | None = None) -> dict:
    """One run of the real job in-process. Successive runs should share an `instance`: as in
    production, the reference assets reuse their last materialisation while it is recent.
    `tags`: the run's tags, e.g. those of a sensor's RunRequest."""
    import dagster as dg

    from mlc_dagster.definitions import defs

    job = defs.resolve_job_def(JOB)
    with contextlib.ExitStack() as stack:
        if instance is None:
            instance = stack.enter_context(dg.instance_for_test())
        started = time.perf_counter()
        # The console logger prints at WARNING; every event still goes to the event log.
        result = job.execute_in_process(instance=instance, raise_on_error=False,
                                        run_config=QUIET_CONSOLE, tags=tags)
        wall = time.perf_counter() - started
        steps = _step_seconds(instance, result.run_id)
    failures = [e.message for e in result.all_events if e.is_failure]
    metadata = {}
    for event in result.get_asset_materialization_events():
        data = event.step_materialization_data.materialization
        values = {k: _plain(v) for k, v in data.metadata.items()}
        metadata[event.asset_key.to_user_string()] = {k: v for k, v in values.items()
                                                      if v is not None}
    reused = sorted(k for k, v in metadata.items() if "reused_from_run" in v)
    return {"success": result.success, "run_id": result.run_id, "wall_s": round(wall, 2),
            "reference_reused": reused,
            "steps_s": steps, "dagster_overhead_s": round(wall - sum(steps.values()), 2),
            "failures": failures[:5], "metadata": metadata}


def _step_seconds(instance, run_id: str) -> dict[str, float]:
    starts, out = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        if event.event_type_value == "STEP_START":
            starts[entry.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and entry.step_key in starts:
            out[entry.step_key] = round(entry.timestamp - starts[entry.step_key], 3)
    return out


class CallLog:
    """A window onto a sandbox's call log (the same list `/_sandbox/calls` serves)."""

    def __init__(self, handle) -> None:
        self.controls = handle.controls
        self.start = 0
        self.mark()

    def mark(self) -> None:
        with self.controls._lock:
            self.start = len(self.controls.calls)

    def since_mark(self) -> list[dict]:
        with self.controls._lock:
            return list(self.controls.calls[self.start:])


def summarize_calls(calls: list[dict], latency_ms: int) -> dict:
    from mlc_dagster.resources.http_core import path_template

    by_endpoint = Counter(f"{c['method']} {path_template(c['path'])}" for c in calls)
    # Procore REST and X3 REST (`/api1/...`) writes; the token POST and X3 GraphQL's POST
    # (queries and mutations alike) are not counted here (see x3_state_fingerprint).
    writes = sum(1 for c in calls if c["method"] in WRITE_METHODS
                 and c["path"].startswith(("/rest/", "/api1/")))
    auth = sum(1 for c in calls if c["path"] == "/oauth/token")
    server_ms = sum(max(0.0, (c.get("duration_ms") or 0) - latency_ms) for c in calls)
    other = {k: n for k, n in by_endpoint.items() if not PO_FLOW.match(k)}
    return {"total": len(calls), "writes": writes, "reads": len(calls) - writes - auth,
            "auth": auth, "po_flow": len(calls) - sum(other.values()), "other_flows": other,
            "status_429": sum(1 for c in calls if c["status"] == 429),
            "errors": sum(1 for c in calls if (c["status"] or 0) >= 400 and c["status"] != 429),
            "by_endpoint": dict(by_endpoint.most_common()),
            "sandbox_server_s": round(server_ms / 1000, 2)}


def _synced_contracts(procore_handle) -> dict[str, dict]:
    """origin_code -> {project_id, lines} for every live X3 contract in the Procore sandbox."""
    state = procore_handle.state
    with state.lock:
        out = {}
        for contract in state.contracts.all():
            if str(contract.get("origin_id") or "").startswith("X3:PO:"):
                out[contract["origin_code"]] = {
                    "project_id": contract["_project_id"], "status": contract["status"],
                    "lines": len(state.line_items.all(contract["id"]))}
        return out


def x3_state_fingerprint(x3_handle) -> str:
    """A digest of every record the X3 sandbox holds (POs, invoices, suppliers, accounts,
    dimensions): equal before and after a run when nothing was written to X3 by any API,
    GraphQL mutations included (the call log cannot tell those from queries)."""
    import hashlib

    state = x3_handle.state
    with state.lock:
        data = [getattr(state.data, attr) for attr in state.X3_ATTRS]
        text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def floor_check(by_endpoint: dict, floor: call_floor.Floor) -> dict:
    """The run's Procore calls against the independent floor, endpoint by endpoint."""
    actual = Counter(by_endpoint)
    allowed = floor.calls + floor.allowance
    over = call_floor.over_floor(actual, allowed)
    return {"over": over, "under": call_floor.under_floor(actual, floor.calls),
            "calls": sum(actual.values()), "floor": floor.total,
            "allowance": dict(floor.allowance), "allowance_reasons": floor.allowance_reasons,
            "violations": [f"{e}: {actual[e]} calls, floor {floor.calls.get(e, 0)}"
                           + (f" + {floor.allowance[e]} allowed" if floor.allowance.get(e) else "")
                           + f" (+{n})" for e, n in over.items()]}


def noop_violations(noop: dict, tolerated: dict | None = None) -> list[str]:
    """What a no-change run must not do: any Procore call or write, any X3 write.

    `tolerated`: endpoint -> calls a caller knowingly lets pass (a gap it reports apart)."""
    tolerated = tolerated or {}
    out = []
    poll = noop.get("sensor_poll") or {}
    if poll.get("run_requests"):
        out.append(f"sensor poll: {poll['run_requests']} run(s) requested")
    for label, run in (("sensor poll", poll), ("whole run", noop),
                       ("run one fallback tick later", noop.get("fallback_tick"))):
        if not run:
            continue
        calls = Counter(run["procore"]["by_endpoint"])
        extra = call_floor.over_floor(calls, Counter(tolerated if run is not poll else {}))
        if extra:
            out.append(f"{label}: {sum(extra.values())} Procore call(s): "
                       + ", ".join(f"{e} x{n}" for e, n in extra.items()))
        if run["procore"]["writes"]:
            out.append(f"{label}: {run['procore']['writes']} Procore write(s)")
        if run["x3"]["writes"]:
            out.append(f"{label}: {run['x3']['writes']} X3 write call(s)")
        if run.get("x3_state_unchanged") is False:
            out.append(f"{label}: X3 records changed")
    return out


# --- scenarios 1-3: backfill, no-op, delta ------------------------------------------------

class SyncSession:
    """Seeded sandboxes + environment + ledger that successive runs share."""

    def __init__(self, cfg: BenchConfig, workdir: Path, limits: RateLimits = UNLIMITED,
                 latency_ms: int | None = None, env: dict | None = None,
                 shape: str = "sync") -> None:
        self.cfg, self.workdir, self.limits, self.shape = cfg, workdir, limits, shape
        self.latency_ms = cfg.latency_ms if latency_ms is None else latency_ms
        self.extra_env = dict(env or {})  # connector settings for this session's runs
        self.stack = contextlib.ExitStack()

    def __enter__(self) -> SyncSession:
        import dagster as dg

        self.seed = build_seed_for(self.cfg, self.shape)
        self.handles = self.stack.enter_context(started_sandboxes(self.seed))
        self.env = self.stack.enter_context(sync_environment(self.handles, self.workdir,
                                                             self.extra_env))
        self.instance = self.stack.enter_context(dg.instance_for_test())
        self.set_latency(self.latency_ms, self.cfg.x3_latency if self.latency_ms else 0)
        self.procore_log = CallLog(self.handles["procore"])
        self.x3_log = CallLog(self.handles["sage_x3"])
        return self

    def __exit__(self, *exc) -> None:
        self.stack.close()

    def set_latency(self, procore_ms: int, x3_ms: int) -> None:
        self.latency_ms = procore_ms
        configure(self.handles, latency_ms=procore_ms, x3_latency_ms=x3_ms, limits=self.limits)

    def mapping_csv(self) -> str:
        """The GL mapping file this session's runs read (MLC_GL_MAPPING_CSV)."""
        return Path(self.env["MLC_GL_MAPPING_CSV"]).read_text(encoding="utf-8-sig")

    def measured_run(self, *, check_x3_state: bool = False) -> dict:
        x3_before = x3_state_fingerprint(self.handles["sage_x3"]) if check_x3_state else None
        self.procore_log.mark()
        self.x3_log.mark()
        gc.collect()
        reset_peak_rss()
        rss_before = rss_mib()
        meter = Meter()
        run = run_sync_job(self.instance)
        usage = meter.stop()
        peak = peak_rss_mib()
        commitments = run["metadata"].get("procore_commitments", {})
        staged = run["metadata"].get("x3_purchase_orders", {})
        checked = {} if x3_before is None else {
            "x3_state_unchanged": x3_state_fingerprint(self.handles["sage_x3"]) == x3_before}
        return {
            "success": run["success"], "failures": run["failures"], "wall_s": run["wall_s"],
            "reference_reused": run["reference_reused"],
            "steps_s": run["steps_s"], "dagster_overhead_s": run["dagster_overhead_s"],
            "procore": summarize_calls(self.procore_log.since_mark(), self.latency_ms),
            "x3": summarize_calls(self.x3_log.since_mark(), self.cfg.x3_latency),
            "outcome": {k: commitments.get(k) for k in (
                "created", "updated", "inactivated", "unchanged", "held", "failed", "deferred",
                "procore_calls", "procore_429s", "rate_limit_wait_seconds")},
            "x3_read": {k: staged.get(k) for k in ("x3_records_read", "x3_records_changed",
                                                   "valid_pos", "valid_lines", "quarantined_pos")},
            "rss_before_mib": rss_before, "peak_rss_mib": peak, "machine_load": usage,
            **checked,
        }


def bench_backfill(session: SyncSession) -> dict:
    run = session.measured_run()
    contracts = _synced_contracts(session.handles["procore"])
    # The floor comes from the seed and the mapping file alone (benchmarks/floor.py), never
    # from what this run wrote or reused: then a run making extra calls cannot agree with it.
    floor = call_floor.backfill_floor(session.seed, session.mapping_csv())
    expected = {po for pos in floor.pos.values() for po in pos}
    calls = run["procore"]["po_flow"]
    pos = len(contracts)
    latency_floor_s = floor.flow("po") * session.latency_ms / 1000
    other_steps_s = sum(v for k, v in run["steps_s"].items() if OTHER_FLOW_STEP.search(k))
    out = {
        "shape": {"projects": len(session.seed.projects),
                  "pos": len(session.seed.x3_purchase_orders),
                  "lines": sum(len(p["lines"]) for p in session.seed.x3_purchase_orders),
                  "pos_synced": pos, "lines_synced": sum(c["lines"] for c in contracts.values())},
        "latency_ms": session.latency_ms, "rate_limits": asdict(session.limits),
        **run,
        "floor": floor.as_dict(),
        "floor_check": floor_check(run["procore"]["by_endpoint"], floor),
        "pos_check": {"expected": len(expected),
                      "missing": sorted(expected - set(contracts))[:20],
                      "unexpected": sorted(set(contracts) - expected)[:20]},
        "calls_per_po": round(calls / pos, 4) if pos else None,
        # PO flow against its floor (the figure reported since issue #8), and the whole job
        "calls_over_floor": round(calls / floor.flow("po"), 4),
        "all_calls_over_floor": round(run["procore"]["total"] / floor.total, 4),
        "wall_over_latency_floor": (round(run["wall_s"] / latency_floor_s, 2)
                                    if latency_floor_s else None),
        "other_flow_steps_s": round(other_steps_s, 2),
        "po_flow_wall_over_latency_floor": (round((run["wall_s"] - other_steps_s) / latency_floor_s, 2)
                                            if latency_floor_s else None),
    }
    if session.limits is not UNLIMITED:
        out["pacing"] = pacing_profile(session.procore_log.since_mark(), session.limits,
                                       floor.total, run["wall_s"], session.latency_ms)
    return out


def limiter_times(calls: list[dict], latency_ms: float = 0) -> list[float]:
    """When the sandbox's rate limiter counted each call (sorted): the call log stamps a call
    when it ends, the limiter sees it after the injected latency; 429s are not counted."""
    return sorted(c["at"] - (c.get("duration_ms") or 0) / 1000 + latency_ms / 1000
                  for c in calls if c["status"] != 429
                  and (c["path"].startswith("/rest/") or c["path"] == "/oauth/token"))


def window_counts(times: list[float], length: float) -> list[int]:
    """Calls per fixed window, replaying the sandbox's rule: a window opens at the first
    call after the previous one ended (RateLimiter in sandbox/procore_app.py)."""
    windows, start, count = [], None, 0
    for t in times:
        if start is None or t >= start + length:
            if start is not None:
                windows.append(count)
            start, count = t, 0
        count += 1
    if start is not None:
        windows.append(count)
    return windows


def pacing_profile(calls: list[dict], limits: RateLimits, floor_calls: int, wall_s: float,
                   latency_ms: float = 0) -> dict:
    """Calls per rate-limit window (hourly, and the spike window's busiest), replayed on the
    sandbox's call log; the rate floor is the floor's calls at the allowed rate."""
    times = limiter_times(calls, latency_ms)
    hourly = window_counts(times, limits.hourly_window_seconds)
    spike = window_counts(times, limits.spike_window_seconds)
    rate_floor_s = floor_calls / limits.allowed_per_second
    return {
        "window_s": round(limits.hourly_window_seconds, 3), "window_limit": limits.hourly_limit,
        "calls_per_window": hourly, "max_in_a_window": max(hourly, default=0),
        "spike": {"window_s": round(limits.spike_window_seconds, 4),
                  "window_limit": limits.spike_limit, "max_in_a_window": max(spike, default=0)},
        "allowed_calls_per_s": round(limits.allowed_per_second, 3),
        "achieved_calls_per_s": round(len(calls) / wall_s, 3) if wall_s else None,
        "rate_floor_s": round(rate_floor_s, 1),
        "wall_over_rate_floor": round(wall_s / rate_floor_s, 3) if rate_floor_s else None,
        "emulated_hours": round(rate_floor_s / limits.hourly_window_seconds, 2),
    }


def bench_noop(session: SyncSession) -> dict:
    """Nothing changed: the poll itself (one tick of each X3 change sensor, caught up), a
    whole sync run (what the fallback schedule does every 15 minutes), and the same run one
    fallback-schedule gap later, when the reference data must still be reused."""
    poll = bench_sensor_poll(session)
    run = session.measured_run(check_x3_state=True)
    later_s = fallback_gap_seconds()
    with fallback_tick_later(later_s):
        later = session.measured_run(check_x3_state=True)
    out = {"latency_ms": session.latency_ms, "sensor_poll": poll, **run, "fallback_tick": {
        "later_s": later_s, **{k: later[k] for k in (
            "success", "failures", "wall_s", "reference_reused", "procore", "x3",
            "x3_state_unchanged")}}}
    out["violations"] = noop_violations(out)
    # What the hourly re-check of invoices held on commitments that refuse invoices costs
    # (benchmarks/floor.py, Floor.recheck; once per MLC_INVOICING_RECHECK_SECONDS, not in a
    # no-change run any more): reported, not tolerated.
    out["hourly_invoicing_recheck"] = dict(
        call_floor.backfill_floor(session.seed, session.mapping_csv()).recheck())
    return out


def fallback_gap_seconds() -> int:
    """The longest gap between two fallback-schedule ticks (MLC_SYNC_CRON)."""
    from mlc_dagster.defs.reference.settings import (
        DEFAULT_SYNC_CRON,
        FALLBACK_GAP_SECONDS,
        cron_longest_gap_seconds,
    )

    cron = os.environ.get("MLC_SYNC_CRON") or DEFAULT_SYNC_CRON
    return cron_longest_gap_seconds(cron) or FALLBACK_GAP_SECONDS


@contextlib.contextmanager
def fallback_tick_later(seconds: float):
    """Judge reference-data reuse `seconds` later than now, as the next fallback tick would,
    without waiting for it (the clock of defs/reference/freshness.py)."""
    from mlc_dagster.defs.reference import freshness

    saved = freshness.clock
    freshness.clock = lambda: time.time() + seconds
    try:
        yield
    finally:
        freshness.clock = saved


def bench_sensor_poll(session: SyncSession) -> dict:
    """One evaluation of every sensor with its cursor caught up, timed and call-counted."""
    import dagster as dg

    from mlc_dagster.definitions import build_resources

    cursors = {name: cursor for name, (_, cursor) in _walk_sensors(session.instance).items()}
    resources = sensor_resources(build_resources())
    sensors = {name: _sensor(name) for name in cursors}
    x3_before = x3_state_fingerprint(session.handles["sage_x3"])
    session.procore_log.mark()
    session.x3_log.mark()
    started = time.perf_counter()
    requested = 0
    for name, sensor in sensors.items():
        with dg.build_sensor_context(instance=session.instance, cursor=cursors[name],
                                     resources=resources) as context:
            requested += len(sensor(context).run_requests or [])
    wall = time.perf_counter() - started
    return {"sensors": sorted(sensors), "wall_s": round(wall, 3), "run_requests": requested,
            "procore": summarize_calls(session.procore_log.since_mark(), session.latency_ms),
            "x3": summarize_calls(session.x3_log.since_mark(), session.cfg.x3_latency),
            "x3_state_unchanged": x3_state_fingerprint(session.handles["sage_x3"]) == x3_before}


def amend_pos(x3_url: str, numbers: list[str]) -> None:
    """Through the X3 REST API: bump the revision and add 1 to the first line's quantity."""
    import httpx

    from mlc_sandbox.seed import SANDBOX_CREDENTIALS as creds

    with httpx.Client(base_url=f"{x3_url}/api1/x3/erp/{creds['x3_endpoint']}",
                      auth=(creds["x3_user"], creds["x3_password"]), timeout=60) as http:
        for number in numbers:
            po = http.get(f"/PORDER('{number}')", params={"representation": "PORDER.$details"})
            po.raise_for_status()
            po = po.json()
            first = po["PORDERQ"][0]
            quantity = Decimal(str(first["QTYUOM"])) + 1
            amount = (quantity * Decimal(str(first["NETPRI"]))).quantize(Decimal("0.01"))
            response = http.put(f"/PORDER('{number}')", params={"representation": "PORDER.$edit"},
                                json={"REVNUM": int(po["REVNUM"]) + 1, "PORDERQ": [
                                    {"POPLIN": first["POPLIN"], "QTYUOM": str(quantity),
                                     "LINAMT": str(amount)}]})
            if response.status_code != 200:
                raise RuntimeError(f"X3 $edit of {number} failed: {response.status_code} "
                                   f"{response.text[:300]}")


def bench_delta(session: SyncSession, fractions: tuple[float, ...]) -> dict:
    rng = random.Random(session.cfg.seed + 8)
    synced = _synced_contracts(session.handles["procore"])
    pool = sorted(synced)
    rng.shuffle(pool)
    total_pos = len(session.seed.x3_purchase_orders)
    projects = {po["POHNUM"]: po["PJTH"] for po in session.seed.x3_purchase_orders}
    lines_of = {po["POHNUM"]: len(po["lines"]) for po in session.seed.x3_purchase_orders}
    runs = []
    for fraction in fractions:
        n = max(1, round(total_pos * fraction))
        chosen, pool = pool[:n], pool[n:]
        amend_pos(session.handles["sage_x3"].url, chosen)
        run = session.measured_run()
        by_project = Counter(projects[po] for po in chosen)
        floor = call_floor.delta_floor({po: projects[po] for po in chosen}, lines_of)
        calls = run["procore"]["po_flow"]
        runs.append({
            "fraction": fraction, "changed_pos": n, "projects_touched": len(by_project), **run,
            "floor": floor.as_dict(), "floor_check": floor_check(run["procore"]["by_endpoint"], floor),
            "calls_per_changed_po": round(calls / n, 3),
            "writes_per_changed_po": round(run["procore"]["writes"] / n, 3),
            "x3_calls_per_changed_po": round(run["x3"]["total"] / n, 3),
            "calls_over_floor": round(calls / floor.flow("po"), 4),
        })
    return {"latency_ms": session.latency_ms, "total_pos": total_pos, "runs": runs,
            "scaling": _scaling(runs)}


def _scaling(runs: list[dict]) -> dict:
    """Least-squares fit of calls and writes against changed POs: fixed + per-PO cost."""
    if len(runs) < 2:
        return {}
    out = {}
    for what, get in (("procore_calls", lambda r: r["procore"]["po_flow"]),
                      ("procore_writes", lambda r: r["procore"]["writes"]),
                      ("x3_calls", lambda r: r["x3"]["total"]), ("wall_s", lambda r: r["wall_s"])):
        xs = [r["changed_pos"] for r in runs]
        ys = [get(r) for r in runs]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
        out[what] = {"fixed": round(my - slope * mx, 3), "per_changed_po": round(slope, 4)}
    return out


def run_sync_group(cfg: BenchConfig, scenarios: set[str], workdir: Path) -> dict:
    out: dict = {}
    with SyncSession(cfg, workdir / "sync") as session:
        if "backfill" in scenarios:
            out["backfill"] = bench_backfill(session)
        else:  # noop / delta need a synced state: build it without measuring (no latency)
            session.set_latency(0, 0)
            setup = session.measured_run()
            out["setup_backfill"] = {"wall_s": setup["wall_s"], "success": setup["success"]}
            session.set_latency(cfg.latency_ms, cfg.x3_latency)
        if "noop" in scenarios:
            out["noop"] = bench_noop(session)
        if "delta" in scenarios:
            out["delta"] = bench_delta(session, cfg.delta_fractions)
            out["noop_after_delta"] = bench_noop(session)
    if "backfill" in scenarios and cfg.rate_compression:
        limits = scaled_limits(cfg.rate_compression)
        with SyncSession(cfg, workdir / "rate_limited", limits=limits) as session:
            out["backfill_rate_limited"] = bench_backfill(session)
    return out


# --- scenario 6: naive baseline ------------------------------------------------------------

class NaiveProcoreWriter:
    """How a simple integration writes: its own HTTP client, one POST per contract and one
    per line item. Not the connector's ProcoreClient, which refuses these writes (its
    allow-list of Procore writes has only the batch `sync` endpoints for commitments)."""

    def __init__(self, url: str, company_id: int) -> None:
        import httpx

        from mlc_sandbox.seed import SANDBOX_CREDENTIALS as creds

        token = httpx.post(f"{url}/oauth/token", data={
            "grant_type": "client_credentials", "client_id": creds["procore_client_id"],
            "client_secret": creds["procore_client_secret"]}, timeout=60)
        token.raise_for_status()
        self.http = httpx.Client(base_url=url, timeout=60, headers={
            "Authorization": f"Bearer {token.json()['access_token']}",
            "Procore-Company-Id": str(company_id)})

    def post(self, path: str, body: dict) -> dict:
        response = self.http.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self.http.close()


def bench_baseline(cfg: BenchConfig, workdir: Path) -> dict:
    """The same backfill as a simple integration would write it: read X3 the same way, map
    the same way, then one POST per contract and one POST per line item."""
    from mlc_dagster.defs.purchase_orders.desired import build_desired_commitments
    from mlc_dagster.defs.purchase_orders.gl_map import parse_gl_mapping
    from mlc_dagster.defs.purchase_orders.staging import stage_purchase_orders
    from mlc_dagster.defs.reference.frames import (
        LINE_ITEM_TYPE_COLUMNS,
        PROJECT_COLUMNS,
        VENDOR_COLUMNS,
        cost_codes_frame,
        frame,
    )
    from mlc_dagster.resources.procore_client import ProcoreClient
    from mlc_dagster.resources.sage_x3_client import SageX3RestClient
    from mlc_dagster.settings import read_text, sample_mapping_path
    from mlc_sandbox.seed import COMPANY_ID
    from mlc_sandbox.seed import SANDBOX_CREDENTIALS as creds

    seed = build_seed_for(cfg)
    with started_sandboxes(seed) as handles:
        configure(handles, latency_ms=cfg.latency_ms, x3_latency_ms=cfg.x3_latency, limits=UNLIMITED)
        procore_log, x3_log = CallLog(handles["procore"]), CallLog(handles["sage_x3"])
        url = handles["procore"].url
        procore = ProcoreClient(url, url, creds["procore_client_id"],
                                creds["procore_client_secret"], COMPANY_ID)
        x3 = SageX3RestClient(handles["sage_x3"].url, creds["x3_endpoint"], creds["x3_user"],
                              creds["x3_password"])
        gc.collect()
        reset_peak_rss()
        meter = Meter()
        headers = [r for page in x3.changed("purchase_order", None) for r in page]
        records = x3.read_purchase_orders([h["po_number"] for h in headers])
        staged = stage_purchase_orders(records)
        projects = frame(procore.projects(), PROJECT_COLUMNS)
        desired = build_desired_commitments(
            staged, parse_gl_mapping(read_text(sample_mapping_path())), projects,
            frame(procore.vendors(), VENDOR_COLUMNS),
            cost_codes_frame({int(p): procore.project_cost_codes(int(p)) for p in projects["id"]}),
            frame(procore.line_item_types(), LINE_ITEM_TYPE_COLUMNS))
        commitments = desired.commitments
        if cfg.baseline_projects:
            keep = set(projects["id"].head(cfg.baseline_projects).astype(int))
            commitments = [c for c in commitments if c.project_id in keep]
        read_s = time.perf_counter() - meter.t0
        procore_log.mark()
        write_start = time.perf_counter()
        naive = NaiveProcoreWriter(url, COMPANY_ID)
        for c in commitments:
            status = "Closed" if c.closed else "Draft"
            contract = naive.post(CONTRACTS, {
                "project_id": c.project_id,
                "purchase_order_contract": {**c.header, "status": status}})
            for line in c.lines:
                naive.post(f"{CONTRACTS}/{contract['id']}/line_items",
                           {"project_id": c.project_id, "line_item": line})
        naive.close()
        write_s = time.perf_counter() - write_start
        usage = meter.stop()
        peak = peak_rss_mib()
        write_calls = summarize_calls(procore_log.since_mark(), cfg.latency_ms)
        procore_log.start = 0
        all_calls = summarize_calls(procore_log.since_mark(), cfg.latency_ms)
        procore.close()
        x3.close()
    factor = len(desired.commitments) / len(commitments) if commitments else 1.0
    return {
        "latency_ms": cfg.latency_ms, "pos_written": len(commitments),
        "pos_desired": len(desired.commitments), "sampled_projects": cfg.baseline_projects or None,
        "scale_up_factor": round(factor, 4),
        "read_and_map_s": round(read_s, 2), "write_s": round(write_s, 2),
        "wall_s": round(read_s + write_s * factor, 2), "measured_wall_s": usage["wall_s"],
        "procore": all_calls, "write_calls": write_calls,
        "procore_calls": round(all_calls["total"] - write_calls["total"]
                               + write_calls["total"] * factor),
        "x3": summarize_calls(x3_log.since_mark(), cfg.x3_latency),
        "peak_rss_mib": peak, "machine_load": usage,
    }


# --- scenario 5: staging at scale ------------------------------------------------------------

def prepare_staging(cfg: BenchConfig, workdir: Path) -> dict:
    """Seed -> canonical X3 records (the REST client's own converter) -> a ledger snapshot,
    plus the Procore reference frames; what `x3_purchase_orders` would find on a poll."""
    from mlc_dagster.defs.reference.frames import (
        LINE_ITEM_TYPE_COLUMNS,
        PROJECT_COLUMNS,
        VENDOR_COLUMNS,
        cost_codes_frame,
        frame,
    )
    from mlc_dagster.ledger.store import Ledger
    from mlc_dagster.resources.sage_x3_client import SageX3RestClient
    from mlc_sandbox.sage_x3_app import PORDER, _rest_row

    workdir.mkdir(parents=True, exist_ok=True)
    seed = build_seed_for(cfg, "staging")
    # As the sandbox serves a `$details` row: since issue 13 a line's GL account is in the
    # PORDERC member, not on the line (a bare seed record would stage with no mapping key).
    converter = SageX3RestClient("http://127.0.0.1:9", "SEED", "user", "password")
    records = [converter._from_rest("purchase_order", _rest_row(PORDER, po, with_lines=True),
                                    with_lines=True) for po in seed.x3_purchase_orders]
    converter.close()
    ledger_url = f"sqlite:///{workdir / 'staging_ledger.sqlite'}"
    ledger = Ledger(ledger_url)
    ledger.upsert_snapshot("purchase_order", records, "po_number")
    ledger.dispose()
    frames = {"projects": frame(seed.projects, PROJECT_COLUMNS),
              "vendors": frame(seed.vendors, VENDOR_COLUMNS),
              "cost_codes": cost_codes_frame(seed.project_cost_codes),
              "line_item_types": frame(seed.line_item_types, LINE_ITEM_TYPE_COLUMNS)}
    frames_path = workdir / "reference_frames.pkl"
    frames_path.write_bytes(pickle.dumps(frames))
    (workdir / "gl_map.csv").write_text(seed.mapping_csv)
    return {"ledger_url": ledger_url, "frames": str(frames_path),
            "mapping": str(workdir / "gl_map.csv"), "pos": len(records),
            "lines": sum(len(r["lines"]) for r in records)}


def measure_staging(prepared: dict, profile_fraction: float = 0.0) -> dict:
    """Snapshot load, staging + pandera validation, mapping, content hashes: seconds and
    peak RSS after each phase (this process only; run it in a fresh one for clean peaks)."""
    from mlc_dagster.defs.purchase_orders.desired import build_desired_commitments
    from mlc_dagster.defs.purchase_orders.gl_map import parse_gl_mapping
    from mlc_dagster.defs.purchase_orders.staging import stage_purchase_orders
    from mlc_dagster.ledger.store import Ledger

    frames = pickle.loads(Path(prepared["frames"]).read_bytes())
    mapping = parse_gl_mapping(Path(prepared["mapping"]).read_text())
    gc.collect()
    reset_peak_rss()
    out = {"rss_before_mib": rss_mib(), "phases": {}}
    meter = Meter()
    clock = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        out["phases"][name] = {"s": round(now - clock, 2), "peak_rss_mib": peak_rss_mib()}
        clock = now

    ledger = Ledger(prepared["ledger_url"])
    records = list(ledger.snapshot("purchase_order"))
    phase("snapshot_load")
    staged = stage_purchase_orders(records)
    phase("staging_and_validation")
    desired = build_desired_commitments(staged, mapping, frames["projects"], frames["vendors"],
                                        frames["cost_codes"], frames["line_item_types"])
    phase("mapping")
    hashes = [c.hash for c in desired.commitments]
    phase("content_hashes")
    out["machine_load"] = meter.stop()
    p = out["phases"]
    out.update({
        "pos": len(records), "lines": sum(len(r["lines"]) for r in records),
        "valid_pos": len(staged.headers), "valid_lines": len(staged.lines),
        "quarantined_pos": len(staged.held_po_numbers), "commitments": len(desired.commitments),
        "held_pos": len(desired.held_reasons()), "hashes": len(hashes),
        "staging_validation_mapping_s": round(p["staging_and_validation"]["s"] + p["mapping"]["s"], 2),
        "with_snapshot_load_s": round(p["snapshot_load"]["s"] + p["staging_and_validation"]["s"]
                                      + p["mapping"]["s"], 2),
        "peak_rss_mib": peak_rss_mib(),
    })
    ledger.dispose()
    del records, staged, desired, hashes
    if profile_fraction:
        out["per_row_profile"] = profile_per_row(prepared, mapping, frames, profile_fraction)
    return out


def profile_per_row(prepared: dict, mapping, frames, fraction: float, top: int = 10) -> dict:
    """cProfile a slice of the snapshot through the same three phases and list the connector
    functions called about once per line or per PO: Python loops over rows."""
    from mlc_dagster.defs.purchase_orders.desired import build_desired_commitments
    from mlc_dagster.defs.purchase_orders.staging import stage_purchase_orders
    from mlc_dagster.ledger.store import Ledger

    ledger = Ledger(prepared["ledger_url"])
    records = list(ledger.snapshot("purchase_order"))
    ledger.dispose()
    records = records[: max(1, int(len(records) * fraction))]
    lines = sum(len(r["lines"]) for r in records)
    profiler = cProfile.Profile()
    profiler.enable()
    staged = stage_purchase_orders(records)
    desired = build_desired_commitments(staged, mapping, frames["projects"], frames["vendors"],
                                        frames["cost_codes"], frames["line_item_types"])
    _ = [c.hash for c in desired.commitments]
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    rows = []
    for (filename, lineno, func), (_cc, ncalls, _tottime, cumtime, _callers) in stats.items():
        if "mlc_dagster" not in filename or ncalls < len(records):
            continue
        where = f"{filename.split('mlc_dagster/')[-1]}:{lineno} {func}"
        rows.append({"function": where, "calls": ncalls,
                     "calls_per_line": round(ncalls / lines, 2),
                     "calls_per_po": round(ncalls / len(records), 2),
                     "cum_s": round(cumtime, 3)})
    rows.sort(key=lambda r: -r["cum_s"])
    return {"pos": len(records), "lines": lines, "functions": rows[:top]}


def bench_staging(cfg: BenchConfig, workdir: Path) -> dict:
    build_start = time.perf_counter()
    prepared = prepare_staging(cfg, workdir / "staging")
    prepare_s = time.perf_counter() - build_start
    if cfg.staging_subprocess:
        child = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--internal-staging-child",
             json.dumps(prepared), "--staging-profile-fraction", str(cfg.staging_profile_fraction)],
            capture_output=True, text=True, cwd=REPO, check=False)
        if child.returncode != 0:
            raise RuntimeError(f"staging child failed:\n{child.stderr[-3000:]}")
        measured = json.loads(child.stdout.strip().splitlines()[-1])
        measured["process"] = "fresh child process (peak RSS = that process)"
    else:
        measured = measure_staging(prepared, cfg.staging_profile_fraction)
        measured["process"] = "in-process"
    shape = cfg.shape("staging")
    return {"shape": {"projects": shape[0], "pos_per_project": shape[1], "lines_per_po": shape[2]},
            "prepare_s": round(prepare_s, 1), **measured}


# --- scenario 4: change latency with the daemon ----------------------------------------------

def _dagster_cli(args: list[str], env: dict, log) -> None:
    subprocess.run([sys.executable, "-m", "dagster", *args, "-w", "workspace.yaml"], cwd=REPO,
                   env=env, stdout=log, stderr=subprocess.STDOUT, check=True, timeout=300)


def _sensor(name: str):
    from mlc_dagster.definitions import defs

    return next(s for s in defs.sensors if s.name == name)


def sensor_resources(resources: dict) -> dict:
    """What the sensors may ask for: the X3 client and the ledger."""
    return {key: resources[key] for key in ("sage_x3", "ledger")}


def x3_sensors() -> list:
    """The sensors that poll Sage X3 for changes (the others, e.g. the rate-limit
    continuation, read only the ledger)."""
    from mlc_dagster.definitions import defs

    return [s for s in defs.sensors if "sage_x3" in s.required_resource_keys]


def _walk_sensors(instance=None) -> dict[str, tuple[int, str]]:
    """Tick every X3 change sensor in-process until it stops requesting runs, as a fresh
    deployment's daemon would (one bounded page per tick). Per sensor: (ticks that requested
    a run, cursor)."""
    import dagster as dg

    from mlc_dagster.definitions import build_resources

    resources = sensor_resources(build_resources())
    out = {}
    with contextlib.ExitStack() as stack:
        instance = instance or stack.enter_context(dg.instance_for_test())
        for sensor in x3_sensors():
            cursor, requesting = None, 0
            while True:
                with dg.build_sensor_context(instance=instance, cursor=cursor,
                                             resources=resources) as context:
                    result = sensor(context)
                cursor = result.cursor
                if not result.run_requests:
                    break
                requesting += 1
            out[sensor.name] = (requesting, cursor)
    return out


def _create_po(x3_url: str, number: str, template: dict, project: str) -> int:
    import httpx

    from mlc_sandbox.seed import SANDBOX_CREDENTIALS as creds

    body = {k: v for k, v in template.items() if not k.startswith("$") and k != "PORDERQ"}
    body.update({"POHNUM": number, "PJTH": project, "REVNUM": 0, "CLEFLG": 1,
                 "ORDREF": f"Benchmark {number}"})
    body["PORDERQ"] = [{**{k: v for k, v in line.items() if not k.startswith("$")},
                        "POHNUM": number, "PJT": project} for line in template["PORDERQ"]]
    response = httpx.post(f"{x3_url}/api1/x3/erp/{creds['x3_endpoint']}/PORDER",
                          params={"representation": "PORDER.$create"}, json=body,
                          auth=(creds["x3_user"], creds["x3_password"]), timeout=60)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"X3 $create {number}: {response.status_code} {response.text[:300]}")
    return len(body["PORDERQ"])


def _templates(handles, seed, count: int) -> list[dict]:
    """Open synced POs whose lines all map: their copies sync cleanly."""
    import httpx

    from mlc_sandbox.seed import SANDBOX_CREDENTIALS as creds

    synced = _synced_contracts(handles["procore"])
    numbers = sorted(po for po, c in synced.items() if c["status"] == "Draft")[:count]
    out = []
    with httpx.Client(base_url=f"{handles['sage_x3'].url}/api1/x3/erp/{creds['x3_endpoint']}",
                      auth=(creds["x3_user"], creds["x3_password"]), timeout=60) as http:
        for number in numbers:
            response = http.get(f"/PORDER('{number}')", params={"representation": "PORDER.$details"})
            response.raise_for_status()
            out.append(response.json())
    return out


def bench_latency(cfg: BenchConfig, workdir: Path) -> dict:
    """X3 REST POST -> the commitment with all its lines visible through Procore's REST API,
    with `dagster dev` (webserver + daemon) running the sensors and runs."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from benchmarks.latency import ProcoreApiWatcher
    from mlc_dagster.ledger.store import Ledger
    from mlc_sandbox.seed import COMPANY_ID
    from mlc_sandbox.seed import SANDBOX_CREDENTIALS as creds

    rng = random.Random(cfg.seed + 4)
    workdir = workdir / "latency"
    home = workdir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    seed = build_seed_for(cfg, "latency")
    out: dict = {"pos_in_x3_before": len(seed.x3_purchase_orders), "sensor_interval_s":
                 cfg.sensor_interval_s, "latency_ms": cfg.latency_ms,
                 "watcher": {"poll_s": cfg.latency_poll_s,
                             "how": "Procore REST API: filters[origin_id] list, then line_items"}}
    with started_sandboxes(seed) as handles, sync_environment(handles, workdir) as env:
        # Steady state first: the backfill is done, the sensor is caught up.
        configure(handles, latency_ms=0, x3_latency_ms=0, limits=UNLIMITED)
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as home_instance:
            setup = run_sync_job(home_instance)  # on the daemon's instance: its history
        if not setup["success"]:
            raise RuntimeError(f"latency setup backfill failed: {setup['failures']}")
        walk_start = time.perf_counter()
        walked = _walk_sensors()
        out["steady_state_setup"] = {
            "backfill_s": setup["wall_s"],
            "fresh_sensor_ticks_requesting_runs": sum(n for n, _ in walked.values()),
            "sensor_walk_s": round(time.perf_counter() - walk_start, 1)}
        templates = _templates(handles, seed, cfg.latency_pos)
        projects = [p["PJTNUM"] for p in seed.x3_projects]
        configure(handles, latency_ms=cfg.latency_ms, x3_latency_ms=cfg.x3_latency, limits=UNLIMITED)

        child_env = {**os.environ, **env, "DAGSTER_HOME": str(home), "MLC_AUTOMATION_ON": "1",
                     "MLC_SENSOR_INTERVAL_SECONDS": str(cfg.sensor_interval_s)}
        log_path = workdir / "dagster_dev.log"
        watcher = ProcoreApiWatcher(handles["procore"].url, COMPANY_ID, creds["procore_client_id"],
                                    creds["procore_client_secret"], poll_s=cfg.latency_poll_s)
        procore_log = CallLog(handles["procore"])
        created: dict[str, float] = {}
        with open(log_path, "w") as log:
            for name, (_, cursor) in walked.items():  # every sensor starts caught up
                _dagster_cli(["sensor", "cursor", name, "--set", cursor], child_env, log)
                _dagster_cli(["sensor", "start", name], child_env, log)
            port = _free_port()
            started = time.time()
            proc = subprocess.Popen(
                [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml",
                 "-h", "127.0.0.1", "-p", str(port)],
                cwd=REPO, env=child_env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
            try:
                instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
                _wait_for_daemon(instance, proc, timeout=180)
                out["daemon_ready_s"] = round(time.time() - started, 1)
                procore_log.mark()
                watcher.connect()
                watcher.start()
                meter = Meter()
                offsets = sorted(rng.uniform(0, cfg.latency_window_s) for _ in range(cfg.latency_pos))
                t0 = time.time()
                for i, offset in enumerate(offsets):
                    time.sleep(max(0.0, t0 + offset - time.time()))
                    number = f"PO2999{i + 1:04d}"
                    template = templates[i % len(templates)]
                    project = rng.choice(projects)
                    lines = _create_po(handles["sage_x3"].url, number, template, project)
                    created[number] = time.time()
                    watcher.watch(f"X3:PO:{number}", project, lines)
                deadline = time.time() + cfg.latency_grace_s
                while time.time() < deadline and len(watcher.complete) < len(created):
                    if proc.poll() is not None:
                        raise RuntimeError(f"dagster dev exited early; see {log_path}")
                    time.sleep(0.5)
                out["machine_load"] = meter.stop()
                _wait_for_runs(instance, timeout=60)  # let runs finish their bookkeeping
            finally:
                watcher.close()
                _stop_process_group(proc)
        runs = _run_records(instance)
        timelines = {run_id: _run_timeline(instance, run_id) for run_id in runs}
        instance.dispose()
        procore_calls = procore_log.since_mark()
        ledger = Ledger(env["MLC_LEDGER_URL"])
        per_po = []
        for number, at in created.items():
            origin = f"X3:PO:{number}"
            events = [e for e in ledger.events("purchase_order", number) if e["status"] == "synced"]
            run = runs.get(events[0]["run_id"]) if events else None
            row = {"po": number, "created_at": round(at, 2),
                   "exists_s": _delta(watcher.exists.get(origin), at),
                   "complete_s": _delta(watcher.complete.get(origin), at)}
            if run:
                timeline = timelines[events[0]["run_id"]]
                written = timeline.get("commitments_written_at")
                # A PO created while a run was already requested (queued) waits for no
                # sensor tick: the three parts add up to the PO's latency.
                requested = max(run["created"], at)
                row.update({"until_run_created_s": _delta(requested, at),
                            "run_already_requested": run["created"] < at,
                            "run_queue_and_launch_s": max(0.0, _delta(run["started"], requested)),
                            "run_start_to_commitment_s": _delta(watcher.complete.get(origin),
                                                                run["started"]),
                            "run_start_to_first_step_s": _delta(timeline.get("first_step_at"),
                                                                run["started"]),
                            "run_start_to_commitments_step_end_s": _delta(written, run["started"]),
                            "commitments_step_end_to_visible_s": _delta(
                                watcher.complete.get(origin), written),
                            "run_wall_s": _delta(run["ended"], run["started"]),
                            "run_trigger": run["trigger"], "run_id": events[0]["run_id"]})
            per_po.append(row)
        ledger.dispose()
    done = [r["complete_s"] for r in per_po if r["complete_s"] is not None]
    watcher_calls = sum(watcher.calls.values())
    sensor_runs = [t for rid, t in timelines.items() if runs[rid]["trigger"] != "schedule"]
    out.update({
        "pos_created": len(created), "pos_arrived": len(done),
        "window_s": cfg.latency_window_s,
        "p50_s": _percentile(done, 50), "p95_s": _percentile(done, 95),
        "max_s": max(done) if done else None,
        "breakdown_mean_s": {k: _mean([r.get(k) for r in per_po]) for k in LATENCY_PARTS},
        "breakdown_p95_s": {k: _percentile([r[k] for r in per_po if r.get(k) is not None], 95)
                            for k in LATENCY_PARTS},
        "steps_mean_s": {step: _mean([t["steps_s"].get(step) for t in sensor_runs])
                         for step in sorted({k for t in sensor_runs for k in t["steps_s"]})},
        "runs": len(runs), "run_triggers": dict(Counter(r["trigger"] for r in runs.values())),
        "run_wall_s": sorted(_delta(r["ended"], r["started"]) or 0 for r in runs.values()),
        "procore_calls": {"all": len(procore_calls), "watcher": watcher_calls,
                          "connector": len(procore_calls) - watcher_calls,
                          "watcher_by_endpoint": dict(watcher.calls)},
        "watcher_errors": watcher.errors[:10],
        "per_po": per_po, "log": str(log_path),
    })
    return out


LATENCY_PARTS = ("until_run_created_s", "run_queue_and_launch_s", "run_start_to_commitment_s",
                 "run_start_to_first_step_s", "run_start_to_commitments_step_end_s",
                 "commitments_step_end_to_visible_s", "run_wall_s")


def _run_timeline(instance, run_id: str) -> dict:
    """When a run's first step started and its commitments step ended (epoch s), and each
    step's seconds: where the time between run start and a visible commitment goes."""
    first, written = None, None
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        if event.event_type_value == "STEP_START":
            first = entry.timestamp if first is None else min(first, entry.timestamp)
        elif (event.event_type_value == "STEP_SUCCESS"
              and entry.step_key == "procore_commitments"):
            written = entry.timestamp
    return {"first_step_at": first, "commitments_written_at": written,
            "steps_s": _step_seconds(instance, run_id)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_daemon(instance, proc, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("dagster dev exited before the daemon started")
        beats = instance.get_daemon_heartbeats()
        if "SENSOR" in beats and "QUEUED_RUN_COORDINATOR" in beats:
            return
        time.sleep(1.0)
    raise RuntimeError(f"the Dagster daemon did not start within {timeout:.0f} s")


def _wait_for_runs(instance, timeout: float) -> None:
    from dagster import DagsterRunStatus, RunsFilter

    busy = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
            DagsterRunStatus.STARTED]
    deadline = time.time() + timeout
    while time.time() < deadline and instance.get_runs(filters=RunsFilter(statuses=busy)):
        time.sleep(1.0)


def _stop_process_group(proc: subprocess.Popen) -> None:
    """SIGINT to `dagster dev` (it stops its webserver, daemon and runs), then escalate on
    the process group this benchmark created, and only that one."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    # Its webserver, daemon, code server and run workers share the group; none may outlive it.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_alive(proc.pid):
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.time() + 10
        while time.time() < deadline and _group_alive(proc.pid):
            time.sleep(0.2)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies still count for killpg(0); reap ours and ignore others' (already exited).
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[2]) == pgid and fields[0] != "Z":
                        return True
        return False
    return True


def _run_records(instance) -> dict[str, dict]:
    out = {}
    for record in instance.get_run_records():
        tags = record.dagster_run.tags
        out[record.dagster_run.run_id] = {
            "created": record.create_timestamp.timestamp(), "started": record.start_time,
            "ended": record.end_time, "status": record.dagster_run.status.value,
            "trigger": tags.get("mlc/trigger") or ("schedule" if "dagster/schedule_name" in tags
                                                   else "other")}
    return out


def _delta(later: float | None, earlier: float | None) -> float | None:
    return round(later - earlier, 2) if later is not None and earlier is not None else None


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.fmean(values), 2) if values else None


def _percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (no interpolation: with 8 samples p95 is the maximum)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)], 2)


# --- running, merging, writing ------------------------------------------------------------

def run_group(group: str, cfg: BenchConfig, scenarios: set[str], workdir: Path) -> dict:
    if group == "sync":
        return run_sync_group(cfg, scenarios, workdir)
    if group == "staging":
        return {"staging": bench_staging(cfg, workdir)}
    if group == "baseline":
        return {"baseline": bench_baseline(cfg, workdir)}
    if group == "latency":
        return {"latency": bench_latency(cfg, workdir)}
    if group == "real_limit":
        from benchmarks import real_limit

        return {"real_limit": real_limit.bench_real_limit(cfg, workdir / "real_limit")}
    if group == "x3_load":
        from benchmarks import x3_load

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
                     **machine_info(), "settings": _settings(cfg), "scenarios": {}, "errors": {}}
    own_tmp = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="mlc-bench-")) if own_tmp else workdir
    try:
        for group, members in GROUPS.items():
            wanted = chosen & set(members)
            if not wanted:
                continue
            started = time.perf_counter()
            print(f"[benchmark] {group}: {', '.join(sorted(wanted))} ...", file=sys.stderr, flush=True)
            try:
                if isolate:
                    part = _run_group_subprocess(group, cfg, wanted, workdir)
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
    results["comparisons"] = _comparisons(results["scenarios"])
    results["summary"] = summary_rows(results)
    return results


def _run_group_subprocess(group: str, cfg: BenchConfig, scenarios: set[str], workdir: Path) -> dict:
    part = workdir / f"{group}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--internal-group", group,
           "--internal-config", json.dumps(asdict(cfg)), "--internal-out", str(part),
           "--internal-workdir", str(workdir / group), "--scenario", ",".join(sorted(scenarios))]
    subprocess.run(cmd, cwd=REPO, check=True)
    return json.loads(part.read_text())


def _settings(cfg: BenchConfig) -> dict:
    settings = asdict(cfg)
    settings["x3_latency_ms"] = cfg.x3_latency
    settings["rate_limited_backfill_limits"] = (asdict(scaled_limits(cfg.rate_compression))
                                                if cfg.rate_compression else None)
    settings["connector_env"] = {k: os.environ.get(k, "(default)") for k in (
        "MLC_MAX_POS_PER_RUN", "MLC_X3_OVERLAP_SECONDS", "SAGE_X3_API", "MLC_X3_READ_CONCURRENCY")}
    return settings


def _comparisons(s: dict) -> dict:
    out = {}
    if "backfill" in s and "baseline" in s:
        ours, base = s["backfill"], s["baseline"]
        our_wall = ours["wall_s"] - ours.get("other_flow_steps_s", 0)
        out["vs_baseline"] = {
            "our_calls": ours["procore"]["po_flow"], "baseline_calls": base["procore_calls"],
            "calls_ratio": round(ours["procore"]["po_flow"] / base["procore_calls"], 4),
            "our_wall_s": round(our_wall, 2), "baseline_wall_s": base["wall_s"],
            "wall_ratio": round(our_wall / base["wall_s"], 4),
            "baseline_hours_at_600_per_h": round(base["procore_calls"] / 600, 1),
            "our_hours_at_600_per_h": round(ours["procore"]["po_flow"] / 600, 1)}
    return out


def _over_text(check: dict) -> str:
    over = ", ".join(f"`{e}` +{n}" for e, n in check["over"].items()) or "none"
    allowed = sum(check.get("allowance", {}).values())
    return over + (f" (allowed: {allowed}, see floor.allowance_reasons)" if allowed else "")


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def summary_rows(results: dict) -> list[dict]:
    s, rows = results["scenarios"], []

    def add(scenario, metric, value, target=None, met=None, digits=2):
        rows.append({"scenario": scenario, "metric": metric, "value": _fmt(value, digits),
                     "target": target or "", "met": "" if met is None else ("yes" if met else "NO")})

    if "backfill" in s:
        b = s["backfill"]
        add("1 backfill", "POs / lines in X3; synced",
            f"{b['shape']['pos']:,} / {b['shape']['lines']:,}; {b['shape']['pos_synced']:,} POs, "
            f"{b['shape']['lines_synced']:,} lines (rest held by design)")
        add("1 backfill", "Procore calls of the PO flow (floor)",
            f"{b['procore']['po_flow']:,} ({b['floor'].get('po_flow', b['floor']['total']):,})")
        if b["procore"]["other_flows"]:
            add("1 backfill", "Procore calls of other flows in the same job"
                + (" (floor)" if "invoice_flow" in b["floor"] else ""),
                f"{sum(b['procore']['other_flows'].values()):,}"
                + (f" ({b['floor']['invoice_flow']:,})" if "invoice_flow" in b["floor"] else "")
                + f"; {b['other_flow_steps_s']:.0f} s of steps")
        add("1 backfill", "calls / floor", b["calls_over_floor"], "≤ 1.05",
            b["calls_over_floor"] <= TARGETS["calls_over_floor"], 4)
        if "floor_check" in b:
            add("1 backfill", "whole job: calls / floor; calls above it, by endpoint",
                f"{b['all_calls_over_floor']:.4f}; " + _over_text(b["floor_check"]),
                "none", not b["floor_check"]["over"])
        add("1 backfill", "calls per synced PO", b["calls_per_po"], digits=4)
        add("1 backfill", f"wall time (latency {b['latency_ms']} ms, no rate limit)",
            f"{b['wall_s']:,.1f} s")
        add("1 backfill", "wall / (floor calls × latency)", b["wall_over_latency_floor"])
        if b["procore"]["other_flows"]:
            add("1 backfill", "… without the other flows' steps", b["po_flow_wall_over_latency_floor"])
        add("1 backfill", "429s received", b["procore"]["status_429"], "0",
            b["procore"]["status_429"] == 0)
        add("1 backfill", "peak RSS (process incl. sandboxes; before run)",
            f"{b['peak_rss_mib']:,.0f} MiB ({b['rss_before_mib']:,.0f} MiB)")
    if "backfill_rate_limited" in s:
        r = s["backfill_rate_limited"]
        p = r["pacing"]
        add("1 backfill, rate-limited", "limits", r["rate_limits"]["description"])
        add("1 backfill, rate-limited", "429s received", r["procore"]["status_429"], "0",
            r["procore"]["status_429"] == 0)
        add("1 backfill, rate-limited", "calls / floor", r["calls_over_floor"], "≤ 1.05",
            r["calls_over_floor"] <= TARGETS["calls_over_floor"], 4)
        if "floor_check" in r:
            add("1 backfill, rate-limited", "whole job: calls / floor; calls above it",
                f"{r['all_calls_over_floor']:.4f}; " + _over_text(r["floor_check"]),
                "none", not r["floor_check"]["over"])
        add("1 backfill, rate-limited", "wall (rate floor = floor calls / allowed rate)",
            f"{r['wall_s']:,.1f} s ({p['rate_floor_s']:,.1f} s)")
        add("1 backfill, rate-limited", "wall / rate floor", p["wall_over_rate_floor"], digits=3)
        spike = p.get("spike")
        add("1 backfill, rate-limited", "max calls in an hourly window (limit)"
            + (" / in a spike window (limit)" if spike else ""),
            f"{p['max_in_a_window']} ({p['window_limit']})"
            + (f" / {spike['max_in_a_window']} ({spike['window_limit']})" if spike else ""))
        add("1 backfill, rate-limited", "pacing wait in the client",
            f"{r['outcome'].get('rate_limit_wait_seconds') or 0:,.1f} s")
    if "real_limit" in s:
        from benchmarks import real_limit

        real_limit.summary_rows(s["real_limit"], add)
    for key, label in (("noop", "2 no-op poll"), ("noop_after_delta", "2 no-op poll (after deltas)")):
        if key in s and "sensor_poll" in s[key]:
            poll = s[key]["sensor_poll"]
            add(label, f"sensor ticks ({len(poll['sensors'])}): runs requested / X3 calls / "
                "Procore calls", f"{poll['run_requests']} / {poll['x3']['total']} / "
                f"{poll['procore']['total']}", "0 runs, 0 Procore calls",
                poll["run_requests"] == 0 and poll["procore"]["total"] == 0)
            add(label, "sensor ticks: wall time", f"{poll['wall_s']:.3f} s", "≤ 2 s",
                poll["wall_s"] <= TARGETS["noop_wall_s"])
        if key in s:
            n = s[key]
            label = f"{label}, whole run"
            add(label, "Procore writes", n["procore"]["writes"], "0", n["procore"]["writes"] == 0)
            add(label, "Procore calls (all reads, incl. token)", n["procore"]["total"], "0",
                n["procore"]["total"] == 0)
            if n.get("hourly_invoicing_recheck"):
                add(label, "not in it: the hourly re-check of invoices held on commitments that "
                    "refuse invoices (MLC_INVOICING_RECHECK_SECONDS)",
                    f"{sum(n['hourly_invoicing_recheck'].values())} calls an hour")
            add(label, "reference data reused from a recent read",
                ", ".join(n["reference_reused"]) or "none (all read from Procore)")
            add(label, "X3 calls", n["x3"]["total"])
            if "x3_state_unchanged" in n:
                add(label, "X3 write calls; X3 records unchanged",
                    f"{n['x3']['writes']}; {_fmt(n['x3_state_unchanged'])}", "0; yes",
                    n["x3"]["writes"] == 0 and n["x3_state_unchanged"])
            add(label, "wall time (what the 15-min fallback schedule costs)", f"{n['wall_s']:.2f} s",
                f"≤ {TARGETS['noop_wall_s']:g} s", n["wall_s"] <= TARGETS["noop_wall_s"])
            later = n.get("fallback_tick")
            if later:
                add(label, f"the same run one fallback gap ({later['later_s']:,} s) later: "
                    "Procore calls; reference reused",
                    f"{later['procore']['total']}; "
                    + (", ".join(later["reference_reused"]) or "none (all read from Procore)"),
                    "0", later["procore"]["total"] == 0)
    if "delta" in s:
        for run in s["delta"]["runs"]:
            add(f"3 delta {run['fraction'] * 100:g} %",
                f"{run['changed_pos']} POs: Procore calls (PO flow) / writes / X3 calls",
                f"{run['procore']['po_flow']} / {run['procore']['writes']} / {run['x3']['total']}")
            add(f"3 delta {run['fraction'] * 100:g} %", "calls per changed PO (writes per PO)",
                f"{run['calls_per_changed_po']:.2f} ({run['writes_per_changed_po']:.2f})")
            add(f"3 delta {run['fraction'] * 100:g} %", "calls / floor; wall; reference reused",
                f"{run['calls_over_floor']:.3f}; {run['wall_s']:.1f} s; "
                f"{'yes' if len(run['reference_reused']) == 4 else run['reference_reused'] or 'no'}")
        fit = s["delta"].get("scaling", {})
        if fit:
            add("3 delta", "fit: Procore calls = fixed + k × changed POs",
                f"{fit['procore_calls']['fixed']:.1f} + {fit['procore_calls']['per_changed_po']:.3f} × n",
                "proportional to changes")
            add("3 delta", "fit: wall = fixed + k × changed POs",
                f"{fit['wall_s']['fixed']:.2f} s + {fit['wall_s']['per_changed_po']:.4f} s × n")
    if "latency" in s:
        lat = s["latency"]
        label = f"4 change latency ({lat['sensor_interval_s']} s sensor)"
        through = "through the Procore API" if "watcher" in lat else "in-process state"
        add(label, f"{lat['pos_arrived']}/{lat['pos_created']} POs over {lat['window_s']:g} s, "
            f"{through}: p50 / p95 / max",
            f"{_fmt(lat['p50_s'], 1)} / {_fmt(lat['p95_s'], 1)} / {_fmt(lat['max_s'], 1)} s",
            f"p95 ≤ {TARGETS['latency_p95_s']:g} s, n ≥ 20",
            lat["p95_s"] is not None and lat["p95_s"] <= TARGETS["latency_p95_s"]
            and lat["pos_arrived"] == lat["pos_created"] >= 20)
        for stat in ("mean", "p95"):
            bd = lat.get(f"breakdown_{stat}_s")
            if bd:
                add(label, f"{stat}: PO → run requested / queue + launch / run start → "
                    "visible through the API",
                    f"{_fmt(bd['until_run_created_s'], 1)} / {_fmt(bd['run_queue_and_launch_s'], 1)}"
                    f" / {_fmt(bd['run_start_to_commitment_s'], 1)} s")
        bd = lat["breakdown_mean_s"]
        if "run_start_to_first_step_s" in bd:
            add(label, "mean, inside the run: start → first step / → commitments step done / "
                "→ visible", f"{_fmt(bd['run_start_to_first_step_s'], 1)} / "
                f"{_fmt(bd['run_start_to_commitments_step_end_s'], 1)} / "
                f"{_fmt(bd['commitments_step_end_to_visible_s'], 1)} s")
        if "procore_calls" in lat:
            c = lat["procore_calls"]
            add(label, "Procore calls: connector (API watcher's own, not counted)",
                f"{c['connector']:,} ({c['watcher']:,})")
    if "staging" in s:
        st = s["staging"]
        add("5 staging", "lines (POs)", f"{st['lines']:,} ({st['pos']:,})")
        add("5 staging", "staging + validation + mapping", f"{st['staging_validation_mapping_s']:.1f} s",
            "≤ 20 s", st["staging_validation_mapping_s"] <= TARGETS["staging_s"])
        add("5 staging", "… plus snapshot load from the ledger", f"{st['with_snapshot_load_s']:.1f} s")
        add("5 staging", "… content hashes (planning)", f"{st['phases']['content_hashes']['s']:.1f} s")
        add("5 staging", "peak RSS", f"{st['peak_rss_mib']:,.0f} MiB", "≤ 2 GiB",
            st["peak_rss_mib"] <= TARGETS["staging_peak_mib"])
    if "baseline" in s:
        base = s["baseline"]
        add("6 baseline", "naive Procore calls; wall",
            f"{base['procore_calls']:,}; {base['wall_s']:,.1f} s"
            + (f" (measured on {base['sampled_projects']} projects, scaled ×{base['scale_up_factor']:.2f})"
               if base["sampled_projects"] else ""))
    vs = results.get("comparisons", {}).get("vs_baseline")
    if vs:
        add("6 baseline", "ours / naive: calls; wall", f"{vs['calls_ratio']:.4f}; {vs['wall_ratio']:.4f}")
    if "x3_load" in s:
        from benchmarks import x3_load

        x3_load.summary_rows(s["x3_load"], add)
    return rows


def to_markdown(results: dict) -> str:
    git, m, v = results["git"], results["machine"], results["versions"]
    dirty = f" with uncommitted changes in {len(git['dirty_files'])} file(s)" if git["dirty_files"] else ""
    settings = results["settings"]
    commits = results.get("commits") or [git["commit"] or "unknown"]
    lines = [
        f"# Benchmark `{results['name']}`", "",
        f"Measured {results['started_at']} – {results['finished_at']} on "
        + (f"commit `{commits[0][:12]}`{dirty} ({git['subject']})." if len(commits) == 1 else
           "commits " + ", ".join(f"`{c[:12]}`" for c in commits) + " (see “Merged from”)."),
        "",
        f"Machine: {m['cpu_count']} × {m['cpu_model']}, {m['ram_gib']} GiB RAM, {m['platform']}. "
        f"Python {v.get('python')}, Dagster {v.get('dagster')}, pandas {v.get('pandas')}, "
        f"pandera {v.get('pandera')}.", "",
        f"Settings: seed {settings['seed']}, scale `{settings['scale']}`, latency "
        f"{settings['latency_ms']} ms per call (X3 {settings['x3_latency_ms']} ms), sandboxes in "
        "the benchmark process, the real Dagster job via `execute_in_process`, SQLite ledger.", "",
        "| Scenario | Metric | Value | Target | Met |", "|---|---|---|---|---|",
    ]
    lines += [f"| {r['scenario']} | {r['metric']} | {r['value']} | {r['target']} | {r['met']} |"
              for r in results["summary"]]
    if results.get("merged_from"):
        lines += ["", "Merged from: " + "; ".join(
            f"`{p['name']}` ({', '.join(p['scenarios'])}; {p['started_at']} – {p['finished_at']}, "
            f"commit `{(p['commit'] or '?')[:12]}`)" for p in results["merged_from"]) + "."]
    s = results["scenarios"]
    if "backfill" in s:
        b = s["backfill"]
        lines += ["", "## Backfill: Procore calls by endpoint", "",
                  "| Endpoint | Latency-bound run | Rate-limited run |", "|---|---|---|"]
        other = s.get("backfill_rate_limited", {}).get("procore", {}).get("by_endpoint", {})
        for endpoint, count in b["procore"]["by_endpoint"].items():
            lines.append(f"| `{endpoint}` | {count:,} | {_fmt(other.get(endpoint))} |")
        f = b["floor"]
        floor_text = (
            "Floor (benchmarks/floor.py, from the seed and the mapping file): " + ", ".join(
                f"`{e}` {n:,}" for e, n in f["by_endpoint"].items())
            + f" = {f['total']:,} ({f['po_flow']:,} PO flow, {f['invoice_flow']:,} invoices)."
            + "".join(f" Allowed above it: {r}." for r in b["floor_check"]["allowance_reasons"])
            if "by_endpoint" in f else
            f"Floor: {f['line_item_syncs']:,} line-item syncs + {f['header_syncs']} header "
            f"syncs + {f['reference_reads']} reference reads ({f.get('reference_detail')}) = "
            f"{f['total']:,}.")
        lines += ["", floor_text, "",
                  "Step times (latency-bound run): " + ", ".join(
                      f"{k} {v:.1f} s" for k, v in b["steps_s"].items())
                  + f"; Dagster overhead {b['dagster_overhead_s']:.1f} s; sandbox server time "
                  f"{b['procore']['sandbox_server_s']:.1f} s (Procore) + "
                  f"{b['x3']['sandbox_server_s']:.1f} s (X3) excluding injected latency; "
                  f"X3 calls {b['x3']['total']:,}."]
        if "backfill_rate_limited" in s:
            p = s["backfill_rate_limited"]["pacing"]
            lines += ["", f"Pacing (rate-limited run): calls per {p['window_s']} s window "
                      f"(limit {p['window_limit']}): {p['calls_per_window']}; achieved "
                      f"{p['achieved_calls_per_s']} calls/s of {p['allowed_calls_per_s']} allowed."]
    if "noop" in s:
        n = s["noop"]
        lines += ["", "## No-op poll: where the time goes", "",
                  ", ".join(f"{k} {v:.2f} s" for k, v in n["steps_s"].items())
                  + f"; Dagster overhead {n['dagster_overhead_s']:.2f} s. Procore calls: "
                  + ", ".join(f"`{k}` {c}" for k, c in n["procore"]["by_endpoint"].items())
                  + ". X3 calls: " + ", ".join(f"`{k}` {c}" for k, c in n["x3"]["by_endpoint"].items())
                  + "."]
    if "latency" in s:
        lat = s["latency"]
        lines += ["", "## Change latency per PO", "",
                  "| PO | s to commitment with all lines | s to contract header | PO → run requested | queue + launch | run start → commitment | run wall | trigger |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in lat["per_po"]:
            lines.append(f"| {r['po']} | {_fmt(r['complete_s'], 1)} | {_fmt(r['exists_s'], 1)} | "
                         f"{_fmt(r.get('until_run_created_s'), 1)} | "
                         f"{_fmt(r.get('run_queue_and_launch_s'), 1)} | "
                         f"{_fmt(r.get('run_start_to_commitment_s'), 1)} | {_fmt(r.get('run_wall_s'), 1)} | "
                         f"{r.get('run_trigger', '–')} |")
        if lat.get("steps_mean_s"):
            lines += ["", "Mean step seconds in the runs the sensors started: " + ", ".join(
                f"{k} {v:.2f}" for k, v in lat["steps_mean_s"].items() if v is not None) + "."]
        st = lat["steady_state_setup"]
        lines += ["", f"{lat['pos_in_x3_before']:,} POs already synced before the daemon "
                  f"started; a fresh sensor cursor would have requested "
                  f"{st['fresh_sensor_ticks_requesting_runs']} runs (one page per tick) before "
                  "catching up, so the benchmark sets the cursor first (`dagster sensor cursor --set`)."]
    if "staging" in s:
        st = s["staging"]
        lines += ["", f"## Staging phases ({st['lines']:,} lines)", "", "| Phase | Seconds | Peak RSS so far |",
                  "|---|---|---|"]
        lines += [f"| {k} | {v['s']:.2f} | {v['peak_rss_mib']:,.0f} MiB |" for k, v in st["phases"].items()]
        prof = st.get("per_row_profile")
        if prof:
            lines += ["", f"Connector functions called at least once per PO (cProfile on "
                      f"{prof['pos']:,} POs / {prof['lines']:,} lines):", "",
                      "| Function | Calls per line | Calls per PO | Cumulative s (profiled) |",
                      "|---|---|---|---|"]
            lines += [f"| `{f['function']}` | {f['calls_per_line']} | {f['calls_per_po']} | {f['cum_s']} |"
                      for f in prof["functions"]]
    if "real_limit" in s:
        from benchmarks import real_limit

        lines += real_limit.markdown(s["real_limit"])
    lines += ["", "## Machine load during each measurement", "",
              "| Measurement | Measured span s | Load avg (1 min) start → end | Our CPU (cores) | Others' CPU (cores) |",
              "|---|---|---|---|---|"]
    for label, usage in _loads(s):
        lines.append(f"| {label} | {usage['wall_s']:,.1f} | {usage['load_avg_start'][0]} → "
                     f"{usage['load_avg_end'][0]} | {_fmt(usage.get('own_cpu_cores'))} | "
                     f"{_fmt(usage.get('others_busy_cores'))} |")
    if results["errors"]:
        lines += ["", "## Errors", ""] + [f"- {k}: `{e}`" for k, e in results["errors"].items()]
    return "\n".join(lines) + "\n"


def _loads(s: dict):
    for key in ("backfill", "backfill_rate_limited", "noop", "noop_after_delta", "staging",
                "baseline", "latency"):
        if key in s and "machine_load" in s[key]:
            yield key, s[key]["machine_load"]
    for run in s.get("delta", {}).get("runs", []):
        yield f"delta {run['fraction'] * 100:g} %", run["machine_load"]


def merge_results(parts: list[dict], name: str) -> dict:
    """One report from several runs (e.g. a scenario re-run on a quieter machine): later
    parts win per scenario; each scenario records the run it came from."""
    merged = {**parts[0], "name": name, "scenarios": {}, "errors": {}, "merged_from": []}
    for part in parts:
        merged["merged_from"].append({
            "name": part["name"], "commit": part["git"]["commit"],
            "started_at": part["started_at"], "finished_at": part["finished_at"],
            "scenarios": sorted(part["scenarios"])})
        for key, value in part["scenarios"].items():
            merged["scenarios"][key] = {**value, "from_run": part["name"]}
        merged["errors"].update(part.get("errors", {}))
    # Parts may come from different commits (each scenario keeps its run, and the markdown
    # names each part's commit); the report's own `git` is the newest part's.
    merged["git"] = parts[-1]["git"]
    merged["commits"] = sorted({p["commit"] for p in merged["merged_from"] if p["commit"]})
    merged["started_at"] = min(p["started_at"] for p in merged["merged_from"])
    merged["finished_at"] = max(p["finished_at"] for p in merged["merged_from"])
    merged["comparisons"] = _comparisons(merged["scenarios"])
    merged["summary"] = summary_rows(merged)
    return merged


def write_results(results: dict, outdir: Path, name: str) -> tuple[Path, Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = outdir / f"{name}.json", outdir / f"{name}.md"
    json_path.write_text(json.dumps(results, indent=1, sort_keys=False, default=str) + "\n")
    md_path.write_text(to_markdown(results))
    return json_path, md_path


# --- command line ---------------------------------------------------------------------------

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


def config_from_json(text: str) -> BenchConfig:
    """A BenchConfig from `asdict` JSON (tuples come back as lists)."""
    data = json.loads(text)
    for key in ("delta_fractions", "x3_load_changes", "x3_load_apis"):
        if key in data:
            data[key] = tuple(data[key])
    return BenchConfig(**data)


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
