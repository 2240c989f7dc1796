"""The Procore circuit breaker: the pure rules, and the two writers that feed it (fake clients).

End to end (real sandboxes, the demo seed, a Procore outage): e2e/test_outage.py.
"""

from __future__ import annotations

import copy
from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg
import httpx
import pytest

from mlc_dagster.defs.invoices.plan import (
    DesiredInvoice,
    RequisitionPart,
    RequisitionPlan,
    RequisitionWrite,
    ResolvedPart,
)
from mlc_dagster.defs.invoices.writer import RequisitionWriter
from mlc_dagster.defs.purchase_orders.desired import build_desired_commitments
from mlc_dagster.defs.purchase_orders.staging import stage_purchase_orders
from mlc_dagster.defs.purchase_orders.writer import ENTITY, CommitmentWriter, plan_commitment_writes
from mlc_dagster.ledger.store import Ledger, RecordState
from mlc_dagster.procore_writes.write_guard import fail_if_unavailable, run_breaker
from mlc_dagster.resources.breaker import BreakerSettings, CircuitBreaker, is_outage
from mlc_dagster.resources.procore_client import ProcoreError
from mlc_dagster_tests.invoices.test_writer import FakeProcore as FakeInvoiceProcore
from mlc_dagster_tests.purchase_orders.test_plan import FakeProcore
from mlc_dagster_tests.records import simple_po

LINE_SYNC = "/rest/v1.0/purchase_order_contracts/1/line_items/sync"


def outage(status: int | None = 500) -> ProcoreError:
    return ProcoreError(status, "PATCH", LINE_SYNC, "injected" if status else "ConnectError")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=5)
        return self.now


@pytest.fixture
def make(seed_mapping, _seed_frames):
    """Canonical records -> DesiredCommitments against the seed's Procore universe."""
    def _make(*records):
        return build_desired_commitments(stage_purchase_orders(copy.deepcopy(list(records))),
                                         seed_mapping, *_seed_frames.args())
    return _make


@pytest.fixture
def ledger(tmp_path):
    store = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield store
    store.dispose()


# --- the rules ----------------------------------------------------------------------------------

def test_outage_kinds_are_5xx_and_no_answer_never_4xx_or_429():
    assert is_outage(outage(500)) and is_outage(outage(503)) and is_outage(outage(None))
    assert not any(is_outage(outage(s)) for s in (400, 401, 404, 409, 422, 429))
    assert not is_outage(ValueError("not a Procore error"))
    assert not is_outage(httpx.ConnectError("a raw transport error is not a ProcoreError"))


def test_opens_after_three_different_records_and_names_the_first_failure_time():
    breaker = CircuitBreaker(BreakerSettings(records=3, attempts=0), clock=Clock())
    assert not breaker.failure("PO1", "boom 1")
    assert not breaker.failure("PO1", "boom 1 again")  # the same record counts once
    assert not breaker.failure("PO2", "boom 2")
    assert breaker.streak == 2 and not breaker.is_open
    assert breaker.failure("PO3", "boom 3")
    assert breaker.is_open
    assert breaker.reason() == "Procore unavailable since 2026-03-01 09:00:05 UTC: boom 3"
    assert breaker.summary(297).startswith(
        "Procore unavailable since 2026-03-01 09:00:05 UTC: boom 3 (297 records deferred; the "
        "next run picks them up)")
    assert not breaker.failure("PO4", "later")  # open: stays open, the reason is kept
    breaker.success()
    assert breaker.is_open and breaker.reason().endswith("boom 3")


def test_an_answer_from_procore_ends_the_streak():
    breaker = CircuitBreaker(BreakerSettings(records=3, attempts=0))
    for record in ("PO1", "PO2"):
        breaker.failure(record, "boom")
    breaker.success()
    assert breaker.streak == 0 and breaker.since is None
    breaker.failure("PO3", "boom")
    breaker.failure("PO4", "boom")
    assert not breaker.is_open


def test_attempts_open_it_sooner_but_never_on_one_record():
    breaker = CircuitBreaker(BreakerSettings(records=3, attempts=12))
    assert not breaker.failure("PO1", "boom", attempts=30)  # one record is not an outage
    assert breaker.failure("PO2", "boom", attempts=6)  # two records, 36 calls: open
    quiet = CircuitBreaker(BreakerSettings(records=3, attempts=12))
    quiet.failure("PO1", "boom", attempts=2)
    assert not quiet.failure("PO2", "boom", attempts=2)  # 4 calls: needs a third record
    assert quiet.failure("PO3", "boom", attempts=2)


def test_records_zero_switches_it_off():
    breaker = CircuitBreaker(BreakerSettings(records=0))
    assert not any(breaker.failure(f"PO{n}", "boom", attempts=6) for n in range(50))


def test_settings_from_the_environment():
    env = {"MLC_PROCORE_BREAKER_RECORDS": "5", "MLC_PROCORE_BREAKER_ATTEMPTS": "0"}
    assert BreakerSettings.from_env(env) == BreakerSettings(records=5, attempts=0)
    assert BreakerSettings.from_env({}) == BreakerSettings(records=3, attempts=12)


def test_one_breaker_per_run_and_a_red_step_once_it_opened():
    breaker = run_breaker("run-a", BreakerSettings(records=2))
    assert run_breaker("run-a", BreakerSettings()) is breaker  # made once, on first use
    assert run_breaker("run-b", BreakerSettings()) is not breaker
    assert breaker.settings.records == 2
    fail_if_unavailable(breaker, 0, {})  # closed: nothing happens
    breaker.failure("PO1", "Procore PATCH ... failed with 502: bad gateway")
    breaker.failure("PO2", "Procore PATCH ... failed with 502: bad gateway")
    with pytest.raises(dg.Failure) as raised:
        fail_if_unavailable(breaker, 41, {"deferred_procore_unavailable": 41})
    assert raised.value.allow_retries is False
    assert raised.value.description.startswith("Procore unavailable since ")
    assert "(41 records deferred; the next run picks them up)" in raised.value.description
    assert raised.value.metadata["deferred_procore_unavailable"].value == 41


# --- the commitment writer ---------------------------------------------------------------------

def write(client, ledger, desired, breaker, run_id):
    plan = plan_commitment_writes(desired, ledger.states(ENTITY))
    writer = CommitmentWriter(client, ledger, run_id, breaker=breaker)
    return plan, writer, writer.run(plan)


def test_commitments_stop_after_three_outage_failures_and_defer_the_rest(make, ledger):
    client = FakeProcore()
    client.raises["sync_lines"] = outage(500)
    desired = make(*[simple_po(f"PO{n}", lines=1) for n in range(6)])
    breaker = CircuitBreaker(BreakerSettings(records=3, attempts=0))
    _, writer, outcomes = write(client, ledger, desired, breaker, "run-1")

    assert [(o.key, o.status) for o in outcomes] == [
        ("PO0", "failed"), ("PO1", "failed"), ("PO2", "failed"),
        ("PO3", "deferred"), ("PO4", "deferred"), ("PO5", "deferred")]
    assert Counter(c[0] for c in client.calls) == {"sync_contracts": 1, "sync_lines": 3}
    assert writer.deferred == ["PO3", "PO4", "PO5"]
    states = ledger.states(ENTITY)
    for po in ("PO3", "PO4", "PO5"):
        state = states[po]
        assert state.status == "deferred" and state.content_hash is None and not state.payload
        assert state.reason.startswith("Procore unavailable since ")
        assert "failed with 500: injected" in state.reason
        # the header of this project got through: kept, so the next run updates it
        assert state.procore_id == client.contract_ids[f"X3:PO:{po}"]
        [event] = ledger.events(ENTITY, po)
        assert (event["action"], event["status"]) == ("defer", "deferred")
    assert [e["action"] for e in ledger.events(ENTITY, "PO0")] == ["fail"]

    # the outage goes on: the next run tries three again, and the records still deferred get
    # no second event (one per record and outage)
    _, _, outcomes = write(client, ledger, desired, CircuitBreaker(BreakerSettings(3, 0)),
                           "run-2")
    assert Counter(o.status for o in outcomes) == {"failed": 3, "deferred": 3}
    assert len(ledger.events(ENTITY, "PO4")) == 1

    # Procore is back: every PO is written, the deferred ones as updates of their commitment
    del client.raises["sync_lines"]
    contracts = dict(client.contract_ids)
    plan, _, outcomes = write(client, ledger, desired, CircuitBreaker(BreakerSettings(3, 0)),
                              "run-3")
    assert {w.po_number: w.action for w in plan.writes}["PO4"] == "update"
    assert {o.status for o in outcomes} == {"synced"}
    assert client.contract_ids == contracts
    assert ledger.states(ENTITY)["PO4"].procore_id == contracts["X3:PO:PO4"]


def test_commitment_refusals_never_open_it(make, ledger):
    client = FakeProcore()
    client.line_errors = {f"X3:PO:PO{n}:1000": {"quantity": ["must be > 0"]} for n in range(6)}
    breaker = CircuitBreaker(BreakerSettings(records=3, attempts=0))
    _, writer, outcomes = write(client, ledger, make(*[simple_po(f"PO{n}", lines=1)
                                                       for n in range(6)]), breaker, "r")
    assert {o.status for o in outcomes} == {"failed"} and writer.deferred == []
    assert not breaker.is_open and breaker.streak == 0


def test_a_4xx_call_error_is_not_counted_either(make, ledger):
    client = FakeProcore()
    client.raises["sync_lines"] = ProcoreError(409, "PATCH", LINE_SYNC, "conflict")
    breaker = CircuitBreaker(BreakerSettings(records=3, attempts=0))
    _, _, outcomes = write(client, ledger, make(*[simple_po(f"PO{n}", lines=1)
                                                  for n in range(5)]), breaker, "r")
    assert {o.status for o in outcomes} == {"failed"} and not breaker.is_open


def test_a_failed_header_sync_counts_once_for_its_whole_project(make, ledger):
    client = FakeProcore()
    client.raises["sync_contracts"] = outage(502)
    breaker = CircuitBreaker(BreakerSettings(records=2, attempts=0))
    _, _, outcomes = write(client, ledger, make(*[simple_po(f"PO{n}", lines=1)
                                                  for n in range(5)]), breaker, "r")
    assert {o.status for o in outcomes} == {"failed"}  # tried: failed, not deferred
    assert breaker.streak == 1 and not breaker.is_open


def test_the_breaker_carries_over_from_commitments_to_invoices(make, ledger):
    """One breaker per run: two commitment failures and one invoice failure open it."""
    client = FakeProcore()
    client.raises["sync_lines"] = outage(503)
    breaker = CircuitBreaker(BreakerSettings(records=3, attempts=0))
    write(client, ledger, make(simple_po("PO1", lines=1), simple_po("PO2", lines=1)), breaker,
          "r")
    assert breaker.streak == 2 and not breaker.is_open
    procore = OutageInvoices()
    outcomes = RequisitionWriter(procore, ledger, "r", breaker=breaker).run(invoices(3))
    assert [o.status for o in outcomes] == ["failed", "deferred", "deferred"]
    assert breaker.is_open


# --- the requisition writer ---------------------------------------------------------------------

class OutageInvoices(FakeInvoiceProcore):
    """Every requisition create answers 500 (a POST: never retried by the client)."""

    def create_requisition(self, project_id, commitment_id, body):
        self.calls.append(("POST requisition", body["origin_id"]))
        raise ProcoreError(500, "POST", "/rest/v1.1/requisitions", "injected")


def invoices(count: int, state_of=lambda _n: None) -> RequisitionPlan:
    writes = []
    for n in range(count):
        origin = f"X3:PI:PI{n}:PO1"
        inv = DesiredInvoice(f"PI{n}", "SUP001", f"INV-{n}", "2026-03-10",
                             "2026-03-10T10:00:00Z",
                             [RequisitionPart("PO1", origin, {"X3:PO:PO1:1000": {
                                 "amount": "10.00", "quantity": "1"}})], x3_status="2")
        writes.append(RequisitionWrite(inv, state_of(n), [ResolvedPart(inv.parts[0], 10, 900,
                                                                        {"X3:PO:PO1:1000": 5000})],
                                       f"hash-{n}"))
    return RequisitionPlan(writes, [])


def test_requisitions_stop_after_three_outage_failures_and_defer_the_rest(ledger):
    procore = OutageInvoices()
    breaker = CircuitBreaker(BreakerSettings(records=3, attempts=0))
    writer = RequisitionWriter(procore, ledger, "run-1", breaker=breaker)
    outcomes = writer.run(invoices(5))
    assert [o.status for o in outcomes] == ["failed"] * 3 + ["deferred"] * 2
    assert sum(c[0] == "POST requisition" for c in procore.calls) == 3
    states = ledger.states("purchase_invoice")
    assert {k: s.status for k, s in states.items()} == {
        "PI0": "failed", "PI1": "failed", "PI2": "failed", "PI3": "deferred", "PI4": "deferred"}
    assert states["PI4"].reason.startswith("Procore unavailable since ")
    [event] = ledger.events("purchase_invoice", "PI4")
    assert event["action"] == "defer"


def test_a_deferred_invoice_keeps_the_parts_already_in_procore(ledger):
    """A partly written invoice deferred: its created part stays recorded (never re-created)."""
    procore = OutageInvoices()
    breaker = CircuitBreaker(BreakerSettings(records=1, attempts=0))
    breaker.failure("earlier", "boom")  # already open when the step starts
    summary = {"parts": {"PO9": {"id": 77, "origin_id": "X3:PI:PI0:PO9", "total": "5.00"}}}
    state = RecordState("purchase_invoice", "PI0", "failed", procore_id=77, project_id=10,
                        summary=summary, reason="requisition write failed")
    outcomes = RequisitionWriter(procore, ledger, "r", breaker=breaker).run(
        invoices(1, state_of=lambda _n: state))
    assert [o.status for o in outcomes] == ["deferred"] and procore.calls == []
    saved = ledger.states("purchase_invoice")["PI0"]
    assert saved.status == "deferred" and saved.summary == summary and saved.procore_id == 77
