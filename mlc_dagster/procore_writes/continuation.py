"""Hand-over between bounded runs: a long backfill at Procore's rate limit never fails.

At 600 calls an hour a first backfill of 5,000 POs needs about ten hours of allowance. A
write step waits in-process for short pacing waits (up to MLC_PROCORE_MAX_WAIT_SECONDS);
when the allowance is used up for longer than that, or the run reached MLC_MAX_POS_PER_RUN,
it stops sending, records what it did not try as `deferred` (the next run plans them again),
ends green with `continuing` in its metadata, and leaves a *continuation* in the ledger:
when the allowance returns, how many records wait, which run handed over. The sensor
`procore_rate_limit_continuation` (defs/purchase_orders/sensors.py) requests the next run shortly before
that time, tagged with NOT_BEFORE_TAG, and that run's Procore client sends nothing before it
(resources/procore.py), so the hand-over itself never meets a 429.

`Progress` is what a user watching a long run sees: at least once a minute, records written
and remaining, calls left in the rate-limit window, and an ETA.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import dagster as dg

from mlc_dagster.ledger.store import Ledger
from mlc_dagster.resources.breaker import CircuitBreaker
from mlc_dagster.resources.procore import NOT_BEFORE_TAG
from mlc_dagster.settings import ProgressSettings

CURSOR = "procore_continuation"
TRIGGER = "continuation"
LEAD_CAP_SECONDS = 60.0


@dataclass(frozen=True)
class Continuation:
    """Work a run handed over: due from `after` (epoch seconds)."""

    after: float
    reason: str
    remaining: int
    run_id: str | None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> Continuation | None:
        if not text:
            return None
        data = json.loads(text)
        return cls(float(data["after"]), str(data.get("reason") or ""),
                   int(data.get("remaining") or 0), data.get("run_id"))

    @property
    def after_text(self) -> str:
        return utc_text(self.after)


def utc_text(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def read_continuation(store: Ledger) -> Continuation | None:
    return Continuation.from_json(store.get_cursor(CURSOR))


def lead_seconds(max_wait_seconds: float) -> float:
    """How early the next run is requested: it starts, stages and plans while the allowance
    is still out, then waits in-process (at most this long, well under the step's wait cap,
    MLC_PROCORE_MAX_WAIT_SECONDS)."""
    return min(LEAD_CAP_SECONDS, max_wait_seconds / 2)


def waiting_for_allowance(store: Ledger, now: float, lead: float) -> str | None:
    """Why a sensor or schedule should not start a run now: a hand-over is pending and the
    allowance is not back yet (the run would only meet a 429). The continuation run, when
    it comes, stages every change made meanwhile. None when a run may start."""
    continuation = read_continuation(store)
    if continuation is None or now >= continuation.after - lead:
        return None
    return (f"Procore's rate-limit allowance is used up until {continuation.after_text}; the "
            f"continuation run then writes this too ({continuation.remaining} record(s) waiting)")


def continuation_run_request(store: Ledger, now: float, lead: float) -> dg.RunRequest | None:
    """The run that continues a hand-over, once `now` is within `lead` of its time."""
    continuation = read_continuation(store)
    if continuation is None or now < continuation.after - lead:
        return None
    return dg.RunRequest(
        run_key=f"continue:{continuation.run_id}:{continuation.after:.0f}",
        tags={NOT_BEFORE_TAG: f"{continuation.after:.3f}", "mlc/trigger": TRIGGER,
              "mlc/continues_run": str(continuation.run_id or "")})


def hand_over(store: Ledger, breaker: CircuitBreaker, run_id: str, *, deferred: int,
              over_limit: int, clock: Callable[[], float] = time.time) -> dict:
    """Record (or clear) the continuation at the end of a write step; its metadata.

    `deferred`: records this step did not try because the run paused at the rate limit;
    `over_limit`: records beyond the step's per-run cap. A paused run continues when the
    allowance returns, a capped one at once. A step that finished everything clears a
    continuation left by an earlier run, not one another step of this run just recorded.
    """
    now = clock()
    paused = breaker.is_paused
    remaining = (deferred if paused else 0) + over_limit
    if remaining == 0:
        current = read_continuation(store)
        if current is not None and current.run_id != run_id:
            store.set_cursor(CURSOR, "")
        return {"continuing": False}
    after = breaker.paused_until.timestamp() if paused else now
    reason = breaker.reason() if paused else f"{over_limit} record(s) over the per-run limit"
    current = read_continuation(store)
    if current is not None and current.run_id == run_id:  # the other write step of this run
        remaining += current.remaining
        after = max(after, current.after)
    store.set_cursor(CURSOR, Continuation(after, reason, remaining, run_id).to_json())
    return {"continuing": True, "remaining": remaining, "resumes_at": utc_text(after)}


class Progress:
    """'N of M written, R to go; rate limit: calls left until ...; ETA', at most once per
    `settings.every_seconds` (and on demand), through `log`."""

    def __init__(self, noun: str, total: int, log: Callable[[str], None], client=None, *,
                 settings: ProgressSettings = ProgressSettings(),
                 clock: Callable[[], float] = time.time) -> None:
        self.noun = noun
        self.total = total
        self.log = log
        self.client = client
        self.every = settings.every_seconds
        self.clock = clock
        self.started = self.last = clock()
        self.hourly_allowance = settings.hourly_allowance

    def tick(self, done: int, *, force: bool = False) -> None:
        now = self.clock()
        if force or now - self.last >= self.every:
            self.last = now
            self.log(self.text(done, now))

    def text(self, done: int, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        facts = self.facts(done, now)
        parts = [f"{self.noun}: {done:,} of {self.total:,} written, {facts['remaining']:,} to go"]
        if "rate_limit_calls_left" in facts:
            parts.append(f"rate limit: {facts['rate_limit_calls_left']} of "
                         f"{facts['rate_limit_limit']} calls left until "
                         f"{facts['rate_limit_resets_at']}")
        if "eta" in facts:
            parts.append(f"ETA {facts['eta']}")
        return "; ".join(parts)

    def facts(self, done: int, now: float | None = None) -> dict:
        """The same as metadata: remaining, calls left in the window, ETA."""
        now = self.clock() if now is None else now
        out: dict = {"written": done, "remaining": max(0, self.total - done)}
        window = getattr(self.client, "rate_window", None)
        if window is not None:
            out.update({"rate_limit_calls_left": window.remaining,
                        "rate_limit_limit": window.limit,
                        "rate_limit_resets_at": utc_text(window.reset)})
        eta = self.eta(done, now)
        if eta is not None:
            out["eta"] = utc_text(eta)
        return out

    def eta(self, done: int, now: float) -> float | None:
        """From this run's pace, never faster than the hourly allowance allows (a run that
        spends an hour's calls in four minutes would otherwise promise the impossible)."""
        remaining = self.total - done
        elapsed = now - self.started
        if remaining <= 0 or done <= 0 or elapsed <= 0:
            return None
        calls = getattr(getattr(self.client, "stats", None), "total_calls", 0) or done
        calls_per_record = max(1.0, calls / done)
        pace = done / elapsed  # records per second
        if self.hourly_allowance > 0:
            pace = min(pace, self.hourly_allowance / 3600 / calls_per_record)
        return now + remaining / pace
