"""Fallback schedule: the PO sync also runs on a cron, in case a sensor tick was missed.

MLC_WRITE_MODE=preview: it skips (the job writes); see mlc_dagster/common/write_mode.py.
"""

from mlc_dagster.defs.jobs import sync_sage_x3_to_procore
from mlc_dagster.procore_writes.schedules import write_job_schedule
from mlc_dagster.settings import current_settings

AUTOMATION = current_settings().automation

sync_fallback_schedule = write_job_schedule(
    "sync_sage_x3_to_procore_fallback", sync_sage_x3_to_procore, AUTOMATION.sync_cron,
    "Runs the PO sync on MLC_SYNC_CRON even when no change was sensed.", AUTOMATION.on)
