"""A circuit breaker over consecutive Procore outages, shared by the write steps of one run.

Without it, a run during a Procore outage retries every record in turn: each call gets
MLC_PROCORE_MAX_ATTEMPTS attempts with backoff, so 300 POs mean minutes of failing calls
and 300 `failed` records. The breaker watches record outcomes instead:

- a failure that says "Procore is not answering" (5xx, a network error, a timeout) on a
  record adds that record to the streak; the same record twice counts once;
- a record Procore accepted, or refused with a 4xx (that is the record's problem, and proves
  Procore answers), ends the streak; holds decided without a call change nothing;
- the breaker opens once `records` different records failed in a row, or sooner once those
  failures used `attempts` Procore calls between at least two records (each call is retried
  with backoff, so two records that exhausted their retries are already ~16 s of outage);
- once open it stays open for the run: writers stop sending and record the records they
  did not try as `deferred`, and the step ends red with `summary()`.

The same object also carries the run's *pause*: when the rate-limit allowance is used up
for longer than a step may wait (MLC_PROCORE_MAX_WAIT_SECONDS), the writers stop sending
in the same way, but that is not an outage: the step ends green and hands the rest over
to a continuation run (procore_writes/continuation.py). `stopped` is either.

Pure Python (no Dagster), so the writers and their unit tests share it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from mlc_dagster.common.env import env_int

OUTAGE = "Procore unavailable"
RATE_LIMITED = "Procore rate limit"
DEFAULT_RECORDS = 3
DEFAULT_ATTEMPTS = 12


def is_outage(exc: BaseException) -> bool:
    """Whether a failure says Procore is not answering, rather than refusing one record.

    5xx and transport failures (no status: network, timeout) count; 429 does not (the
    client paces itself, and a long wait becomes a Dagster retry), nor does any 4xx."""
    status = getattr(exc, "status", "absent")
    if status == "absent":
        return False
    return status is None or (isinstance(status, int) and status >= 500)


@dataclass(frozen=True)
class BreakerSettings:
    records: int = DEFAULT_RECORDS  # 0 = the breaker never opens
    attempts: int = DEFAULT_ATTEMPTS  # 0 = count records only

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BreakerSettings:
        return cls(records=env_int("MLC_PROCORE_BREAKER_RECORDS", DEFAULT_RECORDS, env),
                   attempts=env_int("MLC_PROCORE_BREAKER_ATTEMPTS", DEFAULT_ATTEMPTS, env))


def _now() -> datetime:
    return datetime.now(UTC)


class CircuitBreaker:
    """Opens after consecutive outage failures on different records; never closes again."""

    def __init__(self, settings: BreakerSettings | None = None,
                 clock: Callable[[], datetime] = _now) -> None:
        self.settings = settings or BreakerSettings()
        self.clock = clock
        self._streak: dict[str, int] = {}  # record -> Procore calls its failure used
        self.since: datetime | None = None  # first failure of the current streak
        self.opened_at: datetime | None = None
        self.last_error: str | None = None
        self.paused_until: datetime | None = None  # the rate-limit allowance returns then
        self.pause_cause: str | None = None

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    @property
    def is_paused(self) -> bool:
        return self.paused_until is not None and not self.is_open

    @property
    def stopped(self) -> bool:
        """Whether writers must stop sending: an outage (open) or a rate-limit pause."""
        return self.is_open or self.paused_until is not None

    def pause(self, until: datetime | float, cause: str) -> None:
        """Stop sending until `until` (a datetime or epoch seconds: the rate-limit allowance
        is used up); the first pause's cause wins, later ones only move the time forward."""
        if not isinstance(until, datetime):
            until = datetime.fromtimestamp(until, UTC)
        if self.paused_until is None or until > self.paused_until:
            self.paused_until = until
        self.pause_cause = self.pause_cause or cause

    @property
    def streak(self) -> int:
        """Different records that failed in a row so far."""
        return len(self._streak)

    def failure(self, record: str, error: str, attempts: int = 1) -> bool:
        """An outage failure of `record` (after `attempts` calls); True if this opened it."""
        if self.is_open:
            return False
        if not self._streak:
            self.since = self.clock()
        self.last_error = error
        if record in self._streak:
            return False
        self._streak[record] = max(1, attempts)
        if self._trips():
            self.opened_at = self.clock()
            return True
        return False

    def success(self) -> None:
        """Procore answered for a record (accepted it, or refused it with a 4xx)."""
        if not self.is_open:
            self._streak.clear()
            self.since = None

    def _trips(self) -> bool:
        records, attempts = self.settings.records, self.settings.attempts
        if records <= 0:
            return False
        if len(self._streak) >= records:
            return True
        return attempts > 0 and len(self._streak) >= 2 and sum(self._streak.values()) >= attempts

    def reason(self) -> str:
        """What each deferred record carries: since when, and Procore's last answer (or, when
        paused, that the rate limit stopped it and from when the next run continues)."""
        if self.is_paused:
            until = self.paused_until.strftime("%Y-%m-%d %H:%M:%S UTC")
            return (f"{RATE_LIMITED}: allowance used up, continuing in the next run from {until} "
                    f"({self.pause_cause})")
        since = (self.since or self.opened_at or self.clock()).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{OUTAGE} since {since}: {self.last_error or 'no answer'}"

    def summary(self, deferred: int) -> str:
        """The step's closing message once the breaker opened."""
        records = "record" if deferred == 1 else "records"
        return (f"{self.reason()} ({deferred} {records} deferred; the next run picks them up). "
                f"{self.streak} different record(s) failed in a row, "
                f"{sum(self._streak.values())} Procore call(s), before writes stopped")
