"""Reuse a recent read of Procore reference data instead of reading it again every tick.

A Procore reference asset (projects, vendors, cost codes, cost types) returns its latest
materialisation, loaded through its IO manager, when `reuse_refusal` finds nothing against it:

- that materialisation (a read, or a reuse passing a read on) is younger than the reuse
  window, MLC_REFERENCE_MAX_AGE_SECONDS, which by default follows the fallback schedule
  (defs/reference/settings.py). Every fallback run then reuses the previous run's data;
- the read itself is younger than one reference-job gap and a half. Runs that keep passing
  a read on never make it older than that;
- no `sync_reference_data` run has been created since, because that job may have changed
  vendors.

The reference job itself therefore always reads afresh, and so does a run tagged
`mlc/reference=refresh`. Anything unexpected means "read Procore".
"""

from __future__ import annotations

import time
from collections.abc import Callable

import dagster as dg
import pandas as pd

from mlc_dagster.defs.reference.settings import ReferenceSettings

REFERENCE_JOB = "sync_reference_data"
REFRESH_TAG = "mlc/reference"
READ_AT = "read_at"  # metadata of a reuse: when the reused data was read from Procore

# The time a reuse is judged at. The benchmark moves it forward to play the next fallback
# tick without waiting for it (benchmarks/scenarios/noop.py, `fallback_tick_later`).
clock: Callable[[], float] = time.time


def reuse_refusal(now: float, last_at: float, read_at: float,
                  settings: ReferenceSettings) -> str | None:
    """Why the last materialisation (at `last_at`, carrying data read at `read_at`) cannot
    be reused at `now`; None when it can."""
    window, oldest = settings.max_age_seconds, settings.max_read_age_seconds
    if window <= 0:
        return "reuse is off (MLC_REFERENCE_MAX_AGE_SECONDS=0)"
    if now - last_at >= window:
        return (f"the last read or reuse is {now - last_at:.0f}s old, the reuse window is "
                f"{window}s")
    if now - read_at >= oldest:
        return f"the data was read {now - read_at:.0f}s ago, the oldest reused is {oldest}s"
    return None


def _read_at(event: dg.EventLogEntry) -> float:
    """When the data of this materialisation was read: its own time for a read, the time a
    reuse passed on (older materialisations carry none: their own time)."""
    try:
        value = event.asset_materialization.metadata.get(READ_AT)
        return float(value.value) if value is not None else event.timestamp
    except (AttributeError, TypeError, ValueError):
        return event.timestamp


def last_reference_run_at(instance: dg.DagsterInstance) -> float | None:
    """When the latest `sync_reference_data` run was created (None: never)."""
    records = instance.get_run_records(filters=dg.RunsFilter(job_name=REFERENCE_JOB), limit=1)
    return records[0].create_timestamp.timestamp() if records else None


_LOOK_UP = object()


def recent_materialization(context: dg.AssetExecutionContext, settings: ReferenceSettings,
                           key: dg.AssetKey, reference_run_at: float | None | object = _LOOK_UP
                           ) -> dg.Output | None:
    """The latest value of asset `key` (an output of the step running in `context`) when
    `reuse_refusal` finds nothing against reusing it (with the run's MLC_REFERENCE_*
    settings), else None: read Procore. A step judging several lists passes
    `reference_run_at` (`last_reference_run_at`), so the run history is asked once."""
    if settings.max_age_seconds <= 0 or context.run.tags.get(REFRESH_TAG) == "refresh":
        return None
    if reference_run_at is _LOOK_UP:
        reference_run_at = last_reference_run_at(context.instance)
    event = context.instance.get_latest_materialization_event(key)
    if event is None:
        return None
    now, read_at = clock(), _read_at(event)
    refusal = reuse_refusal(now, event.timestamp, read_at, settings)
    if refusal is not None:
        context.log.info(f"reading {key.to_user_string()} from Procore: {refusal}")
        return None
    if reference_run_at is not None and reference_run_at > event.timestamp:
        context.log.info(f"reading {key.to_user_string()} from Procore: {REFERENCE_JOB} ran "
                         "since the last read")
        return None
    try:
        value = context.load_asset_value(key, python_type=pd.DataFrame)
    except Exception as exc:  # noqa: BLE001 - any storage problem: read Procore instead
        context.log.warning(f"reading {key.to_user_string()} from Procore: the last value "
                            f"could not be loaded ({exc})")
        return None
    return dg.Output(value,
                     output_name=context.assets_def.get_output_name_for_asset_key(key),
                     metadata={"reused_from_run": event.run_id,
                               "age_seconds": round(now - event.timestamp, 1),
                               READ_AT: dg.MetadataValue.float(read_at),
                               "read_age_seconds": round(now - read_at, 1),
                               "rows": len(value)})
