"""The REST client against httpx.MockTransport: queries, details, line analytics, writes."""

from __future__ import annotations

import base64
import json
import threading
import time

import httpx
import pytest

from mlc_dagster.resources.sage_x3_client import names_from_env
from mlc_dagster_tests.resources.sage_x3_client.clients import (
    BASE,
    MISSING,
    PASSWORD,
    PORDER_DETAILS,
    PORDER_ROW,
    PORDERQ_LINE,
    rest_client,
)


def test_rest_changed_filters_orders_and_follows_next_links():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if "key" not in request.url.params:
            return httpx.Response(200, json={
                "$itemsPerPage": 1, "$resources": [PORDER_ROW],
                "$links": {"$next": {"$url": f"{BASE}/api1/x3/erp/SEED/PORDER?representation=PORDER.$query&key=gt.x"}}})
        return httpx.Response(200, json={"$itemsPerPage": 1,
                                         "$resources": [{**PORDER_ROW, "POHNUM": "PO2"}], "$links": {}})

    pages = list(rest_client(handler).changed("purchase_order", "2026-01-05T08:00:07Z", page_size=1))
    assert [[r["po_number"] for r in page] for page in pages] == [["PO1"], ["PO2"]]
    first = seen[0].url
    assert first.path == "/api1/x3/erp/SEED/PORDER"
    assert first.params["representation"] == "PORDER.$query"
    assert first.params["count"] == "1"
    assert first.params["where"] == "UPDDATTIM ge @2026-01-05T08:00:07Z@"
    # Ordered by the class key only: `$next` pages with a key cursor over it.
    assert first.params["orderBy"] == "POHNUM asc"
    assert seen[1].url.params["key"] == "gt.x"
    assert base64.b64decode(seen[0].headers["Authorization"][6:]).decode() == f"MLCAPI:{PASSWORD}"
    assert pages[0][0] == {
        "po_number": "PO1", "po_type": "order", "site": "GB011", "supplier_code": "SUP001",
        "project_code": "P1001", "order_date": "2026-02-03", "currency": "GBP", "revision": 2,
        "closed": False, "reference": "Ref 1", "total_amount": "150.5",
        "update_stamp": "2026-01-05T08:00:07Z",
    }


def test_rest_changed_with_composite_keys_and_no_since():
    seen: list[httpx.Request] = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"$resources": [], "$links": {}})

    assert list(rest_client(handler).changed("gl_account", None)) == []
    assert "where" not in seen[0].url.params
    assert seen[0].url.params["orderBy"] == "COA asc,ACC asc"


def test_rest_changed_refuses_an_injected_stamp_without_calling_x3():
    calls = []
    client = rest_client(lambda r: calls.append(r) or httpx.Response(200, json={}))
    with pytest.raises(ValueError):
        list(client.changed("purchase_order", "2026-01-05T08:00:07Z@ or 1 eq 1"))
    assert calls == []


def test_rest_read_purchase_orders_reads_details_with_bounded_concurrency():
    lock = threading.Lock()
    in_flight = {"now": 0, "max": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            in_flight["now"] += 1
            in_flight["max"] = max(in_flight["max"], in_flight["now"])
        time.sleep(0.02)
        with lock:
            in_flight["now"] -= 1
        key = request.url.path.split("('")[1][:-2]
        assert request.url.params["representation"] == "PORDER.$details"
        if key == "GONE":
            return httpx.Response(404, json={"$diagnoses": [{"$severity": "error",
                                                             "$message": "721 : Record does not exist"}]})
        return httpx.Response(200, json={**PORDER_DETAILS, "POHNUM": key})

    numbers = [f"PO{i}" for i in range(12)] + ["GONE", "PO3"]
    records = rest_client(handler).read_purchase_orders(numbers, max_concurrency=3)
    assert [r["po_number"] for r in records] == [f"PO{i}" for i in range(12)]
    assert in_flight["max"] <= 3
    assert records[0]["lines"] == [{
        "line_number": 1000, "item_code": "CONC", "description": "Concrete", "gl_account": "602300",
        "project_code": "P1001", "quantity": "10", "uom": "M3", "unit_price": "15.05",
        "amount": "150.5", "closed": True, "mapping_key": "602300",
        "update_stamp": "2026-01-05T08:00:07Z",
    }]


def test_rest_key_segment_escapes_quotes_and_path_characters():
    seen = []

    def handler(request):
        seen.append(request.url.raw_path.decode())
        return httpx.Response(400, json=MISSING)

    assert rest_client(handler).read_purchase_orders(["A'B/C?D"]) == []
    assert seen[0].startswith("/api1/x3/erp/SEED/PORDER('A%27%27B%2FC%3FD')?")


def test_rest_supplier_writes_use_create_and_edit_facets():
    seen: list[httpx.Request] = []

    def handler(request):
        seen.append(request)
        return httpx.Response(201 if request.method == "POST" else 200, json={"BPSNUM": "SUP9"})

    client = rest_client(handler)
    assert client.create_supplier({"supplier_code": "SUP9", "name": "N", "active": True,
                                   "update_stamp": "ignored", "unknown": 1}) == "SUP9"
    client.update_supplier("SUP9", {"active": False, "email": "a@b.c"})
    create, edit = seen
    assert (create.method, create.url.path, create.url.params["representation"]) == \
        ("POST", "/api1/x3/erp/SEED/BPSUPPLIER", "BPSUPPLIER.$create")
    assert json.loads(create.content) == {"BPSNUM": "SUP9", "BPSNAM": "N", "ENAFLG": 2}
    assert (edit.method, edit.url.path, edit.url.params["representation"]) == \
        ("PUT", "/api1/x3/erp/SEED/BPSUPPLIER('SUP9')", "BPSUPPLIER.$edit")
    assert json.loads(edit.content) == {"ENAFLG": 1, "WEB": "a@b.c"}


def test_rest_upsert_dimension_edits_or_creates():
    seen: list[httpx.Request] = []
    exists = {"PRJ~P1": True}

    def handler(request):
        seen.append(request)
        if request.method == "PUT":
            key = request.url.path.split("('")[1][:-2]
            return httpx.Response(200, json={}) if exists.get(key) else httpx.Response(
                500, json=MISSING)
        return httpx.Response(201, json={})

    client = rest_client(handler)
    assert client.upsert_dimension("PRJ", "P1", "Tower", True) == "updated"
    assert json.loads(seen[0].content) == {"DES": "Tower", "ENAFLG": 2}
    assert client.upsert_dimension("PRJ", "P2", "Depot", False, "DEP") == "created"
    assert [r.method for r in seen] == ["PUT", "PUT", "POST"]
    assert json.loads(seen[2].content) == {"DIE": "PRJ", "CCE": "P2", "DES": "Depot",
                                           "ENAFLG": 1, "DESSHO": "DEP"}


def test_rest_mapping_key_reads_line_accounts_and_dimensions_from_their_own_members():
    handler = lambda r: httpx.Response(200, json=PORDER_DETAILS)  # noqa: E731
    by_account = rest_client(handler).read_purchase_orders(["PO1"])[0]["lines"][0]
    assert (by_account["gl_account"], by_account["mapping_key"]) == ("602300", "602300")
    names = names_from_env({"MLC_MAPPING_KEY": "dimension:CST"})
    by_dimension = rest_client(handler, names=names).read_purchase_orders(["PO1"])[0]["lines"][0]
    assert (by_dimension["gl_account"], by_dimension["mapping_key"]) == ("602300", "C602300")
    names = names_from_env({"MLC_MAPPING_KEY": "dimension:NOPE"})
    assert rest_client(handler, names=names).read_purchase_orders(["PO1"])[0]["lines"][0][
        "mapping_key"] is None
    # A chart picks the account of that chart; an unknown chart gives no account.
    two_charts = {**PORDER_DETAILS, "PORDERC": [{"POPLIN": 1000, "COA": ["IFRS", "LOCAL"],
                                                 "LINACC": ["602300", "6023"]}]}
    names = names_from_env({"MLC_X3_CHART": "LOCAL"})
    line = rest_client(lambda r: httpx.Response(200, json=two_charts), names=names
                       ).read_purchase_orders(["PO1"])[0]["lines"][0]
    assert line["mapping_key"] == "6023"
    # A line account on the quantity line itself is not where X3 keeps it: not read.
    on_line = {**PORDER_ROW, "PORDERQ": [{**PORDERQ_LINE, "ACC": "602300"}]}
    line = rest_client(lambda r: httpx.Response(200, json=on_line)).read_purchase_orders(["PO1"])[0]
    assert line["lines"][0]["mapping_key"] is None


def test_a_customer_representation_can_keep_the_account_on_the_line():
    names = names_from_env({"MLC_X3_REST_LINE_ACCOUNT": "ACC"})
    on_line = {**PORDER_ROW, "PORDERQ": [{**PORDERQ_LINE, "ACC": "602300"}]}
    record = rest_client(lambda r: httpx.Response(200, json=on_line), names=names
                         ).read_purchase_orders(["PO1"])[0]
    assert record["lines"][0]["mapping_key"] == "602300"
