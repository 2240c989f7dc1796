"""Planning Procore commitment writes against the ledger, and executing a plan with a fake client."""

from __future__ import annotations

import copy
import json

import pytest

from mlc_dagster.ledger.store import Ledger, RecordState
from mlc_dagster.mapping.commitments import DesiredCommitments, build_desired_commitments
from mlc_dagster.procore.commitment_sync import (
    ENTITY,
    CommitmentWriter,
    _summary,
    plan_commitment_writes,
)
from mlc_dagster.resources.procore_client import ProcoreError, SyncResult
from mlc_dagster.sage_x3.staging import stage_purchase_orders

from .helpers import simple_po

BIG = 562949953421312  # Procore ids exceed 2**32
LOCKED = "The schedule of values is locked because the commitment is Approved"


_BUILT: dict[str, DesiredCommitments] = {}


@pytest.fixture
def make(seed_mapping, _seed_frames):
    """Canonical records -> DesiredCommitments against the seed's Procore universe.

    Memoised on the records (planning and writing never mutate desired commitments): the
    pandas/pandera round trip dominates these tests otherwise.
    """
    def _make(*records) -> DesiredCommitments:
        key = json.dumps(records, sort_keys=True)
        if key not in _BUILT:
            _BUILT[key] = build_desired_commitments(
                stage_purchase_orders(copy.deepcopy(list(records))), seed_mapping,
                *_seed_frames.args())
        return _BUILT[key]
    return _make


def synced_state(commitment, procore_id=BIG + 500, line_ids=None, **overrides) -> RecordState:
    """The ledger state after `commitment` was written successfully (as the writer stores it)."""
    line_ids = line_ids or {line["origin_id"]: BIG + 1000 + n
                            for n, line in enumerate(commitment.lines)}
    state = RecordState(
        entity=ENTITY, key=commitment.po_number, status="synced", procore_id=procore_id,
        project_id=commitment.project_id, content_hash=commitment.hash,
        x3_stamp=commitment.x3_stamp, reason="created", summary=_summary(commitment, line_ids))
    for key, value in overrides.items():
        setattr(state, key, value)
    return state


def only(plan):
    assert len(plan.writes) == 1, plan.writes
    return plan.writes[0]


# --- create / unchanged ----------------------------------------------------------------------

def test_create_when_no_state(make):
    desired = make(simple_po("PO1", lines=3))
    plan = plan_commitment_writes(desired, {})
    write = only(plan)
    assert write.action == "create" and write.send_header
    assert write.status == "Draft"
    assert write.line_updates == desired.commitments[0].lines
    assert write.line_deletes == []
    assert write.changes == ["created with 3 line(s)"]
    assert plan.unchanged == [] and plan.new_holds == []


def test_create_uses_configured_statuses(make):
    desired = make(simple_po("OPEN"), simple_po("SHUT", closed=True))
    plan = plan_commitment_writes(desired, {}, new_status="Approved", inactive_status="Void")
    assert {w.po_number: w.status for w in plan.writes} == {"OPEN": "Approved", "SHUT": "Void"}
    assert {w.action for w in plan.writes} == {"create"}


def test_state_without_procore_id_is_created(make):
    desired = make(simple_po("PO1"))
    held_before = RecordState(ENTITY, "PO1", "held", reason="supplier unknown")
    assert only(plan_commitment_writes(desired, {"PO1": held_before})).action == "create"


def test_unchanged_when_hash_equal_and_synced(make):
    desired = make(simple_po("PO1"), simple_po("PO2"))
    states = {c.po_number: synced_state(c) for c in desired.commitments}
    plan = plan_commitment_writes(desired, states)
    assert plan.writes == [] and plan.new_holds == []
    assert plan.unchanged == ["PO1", "PO2"]


def test_whole_seed_synced_means_no_write(seed_desired):
    states = {c.po_number: synced_state(c) for c in seed_desired.commitments}
    held = seed_desired.held_reasons()
    states.update({po: RecordState(ENTITY, po, "held", reason=reason)
                   for po, reason in held.items()})
    plan = plan_commitment_writes(seed_desired, states)
    assert plan.writes == [] and plan.new_holds == []
    assert len(plan.unchanged) == len(seed_desired.commitments)


@pytest.mark.parametrize("status", ["held", "failed"])
def test_same_hash_but_not_synced_is_written_again(make, status):
    desired = make(simple_po("PO1"))
    c = desired.commitments[0]
    state = synced_state(c, status=status)
    write = only(plan_commitment_writes(desired, {"PO1": state}))
    assert write.action == "update"
    assert write.line_updates == [] and write.line_deletes == [] and not write.send_header
    assert write.changes == ["re-sent (previous attempt failed)"]


# --- updates ------------------------------------------------------------------------------------

def test_quantity_change_updates_only_that_line(make):
    before = make(simple_po("PO1", lines=3)).commitments[0]
    record = simple_po("PO1", lines=3)
    record["lines"][0]["quantity"] = "12"
    desired = make(record)
    write = only(plan_commitment_writes(desired, {"PO1": synced_state(before)}))
    assert write.action == "update"
    assert not write.send_header and write.status is None
    assert [line["origin_id"] for line in write.line_updates] == ["X3:PO:PO1:1000"]
    assert write.line_updates[0]["quantity"] == "12"
    assert write.line_deletes == []
    assert write.changes == ["line 1000: quantity 10 -> 12"]


def test_several_field_changes_are_all_described(make):
    before = make(simple_po("PO1")).commitments[0]
    record = simple_po("PO1")
    record["lines"][1].update(quantity="12", amount="30.00", uom="M", description="Longer item")
    write = only(plan_commitment_writes(make(record), {"PO1": synced_state(before)}))
    assert write.changes == [
        "line 2000: description Item 2 -> Longer item",
        "line 2000: quantity 10 -> 12",
        "line 2000: amount 25.00 -> 30.00",
        "line 2000: uom EA -> M",
    ]


def test_added_and_removed_lines(make):
    before = make(simple_po("PO1", lines=2)).commitments[0]
    record = simple_po("PO1", lines=3)
    del record["lines"][1]  # line 2000 removed, line 3000 added
    state = synced_state(before, line_ids={"X3:PO:PO1:1000": BIG + 11,
                                           "X3:PO:PO1:2000": BIG + 12})
    write = only(plan_commitment_writes(make(record), {"PO1": state}))
    assert [line["origin_id"] for line in write.line_updates] == ["X3:PO:PO1:3000"]
    assert write.line_deletes == [("X3:PO:PO1:2000", BIG + 12)]
    assert write.changes == ["line 3000 added", "line 2000 removed"]
    assert not write.send_header


def test_header_changes_are_described(make):
    before = make(simple_po("PO1")).commitments[0]
    record = simple_po("PO1", reference="Renamed order", revision=2, order_date="2026-03-01")
    write = only(plan_commitment_writes(make(record), {"PO1": synced_state(before)}))
    assert write.send_header and write.action == "update" and write.status is None
    assert write.changes == [
        "title 'Order PO1' -> 'Renamed order'",
        "contract_date '2026-02-01' -> '2026-03-01'",
        "X3 revision 0 -> 2",
    ]
    assert write.line_updates == []


def test_closed_in_x3_inactivates_with_status(make):
    before = make(simple_po("PO1")).commitments[0]
    desired = make(simple_po("PO1", closed=True))
    write = only(plan_commitment_writes(desired, {"PO1": synced_state(before)},
                                        inactive_status="Terminated"))
    assert write.action == "inactivate"
    assert write.status == "Terminated" and write.send_header
    assert write.changes == ["closed in Sage X3: status -> Terminated"]


def test_all_lines_closed_inactivates_too(make):
    before = make(simple_po("PO1")).commitments[0]
    record = simple_po("PO1")
    for line in record["lines"]:
        line["closed"] = True
    write = only(plan_commitment_writes(make(record), {"PO1": synced_state(before)}))
    assert write.action == "inactivate" and write.status == "Closed"


def test_reopened_in_x3_gets_the_new_status(make):
    closed = make(simple_po("PO1", closed=True)).commitments[0]
    write = only(plan_commitment_writes(make(simple_po("PO1")), {"PO1": synced_state(closed)},
                                        new_status="Draft"))
    assert write.action == "update" and write.status == "Draft" and write.send_header
    assert write.changes == ["reopened in Sage X3: status -> Draft"]


def test_already_closed_stays_quiet(make):
    closed = make(simple_po("PO1", closed=True))
    plan = plan_commitment_writes(closed, {"PO1": synced_state(closed.commitments[0])})
    assert plan.writes == [] and plan.unchanged == ["PO1"]


# --- holds ---------------------------------------------------------------------------------------

def test_held_reason_recorded_once(make):
    desired = make(simple_po("PO1", supplier_code="SUP040"))
    reason = desired.held_reasons()["PO1"]
    first = plan_commitment_writes(desired, {})
    assert [(h.key, h.status, h.action, h.reason) for h in first.new_holds] == [
        ("PO1", "held", "hold", reason)]
    assert first.new_holds[0].x3_stamp == "2026-02-01T10:00:00Z"
    assert first.writes == []
    state = RecordState(ENTITY, "PO1", "held", reason=reason)
    assert plan_commitment_writes(desired, {"PO1": state}).new_holds == []


def test_held_again_with_another_reason_is_recorded(make):
    desired = make(simple_po("PO1", supplier_code="SUP040"))
    state = RecordState(ENTITY, "PO1", "held", reason="project P9 has no Procore project")
    assert len(plan_commitment_writes(desired, {"PO1": state}).new_holds) == 1


def test_hold_of_a_synced_po_keeps_what_procore_has(make):
    synced = make(simple_po("PO1")).commitments[0]
    state = synced_state(synced)
    record = simple_po("PO1")
    record["lines"][0]["gl_account"] = "619900"  # now unmapped
    hold = plan_commitment_writes(make(record), {"PO1": state}).new_holds[0]
    assert hold.procore_id == state.procore_id and hold.project_id == state.project_id
    assert hold.summary == state.summary
    assert hold.content_hash is None  # next time it is placeable it is compared afresh
    assert hold.reason == "line 1000: GL account 619900 has no cost code mapping"


def test_quarantined_po_hold_has_no_stamp(make):
    plan = plan_commitment_writes(make(simple_po("PO1", currency="")), {})
    assert plan.new_holds[0].x3_stamp is None
    assert plan.new_holds[0].reason.startswith("PO PO1: currency")


# --- failures and replay ---------------------------------------------------------------------------

def test_failed_create_without_contract_is_created_again(make):
    desired = make(simple_po("PO1"))
    state = RecordState(ENTITY, "PO1", "failed", reason="contract sync failed: 500")
    assert only(plan_commitment_writes(desired, {"PO1": state})).action == "create"


def test_failed_after_header_sent_resends_everything(make):
    desired = make(simple_po("PO1"))
    state = RecordState(ENTITY, "PO1", "failed", procore_id=BIG + 9, project_id=BIG,
                        reason="line item write failed")
    write = only(plan_commitment_writes(desired, {"PO1": state}))
    assert write.action == "update" and write.send_header
    assert len(write.line_updates) == 2
    assert write.changes[-2:] == ["line 1000 added", "line 2000 added"]
    assert "number None -> 'PO1'" in write.changes  # the header is described as new


def test_only_keys_restricts_the_plan(make):
    desired = make(simple_po("PO1"), simple_po("PO2"), simple_po("PO3", supplier_code="SUP040"))
    plan = plan_commitment_writes(desired, {}, only_keys={"PO2"})
    assert [w.po_number for w in plan.writes] == ["PO2"] and plan.new_holds == []


def test_replay_of_a_stale_failure_is_superseded(make):
    desired = make(simple_po("PO1", update_stamp="2026-02-02T00:00:00Z"))
    state = RecordState(ENTITY, "PO1", "failed", x3_stamp="2026-02-01T10:00:00Z",
                        payload={"header": {"title": "old"}})
    plan = plan_commitment_writes(desired, {"PO1": state}, replay=True)
    assert only(plan).action == "replay"
    [change] = plan.superseded
    assert change.status == "superseded" and change.keep_state
    assert change.changes == {"stale_payload": {"header": {"title": "old"}}}
    assert "2026-02-01T10:00:00Z -> 2026-02-02T00:00:00Z" in change.reason


def test_replay_of_a_current_failure_is_not_superseded(make):
    desired = make(simple_po("PO1"))
    state = RecordState(ENTITY, "PO1", "failed", x3_stamp="2026-02-01T10:00:00Z")
    plan = plan_commitment_writes(desired, {"PO1": state}, replay=True)
    assert only(plan).action == "replay" and plan.superseded == []


def test_po_deleted_in_x3_is_inactivated_once(make):
    c = make(simple_po("GONE")).commitments[0]
    state = synced_state(c)
    empty = make()
    write = only(plan_commitment_writes(empty, {"GONE": state}, deleted_keys={"GONE"},
                                        inactive_status="Void"))
    assert write.deleted and write.action == "inactivate" and write.status == "Void"
    assert write.desired.header == c.header and write.send_header
    state.summary = dict(state.summary, deleted=True)
    assert plan_commitment_writes(empty, {"GONE": state}, deleted_keys={"GONE"}).writes == []
    never_written = RecordState(ENTITY, "GONE", "held", reason="x")
    assert plan_commitment_writes(empty, {"GONE": never_written},
                                  deleted_keys={"GONE"}).writes == []


# --- the writer with a fake Procore ----------------------------------------------------------------

class FakeProcore:
    """Just enough of ProcoreClient for CommitmentWriter: records calls, scripted outcomes."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self._next = BIG + 10_000
        self.contract_ids: dict[str, int] = {}
        self.line_ids: dict[str, int] = {}
        self.header_errors: dict[str, dict] = {}
        self.line_errors: dict[str, dict] = {}
        self.silent: set[str] = set()  # origin_ids a sync leaves out of its answer
        self.raises: dict[str, ProcoreError] = {}
        self.listed_lines: list[dict] = []
        self.change_orders: list[dict] = []

    def _id(self) -> int:
        self._next += 1
        return self._next

    def _maybe_raise(self, name: str) -> None:
        if name in self.raises:
            raise self.raises[name]

    def sync_purchase_order_contracts(self, project_id, updates):
        self.calls.append(("sync_contracts", project_id, copy.deepcopy(updates)))
        self._maybe_raise("sync_contracts")
        result = SyncResult(calls=1, request_ids=["req-contracts"])
        for update in updates:
            origin = update.get("origin_id")
            if origin is None:  # Procore echoes the item with its errors
                result.errors.append({**update, "errors": {"origin_id": ["can't be blank"]}})
                continue
            if origin in self.silent:
                continue
            if origin in self.header_errors:
                result.errors.append({"origin_id": origin, "errors": self.header_errors[origin]})
            else:
                cid = self.contract_ids.setdefault(origin, self._id())
                result.entities.append({"id": cid, "origin_id": origin})
        return result

    def sync_contract_line_items(self, project_id, contract_id, updates):
        self.calls.append(("sync_lines", project_id, contract_id, copy.deepcopy(updates)))
        self._maybe_raise("sync_lines")
        result = SyncResult(calls=1, request_ids=["req-lines"])
        for update in updates:
            origin = update["origin_id"]
            if origin in self.line_errors:
                result.errors.append({"origin_id": origin, "errors": self.line_errors[origin]})
            else:
                lid = self.line_ids.setdefault(origin, self._id())
                result.entities.append({"id": lid, "origin_id": origin})
        return result

    def delete_contract_line_item(self, project_id, contract_id, line_item_id):
        self.calls.append(("delete_line", project_id, contract_id, line_item_id))
        self._maybe_raise("delete_line")

    def contract_line_items(self, project_id, contract_id):
        self.calls.append(("list_lines", project_id, contract_id))
        return self.listed_lines

    def commitment_change_orders(self, project_id):
        self.calls.append(("list_change_orders", project_id))
        return list(self.change_orders)

    def create_commitment_change_order(self, project_id, body):
        self.calls.append(("create_change_order", project_id, copy.deepcopy(body)))
        self.change_orders.append(body["change_order"])
        return {"id": self._id(), **body["change_order"]}

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]


@pytest.fixture
def ledger(tmp_path):
    store = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield store
    store.dispose()


def run(client, ledger, desired, run_id="run-1", **writer_options):
    plan = plan_commitment_writes(desired, ledger.states(ENTITY))
    writer = CommitmentWriter(client, ledger, run_id, **writer_options)
    return plan, writer.run(plan)


def test_writer_success_records_synced_with_line_ids(make, ledger):
    client = FakeProcore()
    desired = make(simple_po("PO1", lines=2))
    _, outcomes = run(client, ledger, desired)
    assert [(o.po_number, o.action, o.status) for o in outcomes] == [("PO1", "create", "synced")]
    state = ledger.states(ENTITY)["PO1"]
    c = desired.commitments[0]
    assert state.status == "synced"
    assert state.procore_id == client.contract_ids["X3:PO:PO1"] > 2 ** 32
    assert state.content_hash == c.hash
    assert {o: info["id"] for o, info in state.summary["lines"].items()} == {
        "X3:PO:PO1:1000": client.line_ids["X3:PO:PO1:1000"],
        "X3:PO:PO1:2000": client.line_ids["X3:PO:PO1:2000"]}
    [event] = ledger.events(ENTITY, "PO1")
    assert (event["action"], event["status"], event["run_id"]) == ("create", "synced", "run-1")
    assert event["procore_request_id"] == "req-lines"
    assert client.names() == ["sync_contracts", "sync_lines"]
    assert client.calls[0][2][0]["status"] == "Draft"
    # a second run has nothing to do
    client.calls.clear()
    plan, outcomes = run(client, ledger, desired, run_id="run-2")
    assert plan.unchanged == ["PO1"] and outcomes == [] and client.calls == []


def test_writer_update_sends_only_changed_lines_and_deletes_removed(make, ledger):
    client = FakeProcore()
    run(client, ledger, make(simple_po("PO1", lines=3)))
    client.calls.clear()
    record = simple_po("PO1", lines=3)
    record["lines"][0]["quantity"] = "12"
    del record["lines"][2]
    _, outcomes = run(client, ledger, make(record), run_id="run-2")
    assert client.names() == ["sync_lines", "delete_line"]
    assert [u["origin_id"] for u in client.calls[0][3]] == ["X3:PO:PO1:1000"]
    assert client.calls[1][3] == client.line_ids["X3:PO:PO1:3000"]
    assert outcomes[0].changes == ["line 1000: quantity 10 -> 12", "line 3000 removed"]
    state = ledger.states(ENTITY)["PO1"]
    assert set(state.summary["lines"]) == {"X3:PO:PO1:1000", "X3:PO:PO1:2000"}
    assert [e["action"] for e in ledger.events(ENTITY, "PO1")] == ["create", "update"]


def test_writer_looks_up_unknown_line_ids_before_deleting(make, ledger):
    client = FakeProcore()
    before = make(simple_po("PO1", lines=2)).commitments[0]
    state = synced_state(before, procore_id=BIG + 77, line_ids={"X3:PO:PO1:1000": BIG + 1})
    client.listed_lines = [{"id": BIG + 2, "origin_id": "X3:PO:PO1:2000"}]
    plan = plan_commitment_writes(make(simple_po("PO1", lines=1)), {"PO1": state})
    CommitmentWriter(client, ledger, "r").run(plan)
    assert client.calls == [("list_lines", before.project_id, BIG + 77),
                            ("delete_line", before.project_id, BIG + 77, BIG + 2)]


def test_writer_locked_error_holds_with_hold_policy(make, ledger):
    client = FakeProcore()
    run(client, ledger, make(simple_po("PO1")))
    synced_summary = ledger.states(ENTITY)["PO1"].summary
    record = simple_po("PO1")
    record["lines"][0]["quantity"] = "12"
    client.line_errors["X3:PO:PO1:1000"] = {"base": [LOCKED]}
    _, outcomes = run(client, ledger, make(record), approved_policy="hold")
    assert [(o.status, o.action) for o in outcomes] == [("held", "update")]
    state = ledger.states(ENTITY)["PO1"]
    assert state.status == "held"
    assert state.reason == f"approved commitment locked: line 1000: base: {LOCKED}"
    assert state.content_hash is None  # retried once unlocked
    assert state.summary == synced_summary  # still what Procore has
    assert state.procore_id == client.contract_ids["X3:PO:PO1"]


def test_writer_locked_contract_holds(make, ledger):
    client = FakeProcore()
    client.header_errors["X3:PO:PO1"] = {"base": [LOCKED]}
    _, outcomes = run(client, ledger, make(simple_po("PO1")))
    assert outcomes[0].status == "held"
    assert ledger.states(ENTITY)["PO1"].reason.startswith("approved commitment locked: ")
    assert client.names() == ["sync_contracts"]  # no line writes for a refused contract


def test_writer_locked_error_becomes_change_order_by_default(make, ledger):
    client = FakeProcore()
    run(client, ledger, make(simple_po("PO1")))
    record = simple_po("PO1", revision=1)
    record["lines"][0].update(quantity="12", amount="30.00")
    client.line_errors["X3:PO:PO1:1000"] = {"base": [LOCKED]}
    _, outcomes = run(client, ledger, make(record))
    assert outcomes[0].status == "synced" and outcomes[0].action == "change_order"
    [create] = [c for c in client.calls if c[0] == "create_change_order"]
    body = create[2]["change_order"]
    assert body["line_items"][0]["amount"] == "5.00"
    assert body["origin_id"].startswith("X3:PO:PO1:CO:1:")
    assert ledger.states(ENTITY)["PO1"].status == "synced"


def test_writer_per_item_error_fails_with_payload_stored(make, ledger):
    client = FakeProcore()
    client.line_errors["X3:PO:PO1:2000"] = {"quantity": ["must be greater than 0"]}
    desired = make(simple_po("PO1"))
    _, outcomes = run(client, ledger, desired)
    assert [(o.status, o.reason) for o in outcomes] == [
        ("failed", "Procore rejected line items: line 2000: quantity: must be greater than 0")]
    state = ledger.states(ENTITY)["PO1"]
    c = desired.commitments[0]
    assert state.status == "failed" and state.content_hash is None
    assert state.procore_id == client.contract_ids["X3:PO:PO1"]  # the header did get through
    assert state.payload == {"project_id": c.project_id, "header": c.header, "status": "Draft",
                             "line_updates": c.lines, "line_deletes": []}
    [event] = ledger.events(ENTITY, "PO1")
    assert (event["action"], event["status"]) == ("fail", "failed")
    # the failure is retried on the next run, and succeeds
    client.line_errors.clear()
    plan, outcomes = run(client, ledger, desired, run_id="run-2")
    assert outcomes[0].status == "synced" and plan.writes[0].line_updates == c.lines
    assert ledger.states(ENTITY)["PO1"].status == "synced"


def test_writer_contract_rejection_fails_without_line_calls(make, ledger):
    client = FakeProcore()
    client.header_errors["X3:PO:PO2"] = {"vendor_id": ["is not a vendor of this project"]}
    _, outcomes = run(client, ledger, make(simple_po("PO1"), simple_po("PO2")))
    status = {o.po_number: (o.status, o.reason) for o in outcomes}
    assert status["PO1"] == ("synced", None)
    assert status["PO2"] == ("failed", "Procore rejected the contract: vendor_id: is not a "
                                       "vendor of this project")
    assert [c[2] for c in client.calls if c[0] == "sync_lines"] == [client.contract_ids["X3:PO:PO1"]]


def test_writer_missing_result_fails(make, ledger):
    client = FakeProcore()
    client.silent.add("X3:PO:PO1")
    _, outcomes = run(client, ledger, make(simple_po("PO1")))
    assert outcomes[0].reason == "contract sync returned no result for this PO"
    assert ledger.states(ENTITY)["PO1"].status == "failed"


def test_writer_call_error_fails_the_whole_batch_with_request_id(make, ledger):
    client = FakeProcore()
    client.raises["sync_contracts"] = ProcoreError(500, "PATCH", "/sync", "boom", "req-42")
    _, outcomes = run(client, ledger, make(simple_po("PO1"), simple_po("PO2")))
    assert {o.status for o in outcomes} == {"failed"}
    for po in ("PO1", "PO2"):
        [event] = ledger.events(ENTITY, po)
        assert event["procore_request_id"] == "req-42"
        assert "contract sync failed" in event["reason"] and "boom" in event["reason"]


def test_writer_records_new_holds(make, ledger):
    client = FakeProcore()
    desired = make(simple_po("PO1", supplier_code="SUP040"))
    _, outcomes = run(client, ledger, desired)
    assert [(o.po_number, o.status) for o in outcomes] == [("PO1", "held")]
    assert ledger.keys_with_status(ENTITY, ["held"]) == ["PO1"]
    assert client.calls == []
    run(client, ledger, desired, run_id="run-2")
    assert len(ledger.events(ENTITY, "PO1")) == 1  # the same hold is not repeated


def test_writer_flushes_in_batches(make, ledger):
    client = FakeProcore()
    desired = make(*[simple_po(f"PO{n}", lines=1) for n in range(5)])
    messages: list[str] = []
    plan = plan_commitment_writes(desired, {})
    CommitmentWriter(client, ledger, "r", log=messages.append, flush_every=2).run(plan)
    assert [m.split(";")[0] for m in messages] == [
        "commitments: 2/5 POs written", "commitments: 4/5 POs written",
        "commitments: 5/5 POs written"]
    assert len(ledger.events_for_run("r")) == 5


def test_writer_rejects_unknown_policy(ledger):
    with pytest.raises(ValueError, match="approved policy"):
        CommitmentWriter(FakeProcore(), ledger, "r", approved_policy="ignore")


def test_change_order_is_not_created_twice(make, ledger):
    client = FakeProcore()
    run(client, ledger, make(simple_po("PO1")))
    record = simple_po("PO1", revision=1)
    record["lines"][0].update(quantity="12", amount="30.00")
    desired = make(record)
    c = desired.commitments[0]
    client.change_orders.append({"origin_id": f"X3:PO:PO1:CO:1:{c.hash[:10]}"})  # crash replay
    client.line_errors["X3:PO:PO1:1000"] = {"base": [LOCKED]}
    _, outcomes = run(client, ledger, desired)
    assert outcomes[0].action == "change_order"
    assert "create_change_order" not in client.names()


# --- POs deleted in X3 whose first write never completed ----------------------------------


def test_deleted_po_without_summary_is_inactivated_by_origin_id(make):
    state = RecordState(ENTITY, "PO1", "failed", procore_id=BIG + 9, project_id=BIG,
                        x3_stamp="2026-02-01T10:00:00Z", reason="line item write failed")
    write = only(plan_commitment_writes(make(), {"PO1": state}, deleted_keys={"PO1"}))
    assert write.desired.header.get("origin_id") == "X3:PO:PO1"


def test_deleted_po_without_summary_does_not_abort_the_run(make, ledger):
    state = RecordState(ENTITY, "PO1", "failed", procore_id=BIG + 9, project_id=BIG,
                        x3_stamp="2026-02-01T10:00:00Z", reason="line item write failed")
    desired = make(simple_po("PO2"))
    plan = plan_commitment_writes(desired, {"PO1": state}, deleted_keys={"PO1"})
    outcomes = CommitmentWriter(FakeProcore(), ledger, "r").run(plan)
    assert {o.po_number for o in outcomes} == {"PO1", "PO2"}
