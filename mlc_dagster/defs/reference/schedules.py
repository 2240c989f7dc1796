"""Reference data runs on its own cron (default hourly) and on demand from the UI."""

from mlc_dagster.defs.jobs import sync_reference_data
from mlc_dagster.procore_writes.schedules import write_job_schedule
from mlc_dagster.settings import current_settings

SETTINGS = current_settings()

sync_reference_data_schedule = write_job_schedule(
    "sync_reference_data_schedule", sync_reference_data, SETTINGS.reference.cron,
    "Suppliers <-> vendors and Procore cost codes -> X3 dimensions on "
    "MLC_REFERENCE_CRON (default hourly).", SETTINGS.automation.on)
