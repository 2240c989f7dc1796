"""The oracle's and the duplicate checks' own tests: each check is shown to FAIL when the thing
it guards is broken on purpose (issue #16 "Must show"), and to pass on a converged world.

Breakages, each on a freshly synced small seed (4 projects x 8 POs, REST X3):
- the connector re-POSTs every invoice (its create path monkeypatched to call twice), and a
  second requisition POSTed by hand with the same origin_id (the sandbox now accepts it);
- the connector's mapping CSV (not the oracle's copy) swaps two cost types;
- a commitment created twice: under a second number (same vendor and X3 reference), with the
  same number in another project, with the number in other case and spacing;
- a line amount edited in Procore by hand; a PO closed in X3 and left open in Procore;
- a change order voided, and a change order package created twice;
- a commitment for a held PO, a requisition for a non-final invoice;
and what the oracle cannot decide (an Approved commitment with a unit cost change, which the
connector holds) is listed as `unknown`, never passed.
"""

from __future__ import annotations

import re
from decimal import Decimal

import httpx
import pytest

from mlc_dagster_tests.oracle import (
    ProcoreReader,
    invalid_po_reasons,
    mapped,
    oracle_report,
    read_mapping,
)
from mlc_dagster_tests.reliability.harness import (
    REPORT,
    amend_x3,
    assert_converged,
    report,
    seed_data,
    syncable_pos,
)
from mlc_dagster_tests.sandbox_clients import X3Driver


@pytest.fixture
def synced(world):
    """The small seed synced once: the state every breakage starts from."""
    world.sync()
    return world


def _api(world) -> httpx.Client:
    """Procore through its API, as a person with the integration's credentials would."""
    return ProcoreReader(world.procore.url).http


def _project(api: httpx.Client, number: str) -> dict:
    projects = api.get("/rest/v1.0/projects", params={"company_id": api.headers[
        "Procore-Company-Id"], "per_page": 1000}).json()
    return next(p for p in projects if p["project_number"] == number)


def _commitment(api: httpx.Client, po: dict) -> tuple[dict, dict]:
    project = _project(api, po["PJTH"])
    contracts = api.get("/rest/v1.0/purchase_order_contracts",
                        params={"project_id": project["id"], "per_page": 1000}).json()
    contract = next(c for c in contracts if c["number"] == po["POHNUM"])
    return project, contract


def _open_pos(world, lines: int = 1) -> list[dict]:
    return [po for po in syncable_pos(seed_data(world.seed_kind))
            if po["CLEFLG"] == 1 and len(po["lines"]) >= lines]


def _proof(name: str, problems: list[str]) -> None:
    report("checks", test=f"oracle proof: {name}", detail=f"{len(problems)} problem(s) reported, "
           f"e.g. {problems[0][:90]!r}" if problems else "nothing reported")


# --- a converged world passes, with counts -----------------------------------------------------

def test_converged_world_passes_oracle_and_duplicate_checks(synced):
    before = len(REPORT["oracle"])
    assert_converged(synced)
    rows = REPORT["oracle"][before:]
    oracle = next(r for r in rows if r["check"] == "oracle")
    duplicates = next(r for r in rows if r["check"] == "duplicates")
    seed = seed_data(synced.seed_kind)
    assert oracle["pos"] == len(seed.x3_purchase_orders)
    assert oracle["invoices"] == len(seed.x3_purchase_invoices)
    assert oracle["lines"] == sum(len(po["lines"]) for po in syncable_pos(seed))
    assert oracle["held"] == len(seed.x3_purchase_orders) - len(syncable_pos(seed))
    assert oracle["problems"] == oracle["unknown"] == 0
    assert duplicates["commitments"] == len(syncable_pos(seed)) and duplicates["requisitions"]


def test_an_unsynced_world_fails_the_oracle(world):
    """Nothing written yet: every PO that must be in Procore is reported missing."""
    problems = world.oracle_problems()
    missing = {m["po"] for p in problems
               if (m := re.match(r"PO (?P<po>\S+): 0 commitments", p))}
    assert missing == {po["POHNUM"] for po in syncable_pos(seed_data(world.seed_kind))}
    _proof("nothing synced", problems)


# --- invoices posted twice --------------------------------------------------------------------

def test_writer_that_posts_every_invoice_twice_is_reported(world, monkeypatch):
    from mlc_dagster.resources.procore_client import ProcoreClient

    original = ProcoreClient.create_requisition

    def create_twice(self, *args, **kwargs):
        first = original(self, *args, **kwargs)
        original(self, *args, **kwargs)  # the bug: a blind second POST
        return first

    monkeypatch.setattr(ProcoreClient, "create_requisition", create_twice)
    world.sync()
    duplicates = world.duplicate_problems()
    doubled = {m["ref"] for p in duplicates
               if (m := re.search(r"2 invoices numbered '(?P<ref>[^']+)'", p))}
    seed = seed_data(world.seed_kind)
    sent = {inv["BPSINV"] for inv in seed.x3_purchase_invoices if inv["STA"] == 2}
    assert doubled and doubled <= sent, duplicates
    oracle = world.oracle_problems()
    assert {m["ref"] for p in oracle
            if (m := re.search(r"\((?P<ref>[^)]+)\) on PO \S+: 2 requisition", p))} == doubled
    _proof("writer re-POSTs invoices", duplicates)


def test_second_requisition_posted_by_hand_is_reported(synced):
    api = _api(synced)
    listed = []
    for project in api.get("/rest/v1.0/projects", params={
            "company_id": api.headers["Procore-Company-Id"]}).json():
        listed += [dict(r, project_id=project["id"]) for r in api.get(
            "/rest/v1.1/requisitions", params={"project_id": project["id"]}).json()]
    first = listed[0]
    again = api.post("/rest/v1.1/requisitions", json={
        "project_id": first["project_id"], "commitment_id": first["commitment_id"],
        "requisition": {"period_id": first["period_id"], "origin_id": first["origin_id"],
                        "invoice_number": first["invoice_number"].lower() + " "}})
    assert again.status_code == 201, again.text  # the sandbox no longer hides it
    duplicates = synced.duplicate_problems()
    assert len(duplicates) == 1 and first["invoice_number"] in duplicates[0], duplicates
    assert any("2 requisition(s), expected 1" in p for p in synced.oracle_problems())
    _proof("requisition POSTed twice by hand", duplicates)


# --- a mapping that swaps two cost types --------------------------------------------------------

def test_mapping_that_swaps_two_cost_types_is_reported_line_by_line(world):
    rows = world.mapping.read_text(encoding="utf-8").splitlines()
    first, second = "601100", "602100"  # cost types O and M in the shipped mapping
    by_account = {row.split(",")[0]: i for i, row in enumerate(rows)}
    a, b = rows[by_account[first]].split(","), rows[by_account[second]].split(",")
    a[2], b[2] = b[2], a[2]
    rows[by_account[first]], rows[by_account[second]] = ",".join(a), ",".join(b)
    world.mapping.write_text("\n".join(rows) + "\n", encoding="utf-8")  # the connector's copy
    world.sync()
    problems = world.oracle_problems()
    named = {(m["po"], m["line"]) for p in problems
             if (m := re.match(r"PO (?P<po>\S+): line (?P<line>\d+): cost type id", p))}
    affected = {(po["POHNUM"], str(line["POPLIN"])) for po in syncable_pos(seed_data("small"))
                for line in po["lines"] if line["ACC"] in (first, second)}
    assert affected and named == affected, (sorted(named ^ affected), problems[:5])
    assert world.duplicate_problems() == []  # wrong, but not doubled
    _proof("mapping swaps two cost types", problems)


# --- commitments created twice -------------------------------------------------------------------

def test_commitment_created_twice_under_a_second_number_is_reported(synced):
    api = _api(synced)
    po = _open_pos(synced)[0]
    project, contract = _commitment(api, po)
    twin = api.post("/rest/v1.0/purchase_order_contracts", json={
        "project_id": project["id"], "purchase_order_contract": {
            "number": f"{po['POHNUM']}-2", "origin_code": po["POHNUM"],
            "vendor_id": contract["vendor"]["id"], "title": contract["title"]}})
    assert twin.status_code == 201, twin.text
    duplicates = synced.duplicate_problems()
    assert any(f"for X3 PO '{po['POHNUM']}'" in d for d in duplicates), duplicates
    assert any(f"PO {po['POHNUM']}: 2 commitments" in p for p in synced.oracle_problems())
    _proof("commitment created under a second number", duplicates)


def test_same_number_in_another_project_is_reported(synced):
    api = _api(synced)
    po = _open_pos(synced)[0]
    _project_of_po, contract = _commitment(api, po)
    other = next(p for p in seed_data("small").projects if p["project_number"] != po["PJTH"])
    copy = api.post("/rest/v1.0/purchase_order_contracts", json={
        "project_id": other["id"], "purchase_order_contract": {
            "number": po["POHNUM"], "vendor_id": contract["vendor"]["id"]}})
    assert copy.status_code == 201, copy.text
    problems = synced.oracle_problems()
    assert any(f"PO {po['POHNUM']}: a commitment carrying its number is in project "
               f"{other['project_number']}" in p for p in problems), problems
    _proof("same number in another project", problems)


def test_number_differing_only_in_case_and_spaces_is_a_duplicate(synced):
    api = _api(synced)
    po = _open_pos(synced)[0]
    project, _contract = _commitment(api, po)
    lookalike = f" {po['POHNUM'].lower()[:4]} {po['POHNUM'].lower()[4:]}"
    created = api.post("/rest/v1.0/purchase_order_contracts", json={
        "project_id": project["id"], "purchase_order_contract": {"number": lookalike}})
    assert created.status_code == 201, created.text  # a different number to Procore
    duplicates = synced.duplicate_problems()
    assert any(f"2 commitments numbered '{po['POHNUM']}'" in d
               or f"2 commitments numbered {lookalike!r}" in d for d in duplicates), duplicates
    _proof("same number in other case and spacing", duplicates)


# --- values changed behind the connector's back -------------------------------------------------

def test_line_amount_edited_by_hand_is_reported(synced):
    api = _api(synced)
    po = _open_pos(synced)[0]
    project, contract = _commitment(api, po)
    lines = api.get(f"/rest/v1.0/purchase_order_contracts/{contract['id']}/line_items",
                    params={"project_id": project["id"]}).json()
    line = lines[0]
    edited = api.patch(f"/rest/v1.0/purchase_order_contracts/{contract['id']}/line_items/"
                       f"{line['id']}", json={"project_id": project["id"], "line_item": {
                           "amount": str(Decimal(line["amount"]) + 1)}})
    assert edited.status_code == 200, edited.text
    problems = synced.oracle_problems()
    number = line["origin_id"].rsplit(":", 1)[-1]
    assert [p for p in problems if p.startswith(f"PO {po['POHNUM']}: line {number}: amount")], \
        problems
    _proof("line amount edited by hand", problems)


def test_closed_po_left_open_is_reported_then_converges(synced):
    po = _open_pos(synced)[0]
    X3Driver(synced.x3.url).edit_po(po["POHNUM"], {"CLEFLG": 2})
    problems = synced.oracle_problems()  # the sync that would close it has not run
    assert problems == [f"PO {po['POHNUM']}: closed in X3, commitment status 'Draft', "
                        "expected 'Closed'"], problems
    synced.sync()
    assert_converged(synced)
    _proof("closed PO left open", problems)


def test_commitment_for_a_held_po_is_reported(synced):
    seed = seed_data("small")
    held = next(po for po in seed.x3_purchase_orders if po not in syncable_pos(seed))
    api = _api(synced)
    project = _project(api, held["PJTH"])
    created = api.post("/rest/v1.0/purchase_order_contracts", json={
        "project_id": project["id"], "purchase_order_contract": {"number": held["POHNUM"]}})
    assert created.status_code == 201, created.text
    problems = synced.oracle_problems()
    assert len(problems) == 1 and problems[0].startswith(f"PO {held['POHNUM']}: held ("), problems
    _proof("commitment for a held PO", problems)


def test_requisition_for_a_non_final_invoice_is_reported(synced):
    seed = seed_data("small")
    invoice = next(i for i in seed.x3_purchase_invoices if i["STA"] == 1)
    po = next(p for p in seed.x3_purchase_orders if p["POHNUM"] == invoice["lines"][0]["POHNUM"])
    api = _api(synced)
    project, contract = _commitment(api, po)
    period = next(p for p in seed.billing_periods[project["id"]] if p["status"] == "open")
    created = api.post("/rest/v1.1/requisitions", json={
        "project_id": project["id"], "commitment_id": contract["id"],
        "requisition": {"period_id": period["id"], "invoice_number": invoice["BPSINV"]}})
    assert created.status_code == 201, created.text
    problems = synced.oracle_problems()
    assert problems == [f"invoice {invoice['NUM']} ({invoice['BPSINV']}) on PO {po['POHNUM']}: "
                        "1 requisition(s), expected 0"], problems
    _proof("requisition for a non-final invoice", problems)


# --- change orders: the oracle reads SOV + change orders; doubled packages are reported --------

def _approve(api: httpx.Client, project: dict, contract: dict) -> None:
    approved = api.patch(f"/rest/v1.0/purchase_order_contracts/{contract['id']}", json={
        "project_id": project["id"], "purchase_order_contract": {"status": "Approved"}})
    assert approved.status_code == 200, approved.text


def test_change_orders_count_towards_the_lines_and_doubles_are_reported(synced):
    api = _api(synced)
    tier1 = {p["project_number"] for p in seed_data("small").projects
             if p["id"] not in seed_data("small").change_order_tiers}
    po = next(p for p in _open_pos(synced) if p["PJTH"] in tier1)
    project, contract = _commitment(api, po)
    _approve(api, project, contract)
    x3 = X3Driver(synced.x3.url)
    line = x3.po(po["POHNUM"])["PORDERQ"][0]
    x3.edit_po(po["POHNUM"], {"REVNUM": 1, "PORDERQ": [
        {"POPLIN": line["POPLIN"], "QTYUOM": str(Decimal(line["QTYUOM"]) + 3)}]})
    synced.sync()  # the amendment becomes a change order: SOV + CO lines equal X3
    assert_converged(synced)

    packages = api.get("/rest/v1.0/change_order_packages",
                       params={"project_id": project["id"], "contract_id": contract["id"]}).json()
    assert len(packages) == 1, packages
    package = packages[0]
    twin = api.post("/rest/v1.0/change_order_packages", json={
        "project_id": project["id"], "contract_id": contract["id"],
        "change_order": {"title": package["title"]}})
    assert twin.status_code == 201, twin.text
    duplicates = synced.duplicate_problems()
    assert len(duplicates) == 1 and "2 change orders for one amendment" in duplicates[0]

    voided = api.patch(f"/rest/v1.0/change_order_packages/{package['id']}", json={
        "project_id": project["id"], "change_order": {"status": "void"}})
    assert voided.status_code == 200, voided.text
    problems = synced.oracle_problems()
    assert [p for p in problems
            if p.startswith(f"PO {po['POHNUM']}: line {line['POPLIN']}: quantity")], problems
    _proof("change order voided / package doubled", problems + duplicates)


def test_what_the_oracle_cannot_decide_is_listed_as_unknown(synced):
    api = _api(synced)
    po = _open_pos(synced)[0]
    project, contract = _commitment(api, po)
    _approve(api, project, contract)
    x3 = X3Driver(synced.x3.url)
    line = x3.po(po["POHNUM"])["PORDERQ"][0]
    x3.edit_po(po["POHNUM"], {"PORDERQ": [{"POPLIN": line["POPLIN"],
                                            "NETPRI": str(Decimal(line["NETPRI"]) + 1)}]})
    synced.sync()  # a unit cost change on an Approved commitment: the connector holds the PO
    result = oracle_report(synced.procore.url, synced.x3.url, synced.oracle_mapping)
    assert result.problems == []
    assert len(result.unknown) == 1 and result.unknown[0].startswith(
        f"PO {po['POHNUM']}: commitment is Approved"), result.unknown
    assert synced.oracle_problems() == [f"unknown: {result.unknown[0]}"]  # never passed
    with pytest.raises(AssertionError, match="unknown: PO"):
        assert_converged(synced)


def test_amendments_converge_to_the_oracle(synced):
    """The amend scenario of the fault matrix (lines removed, quantities changed, a line
    added, a PO closed): the oracle sees the changes before the sync and none after."""
    changed = amend_x3(synced)
    before = synced.oracle_problems()
    assert {m["po"] for p in before if (m := re.match(r"PO (?P<po>\S+):", p))} == set(changed)
    synced.sync()
    assert_converged(synced)


# --- the oracle's own parsing (pure) -------------------------------------------------------------

def test_mapping_parser_prefers_the_project_row(tmp_path):
    path = tmp_path / "map.csv"
    path.write_text("\ufeffgl_account ; cost_code ; cost_type ; project\n"
                    '="601100";01-100;O;\n601100.0;02-200;S;P1002\n', encoding="utf-8")
    table = read_mapping(path)
    assert mapped(table, "601100", "P1001").cost_code == "01-100"
    assert mapped(table, "601100", "P1002").cost_type == "S"
    assert mapped(table, "699999", "P1001") is None


def test_invalid_po_reasons_name_each_field():
    po = {"POHNUM": "PO1", "BPSNUM": "SUP001", "PJTH": "P1001", "CUR": "gbp",
          "ORDDAT": "1999-12-31", "REVNUM": "1.5", "CLEFLG": 7}
    lines = [{"POPLIN": 1000, "QTYUOM": "0", "NETPRI": "-1", "LINAMT": "1.001", "UOM": ""},
             {"POPLIN": 1000, "QTYUOM": "1", "NETPRI": "1", "LINAMT": "1.00", "UOM": "EA"}]
    reasons = invalid_po_reasons(po, lines, ["601100", None])
    assert reasons == [
        "currency not a 3-letter code", "order date missing or outside 2000-2100",
        "revision not whole", "closed flag not yes/no",
        "line 1000: duplicate line number", "line 1000: quantity not in (0, 1e9]",
        "line 1000: unit price not in [0, 1e11]", "line 1000: amount not in [0, 1e11] in cents",
        "line 1000: unit blank or longer than 10",
        "line 1000: duplicate line number", "line 1000: GL account missing or longer than 20"]
