"""Schedules of jobs that write: none while previewing or while a hand-over at Procore's
rate limit waits for its allowance (procore_writes/continuation.py)."""

import time

import dagster as dg

from mlc_dagster.common.write_mode import skip_reason
from mlc_dagster.procore_writes.continuation import lead_seconds, waiting_for_allowance
from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.settings import load_settings


def write_job_schedule(name: str, job, cron: str, description: str,
                       automation_on: bool) -> dg.ScheduleDefinition:
    """A schedule of a job that writes: one run per tick, none while previewing or while a
    hand-over at Procore's rate limit waits for its allowance (procore_writes/continuation.py).
    `cron` and `automation_on` come from the definitions' settings; each tick reads its own."""

    @dg.schedule(name=name, job=job, cron_schedule=cron, description=description,
                 default_status=(dg.DefaultScheduleStatus.RUNNING if automation_on
                                 else dg.DefaultScheduleStatus.STOPPED))
    def _schedule(_context: dg.ScheduleEvaluationContext, ledger: LedgerResource):
        settings = load_settings()
        if settings.preview:
            return dg.SkipReason(skip_reason(f"schedule {name}"))
        lead = lead_seconds(settings.procore.max_wait_seconds)
        if waiting := waiting_for_allowance(ledger.get_ledger(), time.time(), lead):
            return dg.SkipReason(waiting)
        return dg.RunRequest()

    return _schedule
