"""ProcoreClient against httpx.MockTransport: OAuth, retries, paging, batch sync, secrets."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest

from mlc_dagster.common.write_mode import procore_read_only
from mlc_dagster.resources import procore_client
from mlc_dagster.resources.http_core import (
    Endpoint,
    RequestRecord,
    RetryPolicy,
    WaitTooLong,
    WriteRefused,
    write_allow_list,
)
from mlc_dagster.resources.procore_client import (
    PROCORE_WRITES,
    ProcoreAuthError,
    ProcoreClient,
    ProcoreError,
    ProcoreWriteForbidden,
    SyncResult,
)
from mlc_dagster_tests.conftest import sandbox_calls
from mlc_dagster_tests.resources.test_http_core import FakeClock
from mlc_sandbox.seed import COMPANY_ID as SANDBOX_COMPANY_ID
from mlc_sandbox.seed import SANDBOX_CREDENTIALS

LOGIN = "https://login.example.com"
API = "https://api.example.com"
SECRET = "procore-secret-do-not-leak-77"
COMPANY = 562949953421312


class FakeProcore:
    """Token endpoint plus scripted API routes; every request is kept for assertions."""

    def __init__(self, expires_in: int = 5400) -> None:
        self.expires_in = expires_in
        self.tokens_issued = 0
        self.token_responses: list[httpx.Response] = []
        self.routes: dict[str, list] = {}
        self.fallback: Callable[[httpx.Request], httpx.Response] | None = None
        self.requests: list[httpx.Request] = []

    def route(self, key: str, *steps) -> None:
        """`key` is "METHOD /path"; steps are responses, exception classes or callables."""
        self.routes[key] = list(steps)

    @property
    def api_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path != "/oauth/token"]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/oauth/token":
            if self.token_responses:
                return self.token_responses.pop(0)
            self.tokens_issued += 1
            return httpx.Response(200, json={"access_token": f"token-{self.tokens_issued}",
                                             "token_type": "bearer", "expires_in": self.expires_in,
                                             "created_at": 0})
        steps = self.routes.get(f"{request.method} {request.url.path}")
        if steps is None:
            return self.fallback(request) if self.fallback else httpx.Response(404, json={"errors": "not found"})
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        if isinstance(step, type) and issubclass(step, Exception):
            raise step("scripted failure", request=request)
        return step(request) if callable(step) else step


def make_client(fake: FakeProcore, clock: FakeClock | None = None,
                records: list[RequestRecord] | None = None, **options) -> ProcoreClient:
    clock = clock or FakeClock()
    options.setdefault("retry", RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=1.0))
    return ProcoreClient(LOGIN, API, "client-id", SECRET, COMPANY,
                         transport=httpx.MockTransport(fake), sleep=clock.sleep, clock=clock,
                         on_request=records.append if records is not None else None, **options)


def ok(body=None, **headers) -> httpx.Response:
    return httpx.Response(200, json=body if body is not None else [], headers=headers)


# --- OAuth ------------------------------------------------------------------------------

def test_token_is_reused_and_sent_with_the_company_header():
    fake = FakeProcore()
    fake.route("GET /rest/v1.0/projects", ok([{"id": 1}]))
    client = make_client(fake)
    for _ in range(3):
        client.get_json("/rest/v1.0/projects", {"company_id": COMPANY})
    assert fake.tokens_issued == 1
    for request in fake.api_requests:
        assert request.headers["Authorization"] == "Bearer token-1"
        assert request.headers["Procore-Company-Id"] == str(COMPANY)
    token_form = parse_qs(fake.requests[0].content.decode())
    assert token_form["grant_type"] == ["client_credentials"]
    assert token_form["client_id"] == ["client-id"]


@pytest.mark.parametrize("expires_in, renew_after", [(5400, 5340), (100, 90), (7200, 7140)])
def test_token_is_renewed_before_expiry_from_expires_in(expires_in, renew_after):
    fake = FakeProcore(expires_in=expires_in)
    fake.route("GET /rest/v1.0/me", ok({}))
    clock = FakeClock()
    client = make_client(fake, clock)
    client.get_json("/rest/v1.0/me")
    clock.now += renew_after - 1
    client.get_json("/rest/v1.0/me")
    assert fake.tokens_issued == 1
    clock.now += 1
    client.get_json("/rest/v1.0/me")
    assert fake.tokens_issued == 2
    assert fake.api_requests[-1].headers["Authorization"] == "Bearer token-2"


def test_a_401_renews_the_token_once_and_retries_once():
    fake = FakeProcore()
    fake.route("GET /rest/v1.0/me", httpx.Response(401, json={"errors": "The access token is invalid"}),
               ok({"id": 7}))
    client = make_client(fake)
    assert client.get_json("/rest/v1.0/me") == {"id": 7}
    assert fake.tokens_issued == 2
    assert [r.headers["Authorization"] for r in fake.api_requests] == ["Bearer token-1", "Bearer token-2"]


def test_a_second_401_is_an_auth_error_not_a_loop():
    fake = FakeProcore()
    fake.route("GET /rest/v1.0/me", httpx.Response(401, json={"errors": "The access token is invalid"}))
    client = make_client(fake)
    with pytest.raises(ProcoreAuthError):
        client.get_json("/rest/v1.0/me")
    assert fake.tokens_issued == 2 and len(fake.api_requests) == 2


def test_bad_secret_fails_fast_with_a_clear_message_and_no_secret():
    fake = FakeProcore()
    fake.token_responses = [httpx.Response(401, json={"error": "invalid_client",
                                                      "error_description": "Client authentication failed"})]
    client = make_client(fake)
    with pytest.raises(ProcoreAuthError) as caught:
        client.projects()
    message = str(caught.value)
    assert message.startswith(f"Procore POST /oauth/token failed with 401: Procore rejected the "
                              f"client id/secret (401 invalid_client) at {LOGIN}/oauth/token")
    assert SECRET not in message and SECRET not in repr(caught.value)
    assert len(fake.requests) == 1


def test_token_endpoint_outage_is_retried():
    fake = FakeProcore()
    fake.token_responses = [httpx.Response(503), httpx.Response(502)]
    fake.route("GET /rest/v1.0/me", ok({}))
    client = make_client(fake)
    client.get_json("/rest/v1.0/me")
    assert fake.tokens_issued == 1 and len(fake.requests) == 4


# --- retries ------------------------------------------------------------------------------

def test_429_with_retry_after_waits_exactly_that_long():
    fake = FakeProcore()
    fake.route("GET /rest/v1.0/me", httpx.Response(429, headers={"Retry-After": "3"}), ok({}))
    clock = FakeClock()
    client = make_client(fake, clock)
    client.get_json("/rest/v1.0/me")
    assert clock.sleeps == [3.0]
    assert client.stats.rate_limited == 1 and client.stats.waited_seconds == 3.0


def test_429_without_retry_after_waits_for_the_rate_limit_reset():
    clock = FakeClock()
    reset = str(int(clock.now) + 5)
    fake = FakeProcore()
    fake.route("GET /rest/v1.0/me",
               httpx.Response(429, headers={"X-Rate-Limit-Limit": "25", "X-Rate-Limit-Remaining": "0",
                                            "X-Rate-Limit-Reset": reset}),
               ok({}))
    client = make_client(fake, clock)
    client.get_json("/rest/v1.0/me")
    assert 5.0 <= sum(clock.sleeps) <= 5.0 + 0.1 + 0.5  # reset + jitter (pacing margin included)
    assert len(fake.api_requests) == 2


def test_503_with_retry_after():
    fake = FakeProcore()
    fake.route("GET /rest/v1.0/me", httpx.Response(503, headers={"Retry-After": "2"}), ok({}))
    clock = FakeClock()
    make_client(fake, clock).get_json("/rest/v1.0/me")
    assert clock.sleeps == [2.0]


def test_500_burst_is_retried_then_reported_with_the_attempt_count():
    fake = FakeProcore()
    fake.route("GET /rest/v1.0/me", httpx.Response(500), httpx.Response(500), ok({"id": 1}))
    records: list[RequestRecord] = []
    client = make_client(fake, records=records)
    assert client.get_json("/rest/v1.0/me") == {"id": 1}
    assert [r.attempt for r in records if r.path == "/rest/v1.0/me"] == [1, 2, 3]

    fake.route("GET /rest/v1.0/me", httpx.Response(500, json={"message": "boom"}))
    with pytest.raises(ProcoreError) as caught:
        client.get_json("/rest/v1.0/me")
    assert caught.value.status == 500 and caught.value.retryable
    assert len(fake.api_requests) == 3 + 5


def test_timeouts_and_dropped_connections_are_retried():
    fake = FakeProcore()
    fake.route("PATCH /rest/v1.0/vendors/sync", httpx.ReadTimeout, httpx.RemoteProtocolError,
               ok({"entities": [], "errors": []}))
    make_client(fake).sync_vendors([{"origin_id": "SUP001", "name": "A"}])
    assert len(fake.api_requests) == 3


def test_persistent_transport_failure_becomes_a_retryable_procore_error():
    fake = FakeProcore()
    fake.route("GET /rest/v1.0/me", httpx.ConnectTimeout)
    with pytest.raises(ProcoreError) as caught:
        make_client(fake, retry=RetryPolicy(max_attempts=2, base_delay=0.01)).get_json("/rest/v1.0/me")
    assert caught.value.status is None and caught.value.retryable
    assert "ConnectTimeout" in caught.value.message


def test_post_create_is_not_repeated_after_a_server_error():
    fake = FakeProcore()
    fake.route("POST /rest/v1.1/requisitions", httpx.Response(500), ok({"id": 1}))
    with pytest.raises(ProcoreError):
        make_client(fake).create_requisition(1, 2, {"origin_id": "PI1"})
    assert len(fake.api_requests) == 1


def test_4xx_is_not_retried_and_carries_procores_message():
    fake = FakeProcore()
    body = {"errors": {"cost_code_id": ["is not valid"]}}
    fake.route("PATCH /rest/v1.0/purchase_order_contracts/9",
               httpx.Response(422, json=body, headers={"x-request-id": "req-9"}))
    with pytest.raises(ProcoreError) as caught:
        make_client(fake).update_purchase_order_contract(1, 9, {"status": "Closed"})
    error = caught.value
    assert (error.status, error.method, error.path) == (422, "PATCH", "/rest/v1.0/purchase_order_contracts/9")
    assert error.message == "cost_code_id: is not valid"
    assert error.errors == body["errors"] and error.request_id == "req-9"
    assert not error.retryable
    assert len(fake.api_requests) == 1


@pytest.mark.parametrize("body, message", [
    ({"message": "App is not connected to this company"}, "App is not connected to this company"),
    ({"error": {"code": "x", "message": "Forbidden tool"}}, "Forbidden tool"),
    ({"errors": "Missing Procore-Company-Id header!"}, "Missing Procore-Company-Id header!"),
])
def test_error_message_shapes(body, message):
    fake = FakeProcore()
    fake.route("GET /rest/v1.0/me", httpx.Response(403, json=body))
    with pytest.raises(ProcoreError) as caught:
        make_client(fake).get_json("/rest/v1.0/me")
    assert caught.value.message == message


def test_wait_too_long_when_retry_after_exceeds_the_cap():
    fake = FakeProcore()
    fake.route("GET /rest/v1.0/me", httpx.Response(429, headers={"Retry-After": "900"}))
    clock = FakeClock()
    with pytest.raises(WaitTooLong) as caught:
        make_client(fake, clock, max_wait_seconds=120).get_json("/rest/v1.0/me")
    assert caught.value.seconds == 900 and clock.sleeps == []


# --- paging -------------------------------------------------------------------------------

def paged(items: list, link: bool = True, total: bool = True):
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        per_page = int(request.url.params["per_page"])
        chunk = items[(page - 1) * per_page: page * per_page]
        headers = {}
        if total:
            headers["Total"] = str(len(items))
        if link:
            url = f"{API}{request.url.path}?page={page + 1}&per_page={per_page}"
            headers["Link"] = f'<{url}>; rel="next"' if page * per_page < len(items) else ""
        return httpx.Response(200, json=chunk, headers=headers)
    return handler


@pytest.mark.parametrize("link, total", [(True, True), (True, False), (False, True)])
def test_iter_pages_follows_link_or_total(link, total):
    fake = FakeProcore()
    items = [{"id": i} for i in range(250)]
    fake.route("GET /rest/v1.0/vendors", paged(items, link, total))
    pages = list(make_client(fake).iter_pages("/rest/v1.0/vendors", {"company_id": COMPANY}))
    assert [len(p) for p in pages] == [100, 100, 50]
    assert [item for page in pages for item in page] == items
    assert all(r.url.params["company_id"] == str(COMPANY) for r in fake.api_requests)


def test_unpaginated_endpoint_is_read_once():
    fake = FakeProcore()
    fake.route("GET /rest/v1.0/projects/5/billing_periods", ok([{"id": i} for i in range(100)]))
    client = make_client(fake)
    assert len(client.billing_periods(5)) == 100
    assert len(fake.api_requests) == 1


def test_next_links_to_another_host_are_never_given_the_token():
    with pytest.raises(ValueError):
        make_client(FakeProcore()).request("GET", "https://evil.example.com/rest/v1.0/me")


# --- batch sync -------------------------------------------------------------------------------

def sync_handler(request: httpx.Request) -> httpx.Response:
    """Accept items with a name, reject the rest, as Procore's sync does (HTTP 200)."""
    body = json.loads(request.content)
    entities, errors = [], []
    for n, item in enumerate(body["updates"]):
        if item.get("name"):
            entities.append({"id": 1000 + n, **item})
        else:
            errors.append({**item, "errors": {"name": ["can't be blank"]}})
    return httpx.Response(200, json={"entities": entities, "errors": errors})


def test_sync_splits_2500_items_into_3_calls_and_merges_results():
    fake = FakeProcore()
    fake.route("PATCH /rest/v1.0/purchase_order_contracts/sync", sync_handler)
    updates = [{"origin_id": f"PO{i}", "name": "" if i % 500 == 0 else f"PO {i}"} for i in range(2500)]
    result = make_client(fake).sync_purchase_order_contracts(77, updates)
    calls = fake.api_requests
    assert len(calls) == 3 and result.calls == 3
    bodies = [json.loads(c.content) for c in calls]
    assert [len(b["updates"]) for b in bodies] == [1000, 1000, 500]
    assert all(b["project_id"] == 77 for b in bodies)
    assert len(result.entities) == 2495 and len(result.errors) == 5
    outcome = result.by_origin_id()
    assert len(outcome) == 2500
    assert outcome["PO0"]["errors"] == {"name": ["can't be blank"]}
    assert outcome["PO1"]["name"] == "PO 1"


def test_sync_with_nothing_to_send_makes_no_call():
    fake = FakeProcore()
    assert make_client(fake).sync_vendors([]) == SyncResult()
    assert fake.requests == []


def test_sync_batch_size_is_bounded():
    with pytest.raises(ValueError):
        make_client(FakeProcore()).sync("/rest/v1.0/vendors/sync", [{}], batch_size=1001)


# --- where ids go -------------------------------------------------------------------------------

def test_domain_helpers_put_ids_where_each_endpoint_wants_them():
    fake = FakeProcore()
    seen: list[tuple[str, str, dict, dict | None]] = []

    def capture(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.path, dict(request.url.params), body))
        if request.method == "PATCH" and request.url.path.endswith("/sync"):
            return ok({"entities": [], "errors": []})
        return ok({} if request.method != "GET" else [])

    client = make_client(fake)
    fake.fallback = capture
    client.projects()
    client.project_cost_codes(11)
    client.purchase_order_contracts(11, origin_id="PO1")
    client.contract_line_items(11, 22)
    client.sync_contract_line_items(11, 22, [{"origin_id": "PO1-1000"}])
    client.sync_purchase_order_contracts(11, [{"origin_id": "PO1"}])
    client.sync_vendors([{"origin_id": "SUP001"}])
    client.delete_contract_line_item(11, 22, 33)
    client.requisitions(11, commitment_id=22)
    client.uoms()
    client.line_item_types()

    def find(method: str, path: str):
        return next(s for s in seen if s[0] == method and s[1] == path)

    assert find("GET", "/rest/v1.0/projects")[2]["company_id"] == str(COMPANY)
    assert find("GET", "/rest/v1.0/cost_codes")[2]["project_id"] == "11"
    po_list = find("GET", "/rest/v1.0/purchase_order_contracts")[2]
    assert po_list["project_id"] == "11" and po_list["filters[origin_id]"] == "PO1"
    assert find("GET", "/rest/v1.0/purchase_order_contracts/22/line_items")[2]["project_id"] == "11"
    line_sync = find("PATCH", "/rest/v1.0/purchase_order_contracts/22/line_items/sync")
    assert line_sync[2] == {"project_id": "11"} and line_sync[3] == {"updates": [{"origin_id": "PO1-1000"}]}
    po_sync = find("PATCH", "/rest/v1.0/purchase_order_contracts/sync")
    assert po_sync[2] == {} and po_sync[3]["project_id"] == 11
    assert find("PATCH", "/rest/v1.0/vendors/sync")[3]["company_id"] == COMPANY
    assert find("DELETE", "/rest/v1.0/purchase_order_contracts/22/line_items/33")[2] == {"project_id": "11"}
    req = find("GET", "/rest/v1.1/requisitions")[2]
    assert req["project_id"] == "11" and req["filters[commitment_id]"] == "22"
    find("GET", f"/rest/v1.0/companies/{COMPANY}/uoms")
    assert find("GET", "/rest/v1.0/line_item_types")[2]["company_id"] == str(COMPANY)


# --- the write allow-list -----------------------------------------------------------------------

# Every ProcoreClient method that writes, called once (test_no_gl_writes checks, from the
# client's source, that this table names every writing method and no other).
DOMAIN_WRITES: dict[str, Callable[[ProcoreClient], object]] = {
    "sync_vendors": lambda c: c.sync_vendors([{"origin_id": "SUP001"}]),
    "sync_purchase_order_contracts": lambda c: c.sync_purchase_order_contracts(
        11, [{"origin_id": "PO1"}]),
    "update_purchase_order_contract": lambda c: c.update_purchase_order_contract(
        11, 22, {"status": "Closed"}),
    "sync_contract_line_items": lambda c: c.sync_contract_line_items(11, 22, [{"origin_id": "L"}]),
    "update_contract_line_item": lambda c: c.update_contract_line_item(
        11, 22, 33, {"origin_id": "L"}),
    "delete_contract_line_item": lambda c: c.delete_contract_line_item(11, 22, 33),
    "create_billing_period": lambda c: c.create_billing_period(11, "2027-02-01", "2027-02-28"),
    "create_requisition": lambda c: c.create_requisition(11, 22, {"origin_id": "PI1"}),
    "create_change_order_package": lambda c: c.create_change_order_package(
        11, 22, {"title": "CO"}),
    "sync_potential_change_order_line_items": lambda c: c.sync_potential_change_order_line_items(
        11, 44, [{"origin_id": "L"}]),
}
# Writes a Procore client could send and the connector never may: GL, accounting, budget,
# direct costs, payments, a listed path with another method, and paths that only look listed.
OFF_THE_LIST = [
    ("POST", "/rest/v1.0/journal_entries"),
    ("POST", f"/rest/v1.0/companies/{COMPANY}/journal_entries"),
    ("PATCH", "/rest/v1.0/erp_job_costs/sync"),
    ("POST", "/rest/v1.0/projects/11/budget_line_items"),
    ("PATCH", "/rest/v1.0/projects/11/budget_modifications/5"),
    ("POST", "/rest/v1.1/projects/11/direct_costs"),
    ("POST", "/rest/v1.0/projects/11/requisitions/5/payments"),
    ("POST", "/rest/v1.0/vendors"),  # vendors are only ever written through their sync
    ("PUT", "/rest/v1.0/purchase_order_contracts/22"),
    ("DELETE", "/rest/v1.0/purchase_order_contracts/22"),
    ("POST", "/rest/v1.0/purchase_order_contracts/sync"),
    ("PATCH", "/rest/v1.0/purchase_order_contracts/abc"),
    ("PATCH", "/rest/v1.0/purchase_order_contracts/22/line_items/sync/extra"),
    ("POST", "/rest/v1.1/requisitions/../../v1.0/journal_entries"),
    ("POST", "/rest/v1.1/requisitions%2F..%2Fjournal_entries"),
    ("POST", "/rest/v1.0/oauth/token"),  # the token POST goes to the login host's /oauth/token
]


def template_of(path: str) -> str:
    """The test's own `{id}` substitution (not the client's), to compare with PROCORE_WRITES."""
    return re.sub(r"/\d+(?=/|$)", "/{id}", path)


def echo_writes(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/sync"):
        return ok({"entities": [], "errors": []})
    return ok({"id": 1} if request.method != "GET" else [])


def test_each_domain_write_sends_one_allow_listed_write_and_together_they_are_the_list():
    sent: dict[str, list[str]] = {}
    for name, call in DOMAIN_WRITES.items():
        fake = FakeProcore()
        fake.fallback = echo_writes
        call(make_client(fake))
        sent[name] = [f"{r.method} {template_of(r.url.path)}" for r in fake.api_requests]
    assert all(len(writes) == 1 for writes in sent.values()), sent
    assert sorted(w for writes in sent.values() for w in writes) == \
        sorted(str(e) for e in PROCORE_WRITES)


@pytest.mark.parametrize("method, path", OFF_THE_LIST)
def test_a_write_off_the_list_is_refused_before_anything_is_sent(method, path):
    fake = FakeProcore()
    fake.fallback = echo_writes
    client = make_client(fake)
    with pytest.raises(ProcoreWriteForbidden) as caught:
        client.request(method, path, json={"amount": "1.00"})
    message = str(caught.value)
    assert message.startswith(f"refused Procore {method} /rest/")
    assert "not one of the 10 allow-listed writes (PROCORE_WRITES)" in message
    assert fake.requests == []  # not even the token: refused before a token was asked for
    assert isinstance(caught.value, WriteRefused) and not isinstance(caught.value, ProcoreError)


def test_reads_and_the_token_post_pass_the_allow_list():
    fake = FakeProcore()
    fake.fallback = echo_writes
    client = make_client(fake)
    client.get_json("/rest/v1.0/companies/1/journal_entries")  # reading is never a write
    client.request("HEAD", "/rest/v1.0/projects")
    assert [(r.method, r.url.path) for r in fake.requests] == [
        ("POST", "/oauth/token"), ("GET", "/rest/v1.0/companies/1/journal_entries"),
        ("HEAD", "/rest/v1.0/projects")]


def test_a_write_sent_around_request_is_refused_by_the_connection_itself():
    """The httpx hook: even code that reaches the client's own connection cannot write."""
    fake = FakeProcore()
    fake.fallback = echo_writes
    client = make_client(fake)
    journal = f"{API}/rest/v1.0/journal_entries"
    with pytest.raises(ProcoreWriteForbidden, match="refused Procore POST /rest/v1.0/journal_entries"):
        client._http.post(journal, json={})
    with pytest.raises(ProcoreWriteForbidden):
        client._sender.send(lambda: client._http.build_request("DELETE", journal))
    with pytest.raises(ProcoreWriteForbidden):  # another host, even on a listed path
        client._http.post("https://elsewhere.example.com/rest/v1.1/requisitions")
    assert fake.requests == []

    client._http.event_hooks = {"request": []}  # broken on purpose: the hook removed
    client._http.post(journal, json={})
    assert [(r.method, r.url.path) for r in fake.requests] == [("POST", "/rest/v1.0/journal_entries")]


def test_the_preview_guard_composes_with_the_allow_list():
    fake = FakeProcore()
    fake.fallback = echo_writes
    client = make_client(fake)
    client.refuse_requests(procore_read_only(client.token_url))
    client.refuse_requests(lambda request: None)  # a guard letting all go lifts nothing
    with pytest.raises(WriteRefused, match=r"^MLC_WRITE_MODE=preview: refused Procore PATCH "):
        client.sync_vendors([{"origin_id": "SUP001"}])  # listed: the preview refuses it
    with pytest.raises(ProcoreWriteForbidden, match="POST /rest/v1.0/journal_entries"):
        client.request("POST", "/rest/v1.0/journal_entries")  # unlisted: refused either way
    with pytest.raises(ProcoreWriteForbidden):
        client._http.post(f"{API}/rest/v1.0/journal_entries")
    assert client.vendors() == []
    assert [(r.method, r.url.path) for r in fake.requests] == [
        ("POST", "/oauth/token"), ("GET", "/rest/v1.0/vendors")]


def test_the_allow_list_guard_checks_host_base_path_and_token_url():
    writes = [Endpoint.parse("POST /rest/v1.1/requisitions")]
    guard = write_allow_list("Procore", "https://api.example.com/base", writes,
                             token_url="https://login.example.com/oauth/token")

    def refused(method: str, url: str) -> bool:
        return guard(httpx.Request(method, url)) is not None

    assert not refused("POST", "https://api.example.com/base/rest/v1.1/requisitions?project_id=1")
    assert not refused("POST", "https://login.example.com/oauth/token")
    assert not refused("GET", "https://anywhere.example.com/rest/v1.0/journal_entries")
    assert refused("POST", "https://api.example.com/rest/v1.1/requisitions")  # not under /base
    assert refused("POST", "http://api.example.com/base/rest/v1.1/requisitions")  # scheme
    assert refused("POST", "https://api.example.com:8443/base/rest/v1.1/requisitions")  # port
    assert refused("POST", "https://api.example.com/oauth/token")  # token POST on another host
    assert refused("PATCH", "https://login.example.com/oauth/token")
    with pytest.raises(ValueError):
        Endpoint.parse("GET /rest/v1.0/projects")  # a read is not an allow-listed write
    with pytest.raises(ValueError):
        Endpoint.parse("POST rest/v1.1/requisitions")


# --- secrets ------------------------------------------------------------------------------------

def test_secrets_stay_out_of_repr_logs_records_and_errors(caplog):
    caplog.set_level(logging.DEBUG)
    fake = FakeProcore()
    fake.route("GET /rest/v1.0/me", httpx.Response(500), httpx.Response(401), ok({}))
    fake.route("GET /rest/v1.0/vendors", httpx.Response(400, json={"message": f"bad {SECRET}"}))
    records: list[RequestRecord] = []
    client = make_client(fake, records=records)
    client.get_json("/rest/v1.0/me")
    with pytest.raises(ProcoreError) as caught:
        client.vendors()
    texts = [repr(client), str(vars(client)), caplog.text, str(caught.value),
             repr(caught.value), *map(repr, records)]
    for text in texts:
        assert SECRET not in text
        assert "token-1" not in text and "token-2" not in text
    assert "[REDACTED]" in str(caught.value)


# --- against the Procore sandbox -------------------------------------------------------------------

def sandbox_client(handle, **options) -> ProcoreClient:
    creds = SANDBOX_CREDENTIALS
    return ProcoreClient(handle.url, handle.url, creds["procore_client_id"],
                         creds["procore_client_secret"], SANDBOX_COMPANY_ID, **options)


def configure(handle, **settings) -> None:
    httpx.post(f"{handle.url}/_sandbox/config", json=settings).raise_for_status()


def inject(handle, **fault) -> None:
    httpx.post(f"{handle.url}/_sandbox/faults", json=fault).raise_for_status()


def test_sandbox_token_expiring_every_2s_through_a_sync_sized_run(sandboxes):
    procore = sandboxes["procore"]
    configure(procore, token_lifetime_seconds=2, latency_ms=100)
    with sandbox_client(procore) as client:
        project = client.projects()[0]
        vendor = client.vendors()[0]
        cost_code = client.project_cost_codes(project["id"])[0]
        cost_type = client.line_item_types()[0]
        for n in range(20):
            result = client.sync_purchase_order_contracts(project["id"], [{
                "origin_id": f"PO-T{n}", "number": f"PO-T{n}", "title": "token test",
                "vendor_id": vendor["id"]}])
            [contract] = result.entities
            lines = client.sync_contract_line_items(project["id"], contract["id"], [{
                "origin_id": f"PO-T{n}-1000", "description": "line", "amount": "10.00",
                "cost_code_id": cost_code["id"], "line_item_type_id": cost_type["id"]}])
            assert lines.errors == []
    calls = sandbox_calls(procore)
    tokens = [c for c in calls if c["path"] == "/oauth/token"]
    assert len(tokens) >= 3  # ~5 s of calls with 2 s tokens: renewed before expiry, repeatedly
    assert [c for c in calls if c["status"] == 401] == []
    assert all(c["status"] == 200 for c in calls)


def test_sandbox_revoked_token_is_renewed_once(sandboxes):
    procore = sandboxes["procore"]
    with sandbox_client(procore) as client:
        client.projects()
        procore.state.revoke_all_tokens()
        client.vendors()
    paths = [(c["path"], c["status"]) for c in sandbox_calls(procore)]
    assert paths == [("/oauth/token", 200), ("/rest/v1.0/projects", 200),
                     ("/rest/v1.0/vendors", 401), ("/oauth/token", 200), ("/rest/v1.0/vendors", 200)]


def test_sandbox_bad_secret_fails_fast(sandboxes):
    procore = sandboxes["procore"]
    client = ProcoreClient(procore.url, procore.url, SANDBOX_CREDENTIALS["procore_client_id"],
                           "not-the-secret", SANDBOX_COMPANY_ID)
    with pytest.raises(ProcoreAuthError, match=r"rejected the client id/secret \(401 invalid_client\)"):
        client.projects()
    assert len(sandbox_calls(procore)) == 1


@pytest.mark.slow
def test_sandbox_200_sequential_calls_under_a_25_per_10s_spike_limit(sandboxes):
    procore = sandboxes["procore"]
    configure(procore, spike_limit=25, spike_window_seconds=10)
    with sandbox_client(procore) as client:
        for _ in range(200):
            client.get_json("/rest/v1.0/me")
        rejected = client.stats.rate_limited
    assert rejected <= 3
    assert len([c for c in sandbox_calls(procore) if c["status"] == 429]) == rejected


def test_sandbox_paging_reads_every_record_once(sandboxes):
    with sandbox_client(sandboxes["procore"]) as client:
        pages = list(client.iter_pages("/rest/v1.0/vendors", {"company_id": SANDBOX_COMPANY_ID},
                                       per_page=7))
    ids = [v["id"] for page in pages for v in page]
    assert len(pages) == 6 and len(ids) == len(set(ids)) == 41


def test_sandbox_batch_sync_with_good_and_bad_items_is_idempotent(sandboxes):
    with sandbox_client(sandboxes["procore"]) as client:
        project = client.projects()[0]
        vendor_ids = [v["id"] for v in client.vendors()]
        updates = [{"origin_id": f"PO-B{n:04d}", "number": f"PO-B{n:04d}", "title": f"Batch {n}",
                    "vendor_id": 1 if n % 400 == 0 else vendor_ids[n % len(vendor_ids)]}
                   for n in range(1200)]
        first = client.sync_purchase_order_contracts(project["id"], updates)
        again = client.sync_purchase_order_contracts(project["id"], updates)
        stored = client.purchase_order_contracts(project["id"])
    assert first.calls == 2
    assert len(first.entities) == 1197 and len(first.errors) == 3
    outcome = first.by_origin_id()
    assert outcome["PO-B0400"]["errors"] == {"vendor_id": ["does not exist"]}
    assert outcome["PO-B0401"]["title"] == "Batch 401"
    assert {e["origin_id"]: e["id"] for e in again.entities} == \
        {e["origin_id"]: e["id"] for e in first.entities}
    assert len([c for c in stored if c["origin_id"].startswith("PO-B")]) == 1197


def test_sandbox_faults_are_ridden_out(sandboxes):
    procore = sandboxes["procore"]
    waits: list[float] = []
    with sandbox_client(procore, sleep=waits.append, timeout=1.0) as client:
        project_id = client.projects()[0]["id"]
        inject(procore, route="PATCH /rest/v1.0/purchase_order_contracts/sync", status=429,
               count=3, retry_after=1)
        assert client.sync_purchase_order_contracts(project_id, [{"origin_id": "PO-F1", "title": "f"}]).errors == []
        assert waits == [1.0, 1.0, 1.0] and client.stats.rate_limited == 3

        inject(procore, route="GET /rest/v1.0/projects$", status=503, count=1, retry_after=2)
        inject(procore, route="GET /rest/v1.0/vendors$", status=500, count=3)
        inject(procore, route="GET /rest/v1.0/line_item_types$", drop=True, count=2)
        inject(procore, route="GET /rest/v1.0/companies/.*/uoms$", delay=1.5, count=1)
        assert client.projects() and client.vendors() and client.line_item_types() and client.uoms()
        assert 2.0 in waits

        inject(procore, route="PATCH /rest/v1.0/purchase_order_contracts/sync", status=429,
               count=1, retry_after=600)
        with pytest.raises(WaitTooLong):
            client.sync_purchase_order_contracts(project_id, [{"origin_id": "PO-F2", "title": "f"}])
    statuses = [c["status"] for c in sandbox_calls(procore) if c.get("fault")]
    assert statuses.count(500) == 3 and statuses.count(None) >= 2


def journal_calls(handle) -> list[dict]:
    """Every call that reached the sandbox for a journal entry, whatever its answer."""
    return [c for c in sandbox_calls(handle) if "journal_entries" in c["path"]]


def test_sandbox_never_sees_a_write_off_the_list(sandboxes, monkeypatch):
    procore = sandboxes["procore"]
    journal = "/rest/v1.0/journal_entries"
    with sandbox_client(procore) as client:
        with pytest.raises(ProcoreWriteForbidden,
                           match=f"^refused Procore POST {journal} before sending it"):
            client.request("POST", journal, json={"journal_entry": {"amount": "100.00"}})
        assert sandbox_calls(procore) == []  # no call at all, not even for a token
        with pytest.raises(ProcoreWriteForbidden):
            client._http.post(f"{procore.url}{journal}", json={})
        project_id = client.projects()[0]["id"]  # the same client still reads
        with pytest.raises(ProcoreWriteForbidden):
            client.request("POST", f"/rest/v1.1/projects/{project_id}/direct_costs", json={})
    assert journal_calls(procore) == []
    assert [c["path"] for c in sandbox_calls(procore)] == ["/oauth/token", "/rest/v1.0/projects"]

    # Broken on purpose: journal entries put on the list. The same call now reaches the
    # sandbox, and the check above sees it.
    monkeypatch.setattr(procore_client, "PROCORE_WRITES",
                        (*PROCORE_WRITES, Endpoint.parse(f"POST {journal}")))
    with sandbox_client(procore) as widened:
        with pytest.raises(ProcoreError):  # the sandbox has no such route: 404
            widened.request("POST", journal, json={"journal_entry": {"amount": "100.00"}})
    assert [(c["method"], c["path"]) for c in journal_calls(procore)] == [("POST", journal)]


@pytest.mark.parametrize("status, refused", [
    (400, True), (409, True), (422, True),  # the SDK documents 400 where our notes said 422
    (401, False), (403, False), (404, False), (429, False), (500, False), (None, False),
])
def test_a_refusal_is_any_business_rule_4xx_not_one_status_code(status, refused):
    exc = ProcoreError(status, "POST", "/rest/v1.1/requisitions", "refused")
    assert exc.refused is refused
