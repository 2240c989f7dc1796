"""The real connector against the sandboxes, in this process.

The Procore and Sage X3 sandboxes run in threads with the chosen seed, latency and rate
limits. The sync under test is the real one: the Dagster job `sync_sage_x3_to_procore`
through `execute_in_process`, on a temporary Dagster instance and a temporary SQLite ledger,
with the environment pointed at the sandboxes exactly as the tests' `sync_env` fixture does.
Its sensors are evaluated in-process too, as the daemon would. Calls are counted from the
sandboxes' own call logs.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from benchmarks.calls import CallLog, summarize_calls
from benchmarks.config import BenchConfig, build_seed_for
from benchmarks.limits import UNLIMITED, RateLimits
from benchmarks.machine import Meter, peak_rss_mib, reset_peak_rss, rss_mib

JOB = "sync_sage_x3_to_procore"
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


# --- sandboxes and environment ------------------------------------------------------------

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


def synced_contracts(procore_handle) -> dict[str, dict]:
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
    state = x3_handle.state
    with state.lock:
        data = [getattr(state.data, attr) for attr in state.X3_ATTRS]
        text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# --- the job --------------------------------------------------------------------------------

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
        steps = step_seconds(instance, result.run_id)
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


def step_seconds(instance, run_id: str) -> dict[str, float]:
    """Each step's seconds, start to success or failure, from the run's event log."""
    starts, out = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        if event.event_type_value == "STEP_START":
            starts[entry.step_key] = entry.timestamp
        elif (event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE")
              and entry.step_key in starts):
            out[entry.step_key] = round(entry.timestamp - starts[entry.step_key], 3)
    return out


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
        """One run of the job: its calls on both systems, outcome, steps, memory and load."""
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


# --- sensors, evaluated as the daemon would -----------------------------------------------

def sensor_named(name: str):
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


def walk_sensors(instance=None) -> dict[str, tuple[int, str]]:
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
