"""The PO sync's sensors: X3 PO changes (headers or lines) request a run, and a sync that
stopped at Procore's rate limit is continued just before the allowance returns."""

import time

import dagster as dg

from mlc_dagster.common.write_mode import skip_reason
from mlc_dagster.defs.jobs import sync_sage_x3_to_procore
from mlc_dagster.procore_writes.continuation import (
    continuation_run_request,
    lead_seconds,
    read_continuation,
)
from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.settings import current_settings, load_settings
from mlc_dagster.x3_reads.sensors import x3_change_sensor

AUTOMATION = current_settings().automation

x3_purchase_order_changes = x3_change_sensor(
    "purchase_order", name="x3_purchase_order_changes", trigger="x3_po_changes",
    noun="PO", count_tag="mlc/changed_pos", poll_lines=True)



@dg.sensor(
    name="procore_rate_limit_continuation",
    job=sync_sage_x3_to_procore,
    minimum_interval_seconds=AUTOMATION.sensor_interval_seconds,
    default_status=(dg.DefaultSensorStatus.RUNNING if AUTOMATION.on
                    else dg.DefaultSensorStatus.STOPPED),
    description=("Continues a sync that stopped at Procore's rate limit (or at "
                 "MLC_MAX_POS_PER_RUN): requests the next run just before the allowance "
                 "returns. Reads only the ledger."),
)
def procore_rate_limit_continuation(context: dg.SensorEvaluationContext, ledger: LedgerResource):
    settings = load_settings()
    if settings.preview:
        return dg.SkipReason(skip_reason("sensor procore_rate_limit_continuation"))
    store = ledger.get_ledger()
    request = continuation_run_request(store, time.time(),
                                       lead_seconds(settings.procore.max_wait_seconds))
    if request is None:
        pending = read_continuation(store)
        return dg.SkipReason(f"continuing from {pending.after_text}: {pending.remaining} "
                             "record(s) waiting" if pending else "nothing handed over")
    return request
