"""Retry, backoff, pacing and audit records, with a scripted transport and a fake clock."""

from __future__ import annotations

import email.utils
from collections.abc import Callable

import httpx
import pytest

from mlc_dagster.resources.http_core import (
    ClientOptions,
    RatePacer,
    RequestRecord,
    RetryPolicy,
    RetrySender,
    Secret,
    WaitTooLong,
    compute_wait,
    is_retryable,
    parse_retry_after,
    path_template,
    redact,
)

NOW = 1_780_000_000.0


class FakeClock:
    """Wall clock and sleep in one: sleeping advances time, and every sleep is recorded."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


Step = httpx.Response | type[Exception] | Callable[[httpx.Request], httpx.Response]


class Script:
    """A MockTransport handler that plays back responses/exceptions in order."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, type) and issubclass(step, Exception):
            raise step("scripted failure", request=request)
        return step(request) if callable(step) else step


def sender(script: Script, clock: FakeClock, **options) -> tuple[RetrySender, list[RequestRecord]]:
    records: list[RequestRecord] = []
    client = httpx.Client(transport=httpx.MockTransport(script))
    options.setdefault("retry", RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=8.0))
    return RetrySender(client, "test", sleep=clock.sleep, clock=clock, on_request=records.append,
                       rng=lambda: 0.5, **options), records


def get(url: str = "https://api.example.com/rest/v1.0/projects?company_id=1"):
    return lambda: httpx.Request("GET", url)


# --- compute_wait -------------------------------------------------------------------

def test_retry_after_seconds_is_honoured_exactly_on_429_and_503():
    for status in (429, 503):
        response = httpx.Response(status, headers={"Retry-After": "7"})
        assert compute_wait(response, 1, now=NOW) == 7.0


def test_retry_after_http_date():
    when = email.utils.formatdate(NOW + 30, usegmt=True)
    assert compute_wait(httpx.Response(429, headers={"Retry-After": when}), 1, now=NOW) == 30.0


def test_429_without_retry_after_waits_for_rate_limit_reset_plus_jitter():
    response = httpx.Response(429, headers={"X-Rate-Limit-Reset": str(int(NOW + 4))})
    policy = RetryPolicy(base_delay=1.0)
    assert compute_wait(response, 1, policy, now=NOW, rng=lambda: 0.0) == 4.0
    assert compute_wait(response, 1, policy, now=NOW, rng=lambda: 0.99) == pytest.approx(4.99)


def test_other_failures_back_off_exponentially_with_full_jitter_and_a_cap():
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    waits = [compute_wait(httpx.Response(500), n, policy, now=NOW, rng=lambda: 1.0)
             for n in range(1, 7)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert compute_wait(httpx.Response(502), 3, policy, now=NOW, rng=lambda: 0.25) == 1.0
    timeout = httpx.ReadTimeout("slow")
    assert compute_wait(timeout, 2, policy, now=NOW, rng=lambda: 0.5) == 1.0
    # A 429 with nothing to go on also backs off.
    assert compute_wait(httpx.Response(429), 1, policy, now=NOW, rng=lambda: 1.0) == 1.0


def test_unparseable_retry_after_falls_back_to_backoff():
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after("-5", NOW) == 0.0
    response = httpx.Response(503, headers={"Retry-After": "soon"})
    assert compute_wait(response, 1, RetryPolicy(base_delay=2.0), now=NOW, rng=lambda: 1.0) == 2.0


def test_non_idempotent_requests_are_retried_only_when_certainly_not_processed():
    assert is_retryable(httpx.Response(500))
    assert not is_retryable(httpx.Response(500), idempotent=False)
    assert is_retryable(httpx.Response(429), idempotent=False)
    assert is_retryable(httpx.Response(503), idempotent=False)
    assert is_retryable(httpx.RemoteProtocolError("dropped"))
    assert not is_retryable(httpx.RemoteProtocolError("dropped"), idempotent=False)
    assert not is_retryable(httpx.ReadTimeout("slow"), idempotent=False)
    assert is_retryable(httpx.ConnectError("refused"), idempotent=False)
    for status in (400, 401, 403, 404, 409, 422):
        assert not is_retryable(httpx.Response(status))


def test_retry_policy_needs_an_attempt():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


# --- RetrySender ----------------------------------------------------------------------

def test_500_burst_then_success_counts_attempts_and_waits():
    clock = FakeClock()
    script = Script(httpx.Response(500), httpx.Response(502), httpx.Response(500), httpx.Response(200))
    send, records = sender(script, clock)
    assert send.send(get()).status_code == 200
    assert [r.attempt for r in records] == [1, 2, 3, 4]
    assert [r.status for r in records] == [500, 502, 500, 200]
    assert clock.sleeps == [0.5, 1.0, 2.0]  # full jitter at rng=0.5
    assert send.stats.retries == 3
    assert send.stats.waited_seconds == 3.5


def test_gives_up_after_max_attempts_and_returns_the_last_response():
    clock = FakeClock()
    send, records = sender(Script(httpx.Response(503)), clock)
    assert send.send(get()).status_code == 503
    assert len(records) == 5


def test_timeouts_and_dropped_connections_are_retried():
    clock = FakeClock()
    script = Script(httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ConnectError, httpx.Response(200))
    send, records = sender(script, clock)
    assert send.send(get()).status_code == 200
    assert [r.error for r in records] == ["ReadTimeout", "RemoteProtocolError", "ConnectError", None]


def test_transport_error_on_the_last_attempt_is_raised():
    clock = FakeClock()
    send, records = sender(Script(httpx.ReadTimeout), clock, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(httpx.ReadTimeout):
        send.send(get())
    assert len(records) == 3


def test_post_is_not_repeated_after_a_dropped_connection():
    clock = FakeClock()
    send, records = sender(Script(httpx.RemoteProtocolError, httpx.Response(201)), clock)
    with pytest.raises(httpx.RemoteProtocolError):
        send.send(lambda: httpx.Request("POST", "https://api.example.com/x"), idempotent=False)
    assert len(records) == 1


def test_4xx_is_returned_without_retry():
    clock = FakeClock()
    send, records = sender(Script(httpx.Response(422), httpx.Response(200)), clock)
    assert send.send(get()).status_code == 422
    assert len(records) == 1 and clock.sleeps == []


def test_wait_too_long_when_retry_after_exceeds_the_cap():
    clock = FakeClock()
    script = Script(httpx.Response(429, headers={"Retry-After": "600"}), httpx.Response(200))
    send, records = sender(script, clock, max_wait_seconds=120)
    with pytest.raises(WaitTooLong) as caught:
        send.send(get())
    assert caught.value.seconds == 600
    assert clock.sleeps == [] and len(records) == 1


def test_request_records_carry_no_query_string_or_headers():
    clock = FakeClock()
    script = Script(httpx.Response(200, headers={"x-request-id": "req-1"}))
    send, records = sender(script, clock)
    send.send(lambda: httpx.Request("GET", "https://api.example.com/rest/v1.0/vendors?token=abc",
                                    headers={"Authorization": "Bearer abc"}))
    record = records[0]
    assert (record.system, record.method, record.path, record.status, record.request_id) == \
        ("test", "GET", "/rest/v1.0/vendors", 200, "req-1")
    assert "abc" not in repr(record)


def test_stats_count_calls_by_path_template_and_429s():
    clock = FakeClock()
    script = Script(httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(200))
    send, _ = sender(script, clock)
    send.send(lambda: httpx.Request("PATCH", "https://x/rest/v1.0/purchase_order_contracts/562949953500001/line_items/sync"))
    assert send.stats.calls == {("PATCH", "/rest/v1.0/purchase_order_contracts/{id}/line_items/sync"): 2}
    assert send.stats.rate_limited == 1
    assert send.stats.total_calls == 2


def test_path_template():
    assert path_template("/api1/x3/erp/SEED/PORDER('PO1')") == "/api1/x3/erp/SEED/PORDER('{key}')"
    assert path_template("/rest/v1.0/projects/12/billing_periods") == "/rest/v1.0/projects/{id}/billing_periods"
    assert path_template("/rest/v1.0/projects") == "/rest/v1.0/projects"


# --- pacing ---------------------------------------------------------------------------

def rate_headers(limit: int, remaining: int, reset: float) -> httpx.Headers:
    return httpx.Headers({"X-Rate-Limit-Limit": str(limit), "X-Rate-Limit-Remaining": str(remaining),
                          "X-Rate-Limit-Reset": str(int(reset))})


def test_pacer_adds_no_delay_while_budget_is_plentiful():
    clock = FakeClock()
    pacer = RatePacer(clock=clock, margin=0.0)
    pacer.observe(rate_headers(25, 20, NOW + 8))
    assert pacer.delay() == 0.0


def test_pacer_spreads_the_remaining_budget_until_reset():
    clock = FakeClock()
    pacer = RatePacer(clock=clock, margin=0.0)
    pacer.observe(rate_headers(25, 4, NOW + 8))
    assert pacer.delay() == 2.0
    clock.now += 0.5  # time spent elsewhere counts towards the pause
    assert pacer.delay() == 1.5
    pacer.observe(rate_headers(600, 100, NOW + 1000))  # hourly budget low: 999.5 s for 100 calls
    assert pacer.delay() == pytest.approx(9.995)


def test_pacer_waits_for_the_reset_when_nothing_remains():
    clock = FakeClock()
    pacer = RatePacer(clock=clock, margin=0.5)
    pacer.observe(rate_headers(25, 0, NOW + 6))
    assert pacer.delay() == 6.5


def test_pacer_ignores_responses_without_rate_headers():
    clock = FakeClock()
    pacer = RatePacer(clock=clock)
    pacer.observe(rate_headers(25, 0, NOW + 6))
    pacer.observe(httpx.Headers({"Content-Type": "application/json"}))
    assert pacer.delay() > 0


class SpikeLimitedServer:
    """A fixed-window limiter like Procore's spike limit, reporting the standard headers."""

    def __init__(self, clock: FakeClock, limit: int = 25, window: float = 10.0) -> None:
        self.clock, self.limit, self.window = clock, limit, window
        self.window_start = clock.now
        self.used = 0
        self.rejected = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.clock.now += 0.02  # each call takes a little time
        if self.clock.now >= self.window_start + self.window:
            self.window_start, self.used = self.clock.now, 0
        reset = int(self.window_start + self.window) + 1
        if self.used >= self.limit:
            self.rejected += 1
            return httpx.Response(429, headers=rate_headers(self.limit, 0, reset))
        self.used += 1
        return httpx.Response(200, headers=rate_headers(self.limit, self.limit - self.used, reset))


def test_pacing_keeps_a_long_run_under_the_spike_limit():
    clock = FakeClock()
    server = SpikeLimitedServer(clock)
    send, _ = sender(Script(server), clock, pacer=RatePacer(clock=clock))
    for _ in range(200):
        assert send.send(get()).status_code == 200
    assert server.rejected == 0
    # 200 calls at 25 per 10 s cannot take less than ~70 s; pacing should not take much more.
    elapsed = clock.now - NOW
    assert 70 <= elapsed <= 110


def test_without_pacing_the_same_run_hits_429s():
    clock = FakeClock()
    server = SpikeLimitedServer(clock)
    send, _ = sender(Script(server), clock, retry=RetryPolicy(max_attempts=10, base_delay=0.1))
    for _ in range(200):
        send.send(get())
    assert server.rejected > 5


def test_a_pacing_wait_beyond_the_cap_raises_wait_too_long():
    clock = FakeClock()
    script = Script(httpx.Response(200, headers=rate_headers(600, 0, NOW + 1800)))
    send, _ = sender(script, clock, pacer=RatePacer(clock=clock), max_wait_seconds=120)
    send.send(get())
    with pytest.raises(WaitTooLong) as caught:
        send.send(get())
    assert caught.value.seconds > 1700


# --- secrets ------------------------------------------------------------------------------

def test_secret_never_shows_itself():
    secret = Secret("hunter2-very-secret")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret) and "hunter2" not in f"{secret}"
    assert secret.reveal() == "hunter2-very-secret"


def test_redact_replaces_every_secret():
    text = "token abc123 and secret s3cr3t and abc123 again"
    assert redact(text, ["abc123", Secret("s3cr3t"), None, ""]) == \
        "token [REDACTED] and secret [REDACTED] and [REDACTED] again"


def test_pacer_sends_a_low_budget_now_rather_than_spreading_it_beyond_the_cap():
    """At 600/h the last 25 calls spread over ~50 min would cost > 120 s each: a step that
    will not wait that long sends them now, and stops only when nothing remains."""
    clock = FakeClock()
    pacer = RatePacer(clock=clock, margin=0.0)
    pacer.observe(rate_headers(600, 25, NOW + 3000))
    assert pacer.delay() == pytest.approx(120.0)
    assert pacer.delay(cap=119.0) == 0.0
    pacer.observe(rate_headers(600, 0, NOW + 3000))
    assert pacer.delay(cap=119.0) == pytest.approx(3000.0)


def test_pacer_holds_until_a_given_time_before_any_header():
    clock = FakeClock()
    pacer = RatePacer(clock=clock, margin=0.0)
    pacer.hold_until(NOW + 30)
    assert pacer.delay(cap=1.0) == pytest.approx(30.0)
    clock.now += 30
    assert pacer.delay() == 0.0


def test_a_pacing_stop_says_when_it_may_resume():
    clock = FakeClock()
    script = Script(httpx.Response(200, headers=rate_headers(600, 0, NOW + 1800)))
    send, _ = sender(script, clock, pacer=RatePacer(clock=clock, margin=0.0), max_wait_seconds=120)
    send.send(get())
    with pytest.raises(WaitTooLong) as caught:
        send.send(get())
    assert caught.value.pacing and caught.value.resume_at == pytest.approx(NOW + 1800)


# --- client options and auth flows ------------------------------------------------------

class SendAgainOn401(httpx.Auth):
    """Sends a refused request once more, as a token-renewing flow does."""

    def auth_flow(self, request: httpx.Request):
        response = yield request
        if response.status_code == 401:
            yield request


def test_an_auth_flows_earlier_exchanges_are_recorded_as_sent():
    clock, records = FakeClock(), []
    script = Script(httpx.Response(401), httpx.Response(200))
    client = httpx.Client(transport=httpx.MockTransport(script), auth=SendAgainOn401())
    retry_sender = RetrySender(client, "test", sleep=clock.sleep, clock=clock,
                               on_request=records.append)
    assert retry_sender.send(get()).status_code == 200
    assert [(r.status, r.attempt, r.path) for r in records] == [
        (401, 1, "/rest/v1.0/projects"), (200, 1, "/rest/v1.0/projects")]
    assert retry_sender.stats.total_calls == 2 and retry_sender.stats.retries == 0


def test_client_options_make_the_sender():
    clock, records = FakeClock(), []
    options = ClientOptions(retry=RetryPolicy(max_attempts=2, base_delay=1.0, jitter=False),
                            sleep=clock.sleep, clock=clock, on_request=records.append)
    script = Script(httpx.Response(503), httpx.Response(200))
    retry_sender = options.sender(httpx.Client(transport=httpx.MockTransport(script)), "test")
    assert retry_sender.send(get()).status_code == 200
    assert clock.sleeps == [1.0] and [r.status for r in records] == [503, 200]


def test_both_clients_take_the_client_options_with_their_own_timeout():
    from mlc_dagster.resources.procore_client import ProcoreClient
    from mlc_dagster.resources.sage_x3_client import SageX3RestClient

    procore = ProcoreClient("https://login.example.com", "https://api.example.com", "id", "s", 1)
    x3 = SageX3RestClient("https://x3.example.com", "SEED", "user", "password")
    assert (procore._http.timeout.read, x3._http.timeout.read) == (30.0, 60.0)
    assert SageX3RestClient("https://x3.example.com", "SEED", "user", "password",
                            timeout=5.0)._http.timeout.read == 5.0
    with pytest.raises(TypeError, match="timout"):
        ProcoreClient("https://login.example.com", "https://api.example.com", "id", "s", 1,
                      timout=5.0)
    with pytest.raises(TypeError, match="timout"):
        SageX3RestClient("https://x3.example.com", "SEED", "user", "password", timout=5.0)
