"""End to end: the `sync_reference_data` job (suppliers <-> vendors, Procore segments -> X3
dimension values) and the PO sync reusing its reference reads."""

from __future__ import annotations

import re

from mlc_dagster.ledger.store import Ledger
from mlc_dagster.suppliers.plan import supplier_code_for
from mlc_dagster_tests.e2e import flow_helpers as flows
from mlc_dagster_tests.e2e.flow_helpers import (
    compact_sandboxes_fixture,  # noqa: F401 - sandboxes
    job_runner_fixture,  # noqa: F401 - run
)

SEED = flows.compact_seed()
PROCORE_ONLY = [v for v in SEED.vendors if not v["origin_id"]]
# Every write either job may send: anything else (a GL class, an accounting endpoint) fails.
ALLOWED_WRITES = re.compile(
    r"^(PATCH /rest/v1\.0/vendors/sync"
    r"|(POST|PUT) /api1/x3/erp/SEED/(BPSUPPLIER|CACCE)(\('[^']*'\))?)$")



def supplier(code: str, name: str, **fields) -> dict:
    body = {"BPSNUM": code, "BPSNAM": name, "CUR": "GBP", "CRY": "GB", "CTY": "Leeds",
            "POSCOD": "LS1 4AP", "ADDLIG": "1 Test Road", "TEL": "+44 113 496 0000",
            "WEB": f"{code.lower()}@example.com", "ENAFLG": 2}
    body.update(fields)
    return body


def writes(*handles) -> list[str]:
    return [f"{m} {p}" for handle in handles for m, p in flows.api_writes(handle)]


def test_suppliers_and_vendors_both_ways_without_ping_pong(sandboxes, run, sync_env):
    procore, x3 = flows.ProcoreApi(sandboxes["procore"].url), flows.X3Records(sandboxes["sage_x3"].url)
    x3.create("BPSUPPLIER", supplier("SUP900", "Nova Scaffolding Ltd", POSCOD="B1 1BB"))
    x3.create("BPSUPPLIER", supplier("SUP901", "Société Générale Bâtiment — Łódź", CRY="FR"))
    x3.create("BPSUPPLIER", supplier("SUP902", "Broken Country Ltd", CRY="GBR"))
    x3.create("BPSUPPLIER", supplier("SUP903", "Quarry Aggregates Ltd", EECNUM=""))
    x3.create("BPSUPPLIER", supplier("SUP904", "KEYSTONE SURVEYING LTD", POSCOD="M1 1AE",
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
    for vendor in PROCORE_ONLY:  # Procore-only vendors are now X3 suppliers, linked back
        code = supplier_code_for(vendor["id"], "PC")
        assert x3.get("BPSUPPLIER", code)["BPSNAM"] == vendor["name"]
        assert vendors[code]["id"] == vendor["id"]
    assert "SUP902" not in vendors and "SUP903" not in vendors
    assert all(not v.get("origin_id") for v in procore.vendors() if v["id"] in
               {twins[0]["id"], twins[1]["id"], too_long["id"]})

    ledger = Ledger(sync_env["ledger_url"])
    reasons = {k: s.reason for k, s in ledger.states("supplier", ["SUP902", "SUP903"]).items()}
    assert "supplier SUP902: country" in reasons["SUP902"]
    assert "ambiguous match" in reasons["SUP903"]
    assert not flows.check(result, "no_ambiguous_vendor_matches").passed
    assert not flows.check(result, "supplier_quarantine").passed
    held_vendor = ledger.states("vendor", [str(too_long["id"])])[str(too_long["id"])]
    assert held_vendor.status == "held" and "name is 47 characters, Sage X3 allows 35" in \
        held_vendor.reason
    sent = writes(sandboxes["procore"], sandboxes["sage_x3"])
    assert sent and [w for w in sent if not ALLOWED_WRITES.match(w)] == []

    flows.clear_calls(sandboxes["procore"], sandboxes["sage_x3"])
    second = run("sync_reference_data")
    # The suppliers we created in X3 come back in the delta read (new stamps) and are
    # recognised as our own writes: nothing echoes back to Procore or X3.
    assert flows.materialization(second, "x3_suppliers")["x3_records_changed"] == len(PROCORE_ONLY)
    assert flows.materialization(second, "supplier_vendor_sync")["unchanged"] > 40
    assert writes(sandboxes["procore"], sandboxes["sage_x3"]) == []

    # Inactive both ways: an X3 supplier deactivated, a Procore vendor deactivated.
    x3.edit("BPSUPPLIER", "SUP001", {"ENAFLG": 1})
    procore.update_vendor(vendors["SUP002"]["id"], is_active=False)
    run("sync_reference_data")
    inactive = {v["origin_id"] for v in procore.vendors(inactive=True)}
    assert "SUP001" in inactive and "SUP002" in inactive
    assert x3.get("BPSUPPLIER", "SUP002")["ENAFLG"] == 1
    assert x3.get("BPSUPPLIER", "SUP001")["ENAFLG"] == 1
    events = ledger.events("supplier", "SUP002")
    assert "X3 active: True -> False" in events[-1]["reason"]


def test_procore_segments_become_x3_dimension_values_and_po_sync_reuses_reference_reads(
        sandboxes, run):
    procore, x3 = flows.ProcoreApi(sandboxes["procore"].url), flows.X3Records(sandboxes["sage_x3"].url)
    project = SEED.projects[0]["id"]
    standard = SEED.standard_cost_codes[0]
    sub_job = SEED.sub_jobs[project][0]

    run("sync_reference_data")
    dimension = {(d["DIE"], d["CCE"]): d for d in x3.query("CACCE")}
    assert dimension[("CCT", standard["code"])]["DES"] == standard["name"]
    assert dimension[("CTY", "M")]["DES"] == "Materials"
    assert dimension[("SJB", sub_job["code"])]["ENAFLG"] == 2
    assert len([k for k in dimension if k[0] == "CCT"]) == len(SEED.standard_cost_codes)

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
    run("sync_reference_data")
    assert x3.get("CACCE", "CCT~99-100")["DES"] == "Client Changes"
    assert x3.get("CACCE", f"CCT~{standard['code']}")["DES"] == "General Conditions"
    gone = x3.get("CACCE", f"SJB~{sub_job['code']}")
    assert gone is not None and gone["ENAFLG"] == 1  # deactivated, not deleted
    assert len(flows.api_writes(sandboxes["sage_x3"])) <= 2 * 3  # only the three changed values
    assert [w for w in writes(sandboxes["sage_x3"]) if not ALLOWED_WRITES.match(w)] == []

    flows.clear_calls(sandboxes["procore"])
    after_reference = run()  # vendors re-read (that job may have changed them), the rest reused
    assert "reused_from_run" not in flows.materialization(after_reference, "procore_vendors")
    assert "reused_from_run" in flows.materialization(after_reference, "procore_cost_codes")
    gets = {c for m, c in _calls(sandboxes["procore"]) if m == "GET"}
    assert "/rest/v1.0/vendors" in gets and "/rest/v1.0/cost_codes" not in gets


def _calls(handle):
    from mlc_dagster_tests.conftest import sandbox_calls

    return [(c["method"], c["path"]) for c in sandbox_calls(handle)]


def test_reference_job_is_scheduled_hourly_by_default_and_can_run_on_demand():
    from mlc_dagster.definitions import defs

    schedule = defs.resolve_schedule_def("sync_reference_data_schedule")
    assert schedule.cron_schedule == "0 * * * *"
    assert schedule.job_name == "sync_reference_data"
    assert defs.resolve_job_def("sync_reference_data") is not None
