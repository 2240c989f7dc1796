"""What the write steps share: the company write lock, and the run's Procore circuit breaker.

- `company_write_lock`: each write step plans and writes inside it (ledger/lock.py), so two
  runs of one Procore company never write at once, queued or not. A step that cannot get it
  within MLC_WRITE_LOCK_WAIT_SECONDS fails with the holder's run id, and is not retried: it
  has written nothing, its records stay pending, and the next run (the sensor's or the
  schedule's) picks them up. Waiting longer in a retry would hold a run slot only to re-plan
  what the other run is writing.
- `run_breaker`: one CircuitBreaker per run (resources/breaker.py), shared by its write
  steps in order (commitments, then requisitions; the jobs run in one process), so a streak
  of outage failures carries from one step to the next.
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

from mlc_dagster.ledger.lock import DEFAULT_WAIT_SECONDS, CompanyWriteLock, LockTimeout
from mlc_dagster.ledger.store import Ledger
from mlc_dagster.resources.breaker import BreakerSettings, CircuitBreaker
from mlc_dagster.settings import Settings, env_float

_KEEP_RUNS = 32
_BREAKERS: OrderedDict[str, CircuitBreaker] = OrderedDict()
_BREAKERS_LOCK = Lock()


def write_lock_wait_seconds() -> float:
    return env_float("MLC_WRITE_LOCK_WAIT_SECONDS", DEFAULT_WAIT_SECONDS)


def company_id_from_env() -> str:
    """PROCORE_COMPANY_ID, for write steps without the Procore resource (X3 dimension values)."""
    return Settings.from_env().company_tag


@contextmanager
def company_write_lock(context: dg.AssetExecutionContext, store: Ledger,
                       company_id: str | int) -> Iterator[CompanyWriteLock]:
    """Hold the company's write lock for the body; dg.Failure (no retry) if it stays taken."""
    lock = CompanyWriteLock(store, company_id, context.run.run_id,
                            wait_seconds=write_lock_wait_seconds(), log=context.log.warning)
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


def run_breaker(run_id: str) -> CircuitBreaker:
    """The breaker of this run, made on first use from MLC_PROCORE_BREAKER_* (the last few
    runs of a long-lived process are kept)."""
    with _BREAKERS_LOCK:
        breaker = _BREAKERS.get(run_id)
        if breaker is None:
            breaker = _BREAKERS[run_id] = CircuitBreaker(BreakerSettings.from_env())
            while len(_BREAKERS) > _KEEP_RUNS:
                _BREAKERS.popitem(last=False)
        return breaker


def fail_if_unavailable(breaker: CircuitBreaker, deferred: int, metadata: dict) -> None:
    """End the step red once the breaker opened (call after the writer flushed)."""
    if breaker.is_open:
        raise dg.Failure(description=breaker.summary(deferred), allow_retries=False,
                         metadata={**metadata, "procore_unavailable_since": breaker.reason()})
