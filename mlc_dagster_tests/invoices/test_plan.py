"""Desired requisitions, the plan against the ledger (create once, never edit), billing
periods, reconciliation."""

from __future__ import annotations

from datetime import date

import pytest

from mlc_dagster.defs.invoices.plan import (
    CHANGED_AFTER_SEND,
    CREDIT_MEMO_REASON,
    DELETED_AFTER_SEND,
    NO_FINAL_FIELD,
    build_desired_requisitions,
    new_period,
    open_period,
    period_for,
    plan_requisition_writes,
    reconcile_totals,
)
from mlc_dagster.defs.invoices.staging import stage_purchase_invoices
from mlc_dagster.ledger.store import RecordState
from mlc_dagster_tests.x3_records import simple_invoice

PO = "PO26000001"


@pytest.fixture(scope="module")
def po1(seed):
    return next(p for p in seed.x3_purchase_orders if p["POHNUM"] == PO)


def invoice(po1, number="PI1", lines=((1000, "100.00"),), **header):
    """A valid invoice on PO26000001, final in X3 unless the header says otherwise."""
    return simple_invoice(number, PO, lines=lines, **{"supplier_code": po1["BPSNUM"],
                                                      "status": "2", "is_final": True, **header})


def desired_for(records, seed_staged):
    return build_desired_requisitions(stage_purchase_invoices(records, {PO, "PO26000002"}),
                                      seed_staged)


def po_state(po1, status="synced", with_ids=True, **extra) -> RecordState:
    lines = {f"X3:PO:{PO}:{ln['POPLIN']}": {"id": 5000 + i if with_ids else None}
             for i, ln in enumerate(po1["lines"])}
    return RecordState("purchase_order", PO, status, procore_id=900, project_id=10,
                       summary={"lines": lines}, **extra)


def test_amounts_are_summed_per_po_line_and_carried_with_number_and_date(po1, seed_staged):
    record = invoice(po1, lines=((1000, "100.00"), (1000, "25.50"), (2000, "4.00")),
                     supplier_invoice_ref="SUP-77", invoice_date="2026-04-02")
    desired = desired_for([record], seed_staged)
    (inv,) = desired.invoices
    (part,) = inv.parts
    assert part.origin_id == f"X3:PI:PI1:{PO}"
    assert part.items == {f"X3:PO:{PO}:1000": {"amount": "125.50", "quantity": "2"},
                          f"X3:PO:{PO}:2000": {"amount": "4.00", "quantity": "1"}}
    assert part.total == "129.50"
    assert inv.header["invoice_number"] == "SUP-77" and inv.header["billing_date"] == "2026-04-02"
    assert desired.x3_totals.set_index("po_number").loc[PO, "x3_total"] == pytest.approx(129.5)


def test_credit_memo_supplier_mismatch_and_missing_po_line_are_held(po1, seed_staged):
    records = [invoice(po1, "CM1", invoice_type="credit_memo"),
               invoice(po1, "SM1", supplier_code="SUP999"),
               invoice(po1, "NL1", lines=((777, "1.00"),)),
               invoice(po1, "OK1")]
    desired = desired_for(records, seed_staged)
    held = desired.held_reasons()
    assert held["CM1"] == CREDIT_MEMO_REASON
    assert f"supplier SUP999 differs from PO {PO}'s supplier" in held["SM1"]
    assert f"PO {PO} has no line 777" in held["NL1"]
    assert [i.invoice_number for i in desired.invoices] == ["OK1"]
    # credit memos never count in the X3 total the reconciliation compares
    assert "CM1" not in desired.x3_totals.set_index("po_number").loc[PO, "invoices"]


def test_an_invoice_not_final_in_x3_waits_and_is_created_once_it_is(po1, seed_staged):
    pos = {PO: po_state(po1)}
    draft = desired_for([invoice(po1, status="1", is_final=False)], seed_staged)
    plan = plan_requisition_writes(draft, {}, pos)
    assert not plan.writes
    (hold,) = plan.new_holds
    assert hold.reason == "not final in Sage X3 (status 1), sent once it is final"
    assert draft.x3_totals.empty  # a draft is not an invoice of record yet
    state = RecordState("purchase_invoice", "PI1", "held", reason=hold.reason)
    assert plan_requisition_writes(draft, {"PI1": state}, pos).new_holds == []  # once

    posted = desired_for([invoice(po1)], seed_staged)
    (write,) = plan_requisition_writes(posted, {"PI1": state}, pos).writes
    assert write.action == "create"


def test_a_record_without_the_is_final_field_is_not_final(po1, seed_staged):
    """An X3 client that does not say whether the invoice is final (older configuration):
    the stricter reading - it waits, and the reason says why."""
    record = invoice(po1)
    del record["is_final"]
    desired = desired_for([record], seed_staged)
    plan = plan_requisition_writes(desired, {}, {PO: po_state(po1)})
    assert not plan.writes and plan.new_holds[0].reason == NO_FINAL_FIELD
    assert "is_final" in NO_FINAL_FIELD


def test_invoice_waits_for_its_po_then_is_planned_once_the_po_is_in_procore(po1, seed_staged):
    desired = desired_for([invoice(po1)], seed_staged)
    plan = plan_requisition_writes(desired, {}, {})
    assert not plan.writes
    assert plan.new_holds[0].reason == f"waiting for PO {PO}: not yet in Procore"
    held_po = RecordState("purchase_order", PO, "held", reason="line 1000: GL account 619900 "
                          "has no cost code mapping")
    plan = plan_requisition_writes(desired, {}, {PO: held_po})
    assert "GL account 619900 has no cost code mapping" in plan.new_holds[0].reason
    plan = plan_requisition_writes(desired, {}, {PO: po_state(po1, with_ids=False)})
    assert "line(s) 1000 to reach Procore" in plan.new_holds[0].reason

    plan = plan_requisition_writes(desired, {}, {PO: po_state(po1)})
    (write,) = plan.writes
    assert write.action == "create" and not plan.new_holds
    assert write.parts[0].commitment_id == 900 and write.parts[0].items_body() == [
        {"item_type": "contract_item", "line_item_id": 5000,
         "work_completed_this_period": "100.00", "work_completed_this_period_quantity": "1"}]


def test_same_hold_is_not_recorded_again_every_poll(po1, seed_staged):
    desired = desired_for([invoice(po1)], seed_staged)
    first = plan_requisition_writes(desired, {}, {}).new_holds[0]
    state = RecordState("purchase_invoice", "PI1", "held", reason=first.reason)
    assert plan_requisition_writes(desired, {"PI1": state}, {}).new_holds == []


def _sent(write, status="synced", reason=None) -> RecordState:
    """The ledger after the writer created `write`'s requisition (id 77, number 1)."""
    part = write.parts[0]
    summary = {"parts": {PO: {"id": 77, "number": 1, "origin_id": part.part.origin_id,
                              "project_id": 10, "commitment_id": 900, "line_ids": part.line_ids,
                              "amounts": {o: v["amount"] for o, v in part.part.items.items()},
                              "quantities": {o: v["quantity"]
                                             for o, v in part.part.items.items()},
                              "total": part.part.total}},
               "pos": [PO], "sent": write.invoice.sent_header, "total": part.part.total}
    return RecordState("purchase_invoice", "PI1", status, procore_id=77, reason=reason,
                       content_hash=write.write_hash if status == "synced" else None,
                       summary=summary)


def test_a_sent_invoice_is_never_written_again_an_x3_change_is_held_with_the_difference(
        po1, seed_staged):
    pos = {PO: po_state(po1)}
    two_lines = desired_for([invoice(po1, lines=((1000, "10.00"), (2000, "5.00")))], seed_staged)
    state = {"PI1": _sent(plan_requisition_writes(two_lines, {}, pos).writes[0])}
    assert plan_requisition_writes(two_lines, state, pos).unchanged == ["PI1"]

    changed = desired_for([invoice(po1, lines=((1000, "12.00"),), invoice_date="2026-03-12")],
                          seed_staged)
    plan = plan_requisition_writes(changed, state, pos)
    assert plan.writes == [] and plan.unchanged == []
    (hold,) = plan.new_holds
    assert hold.status == "held" and hold.reason.startswith(CHANGED_AFTER_SEND)
    assert "enter the difference by hand on the next invoice" in hold.reason
    for difference in ("invoice date 2026-03-10 -> 2026-03-12",
                       f"PO {PO} line 1000: amount 10.00 -> 12.00",
                       f"PO {PO} line 2000: amount 5.00 -> 0.00, quantity 1 -> 0 (line removed)",
                       "total in Procore 15.00, in Sage X3 now 12.00 (difference -3.00)"):
        assert difference in hold.reason
    assert hold.summary == state["PI1"].summary  # Procore's requisition stays recorded

    held = dict(state)
    held["PI1"] = _sent(plan_requisition_writes(two_lines, {}, pos).writes[0], "held",
                        hold.reason)
    assert plan_requisition_writes(changed, held, pos).new_holds == []  # once, not per poll
    # X3 changed back to what Procore holds: synced again, without a write
    back = plan_requisition_writes(two_lines, held, pos)
    assert back.writes == [] and [(c.status, c.action) for c in back.resolved] == [
        ("synced", "resolve")]


def test_an_invoice_no_longer_final_or_quarantined_after_it_was_sent_is_held(po1, seed_staged):
    pos = {PO: po_state(po1)}
    posted = desired_for([invoice(po1)], seed_staged)
    state = {"PI1": _sent(plan_requisition_writes(posted, {}, pos).writes[0])}

    cancelled = desired_for([invoice(po1, status="1", is_final=False)], seed_staged)
    (hold,) = plan_requisition_writes(cancelled, state, pos).new_holds
    assert hold.reason == f"{CHANGED_AFTER_SEND}: Sage X3 status 2 -> 1"

    broken = desired_for([invoice(po1, lines=((1000, "-5.00"),))], seed_staged)
    (hold,) = plan_requisition_writes(broken, state, pos).new_holds
    assert hold.reason.startswith(CHANGED_AFTER_SEND) and "must not be negative" in hold.reason


def test_invoice_deleted_in_x3_after_it_was_sent_is_held_once_never_zeroed(po1, seed_staged):
    pos = {PO: po_state(po1)}
    billed = desired_for([invoice(po1, lines=((1000, "10.00"), (2000, "5.00")))], seed_staged)
    state = {"PI1": _sent(plan_requisition_writes(billed, {}, pos).writes[0])}
    gone = desired_for([], seed_staged)  # the full read no longer finds PI1

    assert plan_requisition_writes(gone, state, pos) == plan_requisition_writes(gone, {}, pos)
    plan = plan_requisition_writes(gone, state, pos, {"PI1"})
    assert plan.writes == []
    (hold,) = plan.new_holds
    assert hold.reason == (f"{DELETED_AFTER_SEND}: requisition #1 on PO {PO} keeps 15.00")
    after = RecordState("purchase_invoice", "PI1", "held", procore_id=77, reason=hold.reason,
                        summary=hold.summary)
    again = plan_requisition_writes(gone, {"PI1": after}, pos, {"PI1"})
    assert again.writes == [] and again.new_holds == []  # once, not on every full read
    # Deleted before anything reached Procore: nothing to hold or write.
    never_sent = RecordState("purchase_invoice", "PI2", "held", reason="waiting for PO")
    nothing = plan_requisition_writes(gone, {"PI2": never_sent}, pos, {"PI2"})
    assert nothing.writes == [] and nothing.new_holds == []


def test_a_partly_written_invoice_creates_only_its_missing_requisition(po1, seed_staged):
    """An invoice billing two POs whose second requisition failed: the next run creates
    that one, and the first is never written again."""
    pos = {PO: po_state(po1), "PO2": RecordState(
        "purchase_order", "PO2", "synced", procore_id=901, project_id=10,
        summary={"lines": {"X3:PO:PO2:1000": {"id": 6000}}})}
    desired = desired_for([invoice(po1)], seed_staged)
    (inv,) = desired.invoices
    second = type(inv.parts[0])("PO2", "X3:PI:PI1:PO2", {"X3:PO:PO2:1000": {
        "amount": "7.00", "quantity": "1"}})
    inv.parts.append(second)
    state = _sent(plan_requisition_writes(desired, {}, pos).writes[0], "failed", "boom")
    state.summary["pos"] = [PO, "PO2"]
    (write,) = plan_requisition_writes(desired, {"PI1": state}, pos).writes
    assert [p.part.po_number for p in write.parts] == ["PO2"]


PERIODS = [{"id": 1, "start_date": "2026-01-01", "end_date": "2026-01-31"},
           {"id": 2, "start_date": "2026-02-10", "end_date": "2026-03-09"}]


@pytest.mark.parametrize("day, expected", [
    (date(2026, 1, 31), 1), (date(2026, 2, 10), 2), (date(2026, 3, 9), 2),
    (date(2026, 2, 5), None), (date(2026, 3, 10), None)])
def test_period_covering_a_date(day, expected):
    found = period_for(day, PERIODS)
    assert (found or {}).get("id") == expected


def test_a_new_requisition_goes_into_the_open_period_whatever_its_date():
    periods = [dict(PERIODS[0], status="closed"), dict(PERIODS[1], status="open")]
    assert open_period(date(2026, 1, 15), periods)["id"] == 2
    assert open_period(date(2026, 1, 15), [dict(p, status="closed") for p in PERIODS]) is None
    both = [dict(p, status="open") for p in PERIODS]
    assert open_period(date(2026, 1, 15), both)["id"] == 1  # covering it, when several are
    assert open_period(date(2026, 7, 1), both)["id"] == 2  # else the latest


@pytest.mark.parametrize("day, expected", [
    (date(2026, 2, 5), (date(2026, 2, 1), date(2026, 2, 9))),  # gap before period 2
    (date(2026, 3, 20), (date(2026, 3, 10), date(2026, 3, 31))),  # after period 2
    (date(2026, 7, 4), (date(2026, 7, 1), date(2026, 7, 31))),  # free month
])
def test_new_period_is_the_month_trimmed_to_its_neighbours(day, expected):
    start, end = new_period(day, PERIODS)
    assert (start, end) == expected
    assert period_for(day, PERIODS) is None
    assert not any(p["start_date"] <= end.isoformat() and start.isoformat() <= p["end_date"]
                   for p in PERIODS)


def test_reconciliation_compares_per_commitment_and_explains_differences(po1, seed_staged):
    desired = desired_for([invoice(po1, "PI1", lines=((1000, "10.00"),)),
                           invoice(po1, "PI2", lines=((2000, "5.00"),)),
                           invoice(po1, "PI3", lines=((2000, "9.00"),), status="1",
                                   is_final=False)], seed_staged)
    synced = RecordState("purchase_invoice", "PI1", "synced",
                         summary={"parts": {PO: {"id": 1, "total": "10.00"}}})
    table = reconcile_totals(desired, {"PI1": synced}, {PO: po_state(po1)})
    row = table.set_index("po").loc[PO]
    # PI3 is not final in X3: not an invoice of record yet, on neither side
    assert (row["x3_total"], row["procore_total"], row["difference"]) == (15.0, 10.0, 5.0)
    sent = RecordState("purchase_invoice", "PI2", "synced",
                       summary={"parts": {PO: {"id": 2, "total": "5.00"}}})
    table = reconcile_totals(desired, {"PI1": synced, "PI2": sent}, {PO: po_state(po1)})
    assert table.set_index("po").loc[PO, "difference"] == 0
    assert reconcile_totals(desired, {}, {}).empty  # no commitment: nothing to compare


def test_reconciliation_shows_an_invoice_changed_after_it_was_sent_with_its_reason(
        po1, seed_staged):
    """Procore keeps what was sent; X3 now says 12.00: the difference shows, explained."""
    desired = desired_for([invoice(po1, "PI1", lines=((1000, "12.00"),))], seed_staged)
    reason = f"{CHANGED_AFTER_SEND}: PO {PO} line 1000: amount 10.00 -> 12.00"
    held = RecordState("purchase_invoice", "PI1", "held", reason=reason,
                       summary={"parts": {PO: {"id": 1, "total": "10.00"}}})
    row = reconcile_totals(desired, {"PI1": held}, {PO: po_state(po1)}).set_index("po").loc[PO]
    assert (row["x3_total"], row["procore_total"], row["difference"]) == (12.0, 10.0, 2.0)
    assert row["why"] == f"PI1: {reason}"
