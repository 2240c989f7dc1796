"""Invoices typed into Procore by hand before go-live: matched by invoice number, adopted when
the totals agree (never written, never doubled), held otherwise; and the preview rows, which
must predict exactly the action the writer then records."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from mlc_dagster.defs.invoices.plan import (
    ADOPT_RULE,
    CHANGED_AFTER_SEND,
    DesiredInvoice,
    DesiredRequisitions,
    RequisitionPart,
    RequisitionPlan,
    RequisitionWrite,
    ResolvedPart,
    hand_entered_twins,
    normalise_invoice_number,
    plan_requisition_writes,
    preview_requisition_plan,
    requisition_preview_rows,
    requisition_total,
    sent_differences,
)
from mlc_dagster.defs.invoices.writer import RequisitionWriter, read_procore_for_preview
from mlc_dagster.ledger.store import Ledger, RecordState
from mlc_dagster_tests.invoices.test_writer import LINE, ORIGIN, FakeProcore, invoice, plan

LINE_2 = "X3:PO:PO1:2000"


@pytest.fixture
def ledger(tmp_path):
    store = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield store
    store.dispose()


def hand(rid=40, number=1, invoice_number="inv 1", amounts=("10.00",), status="approved",
         with_items=False) -> tuple[dict, dict]:
    """A requisition typed by hand (no origin_id): (as listed, as shown with its items)."""
    listed = {"id": rid, "number": number, "status": status, "origin_id": None,
              "invoice_number": invoice_number, "billing_date": "2026-03-02",
              "period_id": 6, "total_claimed_amount": f"{sum(map(Decimal, amounts)):.2f}"}
    shown = dict(listed, items=[
        {"item_type": "contract_item", "line_item_id": 5000 + n,
         "work_completed_this_period": amount, "materials_presently_stored": "0.00"}
        for n, amount in enumerate(amounts)])
    return (shown if with_items else listed), shown


def procore_with(*twins) -> FakeProcore:
    procore = FakeProcore(requisitions=[listed for listed, _ in twins])
    procore.shown.update({shown["id"]: shown for _, shown in twins})
    return procore


def writes(calls) -> list[tuple]:
    return [c for c in calls if c[0].startswith(("POST", "PATCH", "DELETE"))]


# --- matching ------------------------------------------------------------------------------


@pytest.mark.parametrize("typed, ours, same", [
    ("INV-00001", "inv 00001", True),
    (" Inv.00001 ", "INV-00001", True),
    ("INV/00001", "INV-00001", True),
    ("ＩＮＶ００００１", "INV-00001", True),  # full-width, as some keyboards type it
    ("Façade №7", "FAÇADE No 7", True),
    ("INV-00001", "INV-0001", False),  # leading zeros are part of a supplier's number
    ("INV-00001", "INV-00002", False),
])
def test_invoice_numbers_match_ignoring_case_spaces_and_punctuation(typed, ours, same):
    assert (normalise_invoice_number(typed) == normalise_invoice_number(ours)) is same


def test_only_requisitions_without_origin_id_are_hand_entered_twins():
    listing = [{"id": 1, "origin_id": None, "invoice_number": "inv 1"},
               {"id": 2, "origin_id": "X3:PI:PI9:PO1", "invoice_number": "INV-1"},
               {"id": 3, "origin_id": "", "invoice_number": "INV 2"},
               {"id": 4, "origin_id": None, "invoice_number": None}]
    assert [r["id"] for r in hand_entered_twins(listing, "INV-1")] == [1]
    assert hand_entered_twins(listing, "--") == []  # punctuation only matches nothing


def test_a_requisition_total_is_its_contract_items_work_and_stored_materials():
    shown = {"total_claimed_amount": "999.00", "items": [
        {"item_type": "contract_item", "work_completed_this_period": "10.004",
         "materials_presently_stored": "2.50"},
        {"work_completed_this_period": "1", "materials_presently_stored": None},
        {"item_type": "change_order_item", "work_completed_this_period": "50.00"}]}
    assert requisition_total(shown) == Decimal("13.50")
    assert requisition_total({"total_claimed_amount": "7.1"}) == Decimal("7.10")
    assert requisition_total({}) is None


# --- the writer ----------------------------------------------------------------------------


def test_a_hand_entered_invoice_with_our_number_and_total_is_adopted_and_never_written(ledger):
    procore = procore_with(hand(amounts=("6.00", "4.00")))
    (outcome,) = RequisitionWriter(procore, ledger, "r1").run(plan())
    assert (outcome.action, outcome.status, outcome.procore_id) == ("adopt", "synced", 40)
    assert writes(procore.calls) == []  # no POST, and the fake has no PATCH to call
    assert procore.calls == [("GET requisitions", 900), ("GET requisition", 40)]
    state = ledger.states("purchase_invoice")["PI1"]
    part = state.summary["parts"]["PO1"]
    assert (part["id"], part["total"], part["hand_entered"], part["origin_id"]) == (
        40, "10.00", True, None)
    assert part["amounts"] == {LINE: "10.00"}  # what X3 billed, for later differences
    assert state.summary["sent"]["invoice_number"] == "INV-1"
    (event,) = ledger.events("purchase_invoice", "PI1")
    assert event["action"] == "adopt"
    assert event["changes"]["rule"] == ADOPT_RULE == "invoice_number"
    assert event["changes"]["before"] == {"number": 1, "invoice_number": "inv 1",
                                          "total": "10.00", "status": "approved"}
    assert "hand-entered invoice #1 'inv 1'" in event["changes"]["summary"][0]

    # From now on it is a sent invoice: nothing to do, and a later X3 change is held.
    desired = DesiredRequisitions([invoice()], _no_holds(), {}, None)
    po = RecordState("purchase_order", "PO1", "synced", procore_id=900, project_id=10,
                     summary={"lines": {LINE: {"id": 5000}}})
    assert plan_requisition_writes(desired, {"PI1": state}, {"PO1": po}).unchanged == ["PI1"]
    changed = DesiredRequisitions([invoice(amount="12.00")], _no_holds(), {}, None)
    (hold,) = plan_requisition_writes(changed, {"PI1": state}, {"PO1": po}).new_holds
    assert hold.reason.startswith(CHANGED_AFTER_SEND)
    assert "PO PO1 line 1000: amount 10.00 -> 12.00" in hold.reason


def test_with_the_ledger_lost_the_same_twin_is_found_and_adopted_again(ledger, tmp_path):
    procore = procore_with(hand())
    RequisitionWriter(procore, ledger, "r1").run(plan())
    lost = Ledger(f"sqlite:///{tmp_path / 'lost.sqlite'}")
    try:
        (outcome,) = RequisitionWriter(procore, lost, "r2").run(plan())
        assert (outcome.action, outcome.procore_id) == ("adopt", 40)
    finally:
        lost.dispose()
    assert writes(procore.calls) == []


def test_a_listing_with_items_is_not_shown_again(ledger):
    procore = procore_with(hand(with_items=True))
    (outcome,) = RequisitionWriter(procore, ledger, "r1").run(plan())
    assert outcome.action == "adopt" and procore.calls == [("GET requisitions", 900)]


def test_a_total_within_a_cent_is_equal_beyond_it_the_invoice_is_held(ledger):
    (outcome,) = RequisitionWriter(procore_with(hand(amounts=("10.01",))), ledger, "r1").run(
        plan())
    assert outcome.action == "adopt"


def test_a_twin_with_another_total_is_held_and_nothing_is_created(ledger):
    procore = procore_with(hand(amounts=("9.00",)))
    (outcome,) = RequisitionWriter(procore, ledger, "r1").run(plan())
    assert outcome.status == "held"
    assert outcome.reason == ("a hand-entered invoice #1 'inv 1' on the commitment totals 9.00, "
                              "Sage X3 says 10.00: correct one side; nothing is created")
    assert writes(procore.calls) == []
    state = ledger.states("purchase_invoice")["PI1"]
    assert state.summary["parts"] == {}  # not linked: the next run looks again

    RequisitionWriter(procore, ledger, "r2").run(plan(state=state))  # same hold: no event
    assert [e["run_id"] for e in ledger.events("purchase_invoice", "PI1")] == ["r1"]
    procore.shown[40]["items"][0]["work_completed_this_period"] = "10.00"  # corrected by hand
    (outcome,) = RequisitionWriter(procore, ledger, "r3").run(plan(state=state))
    assert (outcome.action, outcome.procore_id) == ("adopt", 40)
    assert writes(procore.calls) == []


def test_several_hand_entered_twins_are_held_each_listed(ledger):
    procore = procore_with(hand(40, 1, "INV-1", ("10.00",)), hand(41, 2, "inv1", ("12.00",)))
    (outcome,) = RequisitionWriter(procore, ledger, "r1").run(plan())
    assert outcome.status == "held" and writes(procore.calls) == []
    assert outcome.reason == ("2 hand-entered invoices on the commitment carry invoice number "
                              "'INV-1' (#1 'INV-1' 10.00; #2 'inv1' 12.00): keep one (delete or "
                              "renumber the others in Procore); nothing is created")


def test_a_twin_another_x3_invoice_adopted_is_not_adopted_twice(ledger):
    """Two X3 invoices sending the same supplier invoice number to one commitment: the first
    adopts the hand-entered one, the second is held (never a second link, never a create)."""
    procore = procore_with(hand())
    first = invoice()
    second = DesiredInvoice("PI2", "SUP001", "INV-1", "2026-03-11", None,
                            [RequisitionPart("PO1", "X3:PI:PI2:PO1",
                                             {LINE: {"amount": "10.00", "quantity": "1"}})])
    run_plan = RequisitionPlan([
        RequisitionWrite(inv, None, [ResolvedPart(inv.parts[0], 10, 900, {LINE: 5000})], "h")
        for inv in (first, second)], [])
    outcomes = RequisitionWriter(procore, ledger, "r1").run(run_plan)
    assert [(o.key, o.action) for o in outcomes] == [("PI1", "adopt"),
                                                                ("PI2", "hold")]
    assert outcomes[1].reason == (
        "a hand-entered invoice #1 'inv 1' on the commitment is already linked to Sage X3 "
        "invoice PI1: correct the supplier invoice number on one side; nothing is created")

    # next run, from the ledger: the planner knows the twin is PI1's
    states = ledger.states("purchase_invoice")
    desired = DesiredRequisitions([first, second], _no_holds(), {}, None)
    po = RecordState("purchase_order", "PO1", "synced", procore_id=900, project_id=10,
                     summary={"lines": {LINE: {"id": 5000}}})
    again = plan_requisition_writes(desired, states, {"PO1": po})
    assert again.claimed == {40: "PI1"} and [w.invoice.invoice_number for w in again.writes] \
        == ["PI2"]
    assert RequisitionWriter(procore, ledger, "r2").run(again) == []  # the same hold, once


def test_a_hand_entered_invoice_with_another_number_is_left_alone_and_ours_created(ledger):
    procore = procore_with(hand(invoice_number="HAND-INV-0001"))
    (outcome,) = RequisitionWriter(procore, ledger, "r1").run(plan())
    assert outcome.action == "create" and ("POST requisition", ORIGIN) in procore.calls
    assert not any(c == ("GET requisition", 40) for c in procore.calls)


# --- preview rows: the action the writer then records --------------------------------------


class PreviewProcore(FakeProcore):
    def purchase_order_contracts(self, project_id):
        self.calls.append(("GET contracts", project_id))
        return [{"id": 900, "requisitions_are_enabled": self.invoicing}]


def _no_holds():
    import pandas as pd
    return pd.DataFrame(columns=["invoice_number", "reason"])


def desired_of(*invoices) -> DesiredRequisitions:
    return DesiredRequisitions(list(invoices), _no_holds(), {}, None,
                               {i.invoice_number: [p.po_number for p in i.parts]
                                for i in invoices})


def two_line_invoice(number="PI1", ref="INV-1", amounts=("6.00", "4.00")) -> DesiredInvoice:
    return DesiredInvoice(number, "SUP001", ref, "2026-03-10", None, [RequisitionPart(
        "PO1", f"X3:PI:{number}:PO1", {LINE: {"amount": amounts[0], "quantity": "1"},
                                       LINE_2: {"amount": amounts[1], "quantity": "1"}})])


def adopted_po() -> RecordState:
    """The PO ledger after the commitments step adopted a twin commitment (id 900)."""
    return RecordState("purchase_order", "PO1", "synced", procore_id=900, project_id=10,
                       summary={"lines": {LINE: {"id": 5000}, LINE_2: {"id": 5001}}})


@pytest.mark.parametrize("twins, expected", [
    ([], "create"),
    ([hand(amounts=("6.00", "4.00"))], "adopt"),
    ([hand(amounts=("9.00",))], "hold"),
    ([hand(40, 1, "INV-1"), hand(41, 2, "inv 1")], "hold"),
    ([hand(invoice_number="HAND-INV-0001")], "create"),
])
def test_preview_predicts_the_writers_action_on_an_adopted_commitment(ledger, twins, expected):
    desired = desired_of(two_line_invoice())
    procore = PreviewProcore(requisitions=[t[0] for t in twins])
    procore.shown.update({t[1]["id"]: t[1] for t in twins})
    # before the run: the PO is not in the ledger; the PO plan predicts its adoption
    preview = preview_requisition_plan(desired, {}, {}, {"PO1": ("adopt", 900)}, {"PO1": 10})
    reads = read_procore_for_preview(procore, preview.plan)
    assert writes(procore.calls) == []
    (row,) = requisition_preview_rows(preview, reads)
    assert (row["flow"], row["key"], row["project_id"], row["action"], row["amount"]) == (
        "purchase_invoice", "PI1", 10, expected, Decimal("10.00"))

    # the live run: commitments step done (ledger has the PO), then the writer
    live = plan_requisition_writes(desired, {}, {"PO1": adopted_po()})
    RequisitionWriter(procore, ledger, "live").run(live)
    (event,) = ledger.events("purchase_invoice", "PI1")
    assert event["action"] == row["action"]
    if expected == "hold":
        assert event["reason"] == row["detail"]


def test_preview_invoice_on_a_po_created_in_the_same_run_is_a_create():
    desired = desired_of(two_line_invoice())
    procore = PreviewProcore()
    preview = preview_requisition_plan(desired, {}, {}, {"PO1": ("create", None)}, {"PO1": 10})
    reads = read_procore_for_preview(procore, preview.plan)
    assert procore.calls == [("GET periods", 10)]  # a new commitment has nothing to list
    (row,) = requisition_preview_rows(preview, reads)
    assert (row["action"], row["project_id"]) == ("create", 10)
    assert "the commitment this run creates" in row["detail"]


def test_preview_holds_what_the_run_would_hold_and_omits_what_it_would_not_record():
    desired = desired_of(two_line_invoice("PI1"), two_line_invoice("PI2", "INV-2"),
                         two_line_invoice("PI3", "INV-3"))
    waiting = RecordState("purchase_order", "PO2", "held", reason="line 1000: GL account "
                          "619900 has no cost code mapping")
    desired.invoices[1].parts[0].po_number = "PO2"
    desired.invoice_pos["PI2"] = ["PO2"]
    sent = RecordState("purchase_invoice", "PI3", "synced", procore_id=77, project_id=10,
                       summary={"parts": {"PO1": {"id": 77, "total": "10.00", "amounts": {
                           LINE: "6.00", LINE_2: "4.00"}}}, "sent": {
                           "invoice_number": "INV-3", "billing_date": "2026-03-10",
                           "x3_status": ""}})
    preview = preview_requisition_plan(desired, {"PI3": sent}, {"PO2": waiting},
                                       {"PO1": ("create", None), "PO2": ("hold", None)},
                                       {"PO1": 10, "PO2": 10})
    procore = PreviewProcore(periods=[])  # no open billing period in project 10
    rows = {r["key"]: r for r in requisition_preview_rows(
        preview, read_procore_for_preview(procore, preview.plan))}
    assert set(rows) == {"PI1", "PI2"}  # PI3 is unchanged: no row
    assert rows["PI1"]["action"] == "hold"
    assert "no open Procore billing period in project 10" in rows["PI1"]["detail"]
    assert rows["PI2"]["action"] == "hold"
    assert rows["PI2"]["detail"].startswith("waiting for PO PO2: line 1000: GL account 619900")
    with_period = requisition_preview_rows(preview, read_procore_for_preview(
        procore, preview.plan), create_periods=True)
    assert [r["action"] for r in with_period] == ["create", "hold"]


def test_preview_of_a_commitment_with_invoicing_disabled_is_a_hold(ledger):
    desired = desired_of(two_line_invoice())
    procore = PreviewProcore(invoicing=False)
    preview = preview_requisition_plan(desired, {}, {"PO1": adopted_po()},
                                       {"PO1": ("update", 900)}, {"PO1": 10})
    (row,) = requisition_preview_rows(preview, read_procore_for_preview(procore, preview.plan))
    assert row["action"] == "hold" and row["detail"].startswith("invoicing is not enabled")
    RequisitionWriter(procore, ledger, "live").run(
        plan_requisition_writes(desired, {}, {"PO1": adopted_po()}))
    (event,) = ledger.events("purchase_invoice", "PI1")
    assert (event["action"], event["reason"]) == ("hold", row["detail"])


def test_an_adopted_twin_then_differing_in_x3_is_held_like_a_sent_invoice():
    """After adoption the ledger part carries X3's amounts: the planner words an X3 change as
    for an invoice the connector created."""
    summary = {"parts": {"PO1": {"id": 40, "total": "10.00", "amounts": {LINE: "10.00"},
                                 "quantities": {LINE: "1"}, "hand_entered": True}},
               "sent": invoice().sent_header}
    assert sent_differences(summary, invoice()) == []
    assert sent_differences(summary, invoice(amount="11.00")) == [
        "PO PO1 line 1000: amount 10.00 -> 11.00",
        "total in Procore 10.00, in Sage X3 now 11.00 (difference +1.00)"]


def test_an_invoice_awaiting_invoicing_is_tried_again_only_when_rechecking_or_changed(ledger):
    """Nothing in X3 says when someone enables invoicing in Procore: between re-checks
    (MLC_INVOICING_RECHECK_SECONDS) such a hold costs no call; an X3 change is tried at once.
    The preview plans it the same way."""
    desired = desired_of(two_line_invoice())
    procore = PreviewProcore(invoicing=False)
    RequisitionWriter(procore, ledger, "r1").run(
        plan_requisition_writes(desired, {}, {"PO1": adopted_po()}))
    state = ledger.states("purchase_invoice")["PI1"]
    assert state.status == "held" and state.summary["invoicing_disabled"]

    quiet = plan_requisition_writes(desired, {"PI1": state}, {"PO1": adopted_po()},
                                    recheck_invoicing=False)
    assert (quiet.writes, quiet.awaiting_invoicing, quiet.new_holds) == ([], ["PI1"], [])
    preview = preview_requisition_plan(desired, {"PI1": state}, {"PO1": adopted_po()},
                                       {"PO1": ("update", 900)}, {"PO1": 10},
                                       recheck_invoicing=False)
    assert preview.plan.writes == [] and preview.plan.awaiting_invoicing == ["PI1"]

    rechecked = plan_requisition_writes(desired, {"PI1": state}, {"PO1": adopted_po()})
    assert [w.invoice.invoice_number for w in rechecked.writes] == ["PI1"]
    amended = desired_of(two_line_invoice(amounts=("7.00", "4.00")))
    amended.invoices[0] = dataclasses.replace(amended.invoices[0], x3_stamp="2027-01-02T00:00:00")
    changed = plan_requisition_writes(amended, {"PI1": state}, {"PO1": adopted_po()},
                                      recheck_invoicing=False)
    assert [w.invoice.invoice_number for w in changed.writes] == ["PI1"]
