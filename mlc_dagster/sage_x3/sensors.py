"""Sensors on Sage X3 changes: cheap to evaluate, bounded per tick, safe to repeat."""


import hashlib

import dagster as dg

from mlc_dagster.jobs import sync_sage_x3_to_procore
from mlc_dagster.resources.sage_x3 import SageX3Resource
from mlc_dagster.resources.sage_x3_client import CANONICAL_KEYS, DeltaCursor
from mlc_dagster.settings import Settings

SETTINGS = Settings.from_env()
PAGE_SIZE = 200


def x3_change_sensor(entity: str, *, name: str, trigger: str, noun: str,
                     count_tag: str) -> dg.SensorDefinition:
    """A sensor requesting a `sync_sage_x3_to_procore` run when X3 `entity` records change.

    One X3 query per tick: records stamped inside the overlap window that it hasn't seen.
    The cursor keeps the high-water stamp plus the (key, stamp) pairs already seen inside
    the overlap window, so same-second and late-committed changes trigger exactly once.
    The run itself re-reads everything changed since its own stored stamp, so a tick that
    sees only the first page still leads to a complete sync.
    """
    key_field = CANONICAL_KEYS[entity][0]

    @dg.sensor(
        name=name,
        job=sync_sage_x3_to_procore,
        minimum_interval_seconds=SETTINGS.sensor_interval_seconds,
        default_status=(dg.DefaultSensorStatus.RUNNING if SETTINGS.automation_on
                        else dg.DefaultSensorStatus.STOPPED),
        description=(f"Requests a sync run when Sage X3 {noun}s change "
                     "(update stamp + overlap window)."),
    )
    def _sensor(context: dg.SensorEvaluationContext, sage_x3: SageX3Resource):
        cursor = DeltaCursor.from_json(context.cursor) if context.cursor else DeltaCursor(entity)
        pages = sage_x3.get_client().changed(
            entity, cursor.window_start(SETTINGS.overlap_seconds), page_size=PAGE_SIZE)
        first_page = next(iter(pages), [])
        new = cursor.advance(first_page)
        if not new:
            return dg.SensorResult(skip_reason=f"no Sage X3 {noun} changed",
                                   cursor=cursor.to_json())
        keys = sorted(f"{r[key_field]}@{r['update_stamp']}" for r in new)
        digest = hashlib.sha256("|".join(keys).encode()).hexdigest()[:16]
        return dg.SensorResult(
            run_requests=[dg.RunRequest(
                run_key=f"{trigger.replace('_', '-')}:{digest}",
                tags={"mlc/trigger": trigger, count_tag: str(len(new))},
            )],
            cursor=cursor.to_json(),
        )

    return _sensor


x3_purchase_order_changes = x3_change_sensor(
    "purchase_order", name="x3_purchase_order_changes", trigger="x3_po_changes",
    noun="PO", count_tag="mlc/changed_pos")
