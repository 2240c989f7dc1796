"""The nightly reconciliation run."""

from mlc_dagster.defs.jobs import reconcile
from mlc_dagster.procore_writes.schedules import write_job_schedule
from mlc_dagster.settings import Settings

SETTINGS = Settings.from_env()

reconcile_schedule = write_job_schedule(
    "reconcile_nightly", reconcile, SETTINGS.reconcile_cron,
    "Nightly reconciliation (MLC_RECONCILE_CRON, default 02:00).", SETTINGS.automation_on)
