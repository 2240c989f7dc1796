"""The nightly reconciliation run."""

from mlc_dagster.defs.jobs import reconcile
from mlc_dagster.procore_writes.schedules import write_job_schedule
from mlc_dagster.settings import current_settings

AUTOMATION = current_settings().automation

reconcile_schedule = write_job_schedule(
    "reconcile_nightly", reconcile, AUTOMATION.reconcile_cron,
    "Nightly reconciliation (MLC_RECONCILE_CRON, default 02:00).", AUTOMATION.on)
