"""Scenario `latency` (4): seconds from a PO created in X3 to its commitment, with all its
lines, visible through Procore's REST API.

`dagster dev` (webserver + daemon, sensors every 10 s) runs as a subprocess on a synced
state with the sensors' cursors caught up; 20 POs are created through X3 REST at random
moments over 300 s; a watcher polls Procore's public API as a user's script would
(benchmarks/procore_watcher.py). Each PO's latency is split into: until a run was requested,
queue and launch, run start to visible (and inside the run: first step, commitments step).
"""

from __future__ import annotations

import math
import os
import random
import shutil
import statistics
import time
from collections import Counter
from pathlib import Path

from benchmarks.calls import CallLog
from benchmarks.config import REPO, BenchConfig, build_seed_for
from benchmarks.dagster_dev import dagster_cli, running_dagster_dev, wait_for_daemon, wait_for_runs
from benchmarks.harness import (
    configure,
    run_sync_job,
    started_sandboxes,
    step_seconds,
    sync_environment,
    synced_contracts,
    walk_sensors,
)
from benchmarks.limits import UNLIMITED
from benchmarks.machine import Meter
from benchmarks.report_rows import TARGETS, AddRow, fmt

LATENCY_PARTS = ("until_run_created_s", "run_queue_and_launch_s", "run_start_to_commitment_s",
                 "run_start_to_first_step_s", "run_start_to_commitments_step_end_s",
                 "commitments_step_end_to_visible_s", "run_wall_s")


def bench_latency(cfg: BenchConfig, workdir: Path) -> dict:
    """X3 REST POST -> the commitment with all its lines visible through Procore's REST API,
    with `dagster dev` (webserver + daemon) running the sensors and runs."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from benchmarks.procore_watcher import ProcoreApiWatcher
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
        walked, out["steady_state_setup"] = steady_state(handles, home)
        templates = _templates(handles, cfg.latency_pos)
        projects = [p["PJTNUM"] for p in seed.x3_projects]
        configure(handles, latency_ms=cfg.latency_ms, x3_latency_ms=cfg.x3_latency,
                  limits=UNLIMITED)

        child_env = {**os.environ, **env, "DAGSTER_HOME": str(home), "MLC_AUTOMATION_ON": "1",
                     "MLC_SENSOR_INTERVAL_SECONDS": str(cfg.sensor_interval_s)}
        log_path = workdir / "dagster_dev.log"
        watcher = ProcoreApiWatcher(handles["procore"].url, COMPANY_ID, creds["procore_client_id"],
                                    creds["procore_client_secret"], poll_s=cfg.latency_poll_s)
        procore_log = CallLog(handles["procore"])
        created: dict[str, float] = {}
        with open(log_path, "w") as log:
            for name, (_, cursor) in walked.items():  # every sensor starts caught up
                dagster_cli(["sensor", "cursor", name, "--set", cursor], child_env, log)
                dagster_cli(["sensor", "start", name], child_env, log)
            started = time.time()
            with running_dagster_dev(child_env, log) as proc:
                try:
                    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
                    wait_for_daemon(instance, proc, timeout=180)
                    out["daemon_ready_s"] = round(time.time() - started, 1)
                    procore_log.mark()
                    watcher.connect()
                    watcher.start()
                    meter = Meter()
                    offsets = sorted(rng.uniform(0, cfg.latency_window_s)
                                     for _ in range(cfg.latency_pos))
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
                    wait_for_runs(instance, timeout=60)  # let runs finish their bookkeeping
                finally:
                    watcher.close()
        runs = _run_records(instance)
        timelines = {run_id: _run_timeline(instance, run_id) for run_id in runs}
        instance.dispose()
        procore_calls = procore_log.since_mark()
        ledger = Ledger(env["MLC_LEDGER_URL"])
        per_po = []
        for number, at in created.items():
            events = [e for e in ledger.events("purchase_order", number) if e["status"] == "synced"]
            per_po.append(_po_latency(number, at, watcher, events, runs, timelines))
        ledger.dispose()
    out.update(_latency_summary(cfg, created, per_po, runs, timelines, watcher, procore_calls))
    out["log"] = str(log_path)
    return out


def steady_state(handles, home: Path) -> tuple[dict, dict]:
    """The backfill done (on the daemon's instance: its history) and the sensors caught up,
    without latency: (sensor -> (ticks requesting runs, cursor), what it took)."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    configure(handles, latency_ms=0, x3_latency_ms=0, limits=UNLIMITED)
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as home_instance:
        setup = run_sync_job(home_instance)
    if not setup["success"]:
        raise RuntimeError(f"latency setup backfill failed: {setup['failures']}")
    walk_start = time.perf_counter()
    walked = walk_sensors()
    return walked, {"backfill_s": setup["wall_s"],
                    "fresh_sensor_ticks_requesting_runs": sum(n for n, _ in walked.values()),
                    "sensor_walk_s": round(time.perf_counter() - walk_start, 1)}


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


def _templates(handles, count: int) -> list[dict]:
    """Open synced POs whose lines all map: their copies sync cleanly."""
    import httpx

    from mlc_sandbox.seed import SANDBOX_CREDENTIALS as creds

    synced = synced_contracts(handles["procore"])
    numbers = sorted(po for po, c in synced.items() if c["status"] == "Draft")[:count]
    out = []
    with httpx.Client(base_url=f"{handles['sage_x3'].url}/api1/x3/erp/{creds['x3_endpoint']}",
                      auth=(creds["x3_user"], creds["x3_password"]), timeout=60) as http:
        for number in numbers:
            response = http.get(f"/PORDER('{number}')",
                                params={"representation": "PORDER.$details"})
            response.raise_for_status()
            out.append(response.json())
    return out


def _po_latency(number: str, at: float, watcher, events: list[dict], runs: dict[str, dict],
                timelines: dict[str, dict]) -> dict:
    """One PO's latency, and where it went when the ledger names the run that synced it."""
    origin = f"X3:PO:{number}"
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
    return row


def _latency_summary(cfg: BenchConfig, created: dict, per_po: list[dict], runs: dict,
                     timelines: dict, watcher, procore_calls: list[dict]) -> dict:
    """Percentiles, the mean and p95 of each part, the sensor-started runs' steps, and the
    connector's Procore calls without the watcher's."""
    done = [r["complete_s"] for r in per_po if r["complete_s"] is not None]
    watcher_calls = sum(watcher.calls.values())
    sensor_runs = [t for rid, t in timelines.items() if runs[rid]["trigger"] != "schedule"]
    return {
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
        "per_po": per_po,
    }


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
            "steps_s": step_seconds(instance, run_id)}


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


# --- report -----------------------------------------------------------------------------------

def summary_rows(lat: dict, add: AddRow) -> None:
    """Percentiles against the target, where the time goes, and the connector's calls."""
    label = f"4 change latency ({lat['sensor_interval_s']} s sensor)"
    through = "through the Procore API" if "watcher" in lat else "in-process state"
    add(label, f"{lat['pos_arrived']}/{lat['pos_created']} POs over {lat['window_s']:g} s, "
        f"{through}: p50 / p95 / max",
        f"{fmt(lat['p50_s'], 1)} / {fmt(lat['p95_s'], 1)} / {fmt(lat['max_s'], 1)} s",
        f"p95 ≤ {TARGETS['latency_p95_s']:g} s, n ≥ 20",
        lat["p95_s"] is not None and lat["p95_s"] <= TARGETS["latency_p95_s"]
        and lat["pos_arrived"] == lat["pos_created"] >= 20)
    for stat in ("mean", "p95"):
        bd = lat.get(f"breakdown_{stat}_s")
        if bd:
            add(label, f"{stat}: PO → run requested / queue + launch / run start → "
                "visible through the API",
                f"{fmt(bd['until_run_created_s'], 1)} / {fmt(bd['run_queue_and_launch_s'], 1)}"
                f" / {fmt(bd['run_start_to_commitment_s'], 1)} s")
    bd = lat["breakdown_mean_s"]
    if "run_start_to_first_step_s" in bd:
        add(label, "mean, inside the run: start → first step / → commitments step done / "
            "→ visible", f"{fmt(bd['run_start_to_first_step_s'], 1)} / "
            f"{fmt(bd['run_start_to_commitments_step_end_s'], 1)} / "
            f"{fmt(bd['commitments_step_end_to_visible_s'], 1)} s")
    if "procore_calls" in lat:
        c = lat["procore_calls"]
        add(label, "Procore calls: connector (API watcher's own, not counted)",
            f"{c['connector']:,} ({c['watcher']:,})")


def markdown(lat: dict) -> list[str]:
    """Each PO's latency and its parts, the sensor-started runs' steps, the steady state."""
    lines = ["", "## Change latency per PO", "",
             "| PO | s to commitment with all lines | s to contract header | PO → run requested "
             "| queue + launch | run start → commitment | run wall | trigger |",
             "|---|---|---|---|---|---|---|---|"]
    for r in lat["per_po"]:
        lines.append(f"| {r['po']} | {fmt(r['complete_s'], 1)} | {fmt(r['exists_s'], 1)} | "
                     f"{fmt(r.get('until_run_created_s'), 1)} | "
                     f"{fmt(r.get('run_queue_and_launch_s'), 1)} | "
                     f"{fmt(r.get('run_start_to_commitment_s'), 1)} | "
                     f"{fmt(r.get('run_wall_s'), 1)} | {r.get('run_trigger', '–')} |")
    if lat.get("steps_mean_s"):
        lines += ["", "Mean step seconds in the runs the sensors started: " + ", ".join(
            f"{k} {v:.2f}" for k, v in lat["steps_mean_s"].items() if v is not None) + "."]
    st = lat["steady_state_setup"]
    lines += ["", f"{lat['pos_in_x3_before']:,} POs already synced before the daemon "
              f"started; a fresh sensor cursor would have requested "
              f"{st['fresh_sensor_ticks_requesting_runs']} runs (one page per tick) before "
              "catching up, so the benchmark sets the cursor first "
              "(`dagster sensor cursor --set`)."]
    return lines
