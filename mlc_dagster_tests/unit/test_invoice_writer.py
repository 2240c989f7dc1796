"""RequisitionWriter against a fake Procore client: crash safety, locks, billing periods."""

from __future__ import annotations

import pytest

from mlc_dagster.invoices.requisitions import (
    DesiredInvoice,
    RequisitionPart,
    RequisitionPlan,
    RequisitionWrite,
    ResolvedPart,
)
from mlc_dagster.invoices.writer import RequisitionWriter
from mlc_dagster.ledger.store import Ledger
from mlc_dagster.resources.procore_client import ProcoreError

ORIGIN = "X3:PI:PI1:PO1"


class FakeProcore:
    def __init__(self, requisitions=(), periods=None):
        self.listed = list(requisitions)
        self.periods = list(periods if periods is not None else [
            {"id": 7, "start_date": "2026-03-01", "end_date": "2026-03-31"}])
        self.calls: list[tuple] = []
        self.refuse: str | None = None

    def requisitions(self, project_id, commitment_id):
        self.calls.append(("GET requisitions", commitment_id))
        return list(self.listed)

    def billing_periods(self, project_id):
        self.calls.append(("GET periods", project_id))
        return list(self.periods)

    def _saved(self, rid, body, number):
        if self.refuse:
            raise ProcoreError(422, "PATCH", "/rest/v1.1/requisitions", self.refuse)
        total = sum(float(i["work_completed_this_period"]) for i in body["items"])
        return {"id": rid, "number": number, "status": "draft", "origin_id": body["origin_id"],
                "period_id": body.get("period_id"), "total_claimed_amount": f"{total:.2f}"}

    def create_requisition(self, project_id, commitment_id, body):
        self.calls.append(("POST requisition", body["origin_id"]))
        return self._saved(99, body, len(self.listed) + 1)

    def update_requisition(self, project_id, commitment_id, rid, body):
        self.calls.append(("PATCH requisition", rid))
        return self._saved(rid, body, 1)

    def request(self, method, path, json=None):
        self.calls.append((method, path))
        period = dict(json["billing_period"], id=8)

        class Response:
            def json(self):
                return period
        return Response()


@pytest.fixture
def ledger(tmp_path):
    store = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield store
    store.dispose()


def plan(day="2026-03-10", amount="10.00", previous=None) -> RequisitionPlan:
    inv = DesiredInvoice("PI1", "SUP001", "INV-1", day, "2026-03-10T10:00:00Z",
                         [RequisitionPart("PO1", ORIGIN, {"X3:PO:PO1:1000": {
                             "amount": amount, "quantity": "1"}})])
    part = ResolvedPart(inv.parts[0], 10, 900, {"X3:PO:PO1:1000": 5000}, previous or {})
    return RequisitionPlan([RequisitionWrite(inv, None, [part], "hash-1")], [])


def test_create_records_procore_total_and_ids(ledger):
    procore = FakeProcore()
    (outcome,) = RequisitionWriter(procore, ledger, "run-1").run(plan())
    assert (outcome.action, outcome.status, outcome.procore_id) == ("create", "synced", 99)
    state = ledger.states("purchase_invoice")["PI1"]
    assert state.content_hash == "hash-1"
    assert state.summary["parts"]["PO1"]["total"] == "10.00"
    assert state.summary["parts"]["PO1"]["period_id"] == 7
    assert [c[0] for c in procore.calls] == ["GET requisitions", "GET periods", "POST requisition"]


def test_requisition_already_in_procore_after_a_crash_is_updated_not_created_again(ledger):
    procore = FakeProcore(requisitions=[{"id": 55, "number": 1, "status": "draft",
                                         "origin_id": ORIGIN}])
    (outcome,) = RequisitionWriter(procore, ledger, "run-1").run(plan())
    assert outcome.status == "synced"
    assert ("PATCH requisition", 55) in procore.calls
    assert not any(c[0] == "POST requisition" for c in procore.calls)


@pytest.mark.parametrize("listed, why", [
    ([{"id": 55, "number": 1, "status": "approved", "origin_id": ORIGIN}], "status approved"),
    ([{"id": 55, "number": 1, "status": "draft", "origin_id": ORIGIN},
      {"id": 56, "number": 2, "status": "draft", "origin_id": "X3:PI:PI2:PO1"}],
     "invoice #2 came after it"),
])
def test_requisition_procore_no_longer_lets_us_change_is_held_not_lost(ledger, listed, why):
    procore = FakeProcore(requisitions=listed)
    (outcome,) = RequisitionWriter(procore, ledger, "run-1").run(
        plan(amount="12.00", previous={"id": 55}))
    assert outcome.status == "held" and why in outcome.reason and "not lost" in outcome.reason
    state = ledger.states("purchase_invoice")["PI1"]
    assert state.summary["held_hash"] == "hash-1"  # not retried until X3 changes again
    assert state.payload["parts"]["PO1"][0]["work_completed_this_period"] == "12.00"
    assert not any(c[0].startswith(("PATCH", "POST")) for c in procore.calls)


def test_procore_refusing_the_update_is_a_lock_hold_other_errors_fail(ledger):
    procore = FakeProcore(requisitions=[{"id": 55, "number": 1, "status": "draft",
                                         "origin_id": ORIGIN}])
    procore.refuse = "Only the latest open subcontractor invoice of a commitment can be changed"
    (outcome,) = RequisitionWriter(procore, ledger, "r").run(plan(previous={"id": 55}))
    assert outcome.status == "held" and "latest open" in outcome.reason
    procore.refuse = "period_id is not a billing period of this project"
    (outcome,) = RequisitionWriter(procore, ledger, "r").run(plan(previous={"id": 55}))
    assert outcome.status == "failed" and "requisition write failed" in outcome.reason


def test_no_billing_period_holds_or_creates_one_when_configured(ledger):
    procore = FakeProcore()
    (held,) = RequisitionWriter(procore, ledger, "r").run(plan(day="2026-05-04"))
    assert held.status == "held"
    assert "no Procore billing period covers 2026-05-04" in held.reason
    assert "MLC_CREATE_BILLING_PERIODS=1" in held.reason
    assert "held_hash" not in ledger.states("purchase_invoice")["PI1"].summary  # retried

    (synced,) = RequisitionWriter(procore, ledger, "r", create_periods=True).run(
        plan(day="2026-05-04"))
    assert synced.status == "synced"
    assert ("POST", "/rest/v1.0/projects/10/billing_periods") in procore.calls
    assert any("billing period 2026-05-01..2026-05-31 created" in c for c in synced.changes)


def test_a_repeated_hold_is_not_recorded_again(ledger):
    procore = FakeProcore(periods=[])
    RequisitionWriter(procore, ledger, "r1").run(plan())
    state = ledger.states("purchase_invoice")["PI1"]
    write = plan().writes[0]
    write.state = state
    RequisitionWriter(procore, ledger, "r2").run(RequisitionPlan([write], []))
    assert [e["run_id"] for e in ledger.events("purchase_invoice", "PI1")] == ["r1"]


def test_a_failed_project_listing_falls_back_to_one_listing_per_commitment(ledger):
    """A backfill lists busy projects once; if that listing fails, every invoice still gets
    its own listing and its own outcome - the step never dies on the shortcut."""
    from mlc_dagster.invoices.writer import PROJECT_LISTING_MIN_COMMITMENTS

    class ProjectListingFails(FakeProcore):
        def requisitions(self, project_id, commitment_id=None, per_page=100):
            if commitment_id is None:
                self.calls.append(("GET project requisitions", project_id))
                raise ProcoreError(503, "GET", "/rest/v1.1/requisitions", "unavailable")
            return super().requisitions(project_id, commitment_id)

    writes = []
    for n in range(PROJECT_LISTING_MIN_COMMITMENTS):
        origin = f"X3:PI:PI{n}:PO{n}"
        inv = DesiredInvoice(f"PI{n}", "SUP001", f"INV-{n}", "2026-03-10", None,
                             [RequisitionPart(f"PO{n}", origin, {f"X3:PO:PO{n}:1000": {
                                 "amount": "10.00", "quantity": "1"}})])
        part = ResolvedPart(inv.parts[0], 10, 900 + n, {f"X3:PO:PO{n}:1000": 5000 + n}, {})
        writes.append(RequisitionWrite(inv, None, [part], f"hash-{n}"))
    procore = ProjectListingFails()
    outcomes = RequisitionWriter(procore, ledger, "run-1").run(RequisitionPlan(writes, []))
    assert [o.status for o in outcomes] == ["synced"] * PROJECT_LISTING_MIN_COMMITMENTS
    assert procore.calls[0] == ("GET project requisitions", 10)
    assert [c[1] for c in procore.calls if c[0] == "GET requisitions"] == [
        900 + n for n in range(PROJECT_LISTING_MIN_COMMITMENTS)]
