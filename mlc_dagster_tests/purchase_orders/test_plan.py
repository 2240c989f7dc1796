"""Planning Procore commitment writes against the ledger, and executing a plan with a fake client."""

from __future__ import annotations

import copy
import json

import pytest

from mlc_dagster.defs.purchase_orders.desired import DesiredCommitments, build_desired_commitments
from mlc_dagster.defs.purchase_orders.staging import stage_purchase_orders
from mlc_dagster.defs.purchase_orders.writer import (
    ENTITY,
    CommitmentWriter,
    _summary,
    plan_commitment_writes,
)
from mlc_dagster.ledger.store import Ledger, RecordState
from mlc_dagster.resources.procore_client import ProcoreError, SyncResult
from mlc_dagster_tests.records import simple_po

BIG = 562949953421312  # Procore ids exceed 2**32


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
    """Just enough of ProcoreClient for CommitmentWriter: records calls, scripted outcomes.

    Models what the writer relies on: contract statuses (the header-sync entity carries
    the status, Procore's default `Draft`), the Approved lock (`approved_lock`), the show
    response's tier arrays, the SOV, and change order packages with the PCO Procore creates
    for each on a single-tier project.
    """

    def __init__(self, tier: int = 1, approved_lock: bool = True,
                 full_sync_entities: bool = True) -> None:
        self.calls: list[tuple] = []
        self._next = BIG + 10_000
        self.tier = tier
        self.approved_lock = approved_lock
        self.full_sync_entities = full_sync_entities  # False: entities without the tier arrays
        self.contract_ids: dict[str, int] = {}
        self.statuses: dict[int, str] = {}  # contract id -> status
        self.line_ids: dict[str, int] = {}
        self.sov: dict[int, dict[str, dict]] = {}  # contract id -> origin_id -> line item
        self.header_errors: dict[str, dict] = {}
        self.line_errors: dict[str, dict] = {}
        self.silent: set[str] = set()  # origin_ids a sync leaves out of its answer
        self.raises: dict[str, ProcoreError] = {}
        self.listed_lines: list[dict] | None = None
        self.packages: list[dict] = []
        self.pcos: list[dict] = []
        self.pco_lines: dict[int, dict[str, dict]] = {}  # pco id -> origin_id -> line item

    def _id(self) -> int:
        self._next += 1
        return self._next

    def _maybe_raise(self, name: str) -> None:
        if name in self.raises:
            raise self.raises[name]

    def approve(self, origin_id: str = "X3:PO:PO1", status: str = "Approved") -> int:
        contract_id = self.contract_ids[origin_id]
        self.statuses[contract_id] = status
        return contract_id

    def _locked(self, contract_id: int) -> bool:
        return self.approved_lock and self.statuses.get(contract_id) in ("Approved", "Complete")

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
                self.statuses[cid] = update.get("status") or self.statuses.get(cid, "Draft")
                entity = (self._shown(cid) if self.full_sync_entities else
                          {"id": cid, "status": self.statuses[cid]})
                result.entities.append({**entity, "origin_id": origin})
        return result

    def purchase_order_contract(self, project_id, contract_id):
        self.calls.append(("show_contract", project_id, contract_id))
        self._maybe_raise("show_contract")
        return self._shown(contract_id)

    def _shown(self, contract_id: int) -> dict:
        """The Show action's attributes, which sync entities match (using_sync_actions.md)."""
        shown = {"id": contract_id, "status": self.statuses.get(contract_id)}
        if self.tier >= 1:  # tier 0: a response showing none of the arrays
            shown["change_order_packages"] = [copy.deepcopy(p) for p in self.packages
                                              if p["contract_id"] == contract_id]
        if self.tier >= 2:
            shown["potential_change_orders"] = []
        if self.tier == 3:
            shown["change_order_requests"] = []
        return shown

    def sync_contract_line_items(self, project_id, contract_id, updates):
        self.calls.append(("sync_lines", project_id, contract_id, copy.deepcopy(updates)))
        self._maybe_raise("sync_lines")
        result = SyncResult(calls=1, request_ids=["req-lines"])
        for update in updates:
            origin = update["origin_id"]
            if self._locked(contract_id):
                result.errors.append({**update, "errors": {"base": ["refused"]}})
            elif origin in self.line_errors:
                result.errors.append({"origin_id": origin, "errors": self.line_errors[origin]})
            else:
                lid = self.line_ids.setdefault(origin, self._id())
                self.sov.setdefault(contract_id, {})[origin] = {**update, "id": lid}
                result.entities.append({"id": lid, "origin_id": origin})
        return result

    def delete_contract_line_item(self, project_id, contract_id, line_item_id):
        self.calls.append(("delete_line", project_id, contract_id, line_item_id))
        self._maybe_raise("delete_line")
        if self._locked(contract_id):
            raise ProcoreError(422, "DELETE", "/line_items", "refused", "req-del",
                               {"base": ["refused"]})
        lines = self.sov.get(contract_id, {})
        for origin in [o for o, line in lines.items() if line["id"] == line_item_id]:
            del lines[origin]

    def contract_line_items(self, project_id, contract_id):
        self.calls.append(("list_lines", project_id, contract_id))
        if self.listed_lines is not None:
            return self.listed_lines
        return [copy.deepcopy(line) for line in self.sov.get(contract_id, {}).values()]

    def change_order_packages(self, project_id, contract_id):
        self.calls.append(("list_packages", project_id, contract_id))
        self._maybe_raise("list_packages")
        return [copy.deepcopy(p) for p in self.packages if p["contract_id"] == contract_id]

    def create_change_order_package(self, project_id, contract_id, change_order):
        self.calls.append(("create_package", project_id, contract_id, copy.deepcopy(change_order)))
        self._maybe_raise("create_package")
        number = 1 + sum(p["contract_id"] == contract_id for p in self.packages)
        package = {"id": self._id(), "number": str(number), "contract_id": contract_id,
                   "status": "draft", "title": change_order["title"],
                   "origin_code": change_order.get("origin_code")}
        self.packages.append(package)
        if self.tier == 1:
            pco = {"id": self._id(), "contract_id": contract_id,
                   "change_order_package_id": package["id"]}
            self.pcos.append(pco)
            self.pco_lines[pco["id"]] = {}
        return copy.deepcopy(package)

    def potential_change_orders(self, project_id, contract_id):
        self.calls.append(("list_pcos", project_id, contract_id))
        return [copy.deepcopy(p) for p in self.pcos if p["contract_id"] == contract_id]

    def potential_change_order_line_items(self, project_id, pco_id):
        self.calls.append(("list_pco_lines", project_id, pco_id))
        return [copy.deepcopy(line) for line in self.pco_lines[pco_id].values()]

    def sync_potential_change_order_line_items(self, project_id, pco_id, updates):
        self.calls.append(("sync_pco_lines", project_id, pco_id, copy.deepcopy(updates)))
        self._maybe_raise("sync_pco_lines")
        result = SyncResult(calls=1, request_ids=["req-pco"])
        lines = self.pco_lines[pco_id]
        for update in updates:
            line = lines.setdefault(update["origin_id"], {"id": self._id()})
            line.update(update)
            result.entities.append(copy.deepcopy(line))
        return result

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
    assert [(o.key, o.action, o.status) for o in outcomes] == [("PO1", "create", "synced")]
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
    # status only after Procore said what the contract is: its default Draft needs no call
    assert "status" not in client.calls[0][2][0]
    assert client.statuses[state.procore_id] == "Draft"
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
    status = {o.key: (o.status, o.reason) for o in outcomes}
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
    assert [(o.key, o.status) for o in outcomes] == [("PO1", "held")]
    assert ledger.keys_with_status(ENTITY, ["held"]) == ["PO1"]
    assert client.calls == []
    run(client, ledger, desired, run_id="run-2")
    assert len(ledger.events(ENTITY, "PO1")) == 1  # the same hold is not repeated


def test_writer_flushes_in_batches(make, ledger):
    client = FakeProcore()
    desired = make(*[simple_po(f"PO{n}", lines=1) for n in range(5)])
    messages: list[str] = []
    plan = plan_commitment_writes(desired, {})
    flushed: list[int] = []
    writer = CommitmentWriter(client, ledger, "r", log=messages.append, flush_every=2)
    flush = writer.flush
    writer.flush = lambda: (flush(), flushed.append(len(ledger.events_for_run("r"))))
    writer.run(plan)
    assert flushed == [2, 4, 5]
    # progress is time-based (at most once a minute), plus the closing line
    assert [m.split(";")[0] for m in messages] == ["commitments: 5 of 5 written, 0 to go"]


def test_writer_rejects_unknown_policy(ledger):
    with pytest.raises(ValueError, match="approved policy"):
        CommitmentWriter(FakeProcore(), ledger, "r", approved_policy="ignore")


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
    assert {o.key for o in outcomes} == {"PO1", "PO2"}


# --- approved commitments: status decides, change orders the documented way ----------------

CO_CALLS = {"list_packages", "create_package", "list_pcos", "list_pco_lines", "sync_pco_lines"}


def approved(make, ledger, client, lines: int = 2, status: str = "Approved") -> int:
    """PO1 written, then Approved (or Complete) by a project manager in Procore."""
    run(client, ledger, make(simple_po("PO1", lines=lines)))
    client.calls.clear()
    return client.approve(status=status)


def amended(revision: int = 0, lines: int = 2, **line_fields) -> dict:
    record = simple_po("PO1", lines=lines, revision=revision)
    record["lines"][0].update(line_fields)
    return record


def pco_lines(client, package: dict) -> list[dict]:
    [pco] = [p for p in client.pcos if p["change_order_package_id"] == package["id"]]
    return sorted(client.pco_lines[pco["id"]].values(), key=lambda line: line["origin_id"])


def test_refusal_of_an_unlocked_commitment_is_a_failure_whatever_its_words(make, ledger):
    client = FakeProcore()
    run(client, ledger, make(simple_po("PO1")))
    client.line_errors["X3:PO:PO1:1000"] = {"base": ["The schedule of values is locked"]}
    _, outcomes = run(client, ledger, make(amended(quantity="12", amount="30.00")))
    assert [(o.status, o.reason) for o in outcomes] == [
        ("failed", "Procore rejected line items: line 1000: base: The schedule of values is locked")]
    assert "show_contract" in client.names()  # the status decided, read from Procore
    assert not CO_CALLS & set(client.names())


def test_hold_policy_holds_an_approved_commitment_once(make, ledger):
    client = FakeProcore()
    approved(make, ledger, client)
    synced_summary = ledger.states(ENTITY)["PO1"].summary
    desired = make(amended(quantity="12", amount="30.00"))
    _, outcomes = run(client, ledger, desired, approved_policy="hold")
    assert [(o.status, o.action) for o in outcomes] == [("held", "update")]
    state = ledger.states(ENTITY)["PO1"]
    assert state.reason.startswith("approved commitment locked: the commitment is Approved in "
                                   "Procore, which locks its schedule of values")
    assert "MLC_APPROVED_POLICY=hold" in state.reason and "line 1000: base: refused" in state.reason
    assert state.content_hash is None and state.summary == synced_summary
    assert client.names() == ["sync_lines", "show_contract"]
    run(client, ledger, desired, run_id="run-3", approved_policy="hold")  # retried, still locked
    assert [e["action"] for e in ledger.events(ENTITY, "PO1")] == ["create", "hold"]


def test_status_comes_from_the_header_sync_entity(make, ledger):
    client = FakeProcore()
    approved(make, ledger, client, status="Complete")
    record = amended(quantity="12", amount="30.00")
    record["reference"] = "Renamed"  # the header goes too: its entity carries the status
    _, outcomes = run(client, ledger, make(record), approved_policy="hold")
    assert outcomes[0].status == "held" and "is Complete in Procore" in outcomes[0].reason
    assert client.names() == ["sync_contracts", "sync_lines"]  # no show call needed


def test_a_sync_entity_without_the_tier_arrays_costs_one_show_call(make, ledger):
    client = FakeProcore(full_sync_entities=False)
    approved(make, ledger, client)
    _, outcomes = run(client, ledger, make(amended(revision=1, quantity="12", amount="30.00")))
    assert [(o.status, o.action) for o in outcomes] == [("synced", "change_order")]
    assert client.names()[:4] == ["sync_contracts", "sync_lines", "show_contract", "list_lines"]
    assert client.names().count("show_contract") == 1


def test_field_errors_on_an_approved_commitment_are_ordinary_failures(make, ledger):
    client = FakeProcore(approved_lock=False)
    approved(make, ledger, client)
    client.line_errors["X3:PO:PO1:1000"] = {"quantity": ["must be greater than 0"]}
    _, outcomes = run(client, ledger, make(amended(quantity="12", amount="30.00")))
    assert outcomes[0].status == "failed"
    assert outcomes[0].reason == ("Procore rejected line items: line 1000: quantity: must be "
                                  "greater than 0")
    assert client.names() == ["sync_lines"]


def test_with_the_lock_off_an_approved_commitment_is_simply_updated(make, ledger):
    client = FakeProcore(approved_lock=False)
    contract_id = approved(make, ledger, client)
    _, outcomes = run(client, ledger, make(amended(quantity="12", amount="30.00")))
    assert [(o.status, o.action) for o in outcomes] == [("synced", "update")]
    assert client.sov[contract_id]["X3:PO:PO1:1000"]["quantity"] == "12"
    assert client.names() == ["sync_lines"] and client.packages == []


def test_quantity_change_becomes_a_package_with_the_quantity_delta(make, ledger):
    client = FakeProcore()
    contract_id = approved(make, ledger, client)
    _, outcomes = run(client, ledger, make(amended(revision=1, quantity="12", amount="30.00")))
    assert [(o.status, o.action) for o in outcomes] == [("synced", "change_order")]
    # the header sync's entity is the show response: no GET for the status or the tier
    assert client.names() == ["sync_contracts", "sync_lines", "list_lines",
                              "list_packages", "list_pcos", "create_package", "list_pcos",
                              "sync_pco_lines"]
    [package] = client.packages
    [create] = [c for c in client.calls if c[0] == "create_package"]
    body = create[3]
    key = body["title"][-9:-1]
    assert create[2] == contract_id
    assert body == {"title": f"Sage X3 PO PO1 rev 1 [{key}]",
                    "description": "Sage X3 PO PO1 revision 1: line 1000: quantity +2 at 2.5 "
                                   "= +5.00",
                    "origin_code": "PO1 rev 1", "origin_id": f"X3:PO:PO1:CO:{key}"}
    line = pco_lines(client, package)[0]
    assert {k: line[k] for k in ("origin_id", "quantity", "unit_cost", "amount", "uom",
                                 "description")} == {
        "origin_id": f"X3:PO:PO1:1000:CO:{key}", "quantity": "2", "unit_cost": "2.5",
        "amount": "5.00", "uom": "EA", "description": "Item 1"}
    assert client.sov[contract_id]["X3:PO:PO1:1000"]["quantity"] == "10"  # SOV untouched
    state = ledger.states(ENTITY)["PO1"]
    assert state.status == "synced"
    event = ledger.events(ENTITY, "PO1")[-1]
    assert (event["action"], event["status"]) == ("change_order", "synced")
    assert event["changes"]["change_order"] == {
        "package_id": package["id"], "package_number": "1", "title": body["title"],
        "potential_change_order_id": client.pcos[0]["id"], "total": "5.00",
        "lines": ["line 1000: quantity +2 at 2.5 = +5.00"]}
    assert f"change order package #1 '{body['title']}' for +5.00" in event["reason"]
    # nothing changed: nothing sent; a further amendment adds only its own delta
    client.calls.clear()
    run(client, ledger, make(amended(revision=1, quantity="12", amount="30.00")), run_id="run-3")
    assert client.calls == []
    run(client, ledger, make(amended(revision=2, quantity="15", amount="37.50")), run_id="run-4")
    second = client.packages[1]
    assert second["title"].startswith("Sage X3 PO PO1 rev 2 [")
    assert [(x["quantity"], x["amount"]) for x in pco_lines(client, second)] == [("3", "7.50")]


def test_new_and_removed_lines_become_change_order_lines(make, ledger):
    client = FakeProcore()
    approved(make, ledger, client, lines=2)
    record = simple_po("PO1", lines=3, revision=1)
    del record["lines"][1]  # line 2000 removed, line 3000 added
    _, outcomes = run(client, ledger, make(record))
    assert outcomes[0].action == "change_order"
    [package] = client.packages
    lines = [(x["origin_id"].split(":CO:")[0], x["quantity"], x["unit_cost"], x["amount"],
              x["description"]) for x in pco_lines(client, package)]
    assert lines == [("X3:PO:PO1:2000", "-10", "2.5", "-25.00", "Removed: Item 2"),
                     ("X3:PO:PO1:3000", "10", "2.5", "25.00", "Item 3")]
    assert "delete_line" not in client.names()  # refused line writes are not retried


@pytest.mark.parametrize(("line_fields", "problem"), [
    ({"unit_price": "3.00", "amount": "30.00"}, "line 1000: unit cost 2.5 -> 3"),
    # issue 13 point 6b: quantity 10 -> 40 with the same amount
    ({"quantity": "40", "unit_price": "0.625", "amount": "25.00"},
     "line 1000: unit cost 2.5 -> 0.625"),
    ({"amount": "26.00"},
     "line 1000: quantity 10 -> 10 and amount 25.00 -> 26.00 do not agree at unit cost 2.5"),
    ({"description": "Other item"}, "line 1000: description Item 1 -> Other item"),
    ({"uom": "M"}, "line 1000: unit of measure EA -> M"),
])
def test_changes_a_change_order_cannot_carry_hold_the_po(make, ledger, line_fields, problem):
    client = FakeProcore()
    approved(make, ledger, client)
    synced_summary = ledger.states(ENTITY)["PO1"].summary
    _, outcomes = run(client, ledger, make(amended(**line_fields)))
    assert outcomes[0].status == "held"
    state = ledger.states(ENTITY)["PO1"]
    assert state.status == "held" and state.content_hash is None
    assert state.summary == synced_summary
    assert state.reason.startswith("approved commitment locked: the commitment is Approved and "
                                   "a change order cannot carry these changes faithfully: ")
    assert problem in state.reason
    assert "create_package" not in client.names() and "sync_pco_lines" not in client.names()


def test_cost_code_and_cost_type_changes_hold_the_po(make, ledger):
    client = FakeProcore()
    approved(make, ledger, client)
    reason = run(client, ledger, make(amended(gl_account="601150")))[1][0].reason
    assert "line 1000: cost code " in reason and "line 1000: cost type " in reason
    assert client.packages == []


@pytest.mark.parametrize(("tier", "words"), [
    (2, "uses 2-tier change orders"), (3, "uses 3-tier change orders"),
    (0, "shows no change order packages, so the project's change-order tier is unknown")])
def test_multi_tier_or_unknown_tier_holds_naming_it(make, ledger, tier, words):
    client = FakeProcore(tier=tier)
    approved(make, ledger, client)
    _, outcomes = run(client, ledger, make(amended(quantity="12", amount="30.00")))
    assert outcomes[0].status == "held"
    assert words in outcomes[0].reason
    assert "single-tier projects" in outcomes[0].reason
    assert "MLC_APPROVED_POLICY=hold" in outcomes[0].reason
    assert client.names() == ["sync_lines", "show_contract"]


def _copy_ledger(tmp_path, source: Ledger, name: str) -> Ledger:
    """A copy of the ledger as it is now: restoring it later loses what happened since."""
    path = tmp_path / name
    with source.engine.connect() as conn:
        conn.exec_driver_sql(f"VACUUM INTO '{path}'")
    return Ledger(f"sqlite:///{path}")


def test_crash_between_package_and_lines_reuses_the_package(make, ledger, tmp_path):
    client = FakeProcore()
    approved(make, ledger, client)
    before_run = _copy_ledger(tmp_path, ledger, "before.sqlite")
    client.raises["sync_pco_lines"] = ProcoreError(500, "PATCH", "/sync", "boom", "req-9")
    desired = make(amended(quantity="12", amount="30.00"))
    run(client, ledger, desired)
    [package] = client.packages
    assert pco_lines(client, package) == []
    del client.raises["sync_pco_lines"]
    for lost in (before_run, Ledger(f"sqlite:///{tmp_path / 'empty.sqlite'}")):
        _, outcomes = run(client, lost, desired, run_id="rerun")
        assert outcomes[0].action == "change_order" and outcomes[0].status == "synced"
        assert client.packages == [package]  # found by its title, not created twice
        assert [(x["quantity"], x["amount"]) for x in pco_lines(client, package)] == [
            ("2", "5.00")]
        lost.dispose()
    assert client.names().count("create_package") == 1


def test_lines_written_but_ledger_not_updated_sends_nothing(make, ledger, tmp_path):
    client = FakeProcore()
    approved(make, ledger, client)
    before_run = _copy_ledger(tmp_path, ledger, "before.sqlite")
    desired = make(amended(quantity="12", amount="30.00"))
    run(client, ledger, desired)
    client.calls.clear()
    _, outcomes = run(client, before_run, desired, run_id="rerun")
    assert outcomes[0].status == "synced"
    assert "Procore already holds this version" in outcomes[0].changes[-1]
    assert len(client.packages) == 1
    assert not {"create_package", "sync_pco_lines"} & set(client.names())
    before_run.dispose()


def test_a_lost_ledger_keeps_the_approval_and_creates_nothing(make, ledger, tmp_path):
    client = FakeProcore()
    contract_id = approved(make, ledger, client)
    run(client, ledger, make(amended(quantity="12", amount="30.00")))
    client.calls.clear()
    empty = Ledger(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    _, outcomes = run(client, empty, make(amended(quantity="12", amount="30.00")), run_id="r")
    assert client.statuses[contract_id] == "Approved"
    assert outcomes[0].status == "synced"
    assert "commitment already Approved in Procore: status kept" in outcomes[0].changes
    assert [c[0] for c in client.calls].count("sync_contracts") == 1
    assert "status" not in client.calls[0][2][0]
    assert len(client.packages) == 1 and "create_package" not in client.names()
    empty.dispose()


def test_a_lost_ledger_on_an_unlocked_commitment_with_change_orders_counts_nothing_twice(
        make, ledger, tmp_path):
    client = FakeProcore()
    contract_id = approved(make, ledger, client)
    run(client, ledger, make(amended(quantity="12", amount="30.00")))
    client.statuses[contract_id] = "Draft"  # un-approved by a project manager
    client.calls.clear()
    empty = Ledger(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    _, outcomes = run(client, empty, make(amended(quantity="12", amount="30.00")), run_id="r")
    assert outcomes[0].status == "synced"
    assert "sync_lines" not in client.names()  # the SOV would count the +2 twice
    assert client.sov[contract_id]["X3:PO:PO1:1000"]["quantity"] == "10"
    assert len(client.packages) == 1 and "create_package" not in client.names()
    assert empty.states(ENTITY)["PO1"].summary["change_orders"] is True
    empty.dispose()


def test_a_new_status_other_than_procores_default_is_set_after_the_create(make, ledger):
    client = FakeProcore()
    plan = plan_commitment_writes(make(simple_po("PO1")), {}, new_status="Out For Signature")
    CommitmentWriter(client, ledger, "r").run(plan)
    syncs = [c[2] for c in client.calls if c[0] == "sync_contracts"]
    assert "status" not in syncs[0][0]
    assert syncs[1] == [{"origin_id": "X3:PO:PO1", "status": "Out For Signature"}]
    assert client.statuses[client.contract_ids["X3:PO:PO1"]] == "Out For Signature"


def test_an_x3_revert_gets_a_new_package_and_leaves_the_first_alone(make, ledger):
    client = FakeProcore()
    approved(make, ledger, client)
    for n, (quantity, amount) in enumerate([("12", "30.00"), ("15", "37.50"), ("12", "30.00")]):
        run(client, ledger, make(amended(quantity=quantity, amount=amount)), run_id=f"r{n}")
    assert [[(x["quantity"], x["amount"]) for x in pco_lines(client, p)]
            for p in client.packages] == [[("2", "5.00")], [("3", "7.50")], [("-3", "-7.50")]]
    assert len({p["title"] for p in client.packages}) == 3


def test_a_rejected_package_is_not_created_again(make, ledger, tmp_path):
    client = FakeProcore()
    approved(make, ledger, client)
    desired = make(amended(quantity="12", amount="30.00"))
    run(client, ledger, desired)
    client.packages[0]["status"] = "rejected"
    empty = Ledger(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    _, outcomes = run(client, empty, desired, run_id="r")
    assert outcomes[0].status == "held"
    assert (f"change order package #1 '{client.packages[0]['title']}' for this X3 version is "
            "rejected in Procore, so it is not created again") in outcomes[0].reason
    assert len(client.packages) == 1
    empty.dispose()


def test_a_refused_header_on_an_approved_commitment_holds(make, ledger):
    client = FakeProcore()
    approved(make, ledger, client)
    client.header_errors["X3:PO:PO1"] = {"vendor_id": ["cannot be changed"]}
    _, outcomes = run(client, ledger, make(simple_po("PO1", supplier_code="SUP002")))
    assert outcomes[0].status == "held"
    assert ("the commitment is Approved in Procore and Procore refused the contract update "
            "(vendor_id: cannot be changed)") in outcomes[0].reason
    assert client.names() == ["sync_contracts", "show_contract"]
    client.statuses[client.contract_ids["X3:PO:PO1"]] = "Draft"
    _, outcomes = run(client, ledger, make(simple_po("PO1", supplier_code="SUP002")), run_id="r")
    assert (outcomes[0].status, outcomes[0].reason) == (
        "failed", "Procore rejected the contract: vendor_id: cannot be changed")


def test_once_it_has_change_orders_an_unlocked_commitment_still_gets_change_orders(make, ledger):
    client = FakeProcore()
    contract_id = approved(make, ledger, client)
    run(client, ledger, make(amended(quantity="12", amount="30.00")))
    assert ledger.states(ENTITY)["PO1"].summary["change_orders"] is True
    client.statuses[contract_id] = "Draft"  # un-approved by a project manager
    client.calls.clear()
    _, outcomes = run(client, ledger, make(amended(quantity="15", amount="37.50")), run_id="r3")
    assert outcomes[0].action == "change_order"
    assert "sync_lines" not in client.names()  # the SOV would count the +2 twice
    assert client.sov[contract_id]["X3:PO:PO1:1000"]["quantity"] == "10"
    assert [(x["quantity"], x["amount"]) for x in pco_lines(client, client.packages[1])] == [
        ("3", "7.50")]
    assert outcomes[0].changes[-1].startswith(
        "the commitment carries change orders from Sage X3: change order package #2")
    # a header-only change keeps the mark
    run(client, ledger, make(amended(revision=3, quantity="15", amount="37.50")), run_id="r4")
    assert ledger.states(ENTITY)["PO1"].summary["change_orders"] is True
