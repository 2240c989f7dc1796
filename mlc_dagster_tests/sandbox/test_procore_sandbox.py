"""The Procore sandbox over real HTTP on loopback: contract with the official subset, and rules.

Fixtures and helpers: procore_helpers.py. Change orders: test_procore_change_orders.py;
the issue-13 rules (unknown fields, Approved lock, invoices, periods, paging, deletes,
vendors): test_procore_strict_rules.py.
"""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from mlc_dagster_tests.sandbox.procore_helpers import (  # noqa: F401 - fixtures
    COST_CODE,
    FOREIGN_COST_CODE,
    HTTP,
    LINE_ITEM_TYPE,
    OTHER_PROJECT,
    PERIOD,
    PROJECT,
    RATE_LIMIT_HEADERS,
    SEED,
    VENDOR,
    api_fixture,
    approve,
    create_requisition,
    line,
    make_contract,
    pco_of,
    sandbox_fixture,
    server_fixture,
    sync_contracts,
    sync_lines,
    sync_pco_lines,
    token_for,
)
from mlc_sandbox.procore import app as procore_app
from mlc_sandbox.procore.spec import SPEC_PATH, listed_filters
from mlc_sandbox.seed import COMPANY_ID, SANDBOX_CREDENTIALS

SUBSET = json.loads(SPEC_PATH.read_text())["requests"]

# --- contract with the official request shapes ----------------------------------------------------


def subset_key(method: str, path: str) -> tuple[str, str]:
    return method, re.sub(r":(\w+)", r"{\1}", path)


SUBSET_BY_ROUTE = {subset_key(r["method"], r["path"]): r for r in SUBSET}
SERVED = procore_app.served_routes()
ONE_OF_REQUIRED = {("GET", "/rest/v1.0/line_item_types")}  # company_id or project_id


def required_query(route) -> list[str]:
    request = SUBSET_BY_ROUTE[route]
    return [q["key"] for q in request["query"] if "(Required)" in (q.get("description") or "")]


@pytest.fixture
def universe(api):
    """One live record of every kind, so every served route can be called with real ids."""
    contract = make_contract(api)
    line_id = api.get(f"/rest/v1.0/purchase_order_contracts/{contract['id']}/line_items",
                      params={"project_id": PROJECT}).json()[0]["id"]
    requisition = create_requisition(api, contract["id"], None).json()  # editable: no origin_id
    item_id = api.get(f"/rest/v1.0/requisitions/{requisition['id']}/contract_items",
                      params={"project_id": PROJECT}).json()[0]["id"]
    change_order = api.post(f"/rest/v1.0/projects/{PROJECT}/commitment_change_orders", json={
        "change_order": {"contract_id": contract["id"], "title": "CO"}}).json()
    pco = pco_of(api, change_order["id"])
    pco_line = sync_pco_lines(api, pco["id"], [line("CO-1")])["entities"][0]
    by_collection = {
        "vendors": VENDOR["id"], "inactive": VENDOR["id"], "uoms": SEED.uoms[0]["id"],
        "purchase_order_contracts": contract["id"], "commitments": contract["id"],
        "line_items": line_id, "requisitions": requisition["id"], "contract_items": item_id,
        "commitment_change_orders": change_order["id"], "billing_periods": PERIOD,
        "cost_codes": COST_CODE, "sub_jobs": SEED.sub_jobs[PROJECT][0]["id"],
        "line_item_types": LINE_ITEM_TYPE,
        "standard_cost_code_lists": SEED.standard_cost_code_list["id"],
        "standard_cost_codes": SEED.standard_cost_codes[0]["id"],
        "change_order_packages": change_order["id"], "potential_change_orders": pco["id"],
        "potential_change_orders/line_items": pco_line["id"],
    }
    values = {"project_id": PROJECT, "company_id": COMPANY_ID, "commitment_id": contract["id"],
              "purchase_order_contract_id": contract["id"], "requisition_id": requisition["id"],
              "standard_cost_code_list_id": SEED.standard_cost_code_list["id"],
              "contract_id": contract["id"], "potential_change_order_id": pco["id"]}

    def fill(path: str) -> str:
        """Real ids for path params; `{id}` is an id of the collection named just before it
        (or of `<grandparent collection>/<collection>` when that is listed)."""
        segments = path.split("/")
        for i, segment in enumerate(segments):
            if segment == "{id}":
                nested = f"{segments[i - 3]}/{segments[i - 1]}" if i >= 3 else ""
                segments[i] = str(by_collection.get(nested, by_collection[segments[i - 1]]))
            elif segment.startswith("{"):
                segments[i] = str(values[segment[1:-1]])
        return "/".join(segments)

    return fill, values


def test_every_served_route_is_an_official_request_shape():
    assert len(SERVED) == len(set(SERVED))
    missing = [route for route in SERVED if route not in SUBSET_BY_ROUTE]
    assert missing == []
    assert {m for m, _ in SERVED} <= {"GET", "POST", "PATCH", "DELETE"}
    assert all(p.startswith(("/rest/v1.0/", "/rest/v1.1/", "/oauth/")) for _, p in SERVED)


def test_sandbox_requires_exactly_the_query_params_the_subset_marks_required():
    """Never fewer (a client bug would go unnoticed) and never more (a valid call would fail)."""
    for route in SERVED:
        if route not in ONE_OF_REQUIRED:
            assert set(required_query(route)) == set(procore_app.required_query(*route)), route


def test_every_served_get_answers_with_real_ids(api, universe):
    fill, values = universe
    for method, path in SERVED:
        if method == "GET" and path.startswith("/rest/"):
            params = {key: values[key] for key in required_query((method, path))}
            response = api.get(fill(path), params=params)
            assert response.status_code == 200, (path, response.text)


def test_missing_required_query_param_is_a_400(api, universe):
    fill, values = universe
    checked = 0
    for route in SERVED:
        required = required_query(route)
        omissions = [required] if route in ONE_OF_REQUIRED else [[key] for key in required]
        for omitted in omissions:
            params = {k: values[k] for k in required if k not in omitted}
            response = api.request(route[0], fill(route[1]), params=params,
                                   json={} if route[0] in ("POST", "PATCH") else None)
            assert response.status_code == 400, (route, omitted, response.text)
            assert omitted[0] in response.json()["errors"]
            checked += 1
    assert checked >= 30


def test_missing_body_wrapper_is_a_400(api, universe):
    """POST/PATCH bodies must carry the wrapper object (or `updates`) the subset shows."""
    fill, values = universe
    checked = 0
    for route in SERVED:
        template = SUBSET_BY_ROUTE[route]["body_template"]
        if route[0] not in ("POST", "PATCH") or not isinstance(template, dict):
            continue
        wrappers = [k for k, v in template.items() if isinstance(v, dict)] or (
            ["updates"] if "updates" in template else [])
        if not wrappers or route[1].startswith("/oauth/"):
            continue
        body = {k: values[k] for k in template if k in values}
        params = {key: values[key] for key in required_query(route)}
        response = api.request(route[0], fill(route[1]), params=params, json=body)
        assert response.status_code == 400, (route, response.text)
        assert wrappers[0] in response.json()["errors"], route
        checked += 1
    assert checked >= 25


# A value per filter name that, if the filter were applied, would leave no seeded record.
EXCLUDING_FILTERS = {
    "id": "1", "origin_id": "no-such-origin", "created_at": "2000-01-01...2000-01-02",
    "updated_at": "2000-01-01...2000-01-02", "include_deleted": "only", "status": "none",
    "contract_id": "1", "commitment_id": "1", "period_id": "1", "parent_id": "1",
    "trade_id": "1", "standard_cost_code_id": "1", "cost_code_id": "1", "line_item_type_id": "1",
    "search": "no-such-text", "name": "no-such-name", "project_number": "none",
    "by_status": "Inactive", "is_last": "false",
}


def test_filters_apply_only_where_the_operation_lists_them(api, universe, sandbox):
    """A filter the operation's OAS query list does not declare changes nothing (Procore
    documents filtering per endpoint: tutorials/filtering_on_list_actions.md) and the call log
    names it, so a client relying on one fails here as it would on Procore."""
    fill, values = universe
    listed = listed_filters()
    proved, ignored = [], set()
    for route in SERVED:
        if route[0] != "GET" or not route[1].startswith("/rest/"):
            continue
        url, params = fill(route[1]), {k: values[k] for k in required_query(route)}
        baseline = api.get(url, params=params)
        assert baseline.status_code == 200, (route, baseline.text)
        for name, value in EXCLUDING_FILTERS.items():
            if name in listed[route]:
                continue
            response = api.get(url, params={**params, f"filters[{name}]": value})
            assert (response.status_code, response.json()) == (200, baseline.json()), (route,
                                                                                      name)
            ignored.add((url, f"filters[{name}]"))
            if isinstance(baseline.json(), list) and baseline.json():
                proved.append((route[1], name))
    assert len(proved) >= 100, proved
    time.sleep(0.2)  # the call log entry is written just after the response is sent
    logged = {(c["path"], key) for c in sandbox.controls.calls
              for key in c.get("ignored_filters", [])}
    assert ignored <= logged
    for path, name in [("/rest/v1.0/sub_jobs", "origin_id"),
                       ("/rest/v1.0/standard_cost_codes", "id"),
                       ("/rest/v1.0/cost_codes", "updated_at"),
                       ("/rest/v1.0/purchase_order_contracts/{purchase_order_contract_id}/"
                        "line_items", "include_deleted")]:
        assert (path, name) in proved  # the filters the sandbox used to honour there


def test_listed_filters_still_apply(api, universe):
    fill, values = universe
    listed = api.get("/rest/v1.0/cost_codes", params={"project_id": PROJECT,
                                                      "filters[origin_id]": "no-such-origin"})
    assert listed.status_code == 200 and listed.json() == []
    assert "origin_id" in listed_filters()[("GET", "/rest/v1.0/cost_codes")]
    assert "origin_id" not in listed_filters()[("GET", "/rest/v1.0/sub_jobs")]


# --- OAuth ------------------------------------------------------------------------------------------


CREDENTIALS = {"grant_type": "client_credentials",
               "client_id": SANDBOX_CREDENTIALS["procore_client_id"],
               "client_secret": SANDBOX_CREDENTIALS["procore_client_secret"]}
COMPANY_HEADER = {"Procore-Company-Id": str(COMPANY_ID)}


def multipart(fields: dict) -> dict:
    """httpx `files=` fields for a multipart/form-data body without files."""
    return {k: (None, v) for k, v in fields.items()}


@pytest.mark.parametrize("encoding", ["data", "files", "json"])
def test_token_grant_accepts_form_multipart_and_json(sandbox, encoding):
    body = multipart(CREDENTIALS) if encoding == "files" else CREDENTIALS
    before = int(time.time())
    response = HTTP.post(f"{sandbox.url}/oauth/token", **{encoding: body})
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["token_type"] == "bearer" and token["expires_in"] == 5400
    assert isinstance(token["created_at"], int) and token["created_at"] >= before
    assert len(token["access_token"]) >= 32
    me = HTTP.get(f"{sandbox.url}/rest/v1.0/me",
                   headers={"Authorization": f"Bearer {token['access_token']}", **COMPANY_HEADER})
    assert me.status_code == 200


def test_token_grant_rejects_bad_secret_and_grant_type(sandbox):
    bad = HTTP.post(f"{sandbox.url}/oauth/token", data={**CREDENTIALS, "client_secret": "nope"})
    assert bad.status_code == 401
    assert bad.json()["error"] == "invalid_client"
    assert "Client authentication failed" in bad.json()["error_description"]
    grant = HTTP.post(f"{sandbox.url}/oauth/token", data={**CREDENTIALS, "grant_type": "password"})
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"


def test_rest_calls_need_a_valid_unrevoked_token(sandbox, api):
    url = f"{sandbox.url}/rest/v1.0/me"
    assert HTTP.get(url, headers=COMPANY_HEADER).status_code == 401
    garbage = HTTP.get(url, headers={"Authorization": "Bearer not-a-token", **COMPANY_HEADER})
    assert garbage.status_code == 401
    assert garbage.json() == {"errors": "The access token is invalid"}
    token = token_for(sandbox.url)
    auth = {"Authorization": f"Bearer {token}", **COMPANY_HEADER}
    assert HTTP.get(url, headers=auth).status_code == 200
    client = {k: CREDENTIALS[k] for k in ("client_id", "client_secret")}
    revoke = HTTP.post(f"{sandbox.url}/oauth/revoke", files=multipart({"token": token, **client}))
    assert revoke.status_code == 200
    assert HTTP.get(url, headers=auth).status_code == 401
    assert HTTP.post(f"{sandbox.url}/oauth/revoke",
                     files=multipart({"token": "unknown", **client})).status_code == 200
    assert api.get("/rest/v1.0/me").status_code == 200
    sandbox.state.revoke_all_tokens()
    assert api.get("/rest/v1.0/me").status_code == 401


def test_tokens_expire_after_the_configured_lifetime(sandbox):
    sandbox.configure(token_lifetime_seconds=1)
    response = HTTP.post(f"{sandbox.url}/oauth/token", json=CREDENTIALS)
    assert response.json()["expires_in"] == 1
    headers = {"Authorization": f"Bearer {response.json()['access_token']}", **COMPANY_HEADER}
    assert HTTP.get(f"{sandbox.url}/rest/v1.0/me", headers=headers).status_code == 200
    time.sleep(1.2)
    expired = HTTP.get(f"{sandbox.url}/rest/v1.0/me", headers=headers)
    assert expired.status_code == 401
    assert expired.json()["errors"] == "The access token is invalid"


def test_token_info_describes_the_bearer_token(sandbox, api):
    info = api.get("/oauth/token/info")
    assert info.status_code == 200
    body = info.json()
    assert body["application"]["uid"] == SANDBOX_CREDENTIALS["procore_client_id"]
    assert 5390 <= body["expires_in_seconds"] <= 5400
    assert HTTP.get(f"{sandbox.url}/oauth/token/info").status_code == 401


# --- company header, ids, hygiene ---------------------------------------------------------------------


def test_company_header_is_required_on_every_rest_call_for_a_dmsa(sandbox):
    """Also on /companies and /me: a DMSA "_must_ include the `Procore-Company-Id` request
    header" there (procore/documentation oauth/oauth_client_credentials.md)."""
    auth = {"Authorization": f"Bearer {token_for(sandbox.url)}"}
    url = f"{sandbox.url}/rest/v1.0/projects"
    params = {"company_id": COMPANY_ID}
    missing = HTTP.get(url, params=params, headers=auth)
    assert missing.status_code == 400
    assert missing.json()["errors"] == "Missing Procore-Company-Id header!"
    wrong = HTTP.get(url, params=params, headers={**auth, "Procore-Company-Id": "42"})
    assert wrong.status_code == 403
    assert wrong.json() == {"errors": "App is not connected to this company"}
    assert HTTP.get(url, params=params,
                     headers={**auth, "Procore-Company-Id": "abc"}).status_code == 400
    for path in ("/rest/v1.0/companies", "/rest/v1.0/me"):
        without = HTTP.get(f"{sandbox.url}{path}", headers=auth)
        assert without.status_code == 400, path
        assert without.json()["errors"] == "Missing Procore-Company-Id header!"
        assert HTTP.get(f"{sandbox.url}{path}",
                        headers={**auth, **COMPANY_HEADER}).status_code == 200
    companies = HTTP.get(f"{sandbox.url}/rest/v1.0/companies",
                         headers={**auth, **COMPANY_HEADER}).json()
    assert [c["id"] for c in companies] == [COMPANY_ID]


def test_company_id_param_must_be_the_connected_company(api):
    response = api.get("/rest/v1.0/vendors", params={"company_id": 7})
    assert response.status_code == 403


def test_non_integer_ids_are_400_and_unknown_ids_404(api):
    assert api.get("/rest/v1.0/vendors/abc", params={"company_id": COMPANY_ID}).status_code == 400
    assert api.get("/rest/v1.0/purchase_order_contracts",
                   params={"project_id": "12x"}).status_code == 400
    assert api.get("/rest/v1.0/purchase_order_contracts",
                   params={"project_id": 99}).status_code == 404
    assert api.get("/rest/v1.0/vendors/99", params={"company_id": COMPANY_ID}).status_code == 404


def test_request_ids_404_405_and_bad_json(api):
    first = api.get("/rest/v1.0/me")
    second = api.get("/rest/v1.0/nothing-here")
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]
    assert second.status_code == 404 and second.json() == {"errors": "Not Found"}
    wrong = api.delete("/rest/v1.0/vendors")
    assert wrong.status_code == 405 and "X-Request-Id" in wrong.headers
    bad = api.patch("/rest/v1.0/vendors/sync", content=b'{"company_id": 1,',
                    headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and "X-Request-Id" in bad.headers


@pytest.mark.parametrize(("body", "status", "item_errors"), [
    ([1, 2], 400, None),
    ({"project_id": PROJECT, "updates": "x"}, 400, None),
    ({"project_id": {"a": 1}, "updates": []}, 400, None),
    ({"project_id": PROJECT, "updates": [1, None]}, 200, 2),
    ({"project_id": PROJECT, "updates": [
        {"id": "x"}, {"origin_id": ["a"]}, {"amount": "1e999"}, {"status": {"a": 1}},
        {"vendor_id": True}, {"retainage_percent": "NaN"}, {"origin_id": "ok", "number": 5}]},
     200, 5),
])
def test_garbage_input_is_a_4xx_or_item_error_never_a_500(api, body, status, item_errors):
    response = api.patch("/rest/v1.0/purchase_order_contracts/sync", json=body)
    assert response.status_code == status, response.text
    if item_errors is not None:
        assert len(response.json()["errors"]) == item_errors


# --- rate limits ----------------------------------------------------------------------------------


def test_spike_limit_answers_429_with_rate_limit_headers(sandbox, api):
    sandbox.configure(spike_limit=3, spike_window_seconds=60)
    remaining = []
    for _ in range(3):
        response = api.get("/rest/v1.0/me")
        assert response.status_code == 200
        assert response.headers["X-Rate-Limit-Limit"] == "3"
        remaining.append(response.headers["X-Rate-Limit-Remaining"])
    assert remaining == ["2", "1", "0"]
    limited = api.get("/rest/v1.0/me")
    assert limited.status_code == 429
    assert all(h in limited.headers for h in RATE_LIMIT_HEADERS)
    assert limited.headers["X-Rate-Limit-Remaining"] == "0"
    assert int(limited.headers["X-Rate-Limit-Reset"]) > time.time() + 50
    assert "Retry-After" not in limited.headers
    assert limited.json()["message"].startswith("You have surpassed the max number of requests")
    assert HTTP.post(f"{sandbox.url}/oauth/token", json=CREDENTIALS).status_code == 429
    sandbox.configure(spike_limit=10)  # new limits reset the counters
    assert api.get("/rest/v1.0/me").status_code == 200


def test_headers_describe_the_limit_closest_to_exhaustion(sandbox, api):
    sandbox.configure(hourly_limit=5, spike_limit=100)
    response = api.get("/rest/v1.0/me")
    assert response.headers["X-Rate-Limit-Limit"] == "5"
    assert response.headers["X-Rate-Limit-Remaining"] == "4"
    assert int(response.headers["X-Rate-Limit-Reset"]) > time.time() + 3500
    assert "X-Rate-Limit-Limit" in HTTP.post(f"{sandbox.url}/oauth/token",
                                              json=CREDENTIALS).headers


# --- paging and filters --------------------------------------------------------------------------------


def test_paging_follows_link_headers_across_pages(api):
    response = api.get("/rest/v1.0/vendors", params={"company_id": COMPANY_ID, "per_page": 7})
    total = int(response.headers["Total"])
    assert total == len([v for v in SEED.vendors if v["is_active"]]) and total > 14
    assert response.headers["Per-Page"] == "7"
    seen, pages, relations = [], 0, []
    while True:
        pages += 1
        seen += [v["id"] for v in response.json()]
        links = dict((rel, url) for url, rel in
                     re.findall(r'<([^>]+)>; rel="(\w+)"', response.headers.get("Link", "")))
        relations.append(set(links))
        if "next" not in links:
            break
        response = api.get(links["next"])
    assert pages == -(-total // 7) >= 4 and len(seen) == total == len(set(seen))
    # procore/documentation plan_your_app/pagination.md, "Notes on the page parameter".
    assert relations[0] == {"next", "last"}
    assert relations[1] == {"first", "next", "last"}
    assert relations[2] == {"first", "prev", "next", "last"}
    assert relations[-1] == {"first", "prev", "last"}


def test_per_page_is_capped_per_endpoint(api):
    v11 = api.get("/rest/v1.1/projects", params={"company_id": COMPANY_ID, "per_page": 1000})
    assert v11.headers["Per-Page"] == "300"
    v10 = api.get("/rest/v1.0/projects", params={"company_id": COMPANY_ID, "per_page": 5000})
    assert v10.headers["Per-Page"] == "1000" and len(v10.json()) == len(SEED.projects)
    assert api.get("/rest/v1.0/projects", params={"company_id": COMPANY_ID}).headers[
        "Per-Page"] == "100"


def test_filters_by_origin_id_project_number_and_updated_range(api):
    vendors = api.get("/rest/v1.0/vendors", params={"company_id": COMPANY_ID,
                                                    "filters[origin_id]": "SUP003"}).json()
    assert [v["origin_id"] for v in vendors] == ["SUP003"]
    found = api.get("/rest/v1.0/vendors", params={"company_id": COMPANY_ID,
                                                  "filters[search]": vendors[0]["name"][:6]})
    assert vendors[0]["id"] in [v["id"] for v in found.json()]
    number = SEED.projects[3]["project_number"]
    projects = api.get("/rest/v1.1/projects", params={"company_id": COMPANY_ID,
                                                      "filters[project_number]": number}).json()
    assert [p["project_number"] for p in projects] == [number]
    make_contract(api, "PO-NEW", lines=())
    recent = api.get("/rest/v1.0/purchase_order_contracts", params={
        "project_id": PROJECT, "filters[updated_at]": "2026-01-01...2100-01-01"}).json()
    assert [c["origin_id"] for c in recent] == ["PO-NEW"]
    old = api.get("/rest/v1.0/vendors", params={"company_id": COMPANY_ID,
                                                "filters[updated_at]": "2000-01-01...2001-01-01"})
    assert old.json() == []
    bad = api.get("/rest/v1.0/vendors", params={"company_id": COMPANY_ID,
                                                "filters[updated_at]": "yesterday"})
    assert bad.status_code == 400


# --- sync semantics ---------------------------------------------------------------------------------


def test_contract_sync_creates_then_updates_by_origin_id(api):
    created = sync_contracts(api, [{"origin_id": "PO-9", "title": "First", "vendor_id": VENDOR["id"],
                                    "origin_code": "PO-9"}])
    assert created["errors"] == [] and created["entities"][0]["title"] == "First"
    contract_id = created["entities"][0]["id"]
    updated = sync_contracts(api, [{"origin_id": "PO-9", "title": "Second"}])
    assert updated["entities"][0]["id"] == contract_id
    listed = api.get("/rest/v1.0/purchase_order_contracts",
                     params={"project_id": PROJECT, "filters[origin_id]": "PO-9"}).json()
    assert [(c["id"], c["title"]) for c in listed] == [(contract_id, "Second")]
    assert listed[0]["vendor"] == {"id": VENDOR["id"], "company": VENDOR["name"],
                                   "origin_id": VENDOR["origin_id"], "origin_data": None}
    first = sync_lines(api, contract_id, [line("PO-9-1", "10.00")])["entities"][0]
    again = sync_lines(api, contract_id, [line("PO-9-1", "12.50")])["entities"][0]
    assert again["id"] == first["id"] and again["amount"] == "12.50"
    by_id = sync_contracts(api, [{"id": contract_id, "origin_id": "PO-9b"}])["entities"][0]
    assert by_id["id"] == contract_id and by_id["origin_id"] == "PO-9b"
    assert len(api.get("/rest/v1.0/purchase_order_contracts",
                       params={"project_id": PROJECT}).json()) == 1


def test_sync_of_more_than_1000_items_is_413(api):
    response = api.patch("/rest/v1.0/vendors/sync", json={
        "company_id": COMPANY_ID, "updates": [{"name": f"V{i}"} for i in range(1001)]})
    assert response.status_code == 413
    assert response.json() == {"errors": "Payload Too Large"}


def test_sync_item_errors_do_not_stop_the_good_items(api):
    contracts = sync_contracts(api, [
        {"origin_id": "GOOD", "vendor_id": VENDOR["id"]},
        {"origin_id": "BAD-VENDOR", "vendor_id": 123},
        {"origin_id": "BAD-STATUS", "status": "Void"},
    ])
    assert [e["origin_id"] for e in contracts["entities"]] == ["GOOD"]
    errors = {e["origin_id"]: e for e in contracts["errors"]}
    assert errors["BAD-VENDOR"]["vendor_id"] == 123  # the submitted item is echoed
    assert errors["BAD-VENDOR"]["errors"] == {"vendor_id": ["does not exist"]}
    assert list(errors["BAD-STATUS"]["errors"]) == ["status"]

    result = sync_lines(api, contracts["entities"][0]["id"], [
        line("L-OK"),
        line("L-FOREIGN-CODE", cost_code_id=FOREIGN_COST_CODE),
        line("L-UOM", uom="FURLONG"),
        line("L-TYPE", line_item_type_id=5),
        line("L-AMOUNT", amount="twelve"),
        line("L-OK2", "1.005"),
    ])
    assert [e["origin_id"] for e in result["entities"]] == ["L-OK", "L-OK2"]
    assert result["entities"][1]["amount"] == "1.01"
    fields = {e["origin_id"]: list(e["errors"]) for e in result["errors"]}
    assert fields == {"L-FOREIGN-CODE": ["cost_code_id"], "L-UOM": ["uom"],
                      "L-TYPE": ["line_item_type_id"], "L-AMOUNT": ["amount"]}


def test_sync_with_unknown_id_is_an_item_error(api):
    result = api.patch("/rest/v1.0/vendors/sync", json={
        "company_id": COMPANY_ID, "updates": [{"id": 1, "name": "Ghost"}, {"name": "Real"}]}).json()
    assert result["errors"] == [{"id": 1, "name": "Ghost",
                                 "errors": {"id": ["Entity with this ID not found"]}}]
    assert result["entities"][0]["name"] == "Real" and result["entities"][0]["origin_id"] is None


def test_contract_origin_id_is_unique_across_the_company(api):
    make_contract(api, "PO-SHARED", lines=())
    other = sync_contracts(api, [{"origin_id": "PO-SHARED", "title": "dup"}],
                           project_id=OTHER_PROJECT)
    assert other["entities"] == []
    assert other["errors"][0]["errors"] == {"origin_id": ["has already been taken"]}
    single = api.post("/rest/v1.0/purchase_order_contracts", json={
        "project_id": OTHER_PROJECT, "purchase_order_contract": {"origin_id": "PO-SHARED"}})
    assert single.status_code == 422
    assert single.json() == {"errors": {"origin_id": ["has already been taken"]}}


def test_reference_data_syncs_upsert_by_origin_id(api):
    def sync(path, updates, params=None, **body):
        response = api.patch(path, params=params, json={**body, "updates": updates})
        assert response.status_code == 200, response.text
        return response.json()

    for name in ("New", "Renamed"):
        vendor = sync("/rest/v1.0/vendors/sync", [{"origin_id": "SUP900", "name": name}],
                      company_id=COMPANY_ID)["entities"][0]
        code = sync("/rest/v1.0/cost_codes/sync", [{"origin_id": "CC-X", "code": "99-100",
                                                   "name": name}],
                    params={"project_id": PROJECT})["entities"][0]
        job = sync("/rest/v1.0/sub_jobs/sync", [{"origin_id": "SJ-X", "code": "C", "name": name}],
                   params={"project_id": PROJECT}, project_id=PROJECT)["entities"][0]
        lit = sync("/rest/v1.0/line_item_types/sync", [{"origin_id": "T-X", "name": name,
                                                        "csv_import_code": "X",
                                                        "base_type": "other"}],
                   company_id=COMPANY_ID)["entities"][0]
        standard = sync("/rest/v1.0/standard_cost_codes/sync",
                        [{"origin_id": "SCC-X", "code": "99", "name": name}],
                        company_id=COMPANY_ID,
                        standard_cost_code_list_id=SEED.standard_cost_code_list["id"])
        assert [vendor["name"], code["name"], job["name"], lit["name"],
                standard["entities"][0]["name"]] == [name] * 5
    assert vendor["synced_to_erp"] is True and lit["code"] == "X"
    vendors = api.get("/rest/v1.0/vendors", params={"company_id": COMPANY_ID,
                                                    "filters[origin_id]": "SUP900"}).json()
    assert len(vendors) == 1
    assert api.get("/rest/v1.0/cost_codes", params={"project_id": PROJECT,
                                                    "filters[origin_id]": "CC-X"}).json()[0][
        "id"] == code["id"]
    duplicate = sync("/rest/v1.0/vendors/sync", [{"name": "Clash", "origin_id": "SUP900",
                                                  "id": VENDOR["id"]}], company_id=COMPANY_ID)
    assert duplicate["errors"][0]["errors"] == {"origin_id": ["has already been taken"]}


def test_vendor_create_validation_and_inactive_lifecycle(api, sandbox):
    blank = api.post("/rest/v1.0/vendors", json={"company_id": COMPANY_ID, "vendor": {
        "country_code": "England"}})
    assert blank.status_code == 422
    assert set(blank.json()["errors"]) == {"name", "country_code"}
    vendor = api.post("/rest/v1.0/vendors", json={"company_id": COMPANY_ID, "vendor": {
        "name": "Temp Ltd", "origin_id": "SUP777", "is_active": False}})
    assert vendor.status_code == 201
    vendor_id = vendor.json()["id"]
    listed = api.get("/rest/v1.0/vendors", params={"company_id": COMPANY_ID,
                                                   "filters[origin_id]": "SUP777"}).json()
    assert [(v["id"], v["is_active"]) for v in listed] == [(vendor_id, False)]  # "all Vendors"
    inactive = api.get(f"/rest/v1.0/companies/{COMPANY_ID}/vendors/inactive").json()
    assert [v["id"] for v in inactive] == [vendor_id]
    back = api.patch(f"/rest/v1.0/companies/{COMPANY_ID}/vendors/inactive/{vendor_id}")
    assert back.status_code == 200 and back.json()["is_active"] is True
    assert sandbox.state.vendors_by_origin()["SUP777"]["name"] == "Temp Ltd"


# --- commitments: money, locking, deletes, change orders ----------------------------------------------


def test_ids_are_64_bit_and_money_is_decimal_strings(api, sandbox):
    contract = make_contract(api, "PO-M", lines=())
    unit = sync_contracts(api, [{"origin_id": "PO-U", "accounting_method": "unit"}])["entities"][0]
    lines = sync_lines(api, unit["id"], [
        {"origin_id": "U-1", "quantity": "12.5", "unit_cost": 3.3, "uom": "M3"},
        {"origin_id": "U-2", "quantity": 2, "unit_cost": "0.125", "amount": "9.99"}])["entities"]
    assert [ln["amount"] for ln in lines] == ["41.25", "9.99"]
    assert lines[0]["quantity"] == "12.5" and lines[0]["unit_cost"] == "3.3"
    assert lines[0]["total_amount"] == "41.25"
    assert lines[0]["holder"] == {"id": unit["id"], "holder_type": "PurchaseOrderContract"}
    shown = api.get(f"/rest/v1.0/purchase_order_contracts/{unit['id']}",
                    params={"project_id": PROJECT}).json()
    assert shown["grand_total"] == "51.24" and isinstance(shown["grand_total"], str)
    assert len(shown["line_items"]) == 2
    assert all(i > 2**32 for i in (contract["id"], unit["id"], lines[0]["id"],
                                   shown["project"]["id"], contract["vendor"]["id"]))
    assert make_contract(api, "PO-M2", lines=())["grand_total"] == "0.00"
    assert set(sandbox.state.contracts_by_origin(PROJECT)) == {"PO-M", "PO-U", "PO-M2"}


def test_approved_contract_locks_vendor_and_schedule_of_values(api):
    contract = make_contract(api, "PO-A", lines=("L1", "L2"))
    base = f"/rest/v1.0/purchase_order_contracts/{contract['id']}"
    line_id = api.get(f"{base}/line_items", params={"project_id": PROJECT}).json()[0]["id"]
    approve(api, contract["id"])

    locked = sync_lines(api, contract["id"], [line("PO-A-L1", "1.00"), line("PO-A-L3")])
    assert locked["entities"] == []
    assert all("locked because the commitment is Approved" in e["errors"]["base"][0]
               for e in locked["errors"])
    assert api.post(f"{base}/line_items", json={"project_id": PROJECT,
                                                "line_item": line("X")}).status_code == 422
    patch = api.patch(f"{base}/line_items/{line_id}", json={"project_id": PROJECT,
                                                            "line_item": {"amount": "5"}})
    assert patch.status_code == 422 and "locked" in patch.json()["errors"]["base"][0]
    assert api.delete(f"{base}/line_items/{line_id}",
                      params={"project_id": PROJECT}).status_code == 422
    other_vendor = SEED.vendors[1]["id"]
    vendor = api.patch(base, json={"project_id": PROJECT, "purchase_order_contract": {
        "vendor_id": other_vendor}})
    assert vendor.status_code == 422 and list(vendor.json()["errors"]) == ["vendor_id"]
    assert api.delete(base, params={"project_id": PROJECT}).status_code == 422
    synced_header = sync_contracts(api, [{"origin_id": "PO-A", "title": "Renamed"}])
    assert synced_header["entities"][0]["title"] == "Renamed"

    closed = api.patch(base, json={"project_id": PROJECT,
                                   "purchase_order_contract": {"status": "Closed"}})
    assert closed.status_code == 200 and closed.json()["status"] == "Closed"
    assert closed.json()["grand_total"] == "200.00"
    assert sync_lines(api, contract["id"], [line("PO-A-L3")])["errors"] == []


def test_deleted_records_leave_lists_unless_included(api):
    contract = make_contract(api, "PO-D", lines=("L1", "L2"))
    base = f"/rest/v1.0/purchase_order_contracts/{contract['id']}"
    lines = api.get(f"{base}/line_items", params={"project_id": PROJECT}).json()
    assert api.delete(f"{base}/line_items/{lines[0]['id']}",
                      params={"project_id": PROJECT}).status_code == 200
    remaining = api.get(f"{base}/line_items", params={"project_id": PROJECT}).json()
    assert [ln["origin_id"] for ln in remaining] == ["PO-D-L2"]
    assert api.get(base, params={"project_id": PROJECT}).json()["grand_total"] == "100.00"
    assert api.delete(base, params={"project_id": PROJECT}).status_code == 200
    params = {"project_id": PROJECT}
    assert api.get("/rest/v1.0/purchase_order_contracts", params=params).json() == []
    deleted = api.get("/rest/v1.0/purchase_order_contracts",
                      params={**params, "filters[include_deleted]": "only"}).json()
    assert [c["origin_id"] for c in deleted] == ["PO-D"] and deleted[0]["deleted_at"]
    assert api.get(base, params=params).status_code == 404
    recreated = make_contract(api, "PO-D", lines=())
    assert recreated["id"] != contract["id"]


def test_single_writes_validate_with_422_field_errors(api):
    response = api.post("/rest/v1.0/purchase_order_contracts", json={
        "project_id": PROJECT, "purchase_order_contract": {
            "status": "approved", "vendor_id": 1, "contract_date": "31/12/2026",
            "executed": "yes"}})
    assert response.status_code == 422
    assert set(response.json()["errors"]) == {"status", "vendor_id", "contract_date", "executed"}
    created = api.post("/rest/v1.0/purchase_order_contracts", json={
        "project_id": PROJECT, "purchase_order_contract": {"number": "PO-7", "title": "T"}})
    assert created.status_code == 201 and created.json()["status"] == "Draft"
    again = api.post("/rest/v1.0/purchase_order_contracts", json={
        "project_id": PROJECT, "purchase_order_contract": {"number": "PO-7"}})
    assert again.status_code == 422 and list(again.json()["errors"]) == ["number"]


# --- requisitions -------------------------------------------------------------------------------------


def test_requisition_needs_a_billing_period_of_the_project(api):
    contract = make_contract(api, "PO-P", lines=("L1",))
    foreign = create_requisition(api, contract["id"], "PI-X",
                                 period=SEED.billing_periods[OTHER_PROJECT][0]["id"])
    assert foreign.status_code == 422 and list(foreign.json()["errors"]) == ["period_id"]
    unknown_commitment = create_requisition(api, 12345, "PI-Y")
    assert unknown_commitment.status_code == 422
    assert create_requisition(api, contract["id"], "PI-Z").status_code == 201
    # no source says Procore refuses a second requisition with an origin_id in use
    # (docs/api-assumptions.md, "Which records keep that uniqueness"): accepted
    duplicate = create_requisition(api, contract["id"], "PI-Z")
    assert duplicate.status_code == 201, duplicate.text
    listed = api.get("/rest/v1.1/requisitions", params={
        "project_id": PROJECT, "filters[origin_id]": "PI-Z"}).json()
    assert len(listed) == 2


def test_v11_requisition_items_bill_schedule_of_values_lines(api):
    contract = make_contract(api, "PO-I", lines=("L1", "L2"))
    lines = api.get(f"/rest/v1.0/purchase_order_contracts/{contract['id']}/line_items",
                    params={"project_id": PROJECT}).json()
    response = api.post("/rest/v1.1/requisitions", json={
        "project_id": PROJECT, "commitment_id": contract["id"], "requisition": {
            "period_id": PERIOD, "invoice_number": "PI-I", "items": [
                {"item_type": "contract_item", "line_item_id": lines[0]["id"],
                 "work_completed_this_period": "40.00"}]}})
    assert response.status_code == 201, response.text
    requisition = response.json()
    assert requisition["total_claimed_amount"] == "40.00"
    assert requisition["summary"]["balance_to_finish_including_retainage"] == "160.00"
    assert [i["work_completed_this_period"] for i in requisition["items"]] == ["40.00", "0.00"]
    items_path = f"/rest/v1.0/requisitions/{requisition['id']}/contract_items"
    item_id = requisition["items"][1]["id"]
    updated = api.patch(f"{items_path}/{item_id}", params={"project_id": PROJECT}, json={
        "requisition_contract_item": {"work_completed_this_period": "10"}})
    assert updated.status_code == 200 and updated.json()["work_completed_this_period"] == "10.00"
    shown = api.get(f"/rest/v1.1/requisitions/{requisition['id']}",
                    params={"project_id": PROJECT}).json()
    assert shown["total_claimed_amount"] == "50.00"
    missing_type = api.patch(f"/rest/v1.1/requisitions/{requisition['id']}", json={
        "project_id": PROJECT, "requisition": {"items": [{"id": item_id}]}})
    assert missing_type.status_code == 422
    assert list(missing_type.json()["errors"]) == ["items[0].item_type"]


# --- injected faults (ControlsMiddleware around the app) ------------------------------------------------


def test_injected_429_with_retry_after_then_recovery(sandbox, api):
    HTTP.post(f"{sandbox.url}/_sandbox/faults", json={
        "route": "GET /rest/v1.0/projects", "status": 429, "retry_after": 2, "count": 1})
    params = {"company_id": COMPANY_ID}
    faulted = api.get("/rest/v1.0/projects", params=params)
    assert faulted.status_code == 429 and faulted.headers["Retry-After"] == "2"
    assert api.get("/rest/v1.0/projects", params=params).status_code == 200
    calls = HTTP.get(f"{sandbox.url}/_sandbox/calls").json()["calls"]
    assert [c["status"] for c in calls if c["path"] == "/rest/v1.0/projects"] == [429, 200]


def test_injected_dropped_connection_and_delay(sandbox, api):
    HTTP.post(f"{sandbox.url}/_sandbox/faults", json=[
        {"route": "PATCH /rest/v1.0/vendors/sync", "drop": True, "count": 1},
        {"route": "GET /rest/v1.0/me", "delay": 0.3, "count": 1}])
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.patch("/rest/v1.0/vendors/sync", json={"company_id": COMPANY_ID, "updates": []})
    started = time.monotonic()
    assert api.get("/rest/v1.0/me").status_code == 200
    assert time.monotonic() - started >= 0.3
