"""Reference data runs on its own cron (default hourly) and on demand from the UI."""

import dagster as dg

from mlc_dagster.jobs import sync_reference_data
from mlc_dagster.reference_data.settings import ReferenceSettings
from mlc_dagster.settings import Settings

sync_reference_data_schedule = dg.ScheduleDefinition(
    name="sync_reference_data_schedule",
    job=sync_reference_data,
    cron_schedule=ReferenceSettings.from_env().cron,
    default_status=(dg.DefaultScheduleStatus.RUNNING if Settings.from_env().automation_on
                    else dg.DefaultScheduleStatus.STOPPED),
    description="Suppliers <-> vendors and Procore cost codes -> X3 dimensions on "
                "MLC_REFERENCE_CRON (default hourly).",
)
