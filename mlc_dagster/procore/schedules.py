"""Fallback schedule: the sync also runs on a cron, in case a sensor tick was missed.

MLC_WRITE_MODE=preview: the schedules skip (their jobs write); see mlc_dagster/preview/mode.py.
"""


import time

import dagster as dg

from mlc_dagster.jobs import reconcile, sync_sage_x3_to_procore
from mlc_dagster.preview.mode import is_preview, skip_reason
from mlc_dagster.procore.continuation import lead_seconds, waiting_for_allowance
from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.settings import Settings

SETTINGS = Settings.from_env()


def write_job_schedule(name: str, job, cron: str, description: str,
                       automation_on: bool) -> dg.ScheduleDefinition:
    """A schedule of a job that writes: one run per tick, none while previewing or while a
    hand-over at Procore's rate limit waits for its allowance (procore/continuation.py)."""

    @dg.schedule(name=name, job=job, cron_schedule=cron, description=description,
                 default_status=(dg.DefaultScheduleStatus.RUNNING if automation_on
                                 else dg.DefaultScheduleStatus.STOPPED))
    def _schedule(_context: dg.ScheduleEvaluationContext, ledger: LedgerResource):
        if is_preview():
            return dg.SkipReason(skip_reason(f"schedule {name}"))
        if waiting := waiting_for_allowance(ledger.get_ledger(), time.time(), lead_seconds()):
            return dg.SkipReason(waiting)
        return dg.RunRequest()

    return _schedule


sync_fallback_schedule = write_job_schedule(
    "sync_sage_x3_to_procore_fallback", sync_sage_x3_to_procore, SETTINGS.sync_cron,
    "Runs the PO sync on MLC_SYNC_CRON even when no change was sensed.", SETTINGS.automation_on)

reconcile_schedule = write_job_schedule(
    "reconcile_nightly", reconcile, SETTINGS.reconcile_cron,
    "Nightly reconciliation (MLC_RECONCILE_CRON, default 02:00).", SETTINGS.automation_on)
