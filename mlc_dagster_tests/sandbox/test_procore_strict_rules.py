"""Issue 13's Procore rules, over real HTTP: each test names the rule and its source.

Unknown body attributes dropped, the Approved lock as a company setting, immutable
ERP-synced invoices, which invoices may change, invoicing disabled on a commitment, one open
billing period, Link headers, DELETE status codes, the /vendors listing; and the places where
the sandbox used to accept what Procore's documents say the API refuses (token revocation,
body media types, include_deleted, by_status, date-range bounds, country and state codes).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mlc_dagster_tests.sandbox.procore_helpers import (  # noqa: F401 - fixtures
    CLOSED_PERIOD,
    HTTP,
    PERIOD,
    PROJECT,
    SEED,
    VENDOR,
    api_fixture,
    approve,
    create_requisition,
    line,
    make_contract,
    sandbox_fixture,
    server_fixture,
    sync_contracts,
    sync_lines,
    token_for,
)
from mlc_sandbox.procore.requisitions import INVOICE_SYNCED
from mlc_sandbox.procore.spec import body_templates, permitted_body
from mlc_sandbox.seed import COMPANY_ID, SANDBOX_CREDENTIALS

CONTRACTS = "/rest/v1.0/purchase_order_contracts"


def dropped_by(sandbox, method: str, path: str) -> list[list[str]]:
    return [c["dropped"] for c in sandbox.controls.calls
            if (c["method"], c["path"]) == (method, path)]


# --- unknown body attributes (issue 13 point 4) ----------------------------------------------


def test_permitted_body_keeps_only_template_attributes_at_every_depth():
    template = body_templates()[("POST", "/rest/v1.1/requisitions")]
    body = {"project_id": 1, "commitment_id": 2, "stray": True, "requisition": {
        "period_id": 3, "comment": "not in v1.1", "custom_field_123": "kept",
        "custom_field_x": "dropped", "items": [
            {"item_type": "contract_item", "line_item_id": 4, "id": 9},
            {"line_item_id": 5, "amount": "1"}, "not an object"]}}
    kept, dropped = permitted_body(body, template)
    assert kept == {"project_id": 1, "commitment_id": 2, "requisition": {
        "period_id": 3, "custom_field_123": "kept", "items": [
            {"item_type": "contract_item", "line_item_id": 4}, {"line_item_id": 5},
            "not an object"]}}
    assert dropped == ["stray", "requisition.comment", "requisition.custom_field_x",
                       "requisition.items[0].id", "requisition.items[1].amount"]
    sync = body_templates()[("PATCH", "/rest/v1.0/purchase_order_contracts/sync")]
    assert permitted_body({"updates": [{"id": 1, "origin_id": "a"}]}, sync) == (
        {"updates": [{"id": 1, "origin_id": "a"}]}, [])  # using_sync_actions.md: id or origin_id
    assert permitted_body({"anything": 1}, None) == ({}, ["anything"])


def test_unknown_attributes_are_dropped_never_stored_or_echoed_and_logged(api, sandbox):
    synced = sync_contracts(api, [{"origin_id": "PO-U", "title": "T", "vendor_id": VENDOR["id"],
                                   "currency_iso_code": "GBP", "line_items": [{"amount": 1}],
                                   "requisitions_are_enabled": False}])
    entity = synced["entities"][0]
    assert "line_items" in entity and entity["line_items"] == []  # the show shape, not the echo
    assert entity["requisitions_are_enabled"] is True
    assert entity["currency_configuration"] == {"currency_iso_code": None}
    assert dropped_by(sandbox, "PATCH", f"{CONTRACTS}/sync") == [
        ["updates[0].currency_iso_code", "updates[0].line_items",
         "updates[0].requisitions_are_enabled"]]
    vendor = api.patch(f"/rest/v1.0/vendors/{VENDOR['id']}", json={
        "company_id": COMPANY_ID, "vendor": {"name": "Renamed", "tax_id": "GB000",
                                             "bidding": {"small_business": True, "x": 1}}})
    assert vendor.status_code == 200 and vendor.json()["tax_id"] == VENDOR["tax_id"]
    assert dropped_by(sandbox, "PATCH", f"/rest/v1.0/vendors/{VENDOR['id']}") == [
        ["vendor.tax_id", "vendor.bidding.x"]]
    errors = sync_lines(api, entity["id"], [{**line("X-1"), "amount": "bad", "colour": "red"}])
    assert "colour" not in errors["errors"][0]  # a failed item echoes what was kept
    assert all(("dropped" in c) == (c["method"] != "GET") for c in sandbox.controls.calls)


# --- the Approved lock (tutorial_financial_tools.md "Record locking"; a company setting) --------


def test_approved_lock_refuses_every_sov_change_including_quantity_only(api):
    contract = make_contract(api, "PO-Q", lines=())
    sync_lines(api, contract["id"], [{**line("Q-1", "10.00"), "quantity": "1",
                                      "unit_cost": "10.00"}])
    approve(api, contract["id"])
    same_amount = sync_lines(api, contract["id"], [{**line("Q-1", "10.00"), "quantity": "4",
                                                    "unit_cost": "2.50"}])
    assert same_amount["entities"] == [] and "id" not in same_amount["errors"][0]
    shown = api.get(f"{CONTRACTS}/{contract['id']}/line_items", params={"project_id": PROJECT})
    assert [(ln["quantity"], ln["unit_cost"]) for ln in shown.json()] == [("1", "10.00")]


def test_approved_lock_off_lets_the_sov_vendor_and_delete_through(api, sandbox):
    contract = make_contract(api, "PO-O", lines=("L1",))
    approve(api, contract["id"])
    base = f"{CONTRACTS}/{contract['id']}"
    assert sync_lines(api, contract["id"], [line("PO-O-L1", "1.00")])["entities"] == []
    sandbox.configure(approved_lock="false")  # the company setting, turned off
    assert HTTP.get(f"{sandbox.url}/_sandbox/config").json()["approved_lock"] is False
    assert sync_lines(api, contract["id"], [line("PO-O-L1", "1.00")])["errors"] == []
    vendor = api.patch(base, json={"project_id": PROJECT, "purchase_order_contract": {
        "vendor_id": SEED.vendors[1]["id"]}})
    assert vendor.status_code == 200
    assert api.delete(base, params={"project_id": PROJECT}).status_code == 200
    bad = HTTP.post(f"{sandbox.url}/_sandbox/config", json={"approved_lock": "maybe"})
    assert bad.status_code == 400


# --- subcontractor invoices ---------------------------------------------------------------------


def test_invoice_with_origin_id_is_immutable_in_every_way(api):
    """tutorial_financial_tools.md: "When an origin_id exists on a Subcontractor Invoice, the
    entire object is immutable"."""
    contract = make_contract(api, "PO-I", lines=("L1",))
    created = create_requisition(api, contract["id"], "PI-1")
    assert created.status_code == 201
    invoice = created.json()
    item_id = api.get(f"/rest/v1.0/requisitions/{invoice['id']}/contract_items",
                      params={"project_id": PROJECT}).json()[0]["id"]
    body = {"project_id": PROJECT, "commitment_id": contract["id"],
            "requisition": {"invoice_number": "changed"}}
    attempts = [
        api.patch(f"/rest/v1.0/requisitions/{invoice['id']}", json=body),
        api.patch(f"/rest/v1.1/requisitions/{invoice['id']}", json=body),
        api.patch(f"/rest/v1.0/requisitions/{invoice['id']}/contract_items/{item_id}",
                  params={"project_id": PROJECT},
                  json={"requisition_contract_item": {"work_completed_this_period": "1"}}),
        api.patch(f"/rest/v1.0/requisitions/{invoice['id']}/bulk_item_update",
                  params={"project_id": PROJECT}, json={"requisition_items": [
                      {"id": item_id, "item_type": "contract_item",
                       "work_completed_this_period": "1"}]}),
        api.delete(f"/rest/v1.1/requisitions/{invoice['id']}", params={"project_id": PROJECT}),
    ]
    assert [r.status_code for r in attempts] == [422] * 5
    assert all(r.json() == {"errors": {"base": [INVOICE_SYNCED]}} for r in attempts)
    found = api.get("/rest/v1.1/requisitions", params={"project_id": PROJECT,
                                                       "filters[origin_id]": "PI-1"}).json()
    assert [(r["id"], r["origin_id"], r["invoice_number"], r["deletable"]) for r in found] == [
        (invoice["id"], "PI-1", "PI-1", False)]


def test_only_the_latest_draft_or_revise_and_resubmit_invoice_may_change(api):
    """OAS Update Requisition: the most recent, in 'draft' or 'revise_and_resubmit'."""
    contract = make_contract(api, "PO-R", lines=("L1",))
    first = create_requisition(api, contract["id"], None).json()
    second = create_requisition(api, contract["id"], None).json()
    assert (first["number"], second["number"]) == (1, 2)

    def patch(invoice, **fields):
        return api.patch(f"/rest/v1.0/requisitions/{invoice['id']}", json={
            "project_id": PROJECT, "requisition": fields}).status_code

    assert patch(first, invoice_number="old") == 422
    assert api.delete(f"/rest/v1.0/requisitions/{first['id']}",
                      params={"project_id": PROJECT}).status_code == 422
    assert patch(second, status="under_review") == 200
    assert patch(second, invoice_number="late") == 422
    assert patch(second, status="revise_and_resubmit") == 422  # under review: not editable
    listed = api.get("/rest/v1.1/requisitions", params={
        "project_id": PROJECT, "filters[commitment_id]": contract["id"],
        "filters[is_last]": "false"})
    assert [r["id"] for r in listed.json()] == [first["id"]]  # OAS: false = all but the last
    assert listed.headers["Per-Page"] == "30"  # OAS: "Elements per page, default 30"


def test_v11_updates_name_items_by_their_own_id(api):
    """OAS: PATCH /rest/v1.1/requisitions/:id body `requisition.items[].id`."""
    contract = make_contract(api, "PO-B", lines=("L1",))
    invoice = create_requisition(api, contract["id"], None).json()
    line_id = api.get(f"{CONTRACTS}/{contract['id']}/line_items",
                      params={"project_id": PROJECT}).json()[0]["id"]
    item_id = api.get(f"/rest/v1.0/requisitions/{invoice['id']}/contract_items",
                      params={"project_id": PROJECT}).json()[0]["id"]
    path = f"/rest/v1.1/requisitions/{invoice['id']}"
    by_line = api.patch(path, json={"project_id": PROJECT, "requisition": {"items": [
        {"item_type": "contract_item", "line_item_id": line_id,
         "work_completed_this_period": "5"}]}})
    assert by_line.status_code == 422 and list(by_line.json()["errors"]) == ["items[0].id"]
    by_id = api.patch(path, json={"project_id": PROJECT, "requisition": {"items": [
        {"item_type": "contract_item", "id": item_id, "work_completed_this_period": "5"}]}})
    assert by_id.status_code == 200 and by_id.json()["total_claimed_amount"] == "5.00"
    bulk = api.patch(f"/rest/v1.0/requisitions/{invoice['id']}/bulk_item_update",
                     params={"project_id": PROJECT}, json={"requisition_items": [
                         {"id": item_id, "item_type": "contract_item",
                          "work_completed_this_period": "7"}]})
    assert bulk.status_code == 200 and bulk.content == b""
    assert api.get(path, params={"project_id": PROJECT}).json()["total_claimed_amount"] == "7.00"


def test_commitment_with_invoicing_disabled_refuses_invoices(api):
    """OAS Show Purchase Order Contract: requisitions_are_enabled ("If true, Requisitions
    (Subcontractor Invoices) are enabled"); the seed disables it on a few POs."""
    disabled = SEED.requisitions_disabled_pos[0]
    assert 0 < len(SEED.requisitions_disabled_pos) <= len(SEED.x3_purchase_orders) // 10
    off = make_contract(api, "PO-OFF", lines=("L1",), number=disabled, origin_code=disabled)
    on = make_contract(api, "PO-ON", lines=("L1",))
    assert (off["requisitions_are_enabled"], on["requisitions_are_enabled"]) == (False, True)
    refused = create_requisition(api, off["id"], "PI-OFF")
    assert refused.status_code == 422 and list(refused.json()["errors"]) == ["base"]
    assert create_requisition(api, on["id"], "PI-ON").status_code == 201


# --- billing periods (Procore support, "Edit a Billing Period") -------------------------------


def test_one_open_billing_period_and_new_invoices_go_into_it(api):
    path = f"/rest/v1.0/projects/{PROJECT}/billing_periods"
    periods = api.get(path, params={"per_page": 100}).json()
    assert [p["id"] for p in periods if p["status"] == "open"] == [PERIOD]
    for project in SEED.projects:
        assert [p["status"] for p in SEED.billing_periods[project["id"]]].count("open") == 1
    second_open = api.post(path, json={"billing_period": {
        "start_date": "2027-01-01", "end_date": "2027-01-31"}})
    assert second_open.status_code == 422 and list(second_open.json()["errors"]) == ["status"]
    closed = api.post(path, json={"billing_period": {
        "start_date": "2027-01-01", "end_date": "2027-01-31", "status": "closed"}})
    assert closed.status_code == 201, closed.text
    reopen = api.patch(f"{path}/{closed.json()['id']}",
                       json={"billing_period": {"status": "open"}})
    assert reopen.status_code == 422

    contract = make_contract(api, "PO-P", lines=("L1",))
    in_closed = create_requisition(api, contract["id"], "PI-C", period=CLOSED_PERIOD)
    assert in_closed.status_code == 422 and list(in_closed.json()["errors"]) == ["period_id"]
    invoice = create_requisition(api, contract["id"], "PI-O", requisition_start="2026-01-05",
                                 requisition_end="2026-01-06")
    assert invoice.status_code == 201
    open_period = next(p for p in periods if p["id"] == PERIOD)
    assert (invoice.json()["requisition_start"], invoice.json()["requisition_end"]) == (
        open_period["start_date"], open_period["end_date"])

    assert api.patch(f"{path}/{PERIOD}", json={"billing_period": {"status": "closed"}}).json()[
        "status"] == "closed"
    assert api.patch(f"{path}/{closed.json()['id']}",
                     json={"billing_period": {"status": "open"}}).status_code == 200


# --- paging, deletes, vendors -------------------------------------------------------------------


@pytest.mark.parametrize(("per_page", "relations"), [
    (1000, [{"last"}]),  # one page: page 1 (no next) and the last page at once
    (30, [{"next", "last"}, {"first", "last"}]),
])
def test_link_relations_follow_the_pagination_guide(api, per_page, relations):
    """procore/documentation plan_your_app/pagination.md, "Notes on the page parameter"."""
    total = len(SEED.vendors)
    assert 30 < total <= 60
    seen = []
    for page in range(1, len(relations) + 1):
        response = api.get("/rest/v1.0/vendors", params={
            "company_id": COMPANY_ID, "per_page": per_page, "page": page})
        seen.append({link["rel"] for link in response.links.values()})
    assert seen == relations


def test_deletes_answer_the_documented_status(api):
    """procore_python_sdk docs: 200 with an empty body for contracts, their line items and
    requisitions; 204 for commitment change orders."""
    contract = make_contract(api, "PO-D", lines=("L1",))
    invoice = create_requisition(api, contract["id"], None).json()
    cco = api.post(f"/rest/v1.0/projects/{PROJECT}/commitment_change_orders", json={
        "change_order": {"contract_id": contract["id"], "title": "x"}}).json()
    line_id = api.get(f"{CONTRACTS}/{contract['id']}/line_items",
                      params={"project_id": PROJECT}).json()[0]["id"]
    params = {"project_id": PROJECT}
    responses = [
        api.delete(f"/rest/v1.1/requisitions/{invoice['id']}", params=params),
        api.delete(f"{CONTRACTS}/{contract['id']}/line_items/{line_id}", params=params),
        api.delete(f"/rest/v1.0/projects/{PROJECT}/commitment_change_orders/{cco['id']}"),
        api.delete(f"{CONTRACTS}/{contract['id']}", params=params),
    ]
    assert [(r.status_code, r.content) for r in responses] == [
        (200, b""), (200, b""), (204, b""), (200, b"")]


def test_vendor_listing_is_all_vendors_searched_as_documented(api):
    """OAS List company vendors: "all Vendors"; filters[search] matches name, keywords,
    origin_code, or ABN/EIN number (nothing else)."""
    created = api.post("/rest/v1.0/vendors", json={"company_id": COMPANY_ID, "vendor": {
        "name": "Quiet Crane Hire", "abbreviated_name": "ZZQ", "origin_code": "ORIG-42",
        "is_active": False, "trade_ids": [7]}}).json()

    def search(text):
        return [v["id"] for v in api.get("/rest/v1.0/vendors", params={
            "company_id": COMPANY_ID, "filters[search]": text}).json()]

    assert created["id"] in search("quiet crane") and created["id"] in search("orig-42")
    assert search("ZZQ") == []
    assert search(VENDOR["tax_id"]) == [VENDOR["id"]]
    everyone = api.get("/rest/v1.0/vendors", params={"company_id": COMPANY_ID,
                                                     "per_page": 1000}).json()
    assert len(everyone) == len(SEED.vendors) + 1
    by_trade = api.get("/rest/v1.0/vendors", params={"company_id": COMPANY_ID,
                                                     "filters[trade_id][]": 7}).json()
    assert [v["id"] for v in by_trade] == [created["id"]]


# --- rules the sandbox used to be lenient about ------------------------------------------------


CLIENT = {"client_id": SANDBOX_CREDENTIALS["procore_client_id"],
          "client_secret": SANDBOX_CREDENTIALS["procore_client_secret"]}


def multipart(fields: dict) -> dict:
    return {"files": {k: (None, v) for k, v in fields.items()}}


def test_revoke_needs_the_client_credentials_as_multipart_form_data(sandbox):
    """oauth/oauth_endpoints.md "Revoke Token": token, client_id and client_secret (required
    for confidential apps) "in the request body as form-data" (curl -F)."""
    token = token_for(sandbox.url)
    me = f"{sandbox.url}/rest/v1.0/me"
    auth = {"Authorization": f"Bearer {token}", "Procore-Company-Id": str(COMPANY_ID)}
    revoke = f"{sandbox.url}/oauth/revoke"
    refused = [
        HTTP.post(revoke, **multipart({"token": token})),
        HTTP.post(revoke, **multipart({"token": token, "client_id": CLIENT["client_id"]})),
        HTTP.post(revoke, **multipart({"token": token, **CLIENT, "client_secret": "nope"})),
        HTTP.post(revoke, data={"token": token, **CLIENT}),
        HTTP.post(revoke, json={"token": token, **CLIENT}),
        HTTP.post(revoke, **multipart(CLIENT)),
    ]
    assert [(r.status_code, r.json()["error"]) for r in refused] == [
        (401, "invalid_client"), (401, "invalid_client"), (401, "invalid_client"),
        (400, "invalid_request"), (400, "invalid_request"), (400, "invalid_request")]
    assert HTTP.get(me, headers=auth).status_code == 200  # none of them revoked it
    assert HTTP.post(revoke, **multipart({"token": "unknown", **CLIENT})).status_code == 200
    assert HTTP.post(revoke, **multipart({"token": token, **CLIENT})).status_code == 200
    assert HTTP.get(me, headers=auth).status_code == 401


def test_rest_writes_take_json_bodies_only(api):
    """api_essentials/troubleshooting.md (400): "Ensure `Content-Type: application/json`
    header is set for POST/PATCH/PUT requests"; the OAS sends it on every write."""
    vendor = {"company_id": COMPANY_ID, "vendor": {"name": "Media Type Ltd"}}
    raw = json.dumps(vendor)
    refused = [
        api.post("/rest/v1.0/vendors", content=raw, headers={"Content-Type": "text/plain"}),
        api.post("/rest/v1.0/vendors", content=raw),  # no Content-Type at all
        api.post("/rest/v1.0/vendors", data={"company_id": COMPANY_ID,
                                             "vendor[name]": "Media Type Ltd"}),
        api.post("/rest/v1.0/vendors", files={"company_id": (None, str(COMPANY_ID))}),
        api.patch("/rest/v1.0/vendors/sync", content=json.dumps({
            "company_id": COMPANY_ID, "updates": [{"name": "Media Type Ltd"}]}),
            headers={"Content-Type": "application/x-www-form-urlencoded"}),
    ]
    assert [r.status_code for r in refused] == [400] * 5
    assert refused[0].json() == {"errors": "Content-Type must be application/json"}
    names = [v["name"] for v in api.get("/rest/v1.0/vendors", params={
        "company_id": COMPANY_ID, "per_page": 1000}).json()]
    assert "Media Type Ltd" not in names
    created = api.post("/rest/v1.0/vendors", content=raw,
                       headers={"Content-Type": "application/json; charset=utf-8"})
    assert created.status_code == 201, created.text
    token = HTTP.post(f"{api.base_url}/oauth/token", content=json.dumps(
        {"grant_type": "client_credentials", **CLIENT}), headers={"Content-Type": "text/plain"})
    assert token.status_code == 400 and token.json()["error"] == "invalid_request"


@pytest.mark.parametrize(("mode", "expected"), [
    ("only", ["PO-GONE"]), ("with", ["PO-LIVE", "PO-GONE"]), (None, ["PO-LIVE"]),
    ("true", ["PO-LIVE"]), ("1", ["PO-LIVE"]), ("false", ["PO-LIVE"]), ("ONLY", ["PO-LIVE"]),
])
def test_include_deleted_knows_only_only_and_with(api, mode, expected):
    """tutorials/filtering_on_list_actions.md: `only` -> deleted, `with` -> both; any other
    value is treated as absent (ASSUMPTION)."""
    make_contract(api, "PO-LIVE", lines=())
    gone = make_contract(api, "PO-GONE", lines=())
    assert api.delete(f"{CONTRACTS}/{gone['id']}", params={"project_id": PROJECT}).is_success
    params = {"project_id": PROJECT}
    if mode is not None:
        params["filters[include_deleted]"] = mode
    listed = api.get(CONTRACTS, params=params)
    assert listed.status_code == 200
    assert [c["origin_id"] for c in listed.json()] == expected


def test_project_status_filter_must_be_active_inactive_or_all(api):
    """OAS GET /rest/v1.0/projects: filters[by_status] "Must be one of Active, Inactive, or
    All"; the list defaults to active projects."""
    idle = api.post("/rest/v1.0/projects", json={"company_id": COMPANY_ID, "project": {
        "name": "Idle site", "active": False}}).json()

    def ids(status=None):
        params = {"company_id": COMPANY_ID, "per_page": 1000}
        if status is not None:
            params["filters[by_status]"] = status
        response = api.get("/rest/v1.1/projects", params=params)
        if response.status_code != 200:
            return response.status_code, response.json()["errors"]
        return 200, [p["id"] for p in response.json()]

    active = [p["id"] for p in SEED.projects]
    assert ids() == ids("Active") == (200, active)
    assert ids("Inactive") == (200, [idle["id"]])
    assert ids("All") == (200, [*active, idle["id"]])
    for bogus in ("bogus", "active", "ALL", "Archived"):
        assert ids(bogus) == (400, "filters[by_status] must be one of Active, Inactive, All")


@pytest.mark.parametrize(("path", "bounds", "status"), [
    (CONTRACTS, "2000-01-01...2000-01-02", 200),
    (CONTRACTS, "2000-01-01T00:00:00Z...2000-01-02T00:00:00Z", 200),
    (CONTRACTS, "2000-01-01T00:00:00+01:00...2000-01-02T00:00:00-05:00", 200),
    (CONTRACTS, "2000-01-01T00:00:00...2000-01-02T00:00:00", 400),  # no offset
    (CONTRACTS, "2000-01-01T00:00:00.000Z...2000-01-02T00:00:00.000Z", 400),  # fractions
    (CONTRACTS, "2000-01-01T00:00Z...2000-01-02T00:00Z", 400),  # no seconds
    (CONTRACTS, "2000-01-01...2000-01-02T00:00:00Z", 400),  # two formats
    (CONTRACTS, "2000-01-01T00:00:00+05:30...2000-01-02T00:00:00Z", 400),
    (CONTRACTS, '"2000-01-01...2000-01-02"', 400),
    (CONTRACTS, "2000-02-30...2000-03-01", 400),
    (CONTRACTS, "2000-01-01", 400),
    ("/rest/v1.1/requisitions", "2000-01-01T00:00:00Z...2000-01-02T00:00:00Z", 200),
    ("/rest/v1.1/requisitions", "2000-01-01T00:00:00+01:00...2000-01-02T00:00:00+01:00", 400),
    ("/rest/v1.0/requisitions", "2000-01-01T00:00:00+01:00...2000-01-02T00:00:00+01:00", 200),
])
def test_date_range_bounds_take_only_the_formats_the_operation_lists(api, path, bounds, status):
    """OAS descriptions of filters[updated_at]: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ` and, where
    listed (not on v1.1 requisitions), `YYYY-MM-DDTHH:MM:SS+XX:00`, as `start...end`."""
    make_contract(api, "PO-R", lines=())
    response = api.get(path, params={"project_id": PROJECT, "filters[updated_at]": bounds})
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json() == []  # nothing was updated in 2000


def test_date_range_with_offsets_compares_instants(api):
    contract = make_contract(api, "PO-T", lines=())
    stamp = datetime.strptime(contract["updated_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    plus_one = timezone(timedelta(hours=1))

    def found(start: datetime, end: datetime) -> list[int]:
        bounds = "...".join(t.astimezone(plus_one).strftime("%Y-%m-%dT%H:%M:%S+01:00")
                            for t in (start, end))
        response = api.get(CONTRACTS, params={"project_id": PROJECT,
                                              "filters[updated_at]": bounds})
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()]

    second = timedelta(seconds=1)
    assert found(stamp, stamp + second) == [contract["id"]]  # written one hour ahead
    assert found(stamp + second, stamp + 2 * second) == []


@pytest.mark.parametrize(("fields", "errors"), [
    ({"country_code": "UK"}, {"country_code"}),  # GB is the ISO code of the United Kingdom
    ({"country_code": "XX"}, {"country_code"}),
    ({"country_code": "gb"}, {"country_code"}),
    ({"country_code": "GBR"}, {"country_code"}),
    ({"country_code": "US", "state_code": "California"}, {"state_code"}),
    ({"country_code": "US", "state_code": "ZZ"}, {"state_code"}),
    ({"country_code": "CA", "state_code": "CA"}, {"state_code"}),  # CA is not a province
    ({"country_code": "FR", "state_code": "idf"}, {"state_code"}),
    ({"country_code": "GB"}, set()),
    ({"country_code": "US", "state_code": "CA"}, set()),
    ({"country_code": "CA", "state_code": "QC"}, set()),
    ({"country_code": "FR", "state_code": "75"}, set()),
])
def test_country_and_state_codes_are_iso_3166(api, fields, errors):
    """OAS vendors and projects: "The `country_code` and `state_code` parameter values must
    conform to the ISO-3166 Alpha-2 specification" (best_practices/country_codes.md)."""
    vendor = api.post("/rest/v1.0/vendors", json={"company_id": COMPANY_ID, "vendor": {
        "name": "Geo Ltd", **fields}})
    project = api.post("/rest/v1.0/projects", json={"company_id": COMPANY_ID, "project": {
        "name": "Geo site", **fields}})
    synced = api.patch("/rest/v1.0/vendors/sync", json={"company_id": COMPANY_ID, "updates": [
        {"name": "Geo Sync", "origin_id": "GEO-1", **fields}]}).json()
    if errors:
        assert (vendor.status_code, set(vendor.json()["errors"])) == (422, errors)
        assert (project.status_code, set(project.json()["errors"])) == (422, errors)
        assert [set(e["errors"]) for e in synced["errors"]] == [errors]
    else:
        assert (vendor.status_code, project.status_code) == (201, 201)
        assert synced["errors"] == [] and synced["entities"][0]["country_code"] == fields[
            "country_code"]


def test_state_code_is_checked_against_the_stored_country_on_update(api):
    vendor = api.post("/rest/v1.0/vendors", json={"company_id": COMPANY_ID, "vendor": {
        "name": "Geo Ltd", "country_code": "US", "state_code": "TX"}}).json()
    bad = api.patch(f"/rest/v1.0/vendors/{vendor['id']}", json={
        "company_id": COMPANY_ID, "vendor": {"state_code": "ZZ"}})
    assert bad.status_code == 422 and set(bad.json()["errors"]) == {"state_code"}
    moved = api.patch(f"/rest/v1.0/vendors/{vendor['id']}", json={
        "company_id": COMPANY_ID, "vendor": {"country_code": "CA", "state_code": "ON"}})
    assert moved.status_code == 200 and moved.json()["state_code"] == "ON"
