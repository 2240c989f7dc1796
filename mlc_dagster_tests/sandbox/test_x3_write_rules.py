"""What the X3 sandbox refuses because Sage's documents say X3 refuses it, and how it imports
a file the way X3's Imports function does (issue 13 point 9). Sources are cited next to the
rules in mlc_sandbox/sage_x3/ (classes.WEB_API_READ_ONLY, graphql_schema._mutation_sdl,
admin.import_file).
"""

from __future__ import annotations

import time

import jwt
import pytest
from starlette.testclient import TestClient

from mlc_dagster.x3_import.templates import (
    dimension_template,
    render,
    supplier_template,
    supplier_update_template,
)
from mlc_sandbox.controls import SandboxControls
from mlc_sandbox.sage_x3.app import build_app
from mlc_sandbox.sage_x3.classes import BPSUPPLIER, CACCE, CLASSES
from mlc_sandbox.sage_x3.state import copy_json
from mlc_sandbox.seed import SANDBOX_CREDENTIALS, build_seed

C = SANDBOX_CREDENTIALS
API = f"/api1/x3/erp/{C['x3_endpoint']}"
NEW_SUPPLIER = {"BPSNUM": "PC77", "BPRNAM": "Harbor Crane", "BPRSHO": "Harbor", "BSGCOD": "SUP",
                "ENAFLG": 2, "LAN": "ENG", "TSSCOD(0)": "CON", "ACCCOD": "STD", "VACBPR": "NOR",
                "PTE": "30NET", "BPAADD": "MAIN"}
ADDRESS = {"BPAADD": "MAIN", "BPAADDLIG(0)": "1 Dock Road", "POSCOD": "L3 4AA",
           "CTY": "Liverpool", "CRY": "GB", "TEL(0)": "+44 151 000", "WEB(0)": "ops@harbor.example"}


@pytest.fixture(scope="module")
def seed():
    return build_seed(42, "small")


@pytest.fixture
def x3(seed):
    app = build_app(seed, SandboxControls())
    with TestClient(app) as client:
        client.state_obj = app.state_obj
        yield client


def rest(client, method, cls, key=None, facet="$edit", body=None):
    path = f"{API}/{cls}" + (f"('{key}')" if key else "")
    return client.request(method, path, params={"representation": f"{cls}.{facet}"},
                          json=body, auth=(C["x3_user"], C["x3_password"]))


def graphql(client, query):
    now = int(time.time()) - 5
    token = jwt.encode({"iss": C["x3_jwt_client_id"], "sub": C["x3_jwt_user"], "iat": now,
                        "exp": now + 300}, C["x3_jwt_secret"], algorithm="HS256")
    return client.post("/xtrem/api", json={"query": query}, headers={
        "Authorization": f"Bearer {token}", "x-xtrem-endpoint": C["x3_endpoint"]})


def import_file(client, template_code, text, file="f.txt"):
    data = text.encode() if isinstance(text, str) else text
    return client.post("/_sandbox/x3/import", params={"template": template_code, "file": file},
                       content=data)


# --- the web APIs cannot write suppliers or dimension values on standard X3 ---------------------

@pytest.mark.parametrize("method, cls, key, facet, body", [
    ("POST", "BPSUPPLIER", None, "$create", {"BPSNUM": "SUPX", "BPSNAM": "New"}),
    ("PUT", "BPSUPPLIER", "SUP001", "$edit", {"ENAFLG": 1}),
    ("DELETE", "BPSUPPLIER", "SUP001", "$edit", None),
    ("POST", "CACCE", None, "$create", {"DIE": "CCT", "CCE": "X1", "DES": "New"}),
    ("PUT", "CACCE", "PRJ~P1001", "$edit", {"DES": "Renamed"}),
])
def test_rest_writes_to_classic_objects_are_refused_with_a_diagnosis(x3, method, cls, key, facet,
                                                                     body):
    before = copy_json(x3.state_obj.records(CLASSES[cls]))
    response = rest(x3, method, cls, key, facet, body)
    assert response.status_code == 405
    (diagnosis,) = response.json()["$diagnoses"]
    assert diagnosis["$severity"] == "error"
    assert "read-only" in diagnosis["$message"] and "import template" in diagnosis["$message"]
    assert x3.state_obj.records(CLASSES[cls]) == before
    assert rest(x3, "GET", cls, key or None, "$query" if key is None else "$details").status_code \
        == 200  # reading stays allowed


def test_a_customer_built_writable_class_can_be_written(x3):
    assert x3.post("/_sandbox/x3/settings", json={"writable_classes": ["CACCE"]}).status_code == 200
    assert rest(x3, "POST", "CACCE", None, "$create",
                {"DIE": "CCT", "CCE": "X1", "DES": "New"}).status_code == 201
    assert rest(x3, "PUT", "BPSUPPLIER", "SUP001", "$edit", {"ENAFLG": 1}).status_code == 405


def test_graphql_finance_and_supplier_nodes_have_no_mutation_unless_an_operation_is_set_up(x3):
    create = ('mutation { x3FinanceData { dimension { create(data: {dimensionType: "CCT", '
              'dimension: "X1", localizedDescription: "New"}) { _id } } } }')
    body = graphql(x3, create).json()  # GraphQL errors, as X3's GraphQL server answers them
    assert body["errors"] and body.get("data") is None
    assert x3.state_obj.find(CACCE, "CCT~X1") is None
    supplier = 'mutation { x3MasterData { supplier { update(data: {code: "SUP001"}) { _id } } } }'
    assert graphql(x3, supplier).json()["errors"]
    query = '{ x3FinanceData { dimension { query(first: 1) { edges { node { _id } } } } } }'
    assert graphql(x3, query).json()["data"]["x3FinanceData"]["dimension"]["query"]["edges"]

    x3.post("/_sandbox/x3/settings", json={"api_operations": ["dimension"]})  # GESAPIOPE
    done = graphql(x3, create).json()
    assert "errors" not in done and x3.state_obj.find(CACCE, "CCT~X1") is not None
    assert graphql(x3, supplier).json()["errors"]  # only the configured node


def test_settings_accept_only_the_objects_the_sandbox_models(x3):
    assert x3.post("/_sandbox/x3/settings", json={"writable_classes": ["GACCOUNT"]}) \
        .status_code == 400
    assert x3.post("/_sandbox/x3/settings", json={"api_operations": ["account"]}).status_code == 400
    assert x3.get("/_sandbox/x3/settings").json() == {
        "writable_classes": [], "api_operations": [],
        "import_templates": ["YMLCBPS", "YMLCBPSU", "YMLCCCE"]}


# --- importing a file, as X3's Imports function does ---------------------------------------------

def test_a_dimension_file_creates_new_values_and_modifies_existing_ones(x3):
    text = render(dimension_template(), [
        [(None, {"DIE": "CCT", "CCE": "99-100", "DES": "Client Changes", "ENAFLG": 2})],
        [(None, {"DIE": "PRJ", "CCE": "P1001", "DES": "Renamed tower", "ENAFLG": 1})]])
    log = import_file(x3, "YMLCCCE", text, "YMLCCCE_1.txt").json()
    assert log["created"] == ["CCT~99-100"] and log["updated"] == ["PRJ~P1001"]
    assert log["errors"] == [] and log["file"] == "YMLCCCE_1.txt"
    value = x3.state_obj.find(CACCE, "PRJ~P1001")
    assert (value["DES"], value["ENAFLG"]) == ("Renamed tower", 1)
    again = import_file(x3, "YMLCCCE", text).json()
    assert again["unchanged"] == ["CCT~99-100", "PRJ~P1001"]


@pytest.mark.parametrize("data, status, words", [
    (b"CCT;1;One;2\n", 400, "CR+LF"),
    ("CCT;1;Caf\u00e9;2\r\n".encode("latin-1"), 400, "character set"),
])
def test_a_file_not_in_the_templates_format_is_refused_whole(x3, data, status, words):
    response = import_file(x3, "YMLCCCE", data)
    assert response.status_code == status and words in response.json()["error"]
    assert x3.state_obj.find(CACCE, "CCT~1") is None


def test_an_unknown_template_cannot_import(x3):
    response = import_file(x3, "ZNOPE", "CCT;1;One;2\r\n")
    assert response.status_code == 400
    assert "Import not allowed with this template" in response.json()["error"]


def test_each_record_imports_or_fails_alone_with_its_line(x3):
    log = import_file(x3, "YMLCCCE", "CCT;A1;Good;2\r\nCCT;A2;Short\r\nCCT;A3;;2\r\n").json()
    assert log["created"] == ["CCT~A1"]
    assert [(e["line"], e["message"].split(",")[0]) for e in log["errors"]] == [
        (2, "3 fields"), (3, "DES : Mandatory field")]


def test_a_new_supplier_needs_every_field_sage_lists_as_compulsory(x3):
    lacking = dict(NEW_SUPPLIER, LAN="", VACBPR="")
    log = import_file(x3, "YMLCBPS", render(supplier_template(),
                                            [[("B", lacking), ("A", ADDRESS)]])).json()
    assert log["created"] == []
    assert "mandatory on creation: LAN, VACBPR" in log["errors"][0]["message"]
    no_address = import_file(x3, "YMLCBPS", render(supplier_template(),
                                                   [[("B", NEW_SUPPLIER)]])).json()
    assert "address MAIN is not in the file" in no_address["errors"][0]["message"]
    log = import_file(x3, "YMLCBPS", render(supplier_template(),
                                            [[("B", NEW_SUPPLIER), ("A", ADDRESS)]])).json()
    assert log["created"] == ["PC77"]
    created = x3.state_obj.find(BPSUPPLIER, "PC77")
    assert (created["BPSNAM"], created["CTY"], created["WEB"], created["ENAFLG"]) == (
        "Harbor Crane", "Liverpool", "ops@harbor.example", 2)


def test_the_update_template_changes_the_active_flag_and_bp_fields_need_the_bp_template(x3):
    log = import_file(x3, "YMLCBPSU", render(supplier_update_template(),
                                             [[("B", {"BPSNUM": "SUP001", "ENAFLG": 1})]])).json()
    assert log["updated"] == ["SUP001"]
    assert x3.state_obj.find(BPSUPPLIER, "SUP001")["ENAFLG"] == 1
    missing = import_file(x3, "YMLCBPSU", "B;NOSUCH;1\r\n").json()
    assert missing["updated"] == [] and missing["errors"]
    renamed = dict(NEW_SUPPLIER, BPSNUM="SUP001", BPRNAM="Renamed by import")
    log = import_file(x3, "YMLCBPS", render(supplier_template(),
                                            [[("B", renamed), ("A", ADDRESS)]])).json()
    message = log["errors"][0]["message"]
    assert "BPRNAM" in message and "belong to the business partner" in message
    assert x3.state_obj.find(BPSUPPLIER, "SUP001")["BPSNAM"] != "Renamed by import"
