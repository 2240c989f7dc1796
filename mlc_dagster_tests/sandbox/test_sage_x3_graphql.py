"""Sage X3 sandbox over real HTTP on loopback: the GraphQL API (`/xtrem/api`): connected-app
tokens, schema, queries, filters and paging, and the mutations of configured API operations.

Each test states one rule of the contract in `reference/sage_x3_api.md` (or a choice the
sandbox makes where the reference is open) and fails if the simulator breaks it. Fixtures
and helpers: sage_x3_helpers.py; REST: test_sage_x3_rest.py.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import jwt
import pytest

from mlc_dagster_tests.sandbox.sage_x3_helpers import (  # noqa: F401 - fixtures
    C,
    age,
    gql_filter_string,
    import_supplier,
    make_token,
    recently,
    x3_big_fixture,
    x3_fixture,
    x3_operations_fixture,
    x3_server_fixture,
)
from mlc_sandbox.sage_x3.state import copy_json

# ======================================================================================
# GraphQL: authentication
# ======================================================================================

PING = "{ x3MasterData { supplier { query(first: 1) { edges { node { _id } } } } } }"


def test_graphql_valid_token(x3):
    data = x3.gql_data(PING)
    assert data["x3MasterData"]["supplier"]["query"]["edges"][0]["node"]["_id"] == "SUP001"


def test_graphql_tolerates_small_clock_skew(x3):
    resp = x3.gql(PING, token=make_token(iat_offset=10))
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("token, reason", [
    (lambda: make_token(iat_offset=-120, lifetime=60), "expired"),
    (lambda: make_token(iat_offset=120), "future"),
    (lambda: make_token(secret="not-the-connected-app-secret-0123456789"), "signature"),
    (lambda: make_token(lifetime=601), "validity"),
    (lambda: make_token(iss="someone-else"), "iss"),
    (lambda: make_token(sub="OTHERUSER"), "sub"),
    (lambda: jwt.encode({"iss": C["x3_jwt_client_id"], "sub": C["x3_jwt_user"]},
                        C["x3_jwt_secret"], algorithm="HS256"), "iat"),
    (lambda: jwt.encode({"iss": C["x3_jwt_client_id"], "sub": C["x3_jwt_user"],
                         "iat": int(time.time()), "exp": int(time.time()) + 60},
                        None, algorithm="none"), "Invalid token"),
    (lambda: "not.a.jwt", "Invalid token"),
])
def test_graphql_refuses_bad_tokens(x3, token, reason):
    resp = x3.gql(PING, token=token())
    assert resp.status_code == 401
    message = resp.json()["errors"][0]["message"]
    assert reason in message


def test_graphql_without_bearer_is_401(x3):
    resp = x3.http.post("/xtrem/api", json={"query": PING}, headers={"x-xtrem-endpoint": "SEED"})
    assert resp.status_code == 401 and resp.json()["errors"][0]["message"]
    resp = x3.http.post("/xtrem/api", json={"query": PING},
                        auth=(C["x3_user"], C["x3_password"]), headers={"x-xtrem-endpoint": "SEED"})
    assert resp.status_code == 401


def test_graphql_endpoint_header(x3):
    resp = x3.gql(PING, endpoint=None)
    assert resp.status_code == 400
    assert "x-xtrem-endpoint" in resp.json()["errors"][0]["message"]
    assert x3.gql(PING, endpoint="OTHER").status_code == 404


# ======================================================================================
# GraphQL: schema, queries, filters, paging
# ======================================================================================


def test_graphql_returns_only_requested_fields(x3):
    data = x3.gql_data("{ x3Purchasing { purchaseOrder { query(first: 2) { edges { node "
                       "{ _id isClosed } } } } } }")
    nodes = [e["node"] for e in data["x3Purchasing"]["purchaseOrder"]["query"]["edges"]]
    assert [set(n) for n in nodes] == [{"_id", "isClosed"}] * 2


def test_graphql_unknown_field_is_an_error(x3):
    resp = x3.gql("{ x3Purchasing { purchaseOrder { query { edges { node { number } } } } } }")
    assert resp.status_code == 400
    assert "Cannot query field 'number'" in resp.json()["errors"][0]["message"]
    resp = x3.gql("{ x3Purchasing { purchaseOrder { query { edges { node { _id } } } } }")
    assert resp.status_code == 400  # syntax error


PO_FIELDS = """
_id id _updateStamp _createStamp revisionNumber orderDate isClosed
orderFromSupplier { code { code } } project { code } purchaseSite { code } currency { code }
internalOrderReference totalAmountExcludingTax
purchaseOrderLines { query { edges { node {
  lineNumber product { code description1 } account { code } project { code }
  quantityInOrderUnitOrdered orderUnit { code } netPrice lineAmountExcludingTax isClosed
} } } }
"""


def test_graphql_purchase_order_read_maps_x3_columns(x3):
    po = next(p for p in x3.state.x3_purchase_orders if p["CLEFLG"] == 2)
    query = f"query($id: String!) {{ x3Purchasing {{ purchaseOrder {{ read(_id: $id) {{ {PO_FIELDS} }} }} }} }}"
    node = x3.gql_data(query, {"id": po["POHNUM"]})["x3Purchasing"]["purchaseOrder"]["read"]
    assert node["_id"] == node["id"] == po["POHNUM"]
    assert node["_updateStamp"] == po["UPDDATTIM"] and node["_createStamp"] == po["CREDATTIM"]
    assert node["revisionNumber"] == po["REVNUM"] and node["orderDate"] == po["ORDDAT"]
    assert node["isClosed"] == "yes"
    assert node["orderFromSupplier"] == {"code": {"code": po["BPSNUM"]}}
    assert node["project"] == {"code": po["PJTH"]} and node["purchaseSite"] == {"code": po["POHFCY"]}
    assert node["currency"] == {"code": po["CUR"]}
    assert node["internalOrderReference"] == po["ORDREF"]
    assert node["totalAmountExcludingTax"] == po["TOTORD"]
    lines = [e["node"] for e in node["purchaseOrderLines"]["query"]["edges"]]
    assert len(lines) == len(po["lines"])  # all lines when `first` is omitted
    first = po["lines"][0]
    assert lines[0] == {
        "lineNumber": first["POPLIN"],
        "product": {"code": first["ITMREF"], "description1": first["ITMDES"]},
        "account": {"code": first["ACC"]}, "project": {"code": first["PJT"]},
        "quantityInOrderUnitOrdered": first["QTYUOM"], "orderUnit": {"code": first["UOM"]},
        "netPrice": first["NETPRI"], "lineAmountExcludingTax": first["LINAMT"], "isClosed": "no",
    }


def test_graphql_read_unknown_is_null_and_alias_package(x3):
    data = x3.gql_data('{ xtremX3Purchasing { purchaseOrder { read(_id: "NOPE") { _id } } } }')
    assert data["xtremX3Purchasing"]["purchaseOrder"]["read"] is None


def test_graphql_line_collection_paging(x3):
    po = next(p for p in x3.state.x3_purchase_orders if len(p["lines"]) >= 3)
    query = """query($id: String!, $after: String) { x3Purchasing { purchaseOrder { read(_id: $id) {
      purchaseOrderLines { query(first: 2, after: $after) { edges { node { lineNumber } }
      pageInfo { endCursor hasNextPage } totalCount } } } } } }"""
    seen, after = [], None
    while True:
        data = x3.gql_data(query, {"id": po["POHNUM"], "after": after})
        conn = data["x3Purchasing"]["purchaseOrder"]["read"]["purchaseOrderLines"]["query"]
        assert conn["totalCount"] == len(po["lines"])
        seen += [e["node"]["lineNumber"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert seen == [ln["POPLIN"] for ln in po["lines"]]


def test_graphql_purchase_invoice_fields(x3):
    invoice = x3.state.x3_purchase_invoices[0]
    invoice["PIHTYP"] = 3
    query = """query($id: String!) { x3Purchasing { purchaseInvoice { read(_id: $id) {
      _id category billBySupplier { code { code } } sourceDocument sourceDocumentDate
      accountingDate currency { code } amountOfLinesExcludingTax status
      purchaseInvoiceLines { query { edges { node { lineNumber sourceDocument
        sourceDocumentLineNumber product { code } productDescriptionInUserLanguage
        quantityInPurchaseUnitInvoiced purchaseUnit { code } netPrice
        lineAmountExcludingTax } } } } } } } }"""
    node = x3.gql_data(query, {"id": invoice["NUM"]})["x3Purchasing"]["purchaseInvoice"]["read"]
    assert node["category"] == "creditMemo"
    assert node["billBySupplier"]["code"]["code"] == invoice["BPSNUM"]
    assert node["sourceDocument"] == invoice["BPSINV"]
    assert node["sourceDocumentDate"] == invoice["INVDAT"]
    assert node["amountOfLinesExcludingTax"] == invoice["AMTNOT"]
    assert node["status"] == ("posted" if invoice["STA"] == 2 else "notPosted")
    line, stored = node["purchaseInvoiceLines"]["query"]["edges"][0]["node"], invoice["lines"][0]
    assert line["sourceDocument"] == stored["POHNUM"]
    assert line["sourceDocumentLineNumber"] == stored["POPLIN"]
    assert line["lineAmountExcludingTax"] == stored["AMTNOTLIN"]
    assert line["quantityInPurchaseUnitInvoiced"] == stored["QTYUOM"]


@pytest.mark.parametrize("field", ["supplierDocumentNumber", "documentDate", "project { code }"])
def test_graphql_invoice_serves_no_undocumented_names(x3, field):
    query = f'{{ x3Purchasing {{ purchaseInvoice {{ query {{ edges {{ node {{ {field} }} }} }} }} }} }}'
    assert x3.gql(query).status_code == 400


def test_invoices_carry_a_status_most_posted(x3):
    statuses = [inv["STA"] for inv in x3.state.x3_purchase_invoices]
    assert set(statuses) == {1, 2} and statuses.count(2) > statuses.count(1)
    row = x3.query("PINVOICE", count=1).json()["$resources"][0]
    assert row["STA"] in (1, 2)


def test_graphql_line_dimension_node(x3):
    po = x3.state.x3_purchase_orders[0]
    query = """query($f: String) { x3Purchasing { purchaseOrderLineDimensionDimensions {
      query(filter: $f, first: 500) { edges { node { purchaseOrder purchaseOrderLine
        denormalizedIndex dimensionType { _id } dimension { dimension } } } } } } }"""
    data = x3.gql_data(query, {"f": f"{{purchaseOrder:'{po['POHNUM']}'}}"})
    rows = [e["node"] for e in data["x3Purchasing"]["purchaseOrderLineDimensionDimensions"]
            ["query"]["edges"]]
    got = {(r["purchaseOrderLine"], r["dimensionType"]["_id"]): r["dimension"]["dimension"]
           for r in rows}
    want = {(ln["POPLIN"], die): cce for ln in po["lines"]
            for die, cce in zip(ln["DIE"], ln["CCE"], strict=True)}
    assert got == want and all(r["purchaseOrder"] == po["POHNUM"] for r in rows)


def test_graphql_purchase_order_line_node_has_stamps(x3):
    po = x3.state.x3_purchase_orders[0]
    age(po)
    x3.edit("PORDER", po["POHNUM"], {"PORDERQ": [{"POPLIN": po["lines"][0]["POPLIN"],
                                                  "QTYUOM": "9"}]})
    since = (datetime.now(UTC) - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = """query($f: String) { x3Purchasing { purchaseOrderLine { query(filter: $f) {
      edges { node { purchaseOrder { _id } lineNumber _updateStamp } } } } } }"""
    edges = x3.gql_data(query, {"f": f"{{_updateStamp:{{_gte:'{since}'}}}}"})[
        "x3Purchasing"]["purchaseOrderLine"]["query"]["edges"]
    assert [(e["node"]["purchaseOrder"]["_id"], e["node"]["lineNumber"]) for e in edges] == [
        (po["POHNUM"], po["lines"][0]["POPLIN"])]


def test_graphql_supplier_account_dimension_nodes(x3):
    data = x3.gql_data("""{
      x3MasterData { supplier { read(_id: "SUP001") { _id code { code vatNumber } companyName1
        shortCompanyName isActive currency { code } addressByDefault { country { code } city
        zipCode addressLine1 phone email } } } }
      x3FinanceData {
        account { query(first: 500) { totalCount edges { node { _id code chartOfAccounts { code }
          localizedDescription } } } }
        dimension { read(_id: "PRJ~P1001") { _id dimensionType { code } dimension
          localizedDescription localizedShortDescription isActive } } } }""")
    s = x3.state.x3_suppliers[0]
    supplier = data["x3MasterData"]["supplier"]["read"]
    assert supplier["code"] == {"code": "SUP001", "vatNumber": s["EECNUM"]}
    assert supplier["companyName1"] == s["BPSNAM"] and supplier["isActive"] is True
    assert supplier["addressByDefault"] == {"country": {"code": s["CRY"]}, "city": s["CTY"],
                                            "zipCode": s["POSCOD"], "addressLine1": s["ADDLIG"],
                                            "phone": s["TEL"], "email": s["WEB"]}
    accounts = data["x3FinanceData"]["account"]["query"]
    assert accounts["totalCount"] == len(x3.state.x3_gl_accounts)
    assert accounts["edges"][0]["node"]["_id"] == "SEED~601100"
    assert data["x3FinanceData"]["dimension"]["read"] == {
        "_id": "PRJ~P1001", "dimensionType": {"code": "PRJ"}, "dimension": "P1001",
        "localizedDescription": x3.state.x3_dimensions[0]["DES"],
        "localizedShortDescription": "P1001", "isActive": True}


def _po_ids(x3, filter_text: str) -> set[str]:
    query = """query($f: String) { x3Purchasing { purchaseOrder { query(filter: $f, first: 500) {
      totalCount edges { node { _id } } pageInfo { hasNextPage } } } } }"""
    conn = x3.gql_data(query, {"f": filter_text})["x3Purchasing"]["purchaseOrder"]["query"]
    assert not conn["pageInfo"]["hasNextPage"]
    ids = {e["node"]["_id"] for e in conn["edges"]}
    assert len(ids) == conn["totalCount"]
    return ids


def _pos(x3, pred) -> set[str]:
    return {p["POHNUM"] for p in x3.state.x3_purchase_orders if pred(p)}


@pytest.mark.parametrize("filter_text, pred", [
    ("{_id:'PO26000007'}", lambda p: p["POHNUM"] == "PO26000007"),
    ('{_id:"PO26000007"}', lambda p: p["POHNUM"] == "PO26000007"),
    ("{orderFromSupplier:{code:{code:'SUP001'}}}", lambda p: p["BPSNUM"] == "SUP001"),
    ("{orderFromSupplier:'SUP001'}", lambda p: p["BPSNUM"] == "SUP001"),
    ("{orderFromSupplier:{_id:'SUP001'}}", lambda p: p["BPSNUM"] == "SUP001"),
    ("{isClosed:{_ne:'yes'}}", lambda p: p["CLEFLG"] != 2),
    ("{isClosed:'yes'}", lambda p: p["CLEFLG"] == 2),
    ("{_updateStamp:{_gte:'2026-01-05T08:30:00Z'}}", lambda p: p["UPDDATTIM"] >= "2026-01-05T08:30:00Z"),
    ("{_updateStamp:{_gt:'2026-01-05T08:30:00.000Z'}}", lambda p: p["UPDDATTIM"] > "2026-01-05T08:30:00Z"),
    ("{_updateStamp:{_lt:'2026-01-05T08:05:00Z'}}", lambda p: p["UPDDATTIM"] < "2026-01-05T08:05:00Z"),
    ("{_updateStamp:{_lte:'2026-01-05T08:05:00Z', _gte:'2026-01-05T08:04:00Z'}}",
     lambda p: "2026-01-05T08:04:00Z" <= p["UPDDATTIM"] <= "2026-01-05T08:05:00Z"),
    ("{_id:{_in:['PO26000001','PO26000003','NOPE']}}",
     lambda p: p["POHNUM"] in ("PO26000001", "PO26000003")),
    ("{project:{code:{_nin:['P1001','P1002']}}}", lambda p: p["PJTH"] not in ("P1001", "P1002")),
    ("{_and:[{project:'P1003'},{orderFromSupplier:{_ne:'SUP001'}}]}",
     lambda p: p["PJTH"] == "P1003" and p["BPSNUM"] != "SUP001"),
    ("{_or:[{project:'P1003'},{project:'P1004'}]}", lambda p: p["PJTH"] in ("P1003", "P1004")),
    ("[{project:'P1003'},{isClosed:'no'}]", lambda p: p["PJTH"] == "P1003" and p["CLEFLG"] == 1),
    ("{_not:{project:'P1003'}}", lambda p: p["PJTH"] != "P1003"),
    ("{totalAmountExcludingTax:{_gt:1000000}}", lambda p: Decimal(p["TOTORD"]) > 1000000),
    ("{orderDate:{_lt:'2026-03-01'}}", lambda p: p["ORDDAT"] < "2026-03-01"),
    ("{ revisionNumber : 0 , purchaseSite : { code : 'FR011' } , }",
     lambda p: p["REVNUM"] == 0 and p["POHFCY"] == "FR011"),
])
def test_graphql_filters(x3, filter_text, pred):
    expected = _pos(x3, pred)
    assert expected, "test data should match something"
    assert _po_ids(x3, filter_text) == expected


@pytest.mark.parametrize("value", [
    "x' } ",
    "PO26000001', _id:{_ne:'",
    "x\\' , _or:[{_id:{_ne:\\'",
    "\\",
])
def test_graphql_filter_escaped_value_never_changes_meaning(x3, value):
    assert _po_ids(x3, "{_id:" + gql_filter_string(value) + "}") == set()


def test_graphql_filter_quote_in_data(x3):
    import_supplier(x3, "SUPQ02", "D'Arcy \\ Partners")
    query = """query($f: String) { x3MasterData { supplier { query(filter: $f) {
      edges { node { _id } } } } } }"""
    data = x3.gql_data(query, {"f": "{companyName1:" + gql_filter_string("D'Arcy \\ Partners") + "}"})
    assert [e["node"]["_id"] for e in data["x3MasterData"]["supplier"]["query"]["edges"]] == ["SUPQ02"]


@pytest.mark.parametrize("filter_text, fragment", [
    ("{_id:'PO26000001' or 1}", "invalid filter"),
    ("{_id:'x'' or ''1''=''1'}", "invalid filter"),  # SQL-style escaping is not Xtrem's
    ("{_id:'unterminated}", "invalid filter"),
    ("{_id:PO1}", "invalid filter"),
    ("{_id:'a', _id:'b'}", "duplicate"),
    ("{nosuch:'x'}", "nosuch"),
    ("{orderFromSupplier:{code:{nosuch:'x'}}}", "nosuch"),
    ("{_updateStamp:{_gte:'not a date'}}", "invalid value"),
    ("{revisionNumber:'abc'}", "invalid value"),
    ("{isClosed:'maybe'}", "invalid value"),
    ("{_id:{_in:'x'}}", "array"),
    ("{purchaseOrderLines:{lineNumber:1000}}", "collection"),
    ("'just a string'", "expected an object"),
])
def test_graphql_malformed_filter_is_a_graphql_error(x3, filter_text, fragment):
    query = """query($f: String) { x3Purchasing { purchaseOrder { query(filter: $f) {
      edges { node { _id } } } } } }"""
    resp = x3.gql(query, {"f": filter_text})
    body = resp.json()
    assert body["errors"], body
    assert fragment in body["errors"][0]["message"]
    assert body["data"]["x3Purchasing"]["purchaseOrder"]["query"] is None


def test_graphql_order_by_descending_and_nested(x3):
    query = """query($o: String) { x3Purchasing { purchaseOrder { query(orderBy: $o, first: 500) {
      edges { node { _id purchaseSite { code } } } } } } }"""
    def ids(order):
        data = x3.gql_data(query, {"o": order})
        return [e["node"]["_id"] for e in data["x3Purchasing"]["purchaseOrder"]["query"]["edges"]]
    pos = x3.state.x3_purchase_orders
    assert ids("{_id:-1}") == sorted((p["POHNUM"] for p in pos), reverse=True)
    expected = [p["POHNUM"] for p in sorted(sorted(pos, key=lambda p: p["POHNUM"]),
                                             key=lambda p: p["POHFCY"], reverse=True)]
    assert ids("{purchaseSite:{code:-1}}") == expected
    resp = x3.gql(query, {"o": "{_id:2}"})
    assert "must be 1 or -1" in resp.json()["errors"][0]["message"]


def test_graphql_first_default_and_cap(x3_big):
    query = """query($first: Int) { x3Purchasing { purchaseOrder { query(first: $first) {
      edges { cursor } pageInfo { hasNextPage } totalCount } } } }"""
    conn = x3_big.gql_data(query, {"first": None})["x3Purchasing"]["purchaseOrder"]["query"]
    assert len(conn["edges"]) == 20 and conn["pageInfo"]["hasNextPage"]
    conn = x3_big.gql_data(query, {"first": 5000})["x3Purchasing"]["purchaseOrder"]["query"]
    assert len(conn["edges"]) == 500 and conn["totalCount"] == 2500


def test_graphql_pages_2500_pos_by_stamp_exactly_once(x3_big):
    query = """query($after: String) { x3Purchasing { purchaseOrder {
      query(filter: "{_updateStamp:{_gte:'2026-01-01T00:00:00Z'}}",
            orderBy: "{_updateStamp:1,_id:1}", first: 300, after: $after) {
        edges { cursor node { _id _updateStamp } }
        pageInfo { endCursor hasNextPage startCursor hasPreviousPage } totalCount } } } }"""
    seen, after, pages = [], None, 0
    while True:
        conn = x3_big.gql_data(query, {"after": after})["x3Purchasing"]["purchaseOrder"]["query"]
        assert conn["totalCount"] == 2500
        assert conn["pageInfo"]["hasPreviousPage"] is (after is not None)
        assert conn["pageInfo"]["endCursor"] == conn["edges"][-1]["cursor"]
        seen += [(e["node"]["_updateStamp"], e["node"]["_id"]) for e in conn["edges"]]
        pages += 1
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert pages == 9
    assert len(seen) == 2500 and len({i for _s, i in seen}) == 2500
    assert seen == sorted(seen)


def test_graphql_bad_cursor_is_an_error(x3):
    query = """{ x3Purchasing { purchaseOrder { query(after: "bm9wZQ") { edges { cursor } } } } }"""
    assert "invalid cursor" in x3.gql(query).json()["errors"][0]["message"]


def test_graphql_sees_rest_writes(x3):
    po = x3.state.x3_purchase_orders[0]
    age(po)
    x3.edit("PORDER", po["POHNUM"], {"ORDREF": "seen", "PORDERQ": [
        {"POPLIN": po["lines"][0]["POPLIN"], "NETPRI": "1.00"}]})
    query = f'{{ x3Purchasing {{ purchaseOrder {{ read(_id: "{po["POHNUM"]}") {{ _updateStamp }} }} }} }}'
    stamp = x3.gql_data(query)["x3Purchasing"]["purchaseOrder"]["read"]["_updateStamp"]
    assert recently(stamp)


# ======================================================================================
# GraphQL: mutations (configured API operations)
# ======================================================================================

CREATE_DIMENSION = """mutation($data: Dimension_Input!) { x3FinanceData { dimension {
  create(data: $data) { _id dimension dimensionType { code } isActive _updateStamp } } } }"""


def test_dimension_create_mutation_is_visible_over_rest(x3_operations):
    x3 = x3_operations
    data = x3.gql_data(CREATE_DIMENSION, {"data": {
        "dimensionType": "CCT", "dimension": "03-300", "localizedDescription": "Cast-in-Place Concrete",
        "localizedShortDescription": "03-300", "isActive": True}})
    created = data["x3FinanceData"]["dimension"]["create"]
    assert created["_id"] == "CCT~03-300" and created["isActive"] is True
    assert recently(created["_updateStamp"])
    rows = x3.query("CACCE", where="DIE eq 'CCT' and CCE eq '03-300'").json()["$resources"]
    assert len(rows) == 1
    assert rows[0]["DES"] == "Cast-in-Place Concrete" and rows[0]["ENAFLG"] == 2


def test_dimension_mutation_errors_and_update(x3_operations):
    x3 = x3_operations
    variables = {"data": {"dimensionType": "CCT", "dimension": "01-100",
                          "localizedDescription": "General Requirements"}}
    x3.gql_data(CREATE_DIMENSION, variables)
    again = x3.gql(CREATE_DIMENSION, variables).json()
    assert "Record already exists" in again["errors"][0]["message"]
    too_long = x3.gql(CREATE_DIMENSION, {"data": {**variables["data"], "dimension": "X" * 16}})
    assert "CCE" in too_long.json()["errors"][0]["message"]
    update = """mutation { x3FinanceData { dimension { update(data: {dimensionType: "CCT",
      dimension: "01-100", localizedDescription: "General", isActive: false}) {
      _id localizedDescription isActive } } } }"""
    node = x3.gql_data(update)["x3FinanceData"]["dimension"]["update"]
    assert node == {"_id": "CCT~01-100", "localizedDescription": "General", "isActive": False}
    assert x3.details("CACCE", "CCT~01-100").json()["ENAFLG"] == 1


def test_supplier_mutations(x3_operations):
    x3 = x3_operations
    create = """mutation($data: Supplier_Input!) { x3MasterData { supplier { create(data: $data) {
      _id companyName1 code { vatNumber } addressByDefault { city country { code } } } } } }"""
    data = x3.gql_data(create, {"data": {
        "code": "SUP900", "companyName1": "Harbor Crane Services", "shortCompanyName": "Harbor",
        "isActive": True, "vatNumber": "GB999", "currency": "GBP", "country": "GB",
        "city": "London", "zipCode": "EC1A 1BB", "addressLine1": "1 High Street",
        "phone": "+44 20 0000 0000", "email": "ops@harbor.example"}})
    node = data["x3MasterData"]["supplier"]["create"]
    assert node["_id"] == "SUP900" and node["code"]["vatNumber"] == "GB999"
    assert node["addressByDefault"] == {"city": "London", "country": {"code": "GB"}}
    assert x3.details("BPSUPPLIER", "SUP900").json()["BPSNAM"] == "Harbor Crane Services"
    long_name = x3.gql(create, {"data": {"code": "SUP901", "companyName1": "N" * 36}}).json()
    assert "BPSNAM" in long_name["errors"][0]["message"]
    update = """mutation { x3MasterData { supplier { update(data: {code: "SUP900",
      phone: "+44 1"}) { _id } } } }"""
    x3.gql_data(update)
    body = x3.details("BPSUPPLIER", "SUP900").json()
    assert body["TEL"] == "+44 1" and body["BPSNAM"] == "Harbor Crane Services"


def test_standard_x3_has_no_mutation_at_all(x3):
    """Without API operations (GESAPIOPE) the schema has no Mutation type: supplier and
    dimension writes are refused like any other mutation, and nothing is written."""
    before = copy_json([x3.state.x3_dimensions, x3.state.x3_suppliers])
    schema = x3.gql_data("""{ __schema { mutationType { name } types { name } } }""")
    assert schema["__schema"]["mutationType"] is None
    assert not [t["name"] for t in schema["__schema"]["types"] if t["name"].endswith("Mutations")]
    for mutation in (CREATE_DIMENSION, """mutation { x3MasterData { supplier { update(data: {
            code: "SUP001", isActive: false}) { _id } } } }"""):
        body = x3.gql(mutation, {"data": {"dimensionType": "CCT", "dimension": "03-300"}}
                      if mutation is CREATE_DIMENSION else None).json()
        assert body["errors"] and body.get("data") is None
    assert [x3.state.x3_dimensions, x3.state.x3_suppliers] == before


def test_no_mutation_can_write_gl_accounts_or_entries(x3_operations):
    """Even with every API operation the sandbox models, none writes GL accounts/entries."""
    x3 = x3_operations
    resp = x3.gql("""mutation { x3FinanceData { account { create(data: {code: "1"}) { _id } } } }""")
    assert resp.status_code == 400
    assert "Cannot query field 'account'" in resp.json()["errors"][0]["message"]
    schema = x3.gql_data("""{ __schema { mutationType { name } types { name fields { name } } } }""")
    names = set()
    for gql_type in schema["__schema"]["types"]:
        if gql_type["name"].endswith("Mutations") or gql_type["name"] == "Mutation":
            names |= {f["name"] for f in gql_type["fields"] or []}
    assert names == {"x3FinanceData", "x3MasterData", "xtremX3FinanceData", "xtremX3MasterData",
                     "dimension", "supplier", "create", "update"}
    assert not any(word in name.lower() for name in names
                   for word in ("account", "journal", "entry", "gl"))
