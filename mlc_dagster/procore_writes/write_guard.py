"""What the write steps share: the company write lock, and the run's Procore circuit breaker.

- `company_write_lock`: each write step plans and writes inside it (ledger/lock.py), so two
  runs of one Procore company never write at once, queued or not. A step that cannot get it
  within MLC_WRITE_LOCK_WAIT_SECONDS (`ProcoreSettings.write_lock_wait_seconds`) fails with the holder's run id, and is not retried: it
  has written nothing, its records stay pending, and the next run (the sensor's or the
  schedule's) picks them up. Waiting longer in a retry would hold a run slot only to re-plan
  what the other run is writing.
- `run_breaker`: one CircuitBreaker per run (resources/breaker.py), shared by its write
  steps in order (commitments, then requisitions; the jobs run in one process), so a streak
  of outage failures carries from one step to the next.
- `procore_write_guard`: both, for a step that writes to Procore.
- `fail_if_unavailable`: once the breaker opened, the step ends red with "Procore unavailable
  since ..." after its writer flushed the ledger (so the next run sees `deferred`), and Dagster
  does not retry it: the next scheduled run is the retry.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from threading import Lock

import dagster as dg

from mlc_dagster.ledger.lock import CompanyWriteLock, LockTimeout
from mlc_dagster.ledger.store import Ledger
from mlc_dagster.resources.breaker import BreakerSettings, CircuitBreaker
from mlc_dagster.settings import ProcoreSettings

_KEEP_RUNS = 32
_BREAKERS: OrderedDict[str, CircuitBreaker] = OrderedDict()
_BREAKERS_LOCK = Lock()


def procore_write_asset(**asset_args):
    """The decorator of a step that writes to Procore (dg.asset with `asset_args`): in the
    `procore_api` pool (dagster.yaml runs its steps one at a time), retried twice with backoff
    for what a retry can fix; a refusal, an open breaker or a lock held too long end with a
    dg.Failure that allows no retry."""
    return dg.asset(kinds={"procore"}, pool="procore_api",
                    retry_policy=dg.RetryPolicy(max_retries=2, delay=10,
                                                backoff=dg.Backoff.EXPONENTIAL,
                                                jitter=dg.Jitter.PLUS_MINUS),
                    **asset_args)


@contextmanager
def company_write_lock(context: dg.AssetExecutionContext, store: Ledger, company_id: str | int,
                       wait_seconds: float) -> Iterator[CompanyWriteLock]:
    """Hold the company's write lock for the body, waiting for it at most `wait_seconds`
    (MLC_WRITE_LOCK_WAIT_SECONDS); dg.Failure (no retry) if it stays taken."""
    lock = CompanyWriteLock(store, company_id, context.run.run_id,
                            wait_seconds=wait_seconds, log=context.log.warning)
    try:
        waited = lock.acquire()
    except LockTimeout as exc:
        holder = exc.holder
        raise dg.Failure(description=str(exc), allow_retries=False, metadata={
            "procore_company": str(company_id),
            "held_by_run": (holder.run_id if holder else None) or "",
            "waited_seconds": round(exc.waited, 1)}) from None
    if waited >= 1:
        context.log.info(f"took the Procore company {company_id} write lock after waiting "
                         f"{waited:.0f}s")
    try:
        yield lock
    finally:
        lock.release()


def run_breaker(run_id: str, settings: BreakerSettings) -> CircuitBreaker:
    """The breaker of this run, made on first use with the run's MLC_PROCORE_BREAKER_*
    `settings` (the last few runs of a long-lived process are kept)."""
    with _BREAKERS_LOCK:
        breaker = _BREAKERS.get(run_id)
        if breaker is None:
            breaker = _BREAKERS[run_id] = CircuitBreaker(settings)
            while len(_BREAKERS) > _KEEP_RUNS:
                _BREAKERS.popitem(last=False)
        return breaker


@contextmanager
def procore_write_guard(context: dg.AssetExecutionContext, store: Ledger, company_id: str | int,
                        settings: ProcoreSettings
                        ) -> Iterator[tuple[CompanyWriteLock, CircuitBreaker]]:
    """(the company's write lock, held for the body; the run's circuit breaker), with the
    run's Procore settings: what a step writing to Procore plans and writes inside."""
    breaker = run_breaker(context.run.run_id, settings.breaker)
    with company_write_lock(context, store, company_id, settings.write_lock_wait_seconds) as lock:
        yield lock, breaker


def fail_if_unavailable(breaker: CircuitBreaker, deferred: int, metadata: dict) -> None:
    """End the step red once the breaker opened (call after the writer flushed)."""
    if breaker.is_open:
        raise dg.Failure(description=breaker.summary(deferred), allow_retries=False,
                         metadata={**metadata, "procore_unavailable_since": breaker.reason()})
