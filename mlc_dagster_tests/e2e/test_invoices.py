"""End to end: X3 purchase invoices -> Procore requisitions inside the PO sync job."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from mlc_dagster.invoices.requisitions import CREDIT_MEMO_REASON
from mlc_dagster.ledger.store import Ledger
from mlc_dagster_tests.e2e.flow_helpers import (
    ProcoreApi,
    X3Records,
    api_writes,
    check,
    clear_calls,
    compact_sandboxes_fixture,  # noqa: F401 - `sandboxes`: the compact universe
    compact_seed,
    job_runner_fixture,  # noqa: F401 - `run`: jobs on one instance
    materialization,
)

SEED = compact_seed()
POS = {po["POHNUM"]: po for po in SEED.x3_purchase_orders}




def invoice(number: str, po: str, lines, **header) -> dict:
    """A PINVOICE body billing `lines` = [(po_line, quantity, unit price)] of `po`."""
    body = {"NUM": number, "PIHTYP": 1, "BPSNUM": POS[po]["BPSNUM"] if po in POS else "SUP001",
            "BPSINV": f"INV-{number}", "INVDAT": "2026-03-20", "PJT": POS.get(po, {}).get("PJTH"),
            "PINVOICED": [{"PIDLIN": (n + 1) * 1000, "POHNUM": po, "POPLIN": po_line,
                           "QTYUOM": qty, "NETPRI": price}
                          for n, (po_line, qty, price) in enumerate(lines)]}
    body.update(header)
    return body


def first_line(po: str) -> int:
    return POS[po]["lines"][0]["POPLIN"]


def billed_per_line_item(procore: ProcoreApi, requisition: dict, contract: dict) -> dict:
    """PO line origin_id -> amount billed by this requisition (read back from Procore)."""
    origin_of = {item["id"]: item["origin_id"] for item in procore.line_items(contract)}
    return {origin_of[i["line_item_id"]]: Decimal(str(i["work_completed_this_period"]))
            for i in requisition["items"] if Decimal(str(i["work_completed_this_period"]))}


def x3_per_line(x3_invoice: dict) -> dict:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in x3_invoice["PINVOICED"]:
        totals[f"X3:PO:{line['POHNUM']}:{line['POPLIN']}"] += Decimal(str(line["AMTNOTLIN"]))
    return dict(totals)


def test_seeded_invoices_become_requisitions_per_line_item_and_bad_ones_are_quarantined(
        sandboxes, run, sync_env):
    x3, procore = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    x3.create("PINVOICE", invoice("PI29000001", "PO26000008", [(first_line("PO26000008"), "2",
                                                                 "10.00")],
                                  BPSINV="Façade №7 — Ünïcødé 東京"))
    x3.create("PINVOICE", invoice("PI29000002", "PO99999999", [(1000, "1", "5.00")]))
    x3.create("PINVOICE", invoice("PI29000003", "PO26000009", [(first_line("PO26000009"), "1",
                                                                 "-40.00")]))
    x3.create("PINVOICE", invoice("PI29000004", "PO26000009", [(0, "1", "5.00")]))
    x3.create("PINVOICE", invoice("PI29000005", "PO26000009", [(first_line("PO26000009"), "1",
                                                                 "40.00")], PIHTYP=3))

    result = run()
    contracts = {c["origin_id"]: c for c in procore.contracts()}
    requisitions = procore.all_requisitions()
    ledger = Ledger(sync_env["ledger_url"])
    expected = [inv["NUM"] for inv in SEED.x3_purchase_invoices] + ["PI29000001"]
    for number in expected:
        x3_invoice = x3.get("PINVOICE", number)
        po = x3_invoice["PINVOICED"][0]["POHNUM"]
        requisition = requisitions[f"X3:PI:{number}:{po}"]
        assert requisition["commitment_id"] == contracts[f"X3:PO:{po}"]["id"]
        assert requisition["invoice_number"] == x3_invoice["BPSINV"]
        assert requisition["billing_date"] == x3_invoice["INVDAT"]
        assert billed_per_line_item(procore, requisition, contracts[f"X3:PO:{po}"]) == \
            x3_per_line(x3_invoice), number
        assert ledger.states("purchase_invoice", [number])[number].status == "synced"
    assert len(requisitions) == len(expected)  # nothing for the bad ones, no duplicates

    states = ledger.states("purchase_invoice", ["PI29000002", "PI29000003", "PI29000004",
                                                "PI29000005"])
    assert {k: s.status for k, s in states.items()} == dict.fromkeys(states, "held")
    assert "invoice PI29000002 line 1000: PO PO99999999 is not a known Sage X3 PO" in \
        states["PI29000002"].reason
    assert "invoice PI29000003 line 1000: amount must not be negative" in states["PI29000003"].reason
    assert "invoice PI29000004 line 1000: po_line must be greater than 0" in \
        states["PI29000004"].reason
    assert states["PI29000005"].reason == CREDIT_MEMO_REASON
    assert materialization(result, "x3_purchase_invoices")["quarantined_invoices"] == 3
    assert not check(result, "invoice_quarantine").passed
    assert check(result, "requisition_totals_match_x3").passed

    clear_calls(sandboxes["procore"], sandboxes["sage_x3"])
    second = run()
    assert api_writes(sandboxes["procore"]) == [] and api_writes(sandboxes["sage_x3"]) == []
    assert materialization(second, "procore_requisitions")["unchanged"] == len(expected)


def test_invoice_on_held_po_waits_then_syncs_with_it_and_changes_follow_while_allowed(
        sandboxes, run, sync_env, monkeypatch):
    x3, procore = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    held_po = "PO26000010"  # one line on GL 619900, which the shipped mapping lacks
    lines = [(ln["POPLIN"], "1", ln["NETPRI"]) for ln in POS[held_po]["lines"][:2]]
    x3.create("PINVOICE", invoice("PI29000010", held_po, lines))
    x3.create("PINVOICE", invoice("PI29000011", "PO26000011", [(first_line("PO26000011"), "1",
                                                                 "99.00")], INVDAT="2027-02-03"))
    ledger = Ledger(sync_env["ledger_url"])

    run()
    states = ledger.states("purchase_invoice", ["PI29000010", "PI29000011"])
    assert states["PI29000010"].status == "held"
    assert states["PI29000010"].reason.startswith(f"waiting for PO {held_po}: ")
    assert "619900 has no cost code mapping" in states["PI29000010"].reason
    assert "no Procore billing period covers 2027-02-03" in states["PI29000011"].reason
    assert not any(k.startswith("X3:PI:PI29000010") for k in procore.all_requisitions())

    with open(sync_env["mapping"], "a") as fh:
        fh.write("619900,01-100,O\n")
    monkeypatch.setenv("MLC_CREATE_BILLING_PERIODS", "1")
    # An X3 change to an invoice whose requisition is still the latest open one: updated.
    amended = SEED.x3_purchase_invoices[0]
    line = amended["lines"][0]
    x3.edit("PINVOICE", amended["NUM"], {"PINVOICED": [
        {"PIDLIN": line["PIDLIN"], "QTYUOM": str(Decimal(line["QTYUOM"]) + 1)}]})
    # Another invoice's requisition stops being the latest (a new invoice on the same
    # commitment is written first): its X3 change is held and flagged, never lost.
    locked = next(i for i in SEED.x3_purchase_invoices if i["NUM"] == "PI26000007")
    locked_po = locked["lines"][0]["POHNUM"]
    x3.create("PINVOICE", invoice("PI29000012", locked_po, [(locked["lines"][0]["POPLIN"], "1",
                                                              "1.00")], INVDAT="2026-02-02"))
    x3.edit("PINVOICE", locked["NUM"], {"PINVOICED": [
        {"PIDLIN": locked["lines"][0]["PIDLIN"], "QTYUOM": "1"}]})
    result = run()

    po_event = ledger.events("purchase_order", held_po)[-1]
    invoice_event = ledger.events("purchase_invoice", "PI29000010")[-1]
    assert (po_event["status"], invoice_event["status"]) == ("synced", "synced")
    assert po_event["run_id"] == invoice_event["run_id"] == result.run_id  # the same run
    requisitions = procore.all_requisitions()
    assert f"X3:PI:PI29000010:{held_po}" in requisitions
    assert ledger.states("purchase_invoice", ["PI29000011"])["PI29000011"].status == "synced"
    project = requisitions["X3:PI:PI29000011:PO26000011"]["project_id"]
    periods = procore.http.get(f"/rest/v1.0/projects/{project}/billing_periods").json()
    assert any(p["start_date"] == "2027-02-01" and p["end_date"] == "2027-02-28" for p in periods)

    po = line["POHNUM"]
    contract = next(c for c in procore.contracts() if c["origin_id"] == f"X3:PO:{po}")
    assert billed_per_line_item(procore, requisitions[f"X3:PI:{amended['NUM']}:{po}"],
                                contract) == x3_per_line(x3.get("PINVOICE", amended["NUM"]))
    assert [e["action"] for e in ledger.events("purchase_invoice", amended["NUM"])] == [
        "create", "update"]

    state = ledger.states("purchase_invoice", [locked["NUM"]])[locked["NUM"]]
    assert state.status == "held" and "requisition locked in Procore" in state.reason
    assert "came after it" in state.reason and state.payload  # the change is kept
    assert requisitions[f"X3:PI:PI29000012:{locked_po}"]["number"] == 2
    reconciliation = check(result, "requisition_totals_match_x3")
    assert not reconciliation.passed
    assert reconciliation.metadata["mismatched"].value == 1


def test_invoice_sensor_requests_one_run_per_new_invoice_and_the_po_sensor_stays_quiet(
        sandboxes, run, sync_env):
    """A new X3 invoice on an already-synced PO reaches Procore without any PO change."""
    import dagster as dg

    from mlc_dagster.definitions import build_resources
    from mlc_dagster.invoices.sensors import x3_purchase_invoice_changes
    from mlc_dagster.sage_x3.sensors import x3_purchase_order_changes

    x3, procore = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    resources = {"sage_x3": build_resources()["sage_x3"]}

    def tick(sensor, cursor):
        with dg.build_sensor_context(instance=run.instance, cursor=cursor,
                                     resources=resources) as context:
            return sensor(context)

    def caught_up(sensor):
        result = tick(sensor, None)
        assert result.run_requests  # everything is new on the first tick
        while result.run_requests:
            cursor = result.cursor
            result = tick(sensor, cursor)
        return result.cursor

    run()
    invoice_cursor = caught_up(x3_purchase_invoice_changes)
    po_cursor = caught_up(x3_purchase_order_changes)

    po = "PO26000011"
    x3.create("PINVOICE", invoice("PI29000020", po, [(first_line(po), "1", "12.50")],
                                  INVDAT="2026-02-10"))
    changed = tick(x3_purchase_invoice_changes, invoice_cursor)
    assert len(changed.run_requests) == 1
    request = changed.run_requests[0]
    assert request.tags == {"mlc/trigger": "x3_invoice_changes", "mlc/changed_invoices": "1"}
    assert request.run_key.startswith("x3-invoice-changes:")
    assert not tick(x3_purchase_invoice_changes, changed.cursor).run_requests
    assert not tick(x3_purchase_order_changes, po_cursor).run_requests

    run()  # what the requested run does
    requisition = procore.all_requisitions()[f"X3:PI:PI29000020:{po}"]
    contract = next(c for c in procore.contracts() if c["origin_id"] == f"X3:PO:{po}")
    assert billed_per_line_item(procore, requisition, contract) == {
        f"X3:PO:{po}:{first_line(po)}": Decimal("12.50")}


def test_invoice_deleted_in_x3_has_its_requisition_zeroed_by_reconcile_once(
        sandboxes, run, sync_env):
    x3, procore = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    ledger = Ledger(sync_env["ledger_url"])
    po, number = "PO26000011", "PI29000030"
    origin = f"X3:PI:{number}:{po}"
    x3.create("PINVOICE", invoice(number, po, [(first_line(po), "2", "10.00")]))
    run()
    contract = next(c for c in procore.contracts() if c["origin_id"] == f"X3:PO:{po}")
    billed = {f"X3:PO:{po}:{first_line(po)}": Decimal("20.00")}
    assert billed_per_line_item(procore, procore.all_requisitions()[origin], contract) == billed

    deleted = x3.http.delete(f"/PINVOICE('{number}')",
                             params={"representation": "PINVOICE.$edit"})
    assert deleted.status_code in (200, 204), deleted.text
    run()  # a delta read cannot see a deletion: the requisition is untouched
    assert billed_per_line_item(procore, procore.all_requisitions()[origin], contract) == billed

    result = run("reconcile")
    requisition = procore.all_requisitions()[origin]
    assert billed_per_line_item(procore, requisition, contract) == {}
    assert f"Sage X3 invoice {number} was deleted" in requisition["comment"]
    assert requisition["invoice_number"] == f"INV-{number}"  # what Procore showed is kept
    event = ledger.events("purchase_invoice", number)[-1]
    assert (event["action"], event["status"]) == ("void", "synced")
    assert materialization(result, "procore_requisitions")["voided"] == 1
    assert check(result, "requisition_totals_match_x3").passed

    clear_calls(sandboxes["procore"])
    again = run("reconcile")
    assert [w for w in api_writes(sandboxes["procore"]) if "requisition" in w[1]] == []
    assert materialization(again, "procore_requisitions")["voided"] == 0


def test_busy_projects_are_listed_once_and_a_lost_ledger_still_never_duplicates(
        sandboxes, run, sync_env, monkeypatch, tmp_path):
    """7 seeded invoices bill 7 commitments: 6 in P1001 (one project-wide listing), 1 in
    P1002 (its own filtered listing). With the ledger gone, the same listings find every
    requisition by origin_id: updated in place, none created twice."""
    from mlc_dagster_tests.conftest import sandbox_calls

    procore = ProcoreApi(sandboxes["procore"].url)
    run()
    listings = sandbox_calls(sandboxes["procore"], method="GET", path="/rest/v1.1/requisitions")
    assert len(listings) == 2
    before = procore.all_requisitions()
    assert len(before) == len(SEED.x3_purchase_invoices)

    monkeypatch.setenv("MLC_LEDGER_URL", f"sqlite:///{tmp_path / 'fresh-ledger.sqlite'}")
    clear_calls(sandboxes["procore"])
    run()
    assert not sandbox_calls(sandboxes["procore"], method="POST", path="/rest/v1.1/requisitions")
    after = procore.all_requisitions()
    assert {k: r["id"] for k, r in after.items()} == {k: r["id"] for k, r in before.items()}
