"""Fallback schedule: the sync also runs on a cron, in case a sensor tick was missed."""


import dagster as dg

from mlc_dagster.jobs import reconcile, sync_sage_x3_to_procore
from mlc_dagster.settings import Settings

SETTINGS = Settings.from_env()

sync_fallback_schedule = dg.ScheduleDefinition(
    name="sync_sage_x3_to_procore_fallback",
    job=sync_sage_x3_to_procore,
    cron_schedule=SETTINGS.sync_cron,
    default_status=(dg.DefaultScheduleStatus.RUNNING if SETTINGS.automation_on
                    else dg.DefaultScheduleStatus.STOPPED),
    description="Runs the PO sync on MLC_SYNC_CRON even when no change was sensed.",
)

reconcile_schedule = dg.ScheduleDefinition(
    name="reconcile_nightly",
    job=reconcile,
    cron_schedule=SETTINGS.reconcile_cron,
    default_status=(dg.DefaultScheduleStatus.RUNNING if SETTINGS.automation_on
                    else dg.DefaultScheduleStatus.STOPPED),
    description="Nightly reconciliation (MLC_RECONCILE_CRON, default 02:00).",
)
