"""End to end: the `sync_reference_data` job (suppliers <-> vendors, Procore segments -> X3
dimension values) and the PO sync reusing its reference reads.

Sage X3 side, as Sage documents it: standard X3 takes neither suppliers nor dimension values
through its web APIs, so by default the connector writes X3 import files and X3 imports them
(here the sandbox's `/_sandbox/x3/import`, standing in for Usage > Imports); a record is
`exported` until the next read of X3 shows it. X3 users' own edits are made on the sandbox
state directly (they type them into X3's screens, not into its web API).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from mlc_dagster.defs.suppliers.plan import supplier_code_for
from mlc_dagster.ledger.store import Ledger
from mlc_dagster_tests.e2e import flow_helpers as flows
from mlc_dagster_tests.e2e.flow_helpers import (
    compact_sandboxes_fixture,  # noqa: F401 - sandboxes
    job_runner_fixture,  # noqa: F401 - run
)
from mlc_sandbox.sage_x3 import classes as sage_x3_app

SEED = flows.compact_seed()
PROCORE_ONLY = [v for v in SEED.vendors if not v["origin_id"]]
DEFAULTS = "BSGCOD=SUP,LAN=ENG,TSSCOD(0)=CON,ACCCOD=STD,VACBPR=NOR,PTE=30NET,BPAADD=MAIN"
# Every write either job may send through an API: anything else (any X3 write by default, a
# GL class, an accounting endpoint) fails the test.
PROCORE_WRITES = re.compile(r"^PATCH /rest/v1\.0/vendors/sync$")
API_WRITES = re.compile(r"^(PATCH /rest/v1\.0/vendors/sync"
                        r"|(POST|PUT) /api1/x3/erp/SEED/(BPSUPPLIER|CACCE)(\('[^']*'\))?)$")


@pytest.fixture(autouse=True)
def supplier_defaults(monkeypatch):
    monkeypatch.setenv("MLC_X3_NEW_SUPPLIER_DEFAULTS", DEFAULTS)


def supplier(code: str, name: str, **fields) -> dict:
    body = {"BPSNUM": code, "BPSNAM": name, "CUR": "GBP", "CRY": "GB", "CTY": "Leeds",
            "POSCOD": "LS1 4AP", "ADDLIG": "1 Test Road", "TEL": "+44 113 496 0000",
            "WEB": f"{code.lower()}@example.com", "ENAFLG": 2}
    body.update(fields)
    return body


def x3_user_enters(sandboxes, cls, body=None, key=None):
    """An X3 user creating (or, with a key, changing) a record in X3's own screens."""
    state = sandboxes["sage_x3"].state
    with state.lock:
        return state.update(cls, key, body) if key else state.create(cls, body)


def x3_imports(sandboxes, result, asset: str) -> list[dict]:
    """X3's Imports function run on every file the asset wrote in that run; the import logs."""
    logs = []
    for path in flows.materialization(result, asset)["paths"]:
        name = Path(path).name
        response = httpx.post(f"{sandboxes['sage_x3'].url}/_sandbox/x3/import",
                              params={"template": name.split("_")[0], "file": name},
                              content=Path(path).read_bytes())
        assert response.status_code == 200, response.text
        assert response.json()["errors"] == [], response.json()
        logs.append(response.json())
    return logs


def writes(*handles) -> list[str]:
    return [f"{m} {p}" for handle in handles for m, p in flows.api_writes(handle)]


def test_suppliers_and_vendors_both_ways_through_x3_import_files(sandboxes, run, sync_env):
    procore, x3 = flows.ProcoreApi(sandboxes["procore"].url), flows.X3Records(sandboxes["sage_x3"].url)
    bps = sage_x3_app.BPSUPPLIER
    x3_user_enters(sandboxes, bps, supplier("SUP900", "Nova Scaffolding Ltd", POSCOD="B1 1BB"))
    x3_user_enters(sandboxes, bps, supplier("SUP901", "Société Générale Bâtiment — Łódź", CRY="FR"))
    x3_user_enters(sandboxes, bps, supplier("SUP902", "Broken Country Ltd", CRY="GBR"))
    x3_user_enters(sandboxes, bps, supplier("SUP903", "Quarry Aggregates Ltd", EECNUM=""))
    x3_user_enters(sandboxes, bps, supplier("SUP904", "KEYSTONE SURVEYING LTD", POSCOD="M1 1AE",
                                            CTY="Manchester"))
    twins = [procore.create_vendor(name="Quarry Aggregates", zip="LS1 4AP", city="Leeds")
             for _ in range(2)]
    keystone = procore.create_vendor(name="Keystone Surveying", zip="M1 1AE")
    too_long = procore.create_vendor(name="The Extremely Long Named Crane Hire Company plc")

    flows.clear_calls(sandboxes["procore"], sandboxes["sage_x3"])
    result = run("sync_reference_data")
    vendors = {v["origin_id"]: v for v in procore.vendors() if v.get("origin_id")}
    assert vendors["SUP900"]["name"] == "Nova Scaffolding Ltd"
    assert vendors["SUP900"]["origin_code"] == "SUP900"
    assert vendors["SUP901"]["name"] == "Société Générale Bâtiment — Łódź"
    assert {"SUP039", "SUP040"} <= set(vendors)  # the seed's X3-only suppliers
    assert vendors["SUP904"]["id"] == keystone["id"]  # linked, not duplicated ...
    assert vendors["SUP904"]["name"] == "KEYSTONE SURVEYING LTD"  # ... and X3 owns the name
    assert sum("keystone surveying" in v["name"].lower() for v in procore.vendors()) == 1
    # Procore-only vendors: exported to X3's supplier file, not linked back until X3 has them
    sent = writes(sandboxes["procore"], sandboxes["sage_x3"])
    assert sent and [w for w in sent if not PROCORE_WRITES.match(w)] == []  # nothing to X3's API
    files = flows.materialization(result, "x3_supplier_import_file")
    assert files["rows"] == len(PROCORE_ONLY) and files["template_codes"] == "YMLCBPS"
    ledger = Ledger(sync_env["ledger_url"])
    for vendor in PROCORE_ONLY:
        code = supplier_code_for(vendor["id"], "PC")
        assert code not in vendors and x3.get("BPSUPPLIER", code) is None
        state = ledger.states("vendor", [str(vendor["id"])])[str(vendor["id"])]
        assert state.status == "exported" and state.payload["file"] in files["paths"][0]
        assert ledger.events("vendor", str(vendor["id"]))[-1]["action"] == "export"

    assert "SUP902" not in vendors and "SUP903" not in vendors
    assert all(not v.get("origin_id") for v in procore.vendors() if v["id"] in
               {twins[0]["id"], twins[1]["id"], too_long["id"]})
    reasons = {k: s.reason for k, s in ledger.states("supplier", ["SUP902", "SUP903"]).items()}
    assert "supplier SUP902: country" in reasons["SUP902"]
    assert "ambiguous match" in reasons["SUP903"]
    assert not flows.check(result, "no_ambiguous_vendor_matches").passed
    assert not flows.check(result, "supplier_quarantine").passed
    held_vendor = ledger.states("vendor", [str(too_long["id"])])[str(too_long["id"])]
    assert held_vendor.status == "held" and "name is 47 characters, Sage X3 allows 35" in \
        held_vendor.reason

    # Not imported yet: the next run exports nothing again and links nothing.
    flows.clear_calls(sandboxes["procore"], sandboxes["sage_x3"])
    pending = run("sync_reference_data")
    assert flows.materialization(pending, "x3_supplier_import_file")["rows"] == 0
    assert flows.materialization(pending, "supplier_vendor_sync")["waiting_for_x3_import"] == \
        len(PROCORE_ONLY)
    assert writes(sandboxes["procore"], sandboxes["sage_x3"]) == []

    (log,) = x3_imports(sandboxes, result, "x3_supplier_import_file")  # X3 imports the file
    assert len(log["created"]) == len(PROCORE_ONLY)
    second = run("sync_reference_data")
    assert flows.materialization(second, "x3_suppliers")["x3_records_changed"] == len(PROCORE_ONLY)
    vendors = {v["origin_id"]: v for v in procore.vendors() if v.get("origin_id")}
    for vendor in PROCORE_ONLY:  # now X3 suppliers, linked back
        code = supplier_code_for(vendor["id"], "PC")
        assert x3.get("BPSUPPLIER", code)["BPSNAM"] == vendor["name"]
        assert vendors[code]["id"] == vendor["id"]
        assert ledger.states("vendor", [str(vendor["id"])])[str(vendor["id"])].status == "synced"

    flows.clear_calls(sandboxes["procore"], sandboxes["sage_x3"])
    third = run("sync_reference_data")  # no ping-pong, no new file
    assert flows.materialization(third, "supplier_vendor_sync")["unchanged"] > 40
    assert flows.materialization(third, "x3_supplier_import_file")["rows"] == 0
    assert writes(sandboxes["procore"], sandboxes["sage_x3"]) == []

    # Inactive both ways: an X3 supplier deactivated in X3, a vendor deactivated in Procore.
    x3_user_enters(sandboxes, bps, {"ENAFLG": 1}, key="SUP001")
    procore.update_vendor(vendors["SUP002"]["id"], is_active=False)
    deactivating = run("sync_reference_data")
    inactive = {v["origin_id"] for v in procore.vendors(inactive=True)}
    assert "SUP001" in inactive and "SUP002" in inactive
    assert x3.get("BPSUPPLIER", "SUP002")["ENAFLG"] == 2  # exported, not imported yet
    state = ledger.states("supplier", ["SUP002"])["SUP002"]
    assert state.status == "exported" and state.payload["template"] == "YMLCBPSU"
    assert "X3 active: True -> False" in ledger.events("supplier", "SUP002")[-1]["reason"]
    x3_imports(sandboxes, deactivating, "x3_supplier_import_file")
    flows.clear_calls(sandboxes["procore"], sandboxes["sage_x3"])
    run("sync_reference_data")
    assert x3.get("BPSUPPLIER", "SUP002")["ENAFLG"] == 1
    assert ledger.states("supplier", ["SUP002"])["SUP002"].status == "synced"
    assert ledger.events("supplier", "SUP002")[-1]["action"] == "confirm"
    assert "SUP002" in {v["origin_id"] for v in procore.vendors(inactive=True)}  # no echo
    assert writes(sandboxes["procore"], sandboxes["sage_x3"]) == []


def test_procore_segments_become_x3_dimension_values_and_po_sync_reuses_reference_reads(
        sandboxes, run, sync_env):
    procore, x3 = flows.ProcoreApi(sandboxes["procore"].url), flows.X3Records(sandboxes["sage_x3"].url)
    project = SEED.projects[0]["id"]
    standard = SEED.standard_cost_codes[0]
    sub_job = SEED.sub_jobs[project][0]

    first = run("sync_reference_data")
    exported = flows.materialization(first, "x3_dimension_values")["to_export"]
    assert exported > len(SEED.standard_cost_codes)
    assert flows.materialization(first, "x3_dimension_import_file")["rows"] == exported
    assert x3.get("CACCE", f"CCT~{standard['code']}") is None  # not in X3 until imported
    ledger = Ledger(sync_env["ledger_url"])
    assert ledger.states("dimension", [f"CCT~{standard['code']}"])[
        f"CCT~{standard['code']}"].status == "exported"
    x3_imports(sandboxes, first, "x3_dimension_import_file")

    confirmed = run("sync_reference_data")
    assert flows.materialization(confirmed, "x3_dimension_values")["confirm"] == exported
    assert flows.materialization(confirmed, "x3_dimension_import_file")["rows"] == 0
    dimension = {(d["DIE"], d["CCE"]): d for d in x3.query("CACCE")}
    assert dimension[("CCT", standard["code"])]["DES"] == standard["name"]
    assert dimension[("CTY", "M")]["DES"] == "Materials"
    assert dimension[("SJB", sub_job["code"])]["ENAFLG"] == 2
    assert len([k for k in dimension if k[0] == "CCT"]) == len(SEED.standard_cost_codes)
    assert ledger.states("dimension", [f"CCT~{standard['code']}"])[
        f"CCT~{standard['code']}"].status == "synced"

    first_po_sync = run()  # reuses projects / cost codes / cost types read by the job above
    reused = {a for a in ("procore_projects", "procore_cost_codes", "procore_line_item_types",
                          "procore_vendors")
              if "reused_from_run" in flows.materialization(first_po_sync, a)}
    assert reused == {"procore_projects", "procore_cost_codes", "procore_line_item_types"}

    r = procore.http.post("/rest/v1.0/cost_codes", json={"project_id": project, "cost_code": {
        "code": "99-100", "name": "Client Changes"}})
    assert r.status_code == 201, r.text
    r = procore.http.patch(f"/rest/v1.0/standard_cost_codes/{standard['id']}", json={
        "company_id": procore.company_id, "standard_cost_code": {"name": "General Conditions"}})
    assert r.status_code == 200, r.text
    state = sandboxes["procore"].state  # the sandbox has no sub job DELETE: remove it directly
    with state.lock:
        state.sub_jobs.remove(state.sub_jobs.get(sub_job["id"]))

    flows.clear_calls(sandboxes["sage_x3"])
    changed = run("sync_reference_data")
    assert flows.materialization(changed, "x3_dimension_import_file")["rows"] == 3  # only those
    assert writes(sandboxes["sage_x3"]) == []  # nothing through X3's web API
    x3_imports(sandboxes, changed, "x3_dimension_import_file")
    assert x3.get("CACCE", "CCT~99-100")["DES"] == "Client Changes"
    assert x3.get("CACCE", f"CCT~{standard['code']}")["DES"] == "General Conditions"
    gone = x3.get("CACCE", f"SJB~{sub_job['code']}")
    assert gone is not None and gone["ENAFLG"] == 1  # deactivated, not deleted

    flows.clear_calls(sandboxes["procore"])
    after_reference = run()  # vendors re-read (that job may have changed them), the rest reused
    assert "reused_from_run" not in flows.materialization(after_reference, "procore_vendors")
    assert "reused_from_run" in flows.materialization(after_reference, "procore_cost_codes")
    gets = {c for m, c in _calls(sandboxes["procore"]) if m == "GET"}
    assert "/rest/v1.0/vendors" in gets and "/rest/v1.0/cost_codes" not in gets


def test_web_api_writes_fail_on_standard_x3_and_work_where_the_customer_built_classes(
        sandboxes, run, sync_env, monkeypatch):
    monkeypatch.setenv("MLC_X3_DIMENSION_WRITE", "api")
    monkeypatch.setenv("MLC_X3_SUPPLIER_WRITE", "api")
    x3, ledger = flows.X3Records(sandboxes["sage_x3"].url), Ledger(sync_env["ledger_url"])
    key = f"CCT~{SEED.standard_cost_codes[0]['code']}"

    refused = run("sync_reference_data")  # standard X3: the sandbox refuses, as X3 would
    assert flows.materialization(refused, "x3_dimension_values")["failed"] > 0
    state = ledger.states("dimension", [key])[key]
    assert state.status == "failed" and "representation is read-only" in state.reason
    vendor = str(PROCORE_ONLY[0]["id"])
    assert ledger.states("vendor", [vendor])[vendor].status == "failed"

    httpx.post(f"{sandboxes['sage_x3'].url}/_sandbox/x3/settings",
               json={"writable_classes": ["BPSUPPLIER", "CACCE"]})  # the customer's own classes
    flows.clear_calls(sandboxes["procore"], sandboxes["sage_x3"])
    written = run("sync_reference_data")
    assert ledger.states("dimension", [key])[key].status == "synced"
    assert x3.get("CACCE", key)["DES"] == SEED.standard_cost_codes[0]["name"]
    assert x3.get("BPSUPPLIER", supplier_code_for(PROCORE_ONLY[0]["id"], "PC")) is not None
    assert flows.materialization(written, "x3_dimension_import_file")["rows"] == 0
    sent = writes(sandboxes["procore"], sandboxes["sage_x3"])
    assert any("/api1/" in w for w in sent) and [w for w in sent if not API_WRITES.match(w)] == []


def _calls(handle):
    from mlc_dagster_tests.conftest import sandbox_calls

    return [(c["method"], c["path"]) for c in sandbox_calls(handle)]


def test_reference_job_is_scheduled_hourly_by_default_and_can_run_on_demand():
    from mlc_dagster.definitions import defs

    schedule = defs.resolve_schedule_def("sync_reference_data_schedule")
    assert schedule.cron_schedule == "0 * * * *"
    assert schedule.job_name == "sync_reference_data"
    assert defs.resolve_job_def("sync_reference_data") is not None
    assert {"x3_supplier_import_file", "x3_dimension_import_file"} <= {
        k.to_user_string() for k in
        defs.resolve_job_def("sync_reference_data").asset_layer.selected_asset_keys}
