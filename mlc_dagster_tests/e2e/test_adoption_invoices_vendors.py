"""End to end: invoices typed into Procore by hand are linked, not doubled; vendors owned by
another integration are never duplicated or written; the preview predicts both.

Duplicates are counted the way a user sees them: two requisitions on one commitment with the
same invoice number (case, spaces and punctuation ignored), two vendors with the same tax id
or the same name + postcode - never by origin_id. Hand-entered records are made through
Procore's normal API (or come from the seed's hand-entered history), and compared field by
field before and after: the connector must not have touched them.
"""

from __future__ import annotations

import os
from collections import Counter
from contextlib import contextmanager
from decimal import Decimal

import pytest

from mlc_dagster.defs.invoices.plan import CHANGED_AFTER_SEND, normalise_invoice_number
from mlc_dagster.defs.suppliers.plan import norm_compact, norm_name
from mlc_dagster.ledger.store import Ledger
from mlc_dagster_tests.e2e.flow_helpers import (
    ProcoreApi,
    X3Records,
    api_writes,
    clear_calls,
    compact_seed,
    history_seed,
    job_runner_fixture,  # noqa: F401 - `run`: jobs on one instance
)
from mlc_sandbox.server import running_sandboxes

SEED = compact_seed()
POS = {po["POHNUM"]: po for po in SEED.x3_purchase_orders}
FOREIGN_VENDOR = "ACME-ERP:V:88"
# What a person typed, and what the connector must leave exactly as typed.
TYPED = ("id", "number", "invoice_number", "billing_date", "status", "origin_id", "period_id",
         "total_claimed_amount")


@contextmanager
def _running(seed):
    with running_sandboxes(seed_data=seed) as handles:
        yield handles


@pytest.fixture(name="sandboxes")
def sandboxes_fixture(request):
    """The compact universe; `indirect` "history" adds the seed's hand-entered history."""
    with _running(history_seed() if getattr(request, "param", "") == "history"
                  else compact_seed()) as handles:
        yield handles


HISTORY = pytest.mark.parametrize("sandboxes", ["history"], indirect=True)


# --- helpers: Procore as a user sees it ------------------------------------------------------


def contract_of(procore: ProcoreApi, po: str) -> dict:
    return next(c for c in procore.contracts() if c["origin_id"] == f"X3:PO:{po}")


def open_period(procore: ProcoreApi, project_id: int) -> dict:
    periods = procore.http.get(f"/rest/v1.0/projects/{project_id}/billing_periods").json()
    return next(p for p in periods if p["status"] == "open")


def type_invoice(procore: ProcoreApi, contract: dict, invoice_number: str,
                 amounts: dict[int, str]) -> dict:
    """An accountant types a subcontractor invoice in Procore's UI: no origin_id;
    `amounts`: PO line number -> work completed this period."""
    ids = {int(i["origin_id"].rsplit(":", 1)[-1]): i["id"] for i in procore.line_items(contract)}
    response = procore.http.post("/rest/v1.1/requisitions", json={
        "project_id": contract["project_id"], "commitment_id": contract["id"],
        "requisition": {"invoice_number": invoice_number, "billing_date": "2026-12-02",
                        "period_id": open_period(procore, contract["project_id"])["id"],
                        "items": [{"item_type": "contract_item", "line_item_id": ids[line],
                                   "work_completed_this_period": amount}
                                  for line, amount in amounts.items()]}})
    assert response.status_code == 201, response.text
    return response.json()


def requisitions_by_id(procore: ProcoreApi) -> dict[int, dict]:
    return {r["id"]: dict(r, project_id=p["id"]) for p in procore.projects()
            for r in procore.requisitions(p["id"])}


def as_typed(requisition: dict) -> dict:
    """The fields a person typed, and the amounts per line item."""
    return {**{k: requisition.get(k) for k in TYPED}, "items": sorted(
        (i["line_item_id"], str(i["work_completed_this_period"]))
        for i in requisition.get("items") or [])}


def numbers_per_commitment(procore: ProcoreApi) -> Counter:
    """(commitment, invoice number as a person reads it) -> how many requisitions."""
    return Counter((r["commitment_id"], normalise_invoice_number(r["invoice_number"]))
                   for r in requisitions_by_id(procore).values())


def requisition_writes(handle) -> list[tuple[str, str]]:
    return [w for w in api_writes(handle) if "requisition" in w[1]]


def x3_invoice(number: str, po: str, ref: str, amount: str = "10.00") -> dict:
    """A posted X3 invoice billing 2 x `amount` on the PO's first line."""
    return {"NUM": number, "PIHTYP": 1, "BPSNUM": POS[po]["BPSNUM"], "BPSINV": ref,
            "INVDAT": "2026-12-01", "PJT": POS[po]["PJTH"], "STA": 2,
            "PINVOICED": [{"PIDLIN": 1000, "POHNUM": po, "POPLIN": POS[po]["lines"][0]["POPLIN"],
                           "QTYUOM": "2", "NETPRI": amount}]}


def preview_rows(result, *flows: str) -> dict[tuple[str, str], dict]:
    frame = result.output_for_node("sync_preview")
    return {(r["flow"], r["key"]): r for r in frame.to_dict("records") if r["flow"] in flows}


def run_events(ledger: Ledger, run_id: str, *entities: str) -> dict[tuple[str, str], dict]:
    return {(e["entity"], e["key"]): e for e in ledger.events_for_run(run_id)
            if e["entity"] in entities}


def procore_id(ledger: Ledger, invoice: str) -> int | None:
    """The requisition the ledger records for an X3 invoice."""
    return ledger.states("purchase_invoice", [invoice])[invoice].procore_id


def vendor(procore: ProcoreApi, vendor_id: int) -> dict:
    response = procore.http.get(f"/rest/v1.0/vendors/{vendor_id}",
                                params={"company_id": procore.company_id})
    assert response.status_code == 200, response.text
    return response.json()


def all_vendors(procore: ProcoreApi) -> list[dict]:
    return list({v["id"]: v for v in procore.vendors() + procore.vendors(inactive=True)}.values())


def same_company(vendors: list[dict], name: str, postcode: str, tax_id: str) -> list[dict]:
    """Vendors a person would call the same company: same tax id, or same name + postcode."""
    return [v for v in vendors if (tax_id and norm_compact(v.get("tax_id")) == norm_compact(tax_id))
            or (norm_name(v.get("name")) == norm_name(name)
                and norm_compact(v.get("zip")) == norm_compact(postcode))]


# --- invoices typed by hand on commitments the connector holds --------------------------------


def test_an_invoice_typed_by_hand_is_linked_not_doubled_and_the_preview_says_so(
        sandboxes, run, sync_env):
    x3, procore = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    ledger = Ledger(sync_env["ledger_url"])
    run()  # the connector's commitments (and the seed's invoices) are in Procore
    first_line = {po: POS[po]["lines"][0]["POPLIN"] for po in POS}
    adopt, differs, twice = "PO26000011", "PO26000012", "PO26000008"
    contracts = {po: contract_of(procore, po) for po in (adopt, differs, twice)}
    typed = {
        "PI29000060": type_invoice(procore, contracts[adopt], "inv 29000060",
                                   {first_line[adopt]: "20.00"}),
        "HAND-INV-0002": type_invoice(procore, contracts[adopt], "HAND-INV-0002",
                                      {first_line[adopt]: "5.00"}),
        "PI29000061": type_invoice(procore, contracts[differs], "INV 29000061",
                                   {first_line[differs]: "15.00"}),
        "PI29000062/a": type_invoice(procore, contracts[twice], "INV-29000062",
                                     {first_line[twice]: "20.00"}),
        "PI29000062/b": type_invoice(procore, contracts[twice], "inv/29000062",
                                     {first_line[twice]: "20.00"}),
    }
    x3.create("PINVOICE", x3_invoice("PI29000060", adopt, "INV-29000060"))
    x3.create("PINVOICE", x3_invoice("PI29000061", differs, "INV-29000061"))
    x3.create("PINVOICE", x3_invoice("PI29000062", twice, "INV-29000062"))
    before = {r_id: as_typed(r) for r_id, r in requisitions_by_id(procore).items()
              if r_id in {t["id"] for t in typed.values()}}
    counts_before = numbers_per_commitment(procore)

    clear_calls(sandboxes["procore"], sandboxes["sage_x3"])
    preview = run("preview_sync")
    assert api_writes(sandboxes["procore"]) == [] and api_writes(sandboxes["sage_x3"]) == []
    predicted = preview_rows(preview, "purchase_invoice")
    assert {k: r["action"] for k, r in predicted.items()} == {
        ("purchase_invoice", "PI29000060"): "adopt", ("purchase_invoice", "PI29000061"): "hold",
        ("purchase_invoice", "PI29000062"): "hold"}
    assert predicted[("purchase_invoice", "PI29000060")]["amount"] == Decimal("20.00")

    live = run()
    events = run_events(ledger, live.run_id, "purchase_invoice")
    assert {k: e["action"] for k, e in events.items()} == {
        k: r["action"] for k, r in predicted.items()}  # the preview said exactly this
    assert requisition_writes(sandboxes["procore"]) == []  # nothing created, nothing edited
    adopted = events[("purchase_invoice", "PI29000060")]
    assert procore_id(ledger, "PI29000060") == typed["PI29000060"]["id"]
    assert adopted["changes"]["rule"] == "invoice_number"
    assert adopted["changes"]["before"] == {"number": 1, "invoice_number": "inv 29000060",
                                            "total": "20.00", "status": "draft"}
    states = ledger.states("purchase_invoice", ["PI29000061", "PI29000062"])
    assert states["PI29000061"].reason == (
        "a hand-entered invoice #1 'INV 29000061' on the commitment totals 15.00, Sage X3 "
        "says 20.00: correct one side; nothing is created")
    assert states["PI29000062"].reason.startswith(
        "2 hand-entered invoices on the commitment carry invoice number 'INV-29000062' "
        "(#1 'INV-29000062' 20.00; #2 'inv/29000062' 20.00)")
    for key in (("purchase_invoice", "PI29000061"), ("purchase_invoice", "PI29000062")):
        assert events[key]["reason"] == predicted[key]["detail"]
    assert numbers_per_commitment(procore) == counts_before  # no second invoice anywhere
    assert {r_id: as_typed(r) for r_id, r in requisitions_by_id(procore).items()
            if r_id in before} == before  # as typed, untouched

    clear_calls(sandboxes["procore"])
    run()  # nothing new: the adopted invoice is unchanged, the holds are not recorded again
    assert requisition_writes(sandboxes["procore"]) == []
    for number in ("PI29000060", "PI29000061", "PI29000062"):
        assert len(ledger.events("purchase_invoice", number)) == 1, number

    ledger.dispose()  # the ledger is lost: the same listing finds the same twin again
    os.remove(sync_env["ledger_url"].removeprefix("sqlite:///"))
    lost = run()
    ledger = Ledger(sync_env["ledger_url"])
    again = run_events(ledger, lost.run_id, "purchase_invoice")
    assert again[("purchase_invoice", "PI29000060")]["action"] == "adopt"
    assert procore_id(ledger, "PI29000060") == typed["PI29000060"]["id"]
    assert requisition_writes(sandboxes["procore"]) == []
    assert numbers_per_commitment(procore) == counts_before

    x3.edit("PINVOICE", "PI29000060", {"ACCDAT": "2026-12-03",
                                       "PINVOICED": [{"PIDLIN": 1000, "QTYUOM": "3"}]})
    run()  # changed in X3 after adoption: held like any sent invoice, Procore untouched
    state = ledger.states("purchase_invoice", ["PI29000060"])["PI29000060"]
    assert state.status == "held" and state.reason.startswith(CHANGED_AFTER_SEND)
    assert f"PO {adopt} line {first_line[adopt]}: amount 20.00 -> 30.00" in state.reason
    assert requisition_writes(sandboxes["procore"]) == []
    assert {r_id: as_typed(r) for r_id, r in requisitions_by_id(procore).items()
            if r_id in before} == before
    ledger.dispose()


# --- vendors owned by another integration ----------------------------------------------------


def test_a_supplier_matching_another_integrations_vendor_is_held_never_duplicated(
        sandboxes, run, sync_env):
    procore = ProcoreApi(sandboxes["procore"].url)
    ledger = Ledger(sync_env["ledger_url"])
    sup040 = next(s for s in SEED.x3_suppliers if s["BPSNUM"] == "SUP040")  # no vendor yet
    theirs = procore.create_vendor(name=sup040["BPSNAM"].upper(), zip=sup040["POSCOD"],
                                   city=sup040["CTY"])
    procore.update_vendor(theirs["id"], origin_id=FOREIGN_VENDOR, origin_code="88")  # ERP sync
    as_they_left_it = vendor(procore, theirs["id"])

    result = run("sync_reference_data")
    state = ledger.states("supplier", ["SUP040"])["SUP040"]
    assert state.status == "held"
    assert state.reason == (
        f"Procore vendor {theirs['id']} ({sup040['BPSNAM'].upper()}) matches by name+postcode "
        f"but belongs to another integration (origin_id {FOREIGN_VENDOR}); the connector does "
        "not overwrite or duplicate it: link it by hand or clear its origin_id in the other "
        "system")
    vendors = all_vendors(procore)
    assert [v["id"] for v in same_company(vendors, sup040["BPSNAM"], sup040["POSCOD"],
                                          sup040["EECNUM"])] == [theirs["id"]]
    assert vendor(procore, theirs["id"]) == as_they_left_it  # never written
    assert "SUP039" in {v.get("origin_id") for v in vendors}  # the other X3-only one is made
    assert result.success

    run("sync_reference_data")  # held once, not on every run
    assert [e["action"] for e in ledger.events("supplier", "SUP040")] == ["hold"]
    assert vendor(procore, theirs["id"]) == as_they_left_it

    # The other system lets go of it: the next run links it (one vendor, now ours).
    procore.update_vendor(theirs["id"], origin_id=None, origin_code=None)
    run("sync_reference_data")
    linked = vendor(procore, theirs["id"])
    assert linked["origin_id"] == "SUP040" and linked["name"] == sup040["BPSNAM"]
    assert [v["id"] for v in same_company(all_vendors(procore), sup040["BPSNAM"],
                                          sup040["POSCOD"], sup040["EECNUM"])] == [theirs["id"]]
    assert ledger.events("supplier", "SUP040")[-1]["action"] == "link"
    ledger.dispose()


# --- the seed's hand-entered history -----------------------------------------------------------


def history_case(name: str) -> dict:
    (case,) = [c for c in history_seed().history_cases if c["case"] == name]
    return case


@HISTORY
def test_history_the_invoice_typed_on_a_hand_made_commitment_is_adopted_with_it(
        sandboxes, run, sync_env):
    seed = history_seed()
    case = history_case("invoiced")
    x3_number = case["note"].split("x3_invoice=")[1].split(";")[0].split()[0]
    twin = next(c for c in seed.procore_commitments if c["project_id"] == case["project_id"]
                and c["number"] in case["procore_numbers"])
    typed_for_x3, hand_only = twin["requisitions"][0], twin["requisitions"][1]
    assert hand_only["invoice_number"] == "HAND-INV-0001"
    procore = ProcoreApi(sandboxes["procore"].url)
    ledger = Ledger(sync_env["ledger_url"])
    before = {r_id: as_typed(r) for r_id, r in requisitions_by_id(procore).items()}
    assert {typed_for_x3["id"], hand_only["id"]} <= set(before)

    clear_calls(sandboxes["procore"], sandboxes["sage_x3"])
    preview = run("preview_sync")
    assert api_writes(sandboxes["procore"]) == []
    predicted = preview_rows(preview, "purchase_invoice")
    assert predicted[("purchase_invoice", x3_number)]["action"] == "adopt"

    live = run()
    events = run_events(ledger, live.run_id, "purchase_invoice")
    assert {k: e["action"] for k, e in events.items()} == {
        k: r["action"] for k, r in predicted.items()}  # every invoice, as previewed
    assert events[("purchase_invoice", x3_number)]["action"] == "adopt"
    assert procore_id(ledger, x3_number) == typed_for_x3["id"]
    assert not any(r["commitment_id"] == twin["id"] and r_id not in before
                   for r_id, r in requisitions_by_id(procore).items())  # none created on it
    assert set(numbers_per_commitment(procore).values()) == {1}  # no invoice twice anywhere
    after = requisitions_by_id(procore)
    assert {r_id: as_typed(after[r_id]) for r_id in before} == before  # all as typed
    edits = [w for w in requisition_writes(sandboxes["procore"]) if w[0] != "POST"]
    assert edits == []  # requisitions are only ever created, never edited

    clear_calls(sandboxes["procore"])
    run()
    assert requisition_writes(sandboxes["procore"]) == []
    assert len(ledger.events("purchase_invoice", x3_number)) == 1
    ledger.dispose()


@HISTORY
def test_history_the_supplier_of_another_integrations_vendor_is_held_and_previewed(
        sandboxes, run, sync_env):
    seed = history_seed()
    case = history_case("foreign_vendor")
    supplier = next(s for s in seed.x3_suppliers if s["BPSNUM"] == case["supplier"])
    procore = ProcoreApi(sandboxes["procore"].url)
    ledger = Ledger(sync_env["ledger_url"])
    as_they_left_it = vendor(procore, case["vendor_id"])
    assert as_they_left_it["origin_id"] == FOREIGN_VENDOR

    clear_calls(sandboxes["procore"], sandboxes["sage_x3"])
    preview = run("preview_sync")
    assert api_writes(sandboxes["procore"]) == [] and api_writes(sandboxes["sage_x3"]) == []
    predicted = preview_rows(preview, "supplier", "vendor")
    assert predicted[("supplier", case["supplier"])]["action"] == "hold"

    reference = run("sync_reference_data")
    events = run_events(ledger, reference.run_id, "supplier", "vendor")
    assert {k: e["action"] for k, e in events.items()} == {
        k: r["action"] for k, r in predicted.items()}  # the preview said exactly this
    reason = ledger.states("supplier", [case["supplier"]])[case["supplier"]].reason
    assert reason.startswith(f"Procore vendor {case['vendor_id']} ({supplier['BPSNAM']}) "
                             "matches by tax id but belongs to another integration "
                             f"(origin_id {FOREIGN_VENDOR})")
    assert [v["id"] for v in same_company(all_vendors(procore), supplier["BPSNAM"],
                                          supplier["POSCOD"], supplier["EECNUM"])] == [
        case["vendor_id"]]
    assert vendor(procore, case["vendor_id"]) == as_they_left_it
    ledger.dispose()
