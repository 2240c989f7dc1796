"""Retry, backoff, rate pacing and audit records shared by the Procore and Sage X3 clients.

Plain Python on top of httpx, with no Dagster import, so that the hard parts of talking to
flaky, rate-limited APIs can be tested with `httpx.MockTransport` and a fake clock.

- `RetrySender.send()` runs one logical request: it paces by the server's rate-limit
  headers, retries what is safe to retry, and reports every attempt as a `RequestRecord`.
- `compute_wait()` decides how long to wait before the next attempt. `Retry-After` wins,
  then `X-Rate-Limit-Reset` (429 only), then exponential backoff with full jitter.
- Waits longer than a cap raise `WaitTooLong` rather than blocking a worker for minutes;
  the write steps hand the rest of their work over to a later run (procore_writes/continuation.py).
- Nothing here ever sees a header value in its output: records carry method, path (no
  query string), status and timings only.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx

logger = logging.getLogger("mlc_dagster.http")

# Statuses that mean "try again later". 429 and 503 also mean the request was not processed.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
NOT_PROCESSED_STATUSES = frozenset({429, 503})
# Transport failures where the request certainly never reached the server.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a request gets and how the backoff between them grows."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Exponential backoff for `attempt` (1-based), with full jitter when enabled."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return ceiling * rng() if self.jitter else ceiling


class WaitTooLong(Exception):
    """A retry or pacing wait is longer than the caller is willing to block for.

    `seconds` is how long to wait before trying again, from `raised_at` (epoch seconds, the
    sender's clock); callers reschedule the work instead of sleeping. Nothing was sent by
    the attempt that raised it.
    """

    def __init__(self, seconds: float, reason: str = "", *, raised_at: float | None = None,
                 pacing: bool = False) -> None:
        self.seconds = seconds
        self.reason = reason
        self.raised_at = time.time() if raised_at is None else raised_at
        self.pacing = pacing  # True: the rate-limit allowance is used up (not an error)
        super().__init__(f"need to wait {seconds:.1f}s before retrying"
                         + (f": {reason}" if reason else ""))

    @property
    def resume_at(self) -> float:
        """Epoch seconds from which the wait is over."""
        return self.raised_at + self.seconds


class WriteRefused(PermissionError):
    """A request stopped by a client's guard before it was sent: MLC_WRITE_MODE=preview, or a
    write that is not on the client's allow-list."""


# Looks at a request about to be sent: None lets it go, a text refuses it (the reason).
RequestGuard = Callable[[httpx.Request], "str | None"]

READ_METHODS = frozenset({"GET", "HEAD"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_ID_PLACEHOLDER = re.escape("{id}")


@dataclass(frozen=True)
class Endpoint:
    """One write a client may send: a method and a path template in which `{id}` stands for
    one numeric id segment (`PATCH /rest/v1.0/purchase_order_contracts/{id}`)."""

    method: str
    template: str

    def __post_init__(self) -> None:
        if self.method not in WRITE_METHODS:
            raise ValueError(f"an allow-listed write needs one of {sorted(WRITE_METHODS)}, "
                             f"got {self.method!r}")
        if not self.template.startswith("/") or "?" in self.template:
            raise ValueError(f"a path template starts with / and has no query: {self.template!r}")

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """`"PATCH /rest/v1.0/vendors/sync"` -> Endpoint("PATCH", "/rest/v1.0/vendors/sync")."""
        method, _, template = text.strip().partition(" ")
        return cls(method, template.strip())

    def matches(self, method: str, path: str) -> bool:
        """The whole path matches, each `{id}` being digits only (no `..`, no extra segment)."""
        return method == self.method \
            and _template_pattern(self.template).fullmatch(path) is not None

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


@functools.lru_cache(maxsize=256)
def _template_pattern(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(_ID_PLACEHOLDER, r"[0-9]+"))


def write_allow_list(system: str, api_url: str, writes: Iterable[Endpoint], *,
                     token_url: str | None = None, where: str = "") -> RequestGuard:
    """A guard that lets reads (GET/HEAD) and the OAuth token POST at `token_url` go, and any
    other request only when it goes to `api_url`'s host and its path matches one of `writes`
    exactly (plain characters: a percent-encoded path never matches). Anything else is
    refused, naming the method and path. `where` names the list for the message."""
    allowed = tuple(writes)
    api = httpx.URL(api_url)
    prefix = api.path.rstrip("/")
    token = httpx.URL(token_url) if token_url else None

    def guard(request: httpx.Request) -> str | None:
        method, url = request.method, request.url
        if method in READ_METHODS:
            return None
        if token is not None and method == "POST" and url.copy_with(query=None) == token:
            return None
        path = url.path
        plain = url.raw_path.split(b"?", 1)[0] == path.encode("ascii", "replace")
        if (plain and (url.scheme, url.host, url.port) == (api.scheme, api.host, api.port)
                and path.startswith(f"{prefix}/")
                and any(e.matches(method, path[len(prefix):]) for e in allowed)):
            return None
        return (f"refused {system} {method} {path} before sending it: not one of the "
                f"{len(allowed)} allow-listed writes{f' ({where})' if where else ''}; "
                "GL and accounting endpoints are never written")

    return guard


class Secret:
    """A secret string that never shows itself in repr(), str() or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def redact(text: str, secrets: Iterable[str | Secret | None]) -> str:
    """Replace every occurrence of each secret in `text` with `[REDACTED]`."""
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value:
            text = text.replace(value, "[REDACTED]")
    return text


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _header_number(headers: httpx.Headers, name: str) -> float | None:
    try:
        return float(headers[name])
    except (KeyError, ValueError):
        return None


def compute_wait(
    response_or_exc: httpx.Response | BaseException,
    attempt: int,
    policy: RetryPolicy | None = None,
    *,
    now: float | None = None,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before attempt `attempt + 1`.

    429/503 with `Retry-After` -> exactly that; 429 with `X-Rate-Limit-Reset` -> until the
    reset, plus up to `base_delay` of jitter so parallel clients don't stampede; anything
    else (5xx, timeouts, dropped connections) -> exponential backoff with full jitter.
    """
    policy = policy or RetryPolicy()
    now = time.time() if now is None else now
    if isinstance(response_or_exc, httpx.Response):
        response = response_or_exc
        if response.status_code in NOT_PROCESSED_STATUSES:
            retry_after = parse_retry_after(response.headers.get("retry-after"), now)
            if retry_after is not None:
                return retry_after
        if response.status_code == 429:
            reset = _header_number(response.headers, "x-rate-limit-reset")
            if reset is not None:
                jitter = rng() * policy.base_delay if policy.jitter else 0.0
                return max(0.0, reset - now) + jitter
    return policy.backoff(attempt, rng)


def is_retryable(response_or_exc: httpx.Response | BaseException, idempotent: bool = True) -> bool:
    """Whether a failed attempt may be repeated.

    A non-idempotent request (a POST that creates something) is repeated only when the
    server certainly did not act on it: 429/503, or a connection that never opened.
    """
    if isinstance(response_or_exc, httpx.Response):
        statuses = RETRYABLE_STATUSES if idempotent else NOT_PROCESSED_STATUSES
        return response_or_exc.status_code in statuses
    if idempotent:
        return isinstance(response_or_exc, httpx.TransportError)
    return isinstance(response_or_exc, NOT_SENT_ERRORS)


class RatePacer:
    """Spreads the remaining rate-limit budget until the window resets.

    Reads `X-Rate-Limit-Limit/Remaining/Reset` after every response. While plenty of budget
    remains it adds no delay; once `remaining` falls to `low_fraction` of the limit (or
    `min_remaining`), the next call is delayed by `(reset - now) / remaining`, and with
    nothing left until `reset + margin`. A long sync therefore runs at the allowed rate
    instead of bursting into 429s.
    """

    def __init__(self, *, low_fraction: float = 0.2, min_remaining: int = 3, margin: float = 0.5,
                 clock: Callable[[], float] = time.time) -> None:
        self.low_fraction = low_fraction
        self.min_remaining = min_remaining
        self.margin = margin
        self.clock = clock
        self._not_before = 0.0
        self._spread = False  # whether _not_before only spreads a low (not empty) budget
        self._held_until = 0.0
        self._lock = threading.Lock()
        self.window: RateWindow | None = None  # the last rate-limit headers seen

    def hold_until(self, epoch_seconds: float) -> None:
        """Send nothing before `epoch_seconds`: a run that continues a handed-over backfill
        knows when the allowance returns before it has seen a single header."""
        with self._lock:
            self._held_until = max(self._held_until, epoch_seconds)

    def observe(self, headers: httpx.Headers) -> None:
        limit = _header_number(headers, "x-rate-limit-limit")
        remaining = _header_number(headers, "x-rate-limit-remaining")
        reset = _header_number(headers, "x-rate-limit-reset")
        if limit is None or remaining is None or reset is None:
            return
        self.window = RateWindow(int(limit), int(remaining), reset)
        now = self.clock()
        until_reset = max(0.0, reset - now) + self.margin
        spread = False
        if remaining <= 0:
            not_before = now + until_reset
        elif remaining <= max(self.min_remaining, limit * self.low_fraction):
            not_before, spread = now + until_reset / remaining, True
        else:
            not_before = 0.0
        with self._lock:
            self._not_before, self._spread = not_before, spread

    def delay(self, cap: float | None = None) -> float:
        """Seconds to sleep before the next request may be sent.

        A spreading delay (budget low but not gone) longer than `cap` is dropped: the calls
        left are sent now rather than given up by a caller that will not wait that long (at
        600/h, spreading the last 25 calls over the hour would cost ~4 % of every hour of a
        backfill). Gone budget and `hold_until` always count."""
        with self._lock:
            now = self.clock()
            spread = max(0.0, self._not_before - now)
            if self._spread and cap is not None and spread > cap:
                spread = 0.0
            return max(spread, self._held_until - now, 0.0)


@dataclass(frozen=True)
class RateWindow:
    """What the last response said of the rate-limit window (X-Rate-Limit-*), for progress."""

    limit: int
    remaining: int
    reset: float  # epoch seconds


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP attempt, for the audit hook. Never holds headers, bodies or query strings."""

    system: str
    method: str
    path: str
    status: int | None
    duration_ms: float
    attempt: int
    request_id: str | None
    waited_s: float
    error: str | None = None


_ID_SEGMENT = re.compile(r"/\d+(?=/|$)")
_KEY_SEGMENT = re.compile(r"\('[^/]*'\)")


def path_template(path: str) -> str:
    """`/rest/v1.0/purchase_order_contracts/5629/line_items` -> `.../{id}/line_items`."""
    return _KEY_SEGMENT.sub("('{key}')", _ID_SEGMENT.sub("/{id}", path))


@dataclass
class CallStats:
    """Counters for benchmarks and run metadata: calls per (method, path template), 429s, waits."""

    calls: Counter = field(default_factory=Counter)
    rate_limited: int = 0
    retries: int = 0
    waited_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def count(self, method: str, path: str, status: int | None) -> None:
        with self._lock:
            self.calls[(method, path_template(path))] += 1
            if status == 429:
                self.rate_limited += 1

    def add_wait(self, seconds: float, retry: bool) -> None:
        with self._lock:
            self.waited_seconds += seconds
            self.retries += int(retry)


class RetrySender:
    """Sends requests with pacing, retries and audit records; owned by one API client.

    `build` is called once per attempt so that every attempt carries fresh credentials.
    """

    def __init__(
        self,
        client: httpx.Client,
        system: str,
        *,
        retry: RetryPolicy | None = None,
        max_wait_seconds: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        pacer: RatePacer | None = None,
        on_request: Callable[[RequestRecord], None] | None = None,
        should_retry: Callable[[httpx.Response, bool], bool] | None = None,
        rng: Callable[[], float] = random.random,
        guard: RequestGuard | None = None,
    ) -> None:
        self.client = client
        self.guards: list[RequestGuard] = [guard] if guard is not None else []
        self.system = system
        self.retry = retry or RetryPolicy()
        self.max_wait_seconds = max_wait_seconds
        self.sleep = sleep
        self.clock = clock
        self.pacer = pacer
        self.on_request = on_request
        self.should_retry = should_retry or is_retryable
        self.rng = rng
        self.stats = CallStats()

    def send(self, build: Callable[[], httpx.Request], *, idempotent: bool = True
             ) -> httpx.Response:
        """One logical request: up to `retry.max_attempts` attempts, paced and recorded.

        Returns the last response (the caller decides what a 4xx/5xx means) or raises the
        last transport error; raises `WriteRefused`, sending nothing, when the guard refuses.
        """
        attempt, waited = 1, 0.0
        while True:
            waited += self._pace()
            request = build()
            refusal = self.refusal(request)
            if refusal:
                raise WriteRefused(refusal)
            outcome = self._attempt(request, attempt, waited)
            last = attempt == self.retry.max_attempts
            if isinstance(outcome, httpx.Response):
                if last or not self.should_retry(outcome, idempotent):
                    return outcome
                what = str(outcome.status_code)
            else:
                if last or not is_retryable(outcome, idempotent):
                    raise outcome
                what = type(outcome).__name__
            waited = compute_wait(outcome, attempt, self.retry, now=self.clock(), rng=self.rng)
            reason = f"{request.method} {request.url.path} -> {what}"
            logger.warning("%s: %s; retrying in %.2fs (attempt %d of %d)", self.system, reason,
                           waited, attempt + 1, self.retry.max_attempts)
            self._wait(waited, reason, retry=True)
            attempt += 1

    def add_guard(self, guard: RequestGuard) -> None:
        """One more guard; guards compose (the first refusal wins), none is ever replaced."""
        self.guards.append(guard)

    def refusal(self, request: httpx.Request) -> str | None:
        """Why a guard refuses `request`, or None when every guard lets it go."""
        return next((reason for guard in self.guards if (reason := guard(request))), None)

    def _pace(self) -> float:
        pause = self.pacer.delay(cap=self.max_wait_seconds) if self.pacer is not None else 0.0
        if pause > 0:
            self._wait(pause, "rate-limit allowance used up", retry=False)
        return pause

    def _attempt(self, request: httpx.Request, attempt: int, waited: float
                 ) -> httpx.Response | httpx.TransportError:
        started = time.perf_counter()
        try:
            response = self.client.send(request)
        except httpx.TransportError as exc:
            self._record(request, None, _ms_since(started), attempt, waited, type(exc).__name__)
            return exc
        # An auth flow may have sent the request more than once (a 401 answered with a new
        # token): the earlier exchanges are in `history`, and each is recorded as sent.
        earlier_ms = 0.0
        for earlier in response.history:
            duration_ms = _elapsed_ms(earlier)
            earlier_ms += duration_ms
            self._record(earlier.request, earlier, duration_ms, attempt, waited, None)
            waited = 0.0
        self._record(request, response, _ms_since(started) - earlier_ms, attempt, waited, None)
        if self.pacer is not None:
            self.pacer.observe(response.headers)
        return response

    def _wait(self, seconds: float, reason: str, *, retry: bool) -> None:
        if seconds > self.max_wait_seconds:
            raise WaitTooLong(seconds, f"{self.system}: {reason}", raised_at=self.clock(),
                              pacing=not retry)
        self.stats.add_wait(seconds, retry)
        self.sleep(seconds)

    def _record(self, request: httpx.Request, response: httpx.Response | None,
                duration_ms: float, attempt: int, waited: float, error: str | None) -> None:
        status = response.status_code if response is not None else None
        path = request.url.path
        self.stats.count(request.method, path, status)
        if self.on_request is None:
            return
        self.on_request(RequestRecord(
            system=self.system, method=request.method, path=path, status=status,
            duration_ms=round(max(duration_ms, 0.0), 2), attempt=attempt,
            request_id=response.headers.get("x-request-id") if response is not None else None,
            waited_s=round(waited, 3), error=error,
        ))


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _elapsed_ms(response: httpx.Response) -> float:
    """How long httpx says an exchange took; 0 when it cannot tell (a body handed over
    whole, as by MockTransport, is never streamed and closed, so it is never timed)."""
    try:
        return response.elapsed.total_seconds() * 1000
    except RuntimeError:
        return 0.0


@dataclass(frozen=True)
class ClientOptions:
    """The keyword options every API client takes: how long a call may take, how it is
    retried and paced, where it is sent, and who hears of each attempt. One definition, so
    the Procore and X3 clients take the same options with the same defaults."""

    timeout: float = 30.0
    retry: RetryPolicy | None = None
    max_wait_seconds: float = 120.0
    verify: bool = True
    transport: httpx.BaseTransport | None = None
    on_request: Callable[[RequestRecord], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time

    def sender(self, client: httpx.Client, system: str, *,
               pacer: RatePacer | None = None,
               should_retry: Callable[[httpx.Response, bool], bool] | None = None,
               ) -> RetrySender:
        """The RetrySender of a client built with these options."""
        return RetrySender(client, system, retry=self.retry,
                           max_wait_seconds=self.max_wait_seconds, sleep=self.sleep,
                           clock=self.clock, pacer=pacer, on_request=self.on_request,
                           should_retry=should_retry)


class HttpClientBase:
    """What every API client shares: call statistics, close(), and `with` support.

    Subclasses set `_http` (an httpx.Client) and `_sender` (a RetrySender, from
    `ClientOptions.sender`).
    """

    _http: httpx.Client
    _sender: RetrySender

    @property
    def stats(self) -> CallStats:
        return self._sender.stats

    def refuse_requests(self, guard: RequestGuard) -> None:
        """From now on every request also passes `guard`; a refused one raises `WriteRefused`
        and is never sent (the preview's read-only clients). It adds to the client's own
        guards (the Procore write allow-list), never replaces them."""
        self._sender.add_guard(guard)

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
