"""Sensor on Sage X3 changes: cheap to evaluate, bounded per tick, safe to repeat."""


import hashlib

import dagster as dg

from mlc_dagster.jobs import sync_sage_x3_to_procore
from mlc_dagster.resources.sage_x3 import SageX3Resource
from mlc_dagster.resources.sage_x3_client import DeltaCursor
from mlc_dagster.settings import Settings

SETTINGS = Settings.from_env()
PAGE_SIZE = 200


@dg.sensor(
    job=sync_sage_x3_to_procore,
    minimum_interval_seconds=SETTINGS.sensor_interval_seconds,
    default_status=(dg.DefaultSensorStatus.RUNNING if SETTINGS.automation_on
                    else dg.DefaultSensorStatus.STOPPED),
    description="Requests a sync run when Sage X3 POs change (update stamp + overlap window).",
)
def x3_purchase_order_changes(context: dg.SensorEvaluationContext, sage_x3: SageX3Resource):
    """One X3 query per tick: POs stamped inside the overlap window that we haven't seen.

    The cursor keeps the high-water stamp plus the (key, stamp) pairs already seen inside
    the overlap window, so same-second and late-committed changes trigger exactly once.
    The run itself re-reads everything changed since its own stored stamp, so a tick that
    sees only the first page still leads to a complete sync.
    """
    cursor = (DeltaCursor.from_json(context.cursor) if context.cursor
              else DeltaCursor("purchase_order"))
    pages = sage_x3.get_client().changed(
        "purchase_order", cursor.window_start(SETTINGS.overlap_seconds), page_size=PAGE_SIZE)
    first_page = next(iter(pages), [])
    new = cursor.advance(first_page)
    if not new:
        return dg.SensorResult(skip_reason="no Sage X3 PO changed", cursor=cursor.to_json())
    keys = sorted(f"{r['po_number']}@{r['update_stamp']}" for r in new)
    digest = hashlib.sha256("|".join(keys).encode()).hexdigest()[:16]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(
            run_key=f"x3-po-changes:{digest}",
            tags={"mlc/trigger": "x3_po_changes", "mlc/changed_pos": str(len(new))},
        )],
        cursor=cursor.to_json(),
    )
