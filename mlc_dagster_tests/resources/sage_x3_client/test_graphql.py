"""The GraphQL client against httpx.MockTransport: queries built from config, paging, writes."""

from __future__ import annotations

import dataclasses
import json

import httpx

from mlc_dagster.resources.sage_x3_client import X3Names
from mlc_dagster_tests.resources.sage_x3_client.clients import PO_NODE, connection, graphql_client


def test_graphql_changed_pages_with_cursors_and_builds_the_query_from_config():
    bodies: list[dict] = []

    def handler(request):
        body = json.loads(request.content)
        bodies.append(body)
        first_page = body["variables"]["after"] is None
        nodes = [PO_NODE] if first_page else [{**PO_NODE, "_id": "PO2"}]
        return httpx.Response(200, json={"data": {"x3Purchasing": {"purchaseOrder": {
            "query": connection(nodes, has_next=first_page, end="cur-1" if first_page else "cur-2")}}}})

    pages = list(graphql_client(handler).changed("purchase_order", "2026-01-05T08:00:07Z", page_size=1))
    assert [[r["po_number"] for r in p] for p in pages] == [["PO1"], ["PO2"]]
    assert bodies[0]["variables"] == {"filter": "{_updateStamp:{_gte:'2026-01-05T08:00:07Z'}}",
                                      "orderBy": "{_updateStamp:1,_id:1}", "first": 1, "after": None}
    assert bodies[1]["variables"]["after"] == "cur-1"
    query = bodies[0]["query"]
    assert "x3Purchasing { purchaseOrder { query(filter: $filter" in query
    assert "orderFromSupplier { code { code } }" in query
    assert ("purchaseOrderLines { query { edges { node { lineNumber product { code } "
            "productDescriptionInUserLanguage account { code }") in query


def test_changing_a_configured_path_changes_the_query():
    names = X3Names(graphql_root_prefix="xtremX3")
    fields = {**names.supplier.graphql_fields, "supplier_code": "_id", "name": "code.companyName"}
    names = dataclasses.replace(names, supplier=dataclasses.replace(names.supplier, graphql_fields=fields))
    bodies = []

    def handler(request):
        bodies.append(json.loads(request.content))
        node = {"_id": "SUP1", "code": {"companyName": "Acme", "vatNumber": "GB1"}}
        return httpx.Response(200, json={"data": {"xtremX3MasterData": {"supplier": {
            "query": connection([node])}}}})

    [[record]] = list(graphql_client(handler, names=names).read_all("supplier"))
    assert "xtremX3MasterData { supplier" in bodies[0]["query"]
    assert "code { companyName vatNumber }" in bodies[0]["query"]
    assert (record["supplier_code"], record["name"], record["tax_id"]) == ("SUP1", "Acme", "GB1")


def test_graphql_read_by_ids_filters_with_in_and_keeps_the_order_asked():
    filters = []

    def handler(request):
        variables = json.loads(request.content)["variables"]
        filters.append(variables["filter"])
        nodes = [{**PO_NODE, "_id": n} for n in ("PO2", "PO1")]
        return httpx.Response(200, json={"data": {"x3Purchasing": {"purchaseOrder": {
            "query": connection(nodes)}}}})

    records = graphql_client(handler).read_purchase_orders(["PO1", "PO'X", "PO2"])
    assert [r["po_number"] for r in records] == ["PO1", "PO2"]
    assert filters == ["{_id:{_in:['PO1','PO\\'X','PO2']}}"]


def test_graphql_upsert_dimension_queries_then_mutates_with_escaped_values():
    bodies = []

    def handler(request):
        body = json.loads(request.content)
        bodies.append(body)
        if body["query"].startswith("mutation"):
            return httpx.Response(200, json={"data": {"x3FinanceData": {"dimension": {"create": {"_id": "x"}}}}})
        return httpx.Response(200, json={"data": {"x3FinanceData": {"dimension": {"query": connection([])}}}})

    assert graphql_client(handler).upsert_dimension("PRJ", 'P"1', "Quote's", True) == "created"
    assert bodies[0]["variables"]["filter"] == "{dimensionType:{code:'PRJ'},dimension:'P\"1'}"
    assert bodies[1]["query"] == ('mutation { x3FinanceData { dimension { create(data: {dimensionType: "PRJ", '
                                  'dimension: "P\\"1", localizedDescription: "Quote\'s", isActive: true}) '
                                  '{ _id } } } }')
