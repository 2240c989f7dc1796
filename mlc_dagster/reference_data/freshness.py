"""Reuse a recent read of Procore reference data instead of reading it again every tick.

A Procore reference asset (projects, vendors, cost codes, cost types) returns its latest
materialisation, loaded through its IO manager, when that is younger than
MLC_REFERENCE_MAX_AGE_SECONDS and no `sync_reference_data` run has been created since (that
job may have changed vendors). The reference job itself therefore always reads afresh, and
so does a run tagged `mlc/reference=refresh`. Anything unexpected means "read Procore".
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from mlc_dagster.reference_data.settings import ReferenceSettings

REFERENCE_JOB = "sync_reference_data"
REFRESH_TAG = "mlc/reference"


def recent_materialization(context: dg.AssetExecutionContext) -> dg.Output | None:
    max_age = ReferenceSettings.from_env().max_age_seconds
    if max_age <= 0 or context.run.tags.get(REFRESH_TAG) == "refresh":
        return None
    event = context.instance.get_latest_materialization_event(context.asset_key)
    age = time.time() - event.timestamp if event is not None else None
    if age is None or age >= max_age:
        return None
    since = datetime.fromtimestamp(event.timestamp, UTC)
    if context.instance.get_run_records(
            filters=dg.RunsFilter(job_name=REFERENCE_JOB, created_after=since), limit=1):
        return None
    try:
        value = context.load_asset_value(context.asset_key, python_type=pd.DataFrame)
    except Exception as exc:  # noqa: BLE001 - any storage problem: read Procore instead
        context.log.warning(f"reading Procore: the last value could not be loaded ({exc})")
        return None
    return dg.Output(value, metadata={"reused_from_run": event.run_id,
                                      "age_seconds": round(age, 1), "rows": len(value)})
