"""X3 failures: diagnoses become errors, missing records are recognised, transient failures retried."""

from __future__ import annotations

import httpx
import pytest

from mlc_dagster.resources.sage_x3_client import SageX3Error
from mlc_dagster_tests.resources.sage_x3_client.clients import MISSING, graphql_client, rest_client


@pytest.mark.parametrize("status", [400, 404, 500])
def test_a_missing_record_is_recognised_by_its_diagnosis_whatever_the_status(status):
    """Sage promises only "4xx or 5xx": the diagnosis says the record is missing, and such
    an answer is not retried even as a 500."""
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(status, json=MISSING)

    assert rest_client(handler).read_purchase_orders(["GONE"]) == []
    assert len(calls) == 1


def test_a_404_without_the_missing_record_diagnosis_is_an_error():
    """A 404 also answers an unknown class or endpoint: that must not read as "no record"."""
    body = {"$diagnoses": [{"$severity": "error", "$message": "Class PORDER does not exist"}]}
    with pytest.raises(SageX3Error) as info:
        rest_client(lambda r: httpx.Response(404, json=body)).read_purchase_orders(["PO1"])
    assert info.value.status == 404 and not info.value.record_missing
    with pytest.raises(SageX3Error):
        rest_client(lambda r: httpx.Response(404, json={})).read_purchase_orders(["PO1"])


def test_rest_diagnoses_become_errors_with_x3s_message():
    body = {"$diagnoses": [{"$severity": "error", "$message": "BadWhereSyntax: unexpected token"}]}
    client = rest_client(lambda r: httpx.Response(400, json=body))
    with pytest.raises(SageX3Error) as caught:
        list(client.read_all("supplier"))
    assert caught.value.status == 400 and caught.value.message == "BadWhereSyntax: unexpected token"

    client = rest_client(lambda r: httpx.Response(200, json={**body, "$resources": []}))
    with pytest.raises(SageX3Error):
        list(client.read_all("supplier"))


@pytest.mark.parametrize("failure", [
    httpx.Response(503, json={"$diagnoses": [{"$severity": "error", "$message": "Service unavailable"}]}),
    httpx.Response(400, json={"$diagnoses": [{"$severity": "error", "$message": "Too many sessions open for this user"}]}),
    httpx.Response(200, json={"$diagnoses": [{"$severity": "error", "$message": "No X3 session available"}]}),
    httpx.ReadTimeout, httpx.RemoteProtocolError,
])
def test_transient_x3_failures_are_retried(failure):
    steps = [failure, httpx.Response(200, json={"$resources": [], "$links": {}})]
    seen = []

    def handler(request):
        seen.append(request)
        step = steps.pop(0)
        if isinstance(step, type):
            raise step("scripted", request=request)
        return step

    assert list(rest_client(handler).read_all("supplier")) == []
    assert len(seen) == 2


def test_a_create_is_not_repeated_after_a_dropped_connection():
    seen = []

    def handler(request):
        seen.append(request)
        raise httpx.RemoteProtocolError("dropped", request=request)

    with pytest.raises(SageX3Error):
        rest_client(handler).create_supplier({"supplier_code": "SUP9", "name": "N"})
    assert len(seen) == 1


def test_graphql_errors_surface_and_session_errors_are_retried():
    steps = [
        httpx.Response(200, json={"data": None, "errors": [{"message": "Too many sessions"}]}),
        httpx.Response(200, json={"data": None, "errors": [{"message": "Unknown property 'x'"}]}),
    ]
    client = graphql_client(lambda r: steps.pop(0))
    with pytest.raises(SageX3Error) as caught:
        list(client.read_all("supplier"))
    assert caught.value.message == "Unknown property 'x'"
    assert steps == []
