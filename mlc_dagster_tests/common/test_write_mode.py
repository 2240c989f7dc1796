"""MLC_WRITE_MODE: the setting, the write-step refusal, and the read-only request guards.

The guards run inside the real clients against httpx.MockTransport: a refused request must
never reach the transport (the e2e tests prove the same over HTTP with the sandboxes).
"""

from __future__ import annotations

import json

import dagster as dg
import httpx
import pytest

from mlc_dagster.common.write_mode import (
    STEP_REFUSAL,
    ensure_live,
    is_graphql_query,
    procore_read_only,
    x3_read_only,
)
from mlc_dagster.resources.http_core import WriteRefused
from mlc_dagster.settings import env_write_mode, load_settings
from mlc_dagster_tests.resources.sage_x3_client.clients import graphql_client, rest_client
from mlc_dagster_tests.resources.test_procore_client import FakeProcore, make_client, ok


@pytest.mark.parametrize("value, mode", [(None, "live"), ("", "live"), ("live", "live"),
                                         ("preview", "preview"), (" Preview ", "preview")])
def test_write_mode_defaults_to_live(monkeypatch, value, mode):
    if value is None:
        monkeypatch.delenv("MLC_WRITE_MODE", raising=False)
    else:
        monkeypatch.setenv("MLC_WRITE_MODE", value)
    assert env_write_mode() == mode
    assert load_settings().write_mode == mode


def test_a_bad_write_mode_names_the_variable(monkeypatch):
    monkeypatch.setenv("MLC_WRITE_MODE", "dry-run")
    with pytest.raises(ValueError, match=r"MLC_WRITE_MODE must be preview or live, got 'dry-run'"):
        load_settings()


def test_write_steps_refuse_in_preview_only():
    ensure_live("procore_commitments", "live")
    with pytest.raises(dg.Failure) as failure:
        ensure_live("procore_commitments", "preview")
    assert failure.value.description == STEP_REFUSAL
    assert STEP_REFUSAL.startswith("MLC_WRITE_MODE=preview: this step writes to Procore/X3")


def test_read_only_procore_client_reads_and_gets_its_token_but_sends_no_write():
    fake = FakeProcore()
    fake.route("GET /rest/v1.0/vendors", ok([{"id": 1}]))
    fake.route("PATCH /rest/v1.0/vendors/sync", ok({"entities": [], "errors": []}))
    client = make_client(fake)
    client.refuse_requests(procore_read_only(client.token_url))
    assert client.vendors() == [{"id": 1}]
    with pytest.raises(WriteRefused, match=r"MLC_WRITE_MODE=preview: refused Procore PATCH "
                                           r"/rest/v1.0/vendors/sync before sending it"):
        client.sync_vendors([{"origin_id": "SUP001", "name": "A"}])
    with pytest.raises(WriteRefused, match="POST /rest/v1.1/requisitions"):
        client.create_requisition(1, 2, {"invoice_number": "X"})
    with pytest.raises(WriteRefused, match="DELETE"):
        client.delete_contract_line_item(1, 2, 3)
    assert [(r.method, r.url.path) for r in fake.requests] == [
        ("POST", "/oauth/token"), ("GET", "/rest/v1.0/vendors")]


def test_procore_guard_allows_the_token_post_only_at_the_token_url():
    guard = procore_read_only("https://login.example.com/oauth/token")
    post = lambda url: httpx.Request("POST", url)  # noqa: E731
    assert guard(post("https://login.example.com/oauth/token")) is None
    assert guard(post("https://api.example.com/oauth/token"))  # another host
    assert guard(post("https://login.example.com/oauth/token/revoke"))
    assert guard(httpx.Request("PUT", "https://login.example.com/oauth/token"))


@pytest.mark.parametrize("query, reads", [
    ("query { x3 { supplier { query { edges { node { code } } } } } }", True),
    ("  { x3 { dimension { query { totalCount } } } }", True),
    ("# a comment\nquery Changed($after: String) { x3 { a } }", True),
    ("query { x3 { purchaseOrder { query(filter: \"{mutationDate: 1}\") { totalCount } } } }",
     True),
    ("mutation { x3 { supplier { create(data: {}) { _id } } } }", False),
    ("# harmless\n mutation { x }", False),
    ("query A { a } mutation B { b }", False),
    ("subscription { x }", False),
])
def test_graphql_queries_read_and_mutations_do_not(query, reads):
    assert is_graphql_query(json.dumps({"query": query}).encode()) is reads


def test_graphql_bodies_that_are_not_a_query_document_are_refused():
    assert not is_graphql_query(b"not json")
    assert not is_graphql_query(b'{"variables": {}}')
    assert not is_graphql_query(b'["query { a }"]')


def test_read_only_x3_graphql_client_queries_but_sends_no_mutation():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": {"x3": {"supplier": {"query": {
            "edges": [], "pageInfo": {"endCursor": None, "hasNextPage": False}}}}}})

    client = graphql_client(handler)
    client.refuse_requests(x3_read_only(client.api_url))
    assert list(client.read_all("supplier")) in ([], [[]])
    with pytest.raises(WriteRefused, match=r"refused Sage X3 POST /xtrem/api"):
        client.create_supplier({"supplier_code": "PC1", "name": "New"})
    assert len(seen) == 1 and b"mutation" not in seen[0].content


def test_read_only_x3_rest_client_sends_no_create_or_edit():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"$resources": []})

    client = rest_client(handler)
    client.refuse_requests(x3_read_only(None))
    with pytest.raises(WriteRefused, match=r"refused Sage X3 POST /api1/x3/erp/SEED/BPSUPPLIER"):
        client.create_supplier({"supplier_code": "PC1", "name": "New"})
    with pytest.raises(WriteRefused, match=r"refused Sage X3 PUT"):
        client.update_supplier("SUP001", {"name": "B"})
    assert seen == []
    # a REST client never POSTs a query: even a GraphQL-looking body is refused
    assert x3_read_only(None)(httpx.Request("POST", "https://x3/xtrem/api",
                                            json={"query": "query { a }"}))
