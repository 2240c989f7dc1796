"""Scenario `noop` (2): nothing changed in X3.

One tick of each X3 change sensor (the poll: runs requested, X3 and Procore calls, wall
time), then a whole sync run (what the fallback schedule costs: X3 calls, Procore calls,
writes on both systems, wall time), then the same run one fallback-schedule gap later, with
the reference-reuse clock moved forward. None of it may call Procore or write anywhere
(`noop_violations`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter

from benchmarks import floor as call_floor
from benchmarks.calls import summarize_calls
from benchmarks.harness import (
    SyncSession,
    sensor_named,
    sensor_resources,
    walk_sensors,
    x3_state_fingerprint,
)
from benchmarks.report_rows import TARGETS, AddRow, fmt


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

    cursors = {name: cursor for name, (_, cursor) in walk_sensors(session.instance).items()}
    resources = sensor_resources(build_resources())
    sensors = {name: sensor_named(name) for name in cursors}
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


# --- report -----------------------------------------------------------------------------------

def summary_rows(n: dict, add: AddRow, label: str) -> None:
    """The sensor poll's rows, then the whole run's and the later run's."""
    if "sensor_poll" in n:
        poll = n["sensor_poll"]
        add(label, f"sensor ticks ({len(poll['sensors'])}): runs requested / X3 calls / "
            "Procore calls", f"{poll['run_requests']} / {poll['x3']['total']} / "
            f"{poll['procore']['total']}", "0 runs, 0 Procore calls",
            poll["run_requests"] == 0 and poll["procore"]["total"] == 0)
        add(label, "sensor ticks: wall time", f"{poll['wall_s']:.3f} s", "≤ 2 s",
            poll["wall_s"] <= TARGETS["noop_wall_s"])
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
            f"{n['x3']['writes']}; {fmt(n['x3_state_unchanged'])}", "0; yes",
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


def markdown(n: dict) -> list[str]:
    """Where a no-change run's time goes, and its calls by endpoint."""
    return ["", "## No-op poll: where the time goes", "",
            ", ".join(f"{k} {v:.2f} s" for k, v in n["steps_s"].items())
            + f"; Dagster overhead {n['dagster_overhead_s']:.2f} s. Procore calls: "
            + ", ".join(f"`{k}` {c}" for k, c in n["procore"]["by_endpoint"].items())
            + ". X3 calls: " + ", ".join(f"`{k}` {c}" for k, c in n["x3"]["by_endpoint"].items())
            + "."]
