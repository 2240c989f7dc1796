"""Schedules of jobs that write: none while previewing or while a hand-over at Procore's
rate limit waits for its allowance (procore_writes/continuation.py)."""

import time

import dagster as dg

from mlc_dagster.common.write_mode import is_preview, skip_reason
from mlc_dagster.procore_writes.continuation import lead_seconds, waiting_for_allowance
from mlc_dagster.resources.ledger import LedgerResource


def write_job_schedule(name: str, job, cron: str, description: str,
                       automation_on: bool) -> dg.ScheduleDefinition:
    """A schedule of a job that writes: one run per tick, none while previewing or while a
    hand-over at Procore's rate limit waits for its allowance (procore_writes/continuation.py)."""

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
