"""RequisitionWriter against a fake Procore client: create once, never edit, crash safety,
invoicing disabled on a commitment, the open billing period."""

from __future__ import annotations

import pytest

from mlc_dagster.defs.invoices.plan import (
    CHANGED_AFTER_SEND,
    DesiredInvoice,
    RequisitionPart,
    RequisitionPlan,
    RequisitionWrite,
    ResolvedPart,
    sent_differences,
)
from mlc_dagster.defs.invoices.writer import RequisitionWriter
from mlc_dagster.ledger.store import Ledger
from mlc_dagster.resources.procore_client import ProcoreError

ORIGIN = "X3:PI:PI1:PO1"
LINE = "X3:PO:PO1:1000"


class FakeProcore:
    """Only the calls the writer may make; it has no way to PATCH or DELETE a requisition."""

    def __init__(self, requisitions=(), periods=None, invoicing=True):
        self.listed = list(requisitions)
        self.periods = list(periods if periods is not None else [
            {"id": 6, "start_date": "2026-02-01", "end_date": "2026-02-28", "status": "closed"},
            {"id": 7, "start_date": "2026-03-01", "end_date": "2026-03-31", "status": "open"}])
        self.invoicing = invoicing
        self.shown: dict[int, dict] = {}
        self.calls: list[tuple] = []

    def requisitions(self, project_id, commitment_id):
        self.calls.append(("GET requisitions", commitment_id))
        return list(self.listed)

    def requisition(self, project_id, requisition_id):
        self.calls.append(("GET requisition", requisition_id))
        return self.shown[requisition_id]

    def purchase_order_contract(self, project_id, contract_id):
        self.calls.append(("GET contract", contract_id))
        return {"id": contract_id, "requisitions_are_enabled": self.invoicing}

    def billing_periods(self, project_id):
        self.calls.append(("GET periods", project_id))
        return list(self.periods)

    def create_requisition(self, project_id, commitment_id, body):
        self.calls.append(("POST requisition", body["origin_id"]))
        if not self.invoicing:  # the sandbox's refusal; its words are never read
            raise ProcoreError(422, "POST", "/rest/v1.1/requisitions", "some words",
                               errors={"base": ["anything"]})
        total = sum(float(i["work_completed_this_period"]) for i in body["items"])
        saved = {"id": 99, "number": len(self.listed) + 1, "status": "draft",
                 "origin_id": body["origin_id"], "period_id": body["period_id"],
                 "total_claimed_amount": f"{total:.2f}"}
        self.listed.append(saved)
        return saved

    def create_billing_period(self, project_id, start, end):
        self.calls.append(("POST period", start, end))
        period = {"id": 8, "start_date": start, "end_date": end, "status": "open"}
        self.periods.append(period)
        return period


@pytest.fixture
def ledger(tmp_path):
    store = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield store
    store.dispose()


def invoice(day="2026-03-10", amount="10.00") -> DesiredInvoice:
    return DesiredInvoice("PI1", "SUP001", "INV-1", day, "2026-03-10T10:00:00Z",
                          [RequisitionPart("PO1", ORIGIN, {LINE: {"amount": amount,
                                                                  "quantity": "1"}})],
                          x3_status="2")


def plan(day="2026-03-10", amount="10.00", state=None) -> RequisitionPlan:
    inv = invoice(day, amount)
    part = ResolvedPart(inv.parts[0], 10, 900, {LINE: 5000})
    return RequisitionPlan([RequisitionWrite(inv, state, [part], "hash-1")], [])


def test_create_sends_the_oas_body_and_records_what_procore_holds(ledger):
    procore = FakeProcore()
    sent = []
    create = procore.create_requisition
    procore.create_requisition = lambda p, c, body: sent.append(body) or create(p, c, body)
    (outcome,) = RequisitionWriter(procore, ledger, "run-1").run(plan())
    assert (outcome.action, outcome.status, outcome.procore_id) == ("create", "synced", 99)
    (body,) = sent
    # OAS: POST /rest/v1.1/requisitions (Create Requisition): only template fields
    assert set(body) == {"invoice_number", "billing_date", "origin_data", "origin_id",
                         "period_id", "items"}
    assert body["items"] == [{"item_type": "contract_item", "line_item_id": 5000,
                              "work_completed_this_period": "10.00",
                              "work_completed_this_period_quantity": "1"}]
    state = ledger.states("purchase_invoice")["PI1"]
    part = state.summary["parts"]["PO1"]
    assert (part["id"], part["total"], part["period_id"]) == (99, "10.00", 7)
    assert part["amounts"] == {LINE: "10.00"} and part["quantities"] == {LINE: "1"}
    assert state.summary["sent"] == {"invoice_number": "INV-1", "billing_date": "2026-03-10",
                                     "x3_status": "2"}
    assert [c[0] for c in procore.calls] == ["GET requisitions", "GET periods",
                                             "POST requisition"]


def test_a_create_response_without_a_total_records_the_x3_total_not_none(ledger):
    """A null `total_claimed_amount` must not reach the ledger as "None": the next run's
    comparison would raise on it, for every invoice of the step."""
    procore = FakeProcore()
    create = procore.create_requisition
    procore.create_requisition = lambda p, c, body: dict(create(p, c, body),
                                                         total_claimed_amount=None)
    RequisitionWriter(procore, ledger, "r1").run(plan())
    state = ledger.states("purchase_invoice")["PI1"]
    assert state.summary["parts"]["PO1"]["total"] == "10.00"
    assert state.summary["total"] == "10.00"
    assert sent_differences(state.summary, invoice()) == []


def test_requisition_already_in_procore_after_a_crash_is_linked_never_created_or_edited(
        ledger):
    listed = {"id": 55, "number": 1, "status": "draft", "origin_id": ORIGIN,
              "invoice_number": "INV-1", "billing_date": "2026-03-10"}
    procore = FakeProcore(requisitions=[listed])
    procore.shown[55] = dict(listed, total_claimed_amount="10.00", items=[
        {"item_type": "contract_item", "line_item_id": 5000, "work_completed_this_period": "10.0"},
        {"item_type": "contract_item", "line_item_id": 5001, "work_completed_this_period": "0"}])
    (outcome,) = RequisitionWriter(procore, ledger, "run-1").run(plan())
    assert (outcome.action, outcome.status, outcome.procore_id) == ("link", "synced", 55)
    assert "linked, not created again" in outcome.changes[0]
    assert not any(c[0].startswith("POST") for c in procore.calls)
    assert ledger.states("purchase_invoice")["PI1"].summary["parts"]["PO1"]["id"] == 55


def test_a_found_requisition_that_differs_from_x3_is_held_with_the_difference(ledger):
    """Ledger lost and the X3 invoice changed since: Procore keeps its 10.00, the invoice is
    held naming both figures, and the requisition is recorded so it is never created again."""
    listed = {"id": 55, "number": 1, "origin_id": ORIGIN, "invoice_number": "INV-1",
              "billing_date": "2026-03-10"}
    procore = FakeProcore(requisitions=[listed])
    procore.shown[55] = dict(listed, total_claimed_amount="10.00", items=[
        {"item_type": "contract_item", "line_item_id": 5000, "work_completed_this_period": "10"},
        {"item_type": "contract_item", "line_item_id": 5009, "work_completed_this_period": "3"}])
    (outcome,) = RequisitionWriter(procore, ledger, "run-1").run(plan(amount="12.00"))
    assert outcome.status == "held" and outcome.reason.startswith(CHANGED_AFTER_SEND)
    assert "PO PO1 line 1000: amount 10.00 -> 12.00" in outcome.reason
    assert "Procore line item 5009 holds 3.00, not billed by the X3 invoice" in outcome.reason
    assert not any(c[0].startswith("POST") for c in procore.calls)
    state = ledger.states("purchase_invoice")["PI1"]
    assert state.summary["parts"]["PO1"]["id"] == 55  # what Procore holds, for later diffs
    # the next run's planner words the same hold from the ledger: no second event
    again = sent_differences(state.summary, invoice(amount="12.00"))
    assert f"{CHANGED_AFTER_SEND}: {'; '.join(again)}" == outcome.reason


def test_commitment_with_invoicing_disabled_is_held_from_its_field_then_checked_first(ledger):
    procore = FakeProcore(invoicing=False)
    (held,) = RequisitionWriter(procore, ledger, "r1").run(plan())
    assert held.status == "held"
    assert held.reason.startswith("invoicing is not enabled on this commitment in Procore")
    assert ("GET contract", 900) in procore.calls  # decided from requisitions_are_enabled
    state = ledger.states("purchase_invoice")["PI1"]
    assert state.summary["invoicing_disabled"] == [900]

    procore.calls.clear()  # next run: the commitment is read first, no refused POST again
    assert RequisitionWriter(procore, ledger, "r2").run(plan(state=state)) == []
    assert not any(c[0] == "POST requisition" for c in procore.calls)
    assert procore.calls == [("GET contract", 900)]  # one read per poll, no listing
    assert [e["run_id"] for e in ledger.events("purchase_invoice", "PI1")] == ["r1"]

    procore.invoicing = True  # enabled in Procore: sent by the next run
    (synced,) = RequisitionWriter(procore, ledger, "r3").run(plan(state=state))
    assert synced.status == "synced"


def test_a_commitment_found_disabled_is_not_posted_to_again_in_the_same_run(ledger):
    """Three new invoices on one commitment with invoicing disabled: one refused POST and
    one read of the commitment, then the others are held from what this run learnt."""
    procore = FakeProcore(invoicing=False)
    writes = []
    for n in range(3):
        inv = DesiredInvoice(f"PI{n}", "SUP001", f"INV-{n}", "2026-03-10", None,
                             [RequisitionPart("PO1", f"X3:PI:PI{n}:PO1", {LINE: {
                                 "amount": "10.00", "quantity": "1"}})])
        writes.append(RequisitionWrite(inv, None, [ResolvedPart(inv.parts[0], 10, 900,
                                                                {LINE: 5000})], f"h{n}"))
    outcomes = RequisitionWriter(procore, ledger, "r1").run(RequisitionPlan(writes, []))
    assert [o.status for o in outcomes] == ["held"] * 3
    assert all(o.reason.startswith("invoicing is not enabled") for o in outcomes)
    assert [c[0] for c in procore.calls].count("POST requisition") == 1
    assert [c[0] for c in procore.calls].count("GET contract") == 1
    states = ledger.states("purchase_invoice")
    assert all(states[f"PI{n}"].summary["invoicing_disabled"] == [900] for n in range(3))


def test_another_refusal_on_an_enabled_commitment_fails_with_procores_message(ledger):
    procore = FakeProcore()

    def refuse(*_args):
        raise ProcoreError(422, "POST", "/rest/v1.1/requisitions", "period_id is bad")
    procore.create_requisition = refuse
    (outcome,) = RequisitionWriter(procore, ledger, "r").run(plan())
    assert outcome.status == "failed" and "period_id is bad" in outcome.reason


def test_a_new_requisition_goes_into_the_open_billing_period_whatever_the_invoice_date(ledger):
    procore = FakeProcore()
    (outcome,) = RequisitionWriter(procore, ledger, "r").run(plan(day="2026-02-14"))
    assert outcome.status == "synced"
    assert ledger.states("purchase_invoice")["PI1"].summary["parts"]["PO1"]["period_id"] == 7
    assert any("outside the open billing period 2026-03-01..2026-03-31" in c
               for c in outcome.changes)


def test_no_open_billing_period_holds_or_creates_one_when_configured(ledger):
    closed = [{"id": 6, "start_date": "2026-02-01", "end_date": "2026-02-28",
               "status": "closed"}]
    procore = FakeProcore(periods=closed)
    (held,) = RequisitionWriter(procore, ledger, "r").run(plan(day="2026-05-04"))
    assert held.status == "held"
    assert "no open Procore billing period in project 10" in held.reason
    assert "MLC_CREATE_BILLING_PERIODS=1" in held.reason

    (synced,) = RequisitionWriter(procore, ledger, "r", create_periods=True).run(
        plan(day="2026-05-04"))
    assert synced.status == "synced"
    assert ("POST period", "2026-05-01", "2026-05-31") in procore.calls
    assert any("billing period 2026-05-01..2026-05-31 created" in c for c in synced.changes)

    # The period covering the date exists but is closed: never a second one over it.
    procore = FakeProcore(periods=closed)
    (held,) = RequisitionWriter(procore, ledger, "r", create_periods=True).run(
        plan(day="2026-02-14"))
    assert held.status == "held" and "(2026-02-01..2026-02-28) is closed" in held.reason
    assert not any(c[0] == "POST period" for c in procore.calls)


def test_a_repeated_hold_is_not_recorded_again(ledger):
    procore = FakeProcore(periods=[])
    RequisitionWriter(procore, ledger, "r1").run(plan())
    state = ledger.states("purchase_invoice")["PI1"]
    RequisitionWriter(procore, ledger, "r2").run(plan(state=state))
    assert [e["run_id"] for e in ledger.events("purchase_invoice", "PI1")] == ["r1"]


def test_a_failed_project_listing_falls_back_to_one_listing_per_commitment(ledger):
    """A backfill lists busy projects once; if that listing fails, every invoice still gets
    its own listing and its own outcome - the step never dies on the shortcut."""
    from mlc_dagster.defs.invoices.writer import PROJECT_LISTING_MIN_COMMITMENTS

    class ProjectListingFails(FakeProcore):
        def requisitions(self, project_id, commitment_id=None, per_page=100):
            if commitment_id is None:
                self.calls.append(("GET project requisitions", project_id))
                raise ProcoreError(503, "GET", "/rest/v1.1/requisitions", "unavailable")
            self.calls.append(("GET requisitions", commitment_id))
            return []

    writes = []
    for n in range(PROJECT_LISTING_MIN_COMMITMENTS):
        origin = f"X3:PI:PI{n}:PO{n}"
        inv = DesiredInvoice(f"PI{n}", "SUP001", f"INV-{n}", "2026-03-10", None,
                             [RequisitionPart(f"PO{n}", origin, {f"X3:PO:PO{n}:1000": {
                                 "amount": "10.00", "quantity": "1"}})])
        part = ResolvedPart(inv.parts[0], 10, 900 + n, {f"X3:PO:PO{n}:1000": 5000 + n})
        writes.append(RequisitionWrite(inv, None, [part], f"hash-{n}"))
    procore = ProjectListingFails()
    outcomes = RequisitionWriter(procore, ledger, "run-1").run(RequisitionPlan(writes, []))
    assert [o.status for o in outcomes] == ["synced"] * PROJECT_LISTING_MIN_COMMITMENTS
    assert procore.calls[0] == ("GET project requisitions", 10)
    assert [c[1] for c in procore.calls if c[0] == "GET requisitions"] == [
        900 + n for n in range(PROJECT_LISTING_MIN_COMMITMENTS)]
