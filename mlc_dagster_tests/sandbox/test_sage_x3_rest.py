"""Sage X3 sandbox over real HTTP on loopback: the REST web API (`/api1`): authentication,
routing and representations, `$query` paging, the `where` parser, `$details` and writes.

Each test states one rule of the contract in `reference/sage_x3_api.md` (or a choice the
sandbox makes where the reference is open) and fails if the simulator breaks it. Fixtures
and helpers: sage_x3_helpers.py; GraphQL: test_sage_x3_graphql.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from mlc_dagster_tests.sandbox.sage_x3_helpers import (  # noqa: F401 - fixtures
    API,
    C,
    X3Sandbox,
    age,
    import_supplier,
    recently,
    x3_big_fixture,
    x3_fixture,
    x3_server_fixture,
    x3_writable_fixture,
)
from mlc_sandbox.sage_x3.classes import CACCE, CLASSES, PORDER
from mlc_sandbox.sage_x3.errors import MISSING_RECORD_STATUSES
from mlc_sandbox.sage_x3.state import copy_json

# ======================================================================================
# REST: authentication, routing, representations
# ======================================================================================


def test_basic_auth_accepted(x3):
    resp = x3.query("BPSUPPLIER")
    assert resp.status_code == 200
    assert resp.json()["$resources"]


@pytest.mark.parametrize("auth", [
    None,
    (C["x3_user"], "wrong-password"),
    ("SOMEONE", C["x3_password"]),
    "Basic !!!not-base64!!!",
    "Bearer abc",
])
def test_basic_auth_refused_with_syracuse_challenge(x3, auth):
    url = f"{API}/BPSUPPLIER?representation=BPSUPPLIER.$query"
    if isinstance(auth, str):
        resp = x3.http.get(url, headers={"Authorization": auth})
    else:
        resp = x3.http.get(url, auth=auth)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == 'Basic realm="Syracuse"'
    assert resp.json()["$diagnoses"][0]["$severity"] == "error"


def test_unknown_endpoint_and_class_are_404(x3):
    resp = x3.rest.get("/api1/x3/erp/NOPE/PORDER", params={"representation": "PORDER.$query"})
    assert resp.status_code == 404
    assert "$diagnoses" in resp.json()
    resp = x3.query("NOCLASS")
    assert resp.status_code == 404
    assert "$diagnoses" in resp.json()


@pytest.mark.parametrize("params", [
    {},
    {"representation": "PORDER"},
    {"representation": "BPSUPPLIER.$query"},
    {"representation": "PORDER.$details"},
])
def test_query_needs_the_class_query_representation(x3, params):
    resp = x3.rest.get(f"{API}/PORDER", params=params)
    assert resp.status_code == 400
    assert resp.json()["$diagnoses"][0]["$message"]


def test_representation_dollar_literal_or_percent_encoded(x3):
    for raw in ("representation=PORDER.$query", "representation=PORDER.%24query"):
        resp = x3.rest.get(f"{x3.url}{API}/PORDER?{raw}&count=1")
        assert resp.status_code == 200, raw
        assert len(resp.json()["$resources"]) == 1


# ======================================================================================
# REST: $query envelope and paging
# ======================================================================================


def test_query_envelope_and_rows(x3):
    body = x3.query("PORDER").json()
    assert set(body) == {"$itemsPerPage", "$resources", "$links"}
    assert body["$itemsPerPage"] == 20 and len(body["$resources"]) == 20
    row = body["$resources"][0]
    assert row["$uuid"] and row["$key"] == row["POHNUM"]
    assert "UPDDATTIM" in row and "BPSNUM" in row
    assert "lines" not in row and "PORDERQ" not in row  # $query rows carry the header only
    nxt = body["$links"]["$next"]
    assert nxt["$type"] == "application/json" and nxt["$method"] == "GET"
    assert nxt["$url"].startswith(f"{x3.url}{API}/PORDER?")
    assert parse_qs(urlsplit(nxt["$url"]).query)["key"] == [f"gt.{body['$resources'][-1]['POHNUM']}"]


def test_count_is_capped_by_the_server(x3):
    body = x3.query("PORDER", count=1000).json()
    assert body["$itemsPerPage"] == 200
    assert len(body["$resources"]) == 200
    body = x3.query("PORDER", count=7).json()
    assert body["$itemsPerPage"] == 7 and len(body["$resources"]) == 7


@pytest.mark.parametrize("count", ["abc", "0", "-5"])
def test_invalid_count_is_400(x3, count):
    resp = x3.query("PORDER", count=count)
    assert resp.status_code == 400
    assert "$diagnoses" in resp.json()


def test_last_page_has_no_next_link(x3):
    where = "BPSNUM in ('SUP001','SUP002','SUP003')"
    total = len(x3.keys("BPSUPPLIER", where))
    assert total == 3
    first = x3.query("BPSUPPLIER", where=where, count=2).json()
    assert len(first["$resources"]) == 2 and "$next" in first["$links"]
    second = x3.rest.get(first["$links"]["$next"]["$url"]).json()
    assert [r["BPSNUM"] for r in second["$resources"]] == ["SUP003"]
    assert "$next" not in second["$links"]
    exact = x3.query("BPSUPPLIER", where=where, count=3).json()
    assert len(exact["$resources"]) == 3 and "$next" not in exact["$links"]


def test_empty_result_is_200_with_no_rows(x3):
    body = x3.query("PORDER", where="POHNUM eq 'NOPE'").json()
    assert body["$resources"] == [] and body["$links"] == {}


def _follow_rest(x3: X3Sandbox, first: httpx.Response) -> list[dict]:
    rows, resp, pages = [], first, 0
    while True:
        assert resp.status_code == 200, resp.text
        body = resp.json()
        rows += body["$resources"]
        pages += 1
        assert pages < 1000
        if "$next" not in body["$links"]:
            return rows
        resp = x3.rest.get(body["$links"]["$next"]["$url"])


def test_rest_pages_2500_pos_by_key_exactly_once(x3_big):
    resp = x3_big.query("PORDER", where="UPDDATTIM ge @2026-01-01T00:00:00Z@",
                        orderBy="POHNUM asc", count=200)
    rows = _follow_rest(x3_big, resp)
    numbers = [r["POHNUM"] for r in rows]
    assert len(numbers) == 2500 and len(set(numbers)) == 2500
    assert numbers == sorted(numbers)
    assert all(urlsplit(link).query for link in [])  # links checked in the next test


def test_rest_next_link_is_a_key_cursor_over_the_class_key(x3_big):
    """integration-guide ws-query: `$next` = `key=gt.<key>`; ordered by anything but the key,
    following the server's own links skips rows (stamps here run against the key order)."""
    first = x3_big.query("PORDER", orderBy="UPDDATTIM asc", count=200).json()
    last = first["$resources"][-1]["POHNUM"]
    assert parse_qs(urlsplit(first["$links"]["$next"]["$url"]).query)["key"] == [f"gt.{last}"]
    rows = _follow_rest(x3_big, x3_big.query("PORDER", orderBy="UPDDATTIM asc", count=200))
    assert len({r["POHNUM"] for r in rows}) < 2500


def test_rest_paging_respects_where_watermark_and_small_pages(x3_big):
    watermark = "2026-02-01T09:03:00Z"  # 180 s in -> stamps shared by groups of 7
    expected = {po["POHNUM"] for po in x3_big.state.x3_purchase_orders
                if po["UPDDATTIM"] >= watermark}
    resp = x3_big.query("PORDER", where=f"UPDDATTIM ge @{watermark}@", count=47)
    rows = _follow_rest(x3_big, resp)
    numbers = [r["POHNUM"] for r in rows]
    assert len(numbers) == len(set(numbers)) == len(expected)
    assert set(numbers) == expected


def test_rest_paging_descending_order(x3):
    resp = x3.query("PORDER", orderBy="POHNUM DESC", count=50)
    numbers = [r["POHNUM"] for r in _follow_rest(x3, resp)]
    assert numbers == sorted((po["POHNUM"] for po in x3.state.x3_purchase_orders), reverse=True)


def test_rest_key_cursor_is_a_condition_on_the_class_key(x3):
    """key=gt.<POHNUM>: rows whose class key is after it, in the requested order."""
    pos = sorted(x3.state.x3_purchase_orders, key=lambda p: p["POHNUM"])
    pivot = pos[10]["POHNUM"]
    body = x3.query("PORDER", key=f"gt.{pivot}", count=5).json()
    assert [r["POHNUM"] for r in body["$resources"]] == [p["POHNUM"] for p in pos[11:16]]


def test_order_by_outside_the_query_facet_is_refused(x3):
    """integration-guide ws-query: only properties of the $query facet can be sorted on."""
    resp = x3.query("PORDER", orderBy="CREDATTIM asc")
    assert resp.status_code == 400
    assert "$query facet" in resp.json()["$diagnoses"][0]["$message"]
    row = x3.query("PORDER", count=1).json()["$resources"][0]
    assert "CREDATTIM" not in row and "APPFLG" not in row and "UPDDATTIM" in row
    assert x3.query("PORDER", orderBy="UPDDATTIM desc").status_code == 200


def test_previous_link_returns_the_page_before(x3):
    first = x3.query("PORDER", orderBy="UPDDATTIM,POHNUM", count=10).json()
    assert "$previous" not in first["$links"]
    second = x3.rest.get(first["$links"]["$next"]["$url"]).json()
    back = x3.rest.get(second["$links"]["$previous"]["$url"]).json()
    assert back["$resources"] == first["$resources"]


@pytest.mark.parametrize("params", [
    {"orderBy": "NOSUCH asc"},
    {"orderBy": "POHNUM sideways"},
    {"key": "zz.PO1"},
    {"key": "gt.a~b~c"},
])
def test_bad_order_or_key_is_400(x3, params):
    resp = x3.query("PORDER", **params)
    assert resp.status_code == 400
    assert "$diagnoses" in resp.json()


# ======================================================================================
# REST: where parser
# ======================================================================================


def _supplier_codes(x3, pred) -> set[str]:
    return {s["BPSNUM"] for s in x3.state.x3_suppliers if pred(s)}


@pytest.mark.parametrize("where, pred", [
    ("BPSNUM eq 'SUP005'", lambda s: s["BPSNUM"] == "SUP005"),
    ("BPSNUM ne 'SUP005'", lambda s: s["BPSNUM"] != "SUP005"),
    ("BPSNUM lt 'SUP003'", lambda s: s["BPSNUM"] < "SUP003"),
    ("BPSNUM le 'SUP003'", lambda s: s["BPSNUM"] <= "SUP003"),
    ("BPSNUM gt 'SUP038'", lambda s: s["BPSNUM"] > "SUP038"),
    ("BPSNUM ge 'SUP038'", lambda s: s["BPSNUM"] >= "SUP038"),
    ("CUR eq 'EUR' and CRY eq 'FR'", lambda s: s["CUR"] == "EUR" and s["CRY"] == "FR"),
    ("CTY eq 'Lyon' or CTY eq 'Paris'", lambda s: s["CTY"] in ("Lyon", "Paris")),
    ("not CUR eq 'GBP'", lambda s: s["CUR"] != "GBP"),
    ("not (CUR eq 'GBP' or CTY eq 'Lyon')", lambda s: s["CUR"] != "GBP" and s["CTY"] != "Lyon"),
    ("(CTY eq 'Lyon' or CTY eq 'Leeds') and BPSNUM lt 'SUP020'",
     lambda s: s["CTY"] in ("Lyon", "Leeds") and s["BPSNUM"] < "SUP020"),
    ("BPSNUM in ('SUP001', 'SUP010','NOPE')", lambda s: s["BPSNUM"] in ("SUP001", "SUP010")),
    ("BPSNUM not in ('SUP001','SUP010')", lambda s: s["BPSNUM"] not in ("SUP001", "SUP010")),
    ("BPSNAM like '%Steel%'", lambda s: "Steel" in s["BPSNAM"]),
    ("BPSNAM like 'Atlas%'", lambda s: s["BPSNAM"].startswith("Atlas")),
    ("BPSNUM like 'SUP00_'", lambda s: re.fullmatch(r"SUP00.", s["BPSNUM"]) is not None),
    ("BPSNUM between 'SUP010' and 'SUP012'", lambda s: "SUP010" <= s["BPSNUM"] <= "SUP012"),
    ("ENAFLG eq 2 AND BPSTYP eq 1", lambda s: s["ENAFLG"] == 2 and s["BPSTYP"] == 1),
    ("UPDDATTIM ge @2025-12-16T07:50:00Z@", lambda s: s["UPDDATTIM"] >= "2025-12-16T07:50:00Z"),
    ("UPDDATTIM lt '2025-12-16T07:50:00Z'", lambda s: s["UPDDATTIM"] < "2025-12-16T07:50:00Z"),
    ("UPDDATTIM gt '2025-12-16T08:50:00+01:00'", lambda s: s["UPDDATTIM"] > "2025-12-16T07:50:00Z"),
])
def test_where_operators(x3, where, pred):
    expected = _supplier_codes(x3, pred)
    assert expected, "test data should match something"
    assert x3.keys("BPSUPPLIER", where) == expected


def test_where_numbers_and_dates_compare_by_type(x3):
    pos = x3.state.x3_purchase_orders
    # TOTORD is numeric: '99999.00' < '100000.00' numerically but not as text.
    expected = {p["POHNUM"] for p in pos if Decimal(p["TOTORD"]) > Decimal("100000")}
    resp = x3.query("PORDER", where="TOTORD gt 100000", count=200)
    rows = _follow_rest(x3, resp)
    assert {r["POHNUM"] for r in rows} == expected
    expected = {p["POHNUM"] for p in pos if p["ORDDAT"] >= "2026-09-01"}
    rows = _follow_rest(x3, x3.query("PORDER", where="ORDDAT ge @2026-09-01@", count=200))
    assert {r["POHNUM"] for r in rows} == expected
    closed = {p["POHNUM"] for p in pos if p["CLEFLG"] == 2}
    assert closed and x3.keys("PORDER", "CLEFLG eq 2") == closed


def test_where_escaped_quote_is_data_not_syntax(x3):
    import_supplier(x3, "SUPQ01", "O'Brien & Sons Ltd")
    assert x3.keys("BPSUPPLIER", "BPSNAM eq 'O''Brien & Sons Ltd'") == {"SUPQ01"}
    assert x3.keys("BPSUPPLIER", "BPSNAM like '%''Brien%'") == {"SUPQ01"}


@pytest.mark.parametrize("value", [
    "x' or '1'='1",
    "x' or POHNUM ne '",
    "PO26000001') or (POHNUM ne '",
    "%' or POHNUM like '%",
])
def test_where_injection_through_escaped_literal_matches_nothing(x3, value):
    escaped = value.replace("'", "''")
    assert x3.keys("PORDER", f"POHNUM eq '{escaped}'") == set()
    assert x3.keys("PORDER", f"POHNUM in ('{escaped}')") == set()


def test_where_unescaped_injection_is_rejected_not_executed(x3):
    resp = x3.query("PORDER", where="POHNUM eq 'x' or '1'='1'")
    assert resp.status_code == 400
    assert resp.json()["$diagnoses"][0]["$sdataCode"] == "BadWhereSyntax"


@pytest.mark.parametrize("where", [
    "NOSUCH eq 'x'",
    "POHNUM eq 'x' or (CLEFLG eq 1 and pohnum eq 'y')",
    "NOSUCH in ('a')",
])
def test_where_unknown_property_is_http_500(x3, where):
    resp = x3.query("PORDER", where=where)
    assert resp.status_code == 500
    assert resp.json()["$diagnoses"][0]["$severity"] == "error"
    assert "Traceback" not in resp.text


@pytest.mark.parametrize("where", [
    "POHNUM eq",
    "POHNUM eq 'abc",
    "(POHNUM eq 'a'",
    "POHNUM eq 'a')",
    "POHNUM == 'a'",
    "POHNUM eq 'a' and",
    "eq 'a'",
    "POHNUM in 'a'",
    "POHNUM like 5",
    "POHNUM eq 'a' POHNUM eq 'b'",
    "(" * 200 + "POHNUM eq 'a'" + ")" * 200,
    "NOSUCH eq )",  # syntax is checked before properties
])
def test_where_syntax_error_is_400(x3, where):
    resp = x3.query("PORDER", where=where)
    assert resp.status_code == 400, resp.text
    diagnosis = resp.json()["$diagnoses"][0]
    assert diagnosis["$sdataCode"] == "BadWhereSyntax"


@pytest.mark.parametrize("where", ["REVNUM eq 'abc'", "UPDDATTIM ge 'yesterday'",
                                   "POHNUM eq @2026-01-01@"])
def test_where_value_of_wrong_type_is_400(x3, where):
    resp = x3.query("PORDER", where=where)
    assert resp.status_code == 400
    assert "$diagnoses" in resp.json()


# ======================================================================================
# REST: $details
# ======================================================================================


def test_details_has_lines_with_uuids(x3):
    po = x3.state.x3_purchase_orders[0]
    body = x3.details("PORDER", po["POHNUM"]).json()
    assert body["POHNUM"] == po["POHNUM"] and body["$uuid"]
    assert "lines" not in body
    lines = body["PORDERQ"]
    assert [ln["POPLIN"] for ln in lines] == [ln["POPLIN"] for ln in po["lines"]]
    assert all(ln["$uuid"] for ln in lines) and len({ln["$uuid"] for ln in lines}) == len(lines)
    assert "ACC" not in lines[0] and "CCE" not in lines[0]


def test_details_serve_line_accounts_and_dimensions_outside_the_lines(x3):
    """V11 dictionary: PORDERQ/PORDERP have no account or dimension column; the line's
    accounts are PORDERC.LINACC (by COA) and its dimensions CPTANALIN.CCE (by DIE)."""
    po = x3.state.x3_purchase_orders[0]
    body = x3.details("PORDER", po["POHNUM"]).json()
    accounts = {e["POPLIN"]: e for e in body["PORDERC"]}
    dimensions = {e["VCRLIN"]: e for e in body["CPTANALIN"]}
    for line in po["lines"]:
        assert accounts[line["POPLIN"]] == {"POPLIN": line["POPLIN"], "COA": ["SEED"],
                                            "LINACC": [line["ACC"]]}
        assert dimensions[line["POPLIN"]]["DIE"] == ["PRJ", "CST"]
        assert dimensions[line["POPLIN"]]["CCE"] == [po["PJTH"], f"C{line['ACC']}"]


def test_line_account_on_a_quantity_line_is_refused(x3):
    body = {**NEW_PO, "POHNUM": "PO99000010",
            "PORDERQ": [{**NEW_PO["PORDERQ"][0], "ACC": "602300"}]}
    resp = x3.create("PORDER", body)
    assert resp.status_code == 400 and "unknown property ACC" in resp.text


def test_details_invoice_and_composite_keys(x3):
    invoice = x3.state.x3_purchase_invoices[0]
    body = x3.details("PINVOICE", invoice["NUM"]).json()
    assert [ln["PIDLIN"] for ln in body["PINVOICED"]] == [ln["PIDLIN"] for ln in invoice["lines"]]
    assert x3.details("GACCOUNT", "SEED~601100").json()["DES"] == "Purchases - general requirements"
    assert x3.details("CACCE", "PRJ~P1001").json()["DESSHO"] == "P1001"
    edit = x3.rest.get(f"{API}/CACCE('PRJ~P1001')", params={"representation": "CACCE.$edit"})
    assert edit.status_code == 200


@pytest.mark.parametrize("cls, key", [("PORDER", "NOPE"), ("GACCOUNT", "SEED"),
                                      ("CACCE", "PRJ~NOPE")])
def test_details_not_found(x3, cls, key):
    resp = x3.details(cls, key)
    assert resp.status_code in MISSING_RECORD_STATUSES
    assert resp.json() == {"$diagnoses": [{"$severity": "error",
                                            "$message": "721 : Record does not exist"}]}


def test_missing_record_status_varies_with_the_key(x3):
    """Sage documents only "4xx or 5xx": the status of a missing record is not a signal."""
    statuses = {x3.details("PORDER", f"NOPE{i}").status_code for i in range(12)}
    assert statuses == set(MISSING_RECORD_STATUSES)
    assert x3.details("PORDER", "NOPE3").status_code == x3.details("PORDER", "NOPE3").status_code


def test_keys_with_slash_and_quote_round_trip(x3_writable):
    x3 = x3_writable
    resp = x3.create("CACCE", {"DIE": "CCT", "CCE": "A/B'C", "DES": "Odd code"})
    assert resp.status_code == 201, resp.text
    assert x3.rest.get(resp.headers["location"]).json()["CCE"] == "A/B'C"
    assert x3.details("CACCE", "CCT~A/B''C").json()["DES"] == "Odd code"


def test_template_gives_create_defaults(x3):
    resp = x3.rest.get(f"{API}/PORDER/$template", params={"representation": "PORDER.$create"})
    assert resp.status_code == 200
    assert resp.json()["CLEFLG"] == 1 and "UPDDATTIM" not in resp.json()


def test_prototype_lists_properties(x3):
    resp = x3.rest.get(f"{API}/BPSUPPLIER/$prototypes('BPSUPPLIER.$create')")
    props = resp.json()["$properties"]
    assert props["BPSNAM"] == {"$type": "application/x-string", "$isMandatory": True,
                               "$maxLength": 35}


# ======================================================================================
# REST: writes
# ======================================================================================


NEW_PO = {
    "POHNUM": "PO99000001", "BPSNUM": "SUP001", "PJTH": "P1001", "POHFCY": "GB011",
    "ORDDAT": "2026-03-01", "ORDREF": "Test order",
    "PORDERQ": [
        {"POPLIN": 1000, "ITMREF": "CONC-C30", "ITMDES": "Ready-mix",
         "QTYUOM": "10", "UOM": "M3", "NETPRI": "95.50"},
        {"POPLIN": 2000, "ITMREF": "LAB-DAY", "ITMDES": "Labour",
         "QTYUOM": 8, "UOM": "HR", "NETPRI": 40},
    ],
    "PORDERC": [{"POPLIN": 1000, "COA": ["SEED"], "LINACC": ["602300"]},
                {"POPLIN": 2000, "COA": ["SEED"], "LINACC": ["612000"]}],
    "CPTANALIN": [{"VCRLIN": 1000, "DIE": ["PRJ", "CST"], "CCE": ["P1001", "C602300"]}],
}


def test_create_purchase_order(x3):
    resp = x3.create("PORDER", NEW_PO)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["POHNUM"] == "PO99000001" and body["CUR"] == "GBP"  # currency from supplier
    assert body["TOTORD"] == "1275.00"
    assert [ln["LINAMT"] for ln in body["PORDERQ"]] == ["955.00", "320.00"]
    assert [e["LINACC"] for e in body["PORDERC"]] == [["602300"], ["612000"]]
    assert [e["CCE"] for e in body["CPTANALIN"]] == [["P1001", "C602300"], []]
    assert body["UPDDATTIM"] == body["CREDATTIM"] and recently(body["UPDDATTIM"])
    location = resp.headers["location"]
    assert location.startswith(f"{x3.url}{API}/PORDER('PO99000001')")
    assert x3.rest.get(location).json()["ORDREF"] == "Test order"
    assert x3.keys("PORDER", "POHNUM eq 'PO99000001'") == {"PO99000001"}


def test_create_assigns_line_numbers(x3):
    body = {"POHNUM": "PO99000002", "BPSNUM": "SUP002",
            "PORDERQ": [{"ITMREF": "A", "QTYUOM": 1, "NETPRI": 1},
                        {"ITMREF": "B", "QTYUOM": 1, "NETPRI": 2}]}
    lines = x3.create("PORDER", body).json()["PORDERQ"]
    assert [ln["POPLIN"] for ln in lines] == [1000, 2000]


@pytest.mark.parametrize("cls, body, fragment", [
    ("PORDER", {"BPSNUM": "SUP001"}, "POHNUM"),
    ("PORDER", {"POHNUM": "", "BPSNUM": "SUP001"}, "POHNUM"),
    ("PORDER", {"POHNUM": "PO26000001", "BPSNUM": "SUP001"}, "Record already exists"),
    ("PORDER", {"POHNUM": "PO9", "BPSNUM": "SUP001", "NOSUCH": 1}, "NOSUCH"),
    ("PORDER", {"POHNUM": "PO9", "BPSNUM": "SUP001", "REVNUM": "two"}, "REVNUM"),
    ("PORDER", {"POHNUM": "PO9", "BPSNUM": "SUP001", "CLEFLG": 7}, "CLEFLG"),
    ("PORDER", {"POHNUM": "PO9", "BPSNUM": "SUP001", "ORDDAT": "01/03/2026"}, "ORDDAT"),
    ("PORDER", {"POHNUM": "PO9", "BPSNUM": "SUP001",
                "PORDERQ": [{"POPLIN": 1000}, {"POPLIN": 1000}]}, "duplicate"),
    ("PORDER", {"POHNUM": "PO9", "BPSNUM": "SUP001", "PORDERQ": [{"QTYUOM": "lots"}]}, "QTYUOM"),
    ("PORDER", {"POHNUM": "PO9", "BPSNUM": "SUP001",
                "PORDERQ": [{"QTYUOM": "1e999999999"}]}, "QTYUOM"),
    ("BPSUPPLIER", {"BPSNUM": "SUP001", "BPSNAM": "Again"}, "Record already exists"),
    ("BPSUPPLIER", {"BPSNUM": "SUPX"}, "BPSNAM"),
    ("BPSUPPLIER", {"BPSNUM": "SUPX", "BPSNAM": "N" * 36}, "BPSNAM"),
    ("CACCE", {"DIE": "CCT", "CCE": "01-100"}, "DES"),
])
def test_create_validation(x3_writable, cls, body, fragment):
    x3 = x3_writable  # suppliers/dimensions: a customer-built writable class validates too
    before = len(x3.state.records(CLASSES[cls]))
    resp = x3.create(cls, body)
    assert resp.status_code == 400, resp.text
    assert fragment in resp.json()["$diagnoses"][0]["$message"]
    assert len(x3.state.records(CLASSES[cls])) == before


def test_supplier_name_of_35_characters_is_accepted(x3_writable):
    x3 = x3_writable
    resp = x3.create("BPSUPPLIER", {"BPSNUM": "SUPX", "BPSNAM": "N" * 35})
    assert resp.status_code == 201
    assert resp.json()["BPSSHO"] == "N" * 10


def test_invalid_json_body_is_400(x3):
    resp = x3.rest.post(f"{API}/PORDER", params={"representation": "PORDER.$create"},
                        content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400 and "$diagnoses" in resp.json()
    resp = x3.rest.post(f"{API}/PORDER", params={"representation": "PORDER.$create"}, json=[1])
    assert resp.status_code == 400



def test_edit_header_is_partial_and_moves_stamp(x3):
    po = x3.state.x3_purchase_orders[0]
    age(po)
    before = x3.details("PORDER", po["POHNUM"]).json()
    resp = x3.edit("PORDER", po["POHNUM"], {"ORDREF": "Changed ref", "REVNUM": 1})
    assert resp.status_code == 200, resp.text
    after = resp.json()
    assert after["ORDREF"] == "Changed ref" and after["REVNUM"] == 1
    assert recently(after["UPDDATTIM"])
    unchanged = {k: v for k, v in before.items() if k not in ("ORDREF", "REVNUM", "UPDDATTIM",
                                                              "$etag")}
    assert {k: after[k] for k in unchanged} == unchanged


def test_edit_of_one_line_keeps_header_stamp_and_recomputes_totals(x3):
    """Undocumented whether a line-only change moves the header UPDDATTIM: by default it
    does not (the stricter reading); the line's own stamp moves and the totals follow."""
    po = next(p for p in x3.state.x3_purchase_orders if len(p["lines"]) >= 2)
    age(po)
    first, second = po["lines"][0]["POPLIN"], po["lines"][1]["POPLIN"]
    resp = x3.edit("PORDER", po["POHNUM"], {"PORDERQ": [{"POPLIN": first, "QTYUOM": "2",
                                                         "NETPRI": "10.00"}]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["UPDDATTIM"] == "2020-01-01T00:00:00Z"
    lines = {ln["POPLIN"]: ln for ln in body["PORDERQ"]}
    assert lines[first]["LINAMT"] == "20.00" and recently(lines[first]["UPDDATTIM"])
    assert lines[second]["UPDDATTIM"] == "2020-01-01T00:00:00Z"
    assert body["TOTORD"] == str(sum(Decimal(ln["LINAMT"]) for ln in body["PORDERQ"]))
    # The line class sees the line's new stamp; the header query does not.
    assert x3.keys("PORDERQ", f"UPDDATTIM gt @2025-01-01T00:00:00Z@ and POHNUM eq "
                              f"'{po['POHNUM']}'") == {f"{po['POHNUM']}~{first}~1"}
    assert x3.keys("PORDER", "UPDDATTIM gt @2025-01-01T00:00:00Z@ and "
                             f"POHNUM eq '{po['POHNUM']}'") == set()


def test_line_change_moves_header_when_configured(x3):
    po = x3.state.x3_purchase_orders[1]
    age(po)
    assert x3.http.post("/_sandbox/config",
                        json={"x3_line_change_moves_header": True}).status_code == 200
    resp = x3.edit("PORDER", po["POHNUM"], {"PORDERQ": [{"POPLIN": po["lines"][0]["POPLIN"],
                                                         "QTYUOM": "3"}]})
    assert recently(resp.json()["UPDDATTIM"])


def test_line_amount_is_computed_never_taken_from_the_body(x3):
    """X3 computes LINAMT from quantity and net price (ASSUMPTION: qty x NETPRI, 2 dp): a
    client's amount is ignored, a quantity or price edit recomputes it and the totals."""
    po = x3.state.x3_purchase_orders[2]
    line = po["lines"][0]["POPLIN"]
    body = x3.edit("PORDER", po["POHNUM"], {"PORDERQ": [
        {"POPLIN": line, "QTYUOM": "4", "NETPRI": "2.505", "LINAMT": "999.99"}]}).json()
    got = next(ln for ln in body["PORDERQ"] if ln["POPLIN"] == line)
    assert got["LINAMT"] == "10.02"
    assert body["TOTORD"] == str(sum(Decimal(ln["LINAMT"]) for ln in body["PORDERQ"]))
    body = x3.edit("PORDER", po["POHNUM"], {"PORDERQ": [{"POPLIN": line, "QTYUOM": "1"}]}).json()
    assert next(ln for ln in body["PORDERQ"] if ln["POPLIN"] == line)["LINAMT"] == "2.51"
    body = x3.edit("PORDER", po["POHNUM"], {"PORDERQ": [{"POPLIN": line, "LINAMT": "5"}]}).json()
    assert next(ln for ln in body["PORDERQ"] if ln["POPLIN"] == line)["LINAMT"] == "2.51"
    invoice = x3.state.x3_purchase_invoices[0]
    inv = x3.edit("PINVOICE", invoice["NUM"], {"PINVOICED": [
        {"PIDLIN": invoice["lines"][0]["PIDLIN"], "QTYUOM": "2", "NETPRI": "3",
         "AMTNOTLIN": "1"}]}).json()
    assert inv["PINVOICED"][0]["AMTNOTLIN"] == "6.00"
    assert inv["AMTNOT"] == str(sum(Decimal(ln["AMTNOTLIN"]) for ln in inv["PINVOICED"]))


def test_line_analytics_edit_moves_only_the_line_stamp(x3):
    po = x3.state.x3_purchase_orders[4]
    age(po)
    line = po["lines"][0]["POPLIN"]
    resp = x3.edit("PORDER", po["POHNUM"], {"CPTANALIN": [
        {"VCRLIN": line, "DIE": ["PRJ", "CST"], "CCE": [po["PJTH"], "C999999"]}]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["UPDDATTIM"] == "2020-01-01T00:00:00Z"
    assert next(e for e in body["CPTANALIN"] if e["VCRLIN"] == line)["CCE"][1] == "C999999"
    assert recently(next(ln for ln in body["PORDERQ"] if ln["POPLIN"] == line)["UPDDATTIM"])
    bad = x3.edit("PORDER", po["POHNUM"], {"CPTANALIN": [{"VCRLIN": 1, "CCE": []}]})
    assert bad.status_code == 400 and "does not exist" in bad.text


def test_line_class_is_list_only(x3):
    resp = x3.rest.get(f"{API}/PORDERQ('PO26000001~1000~1')",
                       params={"representation": "PORDERQ.$details"})
    assert resp.status_code == 400
    write = x3.rest.post(f"{API}/PORDERQ", params={"representation": "PORDERQ.$create"},
                         json={"POHNUM": "X"})
    assert write.status_code == 405


def test_edit_adds_and_deletes_lines(x3):
    po = next(p for p in x3.state.x3_purchase_orders if len(p["lines"]) >= 2)
    age(po)
    doomed = po["lines"][0]["POPLIN"]
    new_line = max(ln["POPLIN"] for ln in po["lines"]) + 1000
    resp = x3.edit("PORDER", po["POHNUM"], {"PORDERQ": [
        {"POPLIN": doomed, "$delete": True},
        {"POPLIN": new_line, "ITMREF": "NEW", "QTYUOM": 3, "NETPRI": "1.50"},
    ]})
    assert resp.status_code == 200, resp.text
    numbers = [ln["POPLIN"] for ln in resp.json()["PORDERQ"]]
    assert doomed not in numbers and numbers[-1] == new_line
    assert resp.json()["UPDDATTIM"] == "2020-01-01T00:00:00Z"  # lines only
    stored = x3.state.find(PORDER, po["POHNUM"])
    assert [ln["POPLIN"] for ln in stored["lines"]] == numbers


def test_edit_line_by_uuid(x3):
    po = x3.state.x3_purchase_orders[3]
    line = x3.details("PORDER", po["POHNUM"]).json()["PORDERQ"][0]
    resp = x3.edit("PORDER", po["POHNUM"], {"PORDERQ": [{"$uuid": line["$uuid"], "ITMDES": "X"}]})
    assert resp.json()["PORDERQ"][0]["ITMDES"] == "X"


def test_failed_edit_changes_nothing(x3):
    po = x3.state.x3_purchase_orders[0]
    age(po)
    resp = x3.edit("PORDER", po["POHNUM"], {"ORDREF": "should not stick", "PORDERQ": [
        {"POPLIN": po["lines"][0]["POPLIN"], "QTYUOM": "5"}, {"POPLIN": 1, "$delete": True}]})
    assert resp.status_code == 400
    assert po["ORDREF"] != "should not stick" and po["UPDDATTIM"] == "2020-01-01T00:00:00Z"


def test_edit_without_changes_keeps_stamp(x3):
    po = x3.state.x3_purchase_orders[0]
    age(po)
    resp = x3.edit("PORDER", po["POHNUM"], {"ORDREF": po["ORDREF"]})
    assert resp.status_code == 200 and resp.json()["UPDDATTIM"] == "2020-01-01T00:00:00Z"


def test_edit_refuses_key_change_and_missing_record(x3):
    resp = x3.edit("PORDER", "PO26000001", {"POHNUM": "PO26000002"})
    assert resp.status_code == 400
    resp = x3.edit("PORDER", "NOPE", {"ORDREF": "x"})
    assert resp.status_code in MISSING_RECORD_STATUSES
    assert resp.json()["$diagnoses"][0]["$message"] == "721 : Record does not exist"


def test_same_second_changes_share_a_stamp(x3):
    frozen = datetime(2026, 3, 1, 12, 0, 0, 400_000, tzinfo=UTC)
    x3.state.clock = lambda: frozen
    a, b = x3.state.x3_purchase_orders[:2]
    x3.edit("PORDER", a["POHNUM"], {"ORDREF": "a"})
    x3.edit("PORDER", b["POHNUM"], {"ORDREF": "b"})
    assert a["UPDDATTIM"] == b["UPDDATTIM"] == "2026-03-01T12:00:00Z"


def test_delete_purchase_order(x3):
    number = x3.state.x3_purchase_orders[5]["POHNUM"]
    resp = x3.delete("PORDER", number)
    assert resp.status_code == 204 and resp.content == b""
    gone = x3.details("PORDER", number)
    assert gone.json()["$diagnoses"][0]["$message"] == "721 : Record does not exist"
    assert x3.delete("PORDER", number).status_code == gone.status_code
    assert x3.keys("PORDER", f"POHNUM eq '{number}'") == set()


@pytest.mark.parametrize("cls, key, body", [
    ("BPSUPPLIER", "SUP001", {"BPSNUM": "SUPX", "BPSNAM": "New supplier"}),
    ("CACCE", "PRJ~P1001", {"DIE": "CCT", "CCE": "03-300", "DES": "Concrete"}),
])
def test_standard_x3_refuses_supplier_and_dimension_writes(x3, cls, key, body):
    """Standard X3's representations of these classic objects are read-only (query and
    details); the diagnosis points to the import template."""
    x3_class = CLASSES[cls]
    before = copy_json(x3.state.records(x3_class))
    for resp in (x3.create(cls, body), x3.edit(cls, key, {"ENAFLG": 1}), x3.delete(cls, key)):
        assert resp.status_code == 405, resp.text
        message = resp.json()["$diagnoses"][0]["$message"]
        assert "read-only" in message and "import template" in message
    assert x3.state.records(x3_class) == before
    assert x3.details(cls, key).status_code == 200


def test_dimension_create_edit_delete(x3_writable):
    x3 = x3_writable
    resp = x3.create("CACCE", {"DIE": "CCT", "CCE": "03-300", "DES": "Cast-in-Place Concrete",
                               "DESSHO": "03-300"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["ENAFLG"] == 2
    assert x3.keys("CACCE", "DIE eq 'CCT'") == {"CCT~03-300"}
    x3.state.find(CACCE, "CCT~03-300")["UPDDATTIM"] = "2020-01-01T00:00:00Z"
    resp = x3.edit("CACCE", "CCT~03-300", {"DES": "Concrete", "ENAFLG": 1})
    assert resp.json()["DES"] == "Concrete" and resp.json()["ENAFLG"] == 1
    assert recently(resp.json()["UPDDATTIM"])
    assert x3.delete("CACCE", "CCT~03-300").status_code == 204
    assert x3.keys("CACCE", "DIE eq 'CCT'") == set()


def test_gl_accounts_are_read_only(x3):
    before = [dict(a) for a in x3.state.x3_gl_accounts]
    resp = x3.rest.post(f"{API}/GACCOUNT", params={"representation": "GACCOUNT.$create"},
                        json={"COA": "SEED", "ACC": "699999", "DES": "New"})
    assert resp.status_code == 405 and "$diagnoses" in resp.json()
    resp = x3.rest.put(f"{API}/GACCOUNT('SEED~601100')",
                       params={"representation": "GACCOUNT.$edit"}, json={"DES": "x"})
    assert resp.status_code == 405
    resp = x3.rest.delete(f"{API}/GACCOUNT('SEED~601100')",
                          params={"representation": "GACCOUNT.$edit"})
    assert resp.status_code == 405
    assert x3.state.x3_gl_accounts == before
    assert x3.query("GACCOUNT", count=100).json()["$resources"]


def test_sandbox_controls_wrap_the_app(x3):
    x3.query("PORDER", count=1)
    calls = x3.http.get("/_sandbox/calls").json()["calls"]
    assert any(c["path"] == f"{API}/PORDER" and c["status"] == 200 and c["system"] == "sage_x3"
               for c in calls)
    x3.http.post("/_sandbox/faults", json={"route": "GET /api1/", "status": 503})
    resp = x3.query("PORDER", count=1)
    assert resp.status_code == 503 and "$diagnoses" in resp.json()

