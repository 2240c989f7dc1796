"""Desired requisitions, the write plan against the ledger, billing periods, reconciliation."""

from __future__ import annotations

from datetime import date

import pytest

from mlc_dagster.invoices.requisitions import (
    CREDIT_MEMO_REASON,
    build_desired_requisitions,
    new_period,
    period_for,
    plan_requisition_writes,
    reconcile_totals,
)
from mlc_dagster.invoices.staging import stage_purchase_invoices
from mlc_dagster.ledger.store import RecordState

from .x3_records import simple_invoice

PO = "PO26000001"


@pytest.fixture(scope="module")
def po1(seed):
    return next(p for p in seed.x3_purchase_orders if p["POHNUM"] == PO)


def invoice(po1, number="PI1", lines=((1000, "100.00"),), **header):
    return simple_invoice(number, PO, lines=lines, **{"supplier_code": po1["BPSNUM"], **header})


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


def _written(write, status="synced", **summary_extra):
    part = write.parts[0]
    summary = {"parts": {PO: {"id": 77, "origin_id": part.part.origin_id, "project_id": 10,
                              "commitment_id": 900, "line_ids": part.line_ids,
                              "amounts": {o: v["amount"] for o, v in part.part.items.items()},
                              "total": part.part.total}}, **summary_extra}
    return RecordState("purchase_invoice", "PI1", status, procore_id=77,
                       content_hash=write.write_hash if status == "synced" else None,
                       summary=summary)


def test_unchanged_invoice_plans_nothing_and_a_change_updates_with_dropped_lines_zeroed(
        po1, seed_staged):
    pos = {PO: po_state(po1)}
    two_lines = desired_for([invoice(po1, lines=((1000, "10.00"), (2000, "5.00")))], seed_staged)
    write = plan_requisition_writes(two_lines, {}, pos).writes[0]
    state = {"PI1": _written(write)}
    assert plan_requisition_writes(two_lines, state, pos).unchanged == ["PI1"]

    one_line = desired_for([invoice(po1, lines=((1000, "12.00"),))], seed_staged)
    (update,) = plan_requisition_writes(one_line, state, pos).writes
    assert update.action == "update"
    assert update.parts[0].items_body() == [
        {"item_type": "contract_item", "line_item_id": 5000, "work_completed_this_period": "12.00",
         "work_completed_this_period_quantity": "1"},
        {"item_type": "contract_item", "line_item_id": 5001, "work_completed_this_period": "0.00",
         "work_completed_this_period_quantity": "0"}]


def test_locked_requisition_is_flagged_once_and_retried_only_after_a_new_x3_change(
        po1, seed_staged):
    pos = {PO: po_state(po1)}
    desired = desired_for([invoice(po1, lines=((1000, "10.00"),))], seed_staged)
    write = plan_requisition_writes(desired, {}, pos).writes[0]
    locked = _written(write, status="held", held_hash=write.write_hash)
    locked.reason = "requisition locked in Procore: ..."
    plan = plan_requisition_writes(desired, {"PI1": locked}, pos)
    assert plan.unchanged == ["PI1"] and not plan.writes and not plan.new_holds
    changed = desired_for([invoice(po1, lines=((1000, "11.00"),))], seed_staged)
    assert len(plan_requisition_writes(changed, {"PI1": locked}, pos).writes) == 1


def test_invoice_deleted_in_x3_zeroes_its_requisition_once(po1, seed_staged):
    pos = {PO: po_state(po1)}
    billed = desired_for([invoice(po1, lines=((1000, "10.00"), (2000, "5.00")))], seed_staged)
    state = {"PI1": _written(plan_requisition_writes(billed, {}, pos).writes[0])}
    gone = desired_for([], seed_staged)  # the full read no longer finds PI1

    assert plan_requisition_writes(gone, state, pos).writes == []  # not deleted: left alone
    (void,) = plan_requisition_writes(gone, state, pos, {"PI1"}).writes
    assert void.action == "void" and void.invoice.deleted
    assert "deleted" in void.invoice.header["comment"]
    assert "billing_date" not in void.invoice.header  # Procore keeps what it shows
    assert [(i["line_item_id"], i["work_completed_this_period"])
            for i in void.parts[0].items_body()] == [(5000, "0.00"), (5001, "0.00")]

    zeroed = void.parts[0]
    after = RecordState("purchase_invoice", "PI1", "synced", procore_id=77,
                        content_hash=void.write_hash, summary={"deleted": True, "parts": {PO: {
                            "id": 77, "origin_id": zeroed.part.origin_id, "project_id": 10,
                            "commitment_id": 900, "line_ids": {}, "amounts": {},
                            "total": "0.00"}}})
    again = plan_requisition_writes(gone, {"PI1": after}, pos, {"PI1"})
    assert again.writes == [] and again.unchanged == ["PI1"]
    # Deleted before anything reached Procore: nothing to zero.
    never_sent = RecordState("purchase_invoice", "PI2", "held", reason="waiting for PO")
    assert plan_requisition_writes(gone, {"PI2": never_sent}, pos, {"PI2"}).writes == []


PERIODS = [{"id": 1, "start_date": "2026-01-01", "end_date": "2026-01-31"},
           {"id": 2, "start_date": "2026-02-10", "end_date": "2026-03-09"}]


@pytest.mark.parametrize("day, expected", [
    (date(2026, 1, 31), 1), (date(2026, 2, 10), 2), (date(2026, 3, 9), 2),
    (date(2026, 2, 5), None), (date(2026, 3, 10), None)])
def test_period_covering_a_date(day, expected):
    found = period_for(day, PERIODS)
    assert (found or {}).get("id") == expected


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
                           invoice(po1, "PI2", lines=((2000, "5.00"),))], seed_staged)
    synced = RecordState("purchase_invoice", "PI1", "synced",
                         summary={"parts": {PO: {"total": "10.00"}}})
    table = reconcile_totals(desired, {"PI1": synced}, {PO: po_state(po1)})
    row = table.set_index("po").loc[PO]
    assert (row["x3_total"], row["procore_total"], row["difference"]) == (15.0, 10.0, 5.0)
    locked = RecordState("purchase_invoice", "PI2", "held", reason="requisition locked",
                         summary={"parts": {PO: {"total": "5.00"}}})
    table = reconcile_totals(desired, {"PI1": synced, "PI2": locked}, {PO: po_state(po1)})
    assert table.set_index("po").loc[PO, "difference"] == 0
    assert reconcile_totals(desired, {}, {}).empty  # no commitment: nothing to compare
