"""Compare desired commitments with the ledger, then write only the difference.

`plan_commitment_writes` is pure: desired state + ledger state in, a plan out.
`CommitmentWriter` executes a plan with a ProcoreClient and records every
outcome in the ledger. Everything is keyed by `origin_id` and sent through
Procore's create-or-update `sync` endpoints, so a re-run after any crash
updates what exists instead of creating a duplicate. Amendments to Approved
commitments become change orders (`mlc_dagster.defs.purchase_orders.change_orders`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from mlc_dagster.common.payload import WriteOutcome, clean_text, contract_origin_id, error_text
from mlc_dagster.defs.purchase_orders.adoption import Adoption
from mlc_dagster.defs.purchase_orders.change_orders import (
    CO_MARK,
    NOT_COUNTED_PACKAGE_STATUSES,
    HeldLine,
    change_order_line_payloads,
    change_order_tier,
    delta_lines,
    delta_texts,
    held_lines,
    is_locked_status,
    line_origin_of,
    money_text,
    package_title,
    pco_package_id,
    target_key,
    title_key,
    total_amount,
    unrepresentable_changes,
)
from mlc_dagster.defs.purchase_orders.desired import DesiredCommitment, DesiredCommitments
from mlc_dagster.ledger.batch import ChangeBatch
from mlc_dagster.ledger.store import Change, Ledger, RecordState
from mlc_dagster.procore_writes.continuation import Progress
from mlc_dagster.resources.breaker import BreakerSettings, CircuitBreaker, is_outage
from mlc_dagster.resources.http_core import WaitTooLong
from mlc_dagster.resources.procore_client import ProcoreError
from mlc_dagster.settings import ProgressSettings

ENTITY = "purchase_order"
LINE_FIELDS = ("description", "quantity", "unit_cost", "amount", "uom", "cost_code_id",
               "line_item_type_id")
HEADER_FIELDS = ("number", "title", "vendor_id", "contract_date", "origin_data")
SYNC_BATCH = 1000


@dataclass
class CommitmentWrite:
    desired: DesiredCommitment
    state: RecordState | None
    action: str  # create | update | inactivate
    send_header: bool
    status: str | None
    line_updates: list[dict]
    line_deletes: list[tuple[str, int | None]]
    changes: list[str]
    deleted: bool = False  # the PO is gone from X3
    adoption: Adoption | None = None  # takes over a hand-made twin (defs/purchase_orders/adoption.py)

    @property
    def po_number(self) -> str:
        return self.desired.po_number


@dataclass
class CommitmentPlan:
    writes: list[CommitmentWrite]
    unchanged: list[str]
    new_holds: list[Change]
    superseded: list[Change] = field(default_factory=list)
    scans: list[Change] = field(default_factory=list)  # projects read before a first write


def plan_commitment_writes(desired: DesiredCommitments, states: dict[str, RecordState], *,
                           new_status: str = "Draft", inactive_status: str = "Closed",
                           only_keys: set[str] | None = None, replay: bool = False,
                           deleted_keys: set[str] | None = None) -> CommitmentPlan:
    """What to send so Procore matches the desired state; nothing for unchanged POs.

    `only_keys` restricts the plan (replay of given records). A `deferred` record (not tried:
    Procore was unavailable) is planned like a failed one, from the summary and commitment id
    it kept. With `replay`, a failed record whose X3 version moved on since the failure gets
    a `superseded` event: its stale payload is not sent, the current version is.
    `deleted_keys` are POs gone from X3 (found by a full read): their commitments are set to
    the inactive status.
    """
    writes, unchanged, superseded = [], [], []
    for commitment in desired.commitments:
        if only_keys is not None and commitment.po_number not in only_keys:
            continue
        state = states.get(commitment.po_number)
        if state and state.status == "synced" and state.content_hash == commitment.hash:
            unchanged.append(commitment.po_number)
            continue
        write = _plan_one(commitment, state, new_status, inactive_status)
        if replay and state and state.status in ("failed", "deferred"):
            write.action = "replay"
            # a deferred record was never sent: there is no stale payload to supersede
            if (state.status == "failed" and state.x3_stamp
                    and state.x3_stamp != commitment.x3_stamp):
                superseded.append(Change(
                    entity=ENTITY, key=commitment.po_number, status="superseded",
                    action="supersede", keep_state=True,
                    reason=(f"X3 changed since the failure ({state.x3_stamp} -> "
                            f"{commitment.x3_stamp}): the stale payload is not sent, "
                            "the current version is"),
                    changes={"stale_payload": state.payload}))
        writes.append(write)
    for key in sorted(deleted_keys or ()):
        state = states.get(key)
        if only_keys is not None and key not in only_keys:
            continue
        if state and state.procore_id and not (state.summary or {}).get("deleted"):
            writes.append(_plan_deletion(state, inactive_status))

    new_holds = []
    for po, reason in desired.held_reasons().items():
        if only_keys is not None and po not in only_keys:
            continue
        state = states.get(po)
        if state and state.status == "held" and state.reason == reason:
            continue  # already recorded; don't repeat the event every poll
        new_holds.append(Change(
            entity=ENTITY, key=po, status="held", action="hold", reason=reason,
            procore_id=state.procore_id if state else None,
            project_id=state.project_id if state else None,
            content_hash=None, summary=state.summary if state else None,
            x3_stamp=_stamp_of(desired, po),
        ))
    return CommitmentPlan(writes, unchanged, new_holds, superseded)


def _plan_deletion(state: RecordState, inactive_status: str) -> CommitmentWrite:
    """A PO that disappeared from X3: keep its commitment, mark it inactive."""
    summary = dict(state.summary or {})
    # A PO whose lines never got through has no stored header: its origin_id is enough.
    header = dict(summary.get("header") or {"origin_code": state.key, "number": state.key})
    header["origin_id"] = contract_origin_id(state.key)
    lines = [dict(info.get("fields", {}), origin_id=origin)
             for origin, info in summary.get("lines", {}).items()]
    desired = DesiredCommitment(
        po_number=state.key, project_id=int(state.project_id), project_code="",
        x3_stamp=state.x3_stamp or "", revision=-1, closed=True, header=header, lines=lines)
    return CommitmentWrite(desired, state, "inactivate", True, inactive_status, [], [],
                           [f"PO deleted in Sage X3: status -> {inactive_status}"], deleted=True)


def _stamp_of(desired: DesiredCommitments, po: str) -> str | None:
    rows = desired.holds[desired.holds["po_number"] == po]["x3_stamp"].dropna()
    return str(rows.iloc[0]) if len(rows) else None


def _plan_one(c: DesiredCommitment, state: RecordState | None, new_status: str,
              inactive_status: str) -> CommitmentWrite:
    summary = (state.summary or {}) if state else {}
    written_lines: dict = summary.get("lines", {})
    exists = bool(state and state.procore_id)
    was_closed = bool(summary.get("closed"))
    hashes = c.line_hashes

    if not exists:
        return CommitmentWrite(c, state, "create", True, inactive_status if c.closed else new_status,
                               list(c.lines), [], [f"created with {len(c.lines)} line(s)"])

    changes = _header_changes(summary.get("header", {}), c.header)
    send_header = summary.get("header_hash") != c.header_hash
    status = None
    action = "update"
    if c.closed and not was_closed:
        status, action = inactive_status, "inactivate"
        changes.append(f"closed in Sage X3: status -> {inactive_status}")
    elif was_closed and not c.closed:
        status = new_status
        changes.append(f"reopened in Sage X3: status -> {new_status}")

    line_updates = []
    for line in c.lines:
        before = written_lines.get(line["origin_id"])
        if before is None:
            line_updates.append(line)
            changes.append(f"line {_line_no(line['origin_id'])} added")
        elif before.get("hash") != hashes[line["origin_id"]]:
            line_updates.append(line)
            changes.extend(_line_changes(line, before))
    line_deletes = [(origin, info.get("id")) for origin, info in written_lines.items()
                    if origin not in hashes]
    changes.extend(f"line {_line_no(origin)} removed" for origin, _ in line_deletes)
    return CommitmentWrite(c, state, action, send_header or status is not None, status,
                           line_updates, line_deletes, changes or ["re-sent (previous attempt failed)"])


def _line_no(origin_id: str) -> str:
    return origin_id.rsplit(":", 1)[-1]


def _header_changes(before: dict, after: dict) -> list[str]:
    out = []
    for key in HEADER_FIELDS:
        if before.get(key) != after.get(key):
            if key == "origin_data":
                b, a = json.loads(before.get(key) or "{}"), json.loads(after.get(key) or "{}")
                if b.get("revision") != a.get("revision"):
                    out.append(f"X3 revision {b.get('revision')} -> {a.get('revision')}")
            else:
                out.append(f"{key} {before.get(key)!r} -> {after.get(key)!r}")
    return out


def _line_changes(line: dict, before: dict) -> list[str]:
    fields = before.get("fields", {})
    return [f"line {_line_no(line['origin_id'])}: {key} {fields.get(key)} -> {line.get(key)}"
            for key in LINE_FIELDS if fields.get(key) != line.get(key)]


def _summary(c: DesiredCommitment, line_ids: dict[str, int | None], deleted: bool = False,
             change_orders: bool = False, unlabelled: dict[str, int] | None = None,
             adopted: bool = False) -> dict:
    hashes = c.line_hashes
    summary = {
        "header_hash": c.header_hash, "closed": c.closed, "header": c.header, "deleted": deleted,
        "lines": {line["origin_id"]: {"hash": hashes[line["origin_id"]],
                                      "id": line_ids.get(line["origin_id"]),
                                      "fields": {k: line.get(k) for k in LINE_FIELDS}}
                  for line in c.lines},
    }
    if change_orders:  # Procore holds change order lines of ours on top of the SOV
        summary["change_orders"] = True
    if unlabelled:  # adopted lines of a locked twin, known by id only (no origin_id yet)
        summary["unlabelled"] = unlabelled
    if adopted:  # a hand-made twin we took over (keeps its accounting method)
        summary["adopted"] = True
    return summary


def _unlabelled(state: RecordState | None) -> dict[str, int]:
    return dict((state.summary or {}).get("unlabelled") or {}) if state else {}


def _has_change_orders(state: RecordState | None) -> bool:
    return bool(state and (state.summary or {}).get("change_orders"))


def _names_a_field(errors) -> bool:
    """True when Procore's errors point at fields we sent (a validation error), not at the
    record as a whole (`base`): decided from the error's structure, never its wording."""
    return isinstance(errors, dict) and any(key != "base" for key in errors)


LOCKED = "approved commitment locked"


class CommitmentWriter:
    """Executes a plan against Procore; records each PO's outcome in the ledger as it goes.

    When Procore refuses a schedule-of-values edit, the commitment's status decides (from the
    header-sync entity Procore returned, else a show GET), never the wording of the error:
    Approved or Complete with every line refused as a whole record -> `approved_policy`:
    `change_order` sends the amendment as a change order package + potential change order
    (single-tier projects; see `change_orders`), `hold` holds the PO with the reason. Any
    other refusal is an ordinary failure carrying Procore's message.

    Writes go project by project (that project's header sync, then its POs' lines), so an
    outage leaves at most one project's headers without their lines. Each record's outcome
    feeds the run's circuit breaker (resources/breaker.py); once it opens nothing more is
    sent and every PO not tried yet is recorded `deferred` (`deferred` lists them).
    """

    def __init__(self, client, ledger: Ledger, run_id: str | None,
                 log: Callable[[str], None] = lambda _msg: None, flush_every: int = 100,
                 approved_policy: str = "change_order",
                 breaker: CircuitBreaker | None = None,
                 progress_settings: ProgressSettings = ProgressSettings()) -> None:
        if approved_policy not in {"change_order", "hold"}:
            raise ValueError(f"approved policy must be change_order or hold, not {approved_policy!r}")
        self.client = client
        self.log = log
        self.flush_every = flush_every
        self.approved_policy = approved_policy
        self.outcomes: list[WriteOutcome] = []
        self.batch = ChangeBatch(ledger, run_id, every=flush_every)
        self._request_ids: dict[str, str] = {}
        # PO -> the contract as this run's header sync returned it (Procore's Show attributes)
        self._contracts: dict[str, dict] = {}
        # no breaker given: one that never opens (unit tests, callers outside a run)
        self.breaker = breaker or CircuitBreaker(BreakerSettings(records=0))
        self.progress_settings = progress_settings  # MLC_PROGRESS_LOG_SECONDS, ..._HOURLY_LIMIT
        self.deferred: list[str] = []  # POs not tried: Procore unavailable or rate limit
        self.over_limit: list[str] = []  # POs beyond the per-run limit, deferred untried
        self.progress: dict = {}  # written / remaining / rate-limit window / ETA, at the end
        self._recorded: set[str] = set()  # POs with an outcome in this run
        self._mark = 0  # Procore calls made before the current record (attempt counting)

    def run(self, plan: CommitmentPlan) -> list[WriteOutcome]:
        recorded = plan.scans + plan.new_holds + plan.superseded
        if recorded:
            self.batch.add(*recorded)
            self.flush()  # recorded before anything is sent
            self.outcomes += [WriteOutcome(ENTITY, change.key, "hold", "held", change.procore_id,
                                           change.reason) for change in plan.new_holds]
        progress = Progress("commitments", len(plan.writes), self.log, self.client,
                            settings=self.progress_settings)
        done = 0
        for writes in _by_project(plan.writes):
            contract_ids: dict[str, int] = {}
            try:
                linked = self._link_twins([w for w in writes if w.adoption is not None])
                contract_ids = self._sync_headers([w for w in writes if w.send_header and (
                    w.adoption is None or w.po_number in linked)])
                for write in writes:
                    if write.po_number in self._recorded:
                        pass  # its header failed, was held or deferred
                    elif self.breaker.stopped:
                        self._defer(write, contract_ids.get(write.po_number))
                    elif write.po_number in contract_ids or not write.send_header:
                        self._mark = self._calls()
                        self._sync_lines(write, contract_ids.get(write.po_number)
                                         or (write.state.procore_id if write.state else None))
                    done += 1
                    if done % self.flush_every == 0:
                        self.flush()
                    progress.tick(done)
            except WaitTooLong as exc:  # nothing was sent by the call that raised it
                self.breaker.pause(exc.resume_at, exc.reason)
                for write in writes:
                    if write.po_number not in self._recorded:
                        self._defer(write, contract_ids.get(write.po_number))
                done = len(self._recorded)
        self.flush()
        self.progress = progress.facts(len(plan.writes) - len(self.deferred))
        if plan.writes:
            progress.tick(len(plan.writes) - len(self.deferred), force=True)
        if self.deferred:
            self.log(f"commitments: {len(self.deferred)} PO(s) deferred: {self.breaker.reason()}")
        return self.outcomes

    def defer(self, writes: list[CommitmentWrite], reason: str) -> None:
        """Record `writes` as deferred without trying them (over the per-run limit)."""
        for write in writes:
            self._defer(write, reason=reason)
        self.flush()

    def flush(self) -> None:
        """Write pending outcomes to the ledger (also called before giving up on a long wait)."""
        self.batch.flush()

    # --- the circuit breaker: outcomes in, `deferred` out ---------------------------------
    def _calls(self) -> int:
        stats = getattr(self.client, "stats", None)
        return int(stats.total_calls) if stats is not None else 0

    def _note(self, exc: ProcoreError, subject: str) -> None:
        """Tell the breaker how Procore answered for `subject` (a PO, or one batch call)."""
        if not is_outage(exc):
            self.breaker.success()  # Procore answered: a refusal is the record's own problem
            return
        attempts = max(1, self._calls() - self._mark)
        if self.breaker.failure(subject, str(exc), attempts):
            self.log(f"commitments: {self.breaker.reason()}; {self.breaker.streak} different "
                     "records failed in a row, so nothing more is sent to Procore in this run "
                     "and every PO not tried yet is deferred to the next run")

    def _defer(self, write: CommitmentWrite, contract_id: int | None = None, *,
               reason: str | None = None) -> None:
        """Not tried: Procore is unavailable. Recorded `deferred` (not failed: no payload, no
        per-record retry), keeping what the ledger knew (summary, commitment id) so the next
        run updates the commitment instead of creating it. One event per record and outage:
        a record still deferred from an earlier run is not recorded again."""
        c, state = write.desired, write.state
        procore_id = contract_id or (state.procore_id if state else None)
        if write.adoption is not None:
            procore_id = None  # as for a failure: the next run adopts the twin again
        (self.deferred if reason is None else self.over_limit).append(c.po_number)
        self._unsent(write, "deferred", "defer", reason or self.breaker.reason(), procore_id,
                     again=bool(state and state.status == "deferred"
                                and state.procore_id == procore_id))

    def _stats_text(self) -> str:
        stats = getattr(self.client, "stats", None)
        if stats is None:
            return ""
        return (f"{stats.total_calls} Procore calls, {stats.rate_limited} x 429, "
                f"{stats.waited_seconds:.1f}s waited for rate limits")

    # --- adoption: our origin_id onto a hand-made twin ------------------------------------
    def _link_twins(self, writes: list[CommitmentWrite]) -> set[str]:
        """Write our origin_id/origin_code onto each twin (OAS: PATCH
        /rest/v1.0/purchase_order_contracts/{id}, whose body has both), so the header sync that
        follows finds it by origin_id like any commitment of ours. Returns the POs linked."""
        linked = set()
        for write in writes:
            header = write.desired.header
            if self.breaker.stopped:
                self._defer(write)
                continue
            if write.adoption.contract.get("origin_id") != header["origin_id"]:
                self._mark = self._calls()
                try:
                    self.client.update_purchase_order_contract(
                        write.desired.project_id, write.adoption.contract_id,
                        {"origin_id": header["origin_id"], "origin_code": header["origin_code"]})
                except ProcoreError as exc:
                    self._fail(write, f"linking hand-made commitment #"
                                      f"{write.adoption.contract.get('number')} failed: {exc}",
                               request_id=exc.request_id, cause=exc)
                    continue
            linked.add(write.po_number)
        return linked

    def _label_lines(self, write: CommitmentWrite, contract_id: int,
                     unlabelled: dict[str, int]) -> None:
        """Our origin_id onto each adopted line item (OAS: PATCH .../line_items/{id}), so the
        line sync updates it instead of adding a second line. Raises ProcoreError."""
        for origin, line_id in sorted(unlabelled.items()):
            self.client.update_contract_line_item(write.desired.project_id, contract_id,
                                                  line_id, {"origin_id": origin})

    # --- headers: one sync call per project per <=1000 POs ------------------------------
    def _sync_headers(self, writes: list[CommitmentWrite]) -> dict[str, int]:
        by_project: dict[int, list[CommitmentWrite]] = defaultdict(list)
        for write in writes:
            by_project[write.desired.project_id].append(write)
        ids: dict[str, int] = {}
        for project_id, group in by_project.items():
            for start in range(0, len(group), SYNC_BATCH):
                chunk = group[start:start + SYNC_BATCH]
                if self.breaker.stopped:
                    for w in chunk:
                        self._defer(w)
                    continue
                self._mark = self._calls()
                updates = [dict(_header_payload(w), **({"status": w.status}
                                                       if w.status and not _status_after(w)
                                                       else {}))
                           for w in chunk]
                try:
                    result = self.client.sync_purchase_order_contracts(project_id, updates)
                except ProcoreError as exc:
                    self._note(exc, f"contract sync of project {project_id}")  # one call
                    for w in chunk:
                        self._fail(w, f"contract sync failed: {exc}", request_id=exc.request_id)
                    continue
                request_id = result.request_ids[-1] if result.request_ids else None
                outcome = result.by_origin_id()
                for w in chunk:
                    item = outcome.get(w.desired.header["origin_id"])
                    if request_id:
                        self._request_ids[w.po_number] = request_id
                    if item is None:
                        self._fail(w, "contract sync returned no result for this PO")
                    elif "errors" in item and "id" not in item:
                        self._header_refused(w, error_text(item["errors"]))
                    else:
                        ids[w.po_number] = int(item["id"])
                        self._contracts[w.po_number] = item
                self._set_new_statuses(project_id, [w for w in chunk if w.po_number in ids
                                                    and _status_after(w)], ids)
        return ids

    def _set_new_statuses(self, project_id: int, writes: list[CommitmentWrite],
                          ids: dict[str, int]) -> None:
        """Status of a contract the ledger did not know, set only once Procore said what it is.

        The ledger may have been lost: the contract may already exist, Approved by a project
        manager. Sending our new-commitment status with the create would undo that approval.
        Procore answers the create-or-update with the contract's status; a locked one keeps it,
        any other gets ours. New contracts already in our status (Procore's default Draft) cost
        no second call.
        """
        updates, pending = [], []
        for w in writes:
            current = self._contracts[w.po_number].get("status")
            if current == w.status:
                continue
            if is_locked_status(current):
                w.changes.append(f"commitment already {current} in Procore: status kept")
                continue
            updates.append({"origin_id": w.desired.header["origin_id"], "status": w.status})
            pending.append(w)
        if not updates:
            return
        try:
            result = self.client.sync_purchase_order_contracts(project_id, updates)
        except ProcoreError as exc:
            self._note(exc, f"contract status sync of project {project_id}")  # one call
            for w in pending:
                ids.pop(w.po_number, None)
                self._fail(w, f"contract status sync failed: {exc}", request_id=exc.request_id)
            return
        outcome = result.by_origin_id()
        for w in pending:
            item = outcome.get(w.desired.header["origin_id"]) or {"errors": "no result"}
            if "errors" in item and "id" not in item:
                ids.pop(w.po_number, None)
                self._fail(w, f"Procore rejected the contract status: {error_text(item['errors'])}")
            else:
                self._contracts[w.po_number] = item

    def _header_refused(self, write: CommitmentWrite, text: str) -> None:
        """A refused header: held when the commitment is locked (Approved / Complete), since
        a change order cannot carry a header change such as the vendor; else a failure."""
        self.breaker.success()  # Procore answered for this record
        procore_id = (write.adoption.contract_id if write.adoption
                      else write.state.procore_id if write.state else None)
        status = None
        if procore_id:
            try:
                status = self.client.purchase_order_contract(write.desired.project_id,
                                                             procore_id).get("status")
            except ProcoreError as exc:
                self._fail(write, f"Procore rejected the contract: {text}; reading it failed: "
                                  f"{exc}", request_id=exc.request_id, cause=exc)
                return
        if is_locked_status(status):
            self._hold(write, f"{LOCKED}: the commitment is {status} in Procore and Procore "
                              f"refused the contract update ({text}); change it in Procore by "
                              "hand or unlock the commitment; the X3 change is kept", procore_id)
        else:
            self._fail(write, f"Procore rejected the contract: {text}")

    # --- lines: one sync call per PO, deletes only for removed lines --------------------
    def _sync_lines(self, write: CommitmentWrite, contract_id: int | None) -> None:
        c = write.desired
        if contract_id is None:
            self._fail(write, "no Procore contract id known for this PO")
            return
        if (write.line_updates or write.line_deletes) and self._carries_change_orders(write):
            self._amend_with_change_orders(write, contract_id)
            return
        adoption = write.adoption
        if adoption is not None and adoption.locked and write.line_updates:
            # A locked twin whose lines differ: the approved-commitment policy (planning held
            # it under MLC_APPROVED_POLICY=hold), here a change order.
            self._locked_twin(write, contract_id)
            return
        line_ids = {o: info.get("id") for o, info in
                    ((write.state.summary or {}).get("lines", {}) if write.state else {}).items()}
        unlabelled = adoption.pairing.unlabelled if adoption else _unlabelled(write.state)
        if adoption is not None:
            line_ids.update(adoption.pairing.line_ids)
        try:
            if unlabelled and (write.line_updates or write.line_deletes):
                self._label_lines(write, contract_id, unlabelled)
                unlabelled = {}
            if write.line_updates:
                result = self.client.sync_contract_line_items(c.project_id, contract_id,
                                                              write.line_updates)
                if result.request_ids:
                    self._request_ids[c.po_number] = result.request_ids[-1]
                refused = {}
                for origin, item in result.by_origin_id().items():
                    if "errors" in item and "id" not in item:
                        refused[origin] = item["errors"]
                    else:
                        line_ids[origin] = int(item["id"])
                if refused:
                    whole = (len(refused) == len(write.line_updates)
                             and not any(map(_names_a_field, refused.values())))
                    text = "; ".join(f"line {_line_no(origin)}: {error_text(errors)}"
                                     for origin, errors in refused.items())
                    self._refused(write, contract_id, text, whole)
                    return
            for origin, line_id in write.line_deletes:
                if line_id is None:
                    line_id = self._find_line_id(c.project_id, contract_id, origin)
                if line_id is not None:
                    self._delete_line(c.project_id, contract_id, line_id)
                line_ids.pop(origin, None)
        except ProcoreError as exc:
            if exc.refused:
                self._refused(write, contract_id, str(exc), not _names_a_field(exc.errors))
            else:
                self._fail(write, f"line item write failed: {exc}", contract_id, exc.request_id,
                           cause=exc)
            return
        self._synced(write, contract_id, line_ids, unlabelled=unlabelled)

    def _locked_twin(self, write: CommitmentWrite, contract_id: int) -> None:
        try:
            contract = self._contract(write, contract_id)
        except ProcoreError as exc:
            self._fail(write, f"reading the adopted commitment failed: {exc}", contract_id,
                       exc.request_id, cause=exc)
            return
        self._change_order(write, contract_id, contract,
                           f"the hand-made commitment is {contract.get('status')}")

    def _refused(self, write: CommitmentWrite, contract_id: int, text: str,
                 whole_record: bool) -> None:
        """Procore refused a line write: the approved policy if the commitment is locked."""
        self.breaker.success()  # Procore answered for this record
        if not whole_record:
            self._fail(write, f"Procore rejected line items: {text}", contract_id)
            return
        try:
            contract = self._contract(write, contract_id)
        except ProcoreError as exc:
            self._fail(write, f"Procore rejected line items: {text}; reading the commitment "
                              f"failed: {exc}", contract_id, exc.request_id, cause=exc)
            return
        status = contract.get("status")
        if not is_locked_status(status):
            self._fail(write, f"Procore rejected line items: {text}", contract_id)
        elif self.approved_policy == "hold":
            self._hold(write, f"{LOCKED}: the commitment is {status} in Procore, which locks its "
                              "schedule of values; the X3 change is kept "
                              f"(MLC_APPROVED_POLICY=hold). Procore said: {text}", contract_id)
        else:
            self._change_order(write, contract_id, contract, f"the commitment is {status}")

    def _carries_change_orders(self, write: CommitmentWrite) -> bool:
        """Whether the commitment carries change orders of ours: the ledger says so, or (a lost
        or older ledger) this run's header-sync entity shows one of our packages. No call."""
        if _has_change_orders(write.state):
            return True
        packages = (self._contracts.get(write.po_number) or {}).get("change_order_packages")
        return any(title_key(p, write.po_number) is not None for p in packages or ())

    def _amend_with_change_orders(self, write: CommitmentWrite, contract_id: int) -> None:
        """A commitment that already carries our change orders keeps getting its amendments
        as change orders, even once unlocked: writing its SOV lines to the X3 values would
        count the earlier change order lines twice."""
        lead = "the commitment carries change orders from Sage X3"
        if self.approved_policy == "hold":
            self._hold(write, f"{LOCKED}: {lead}; the X3 change is kept "
                              "(MLC_APPROVED_POLICY=hold)", contract_id)
            return
        try:
            contract = self._contract(write, contract_id)
        except ProcoreError as exc:
            self._fail(write, f"reading the commitment failed: {exc}", contract_id, exc.request_id,
                       cause=exc)
            return
        self._change_order(write, contract_id, contract, lead)

    def _contract(self, write: CommitmentWrite, contract_id: int) -> dict:
        """The contract as Procore's Show action returns it (status, change-order tier).

        A header sync of this run already answered with it: sync entities "match those
        returned by the Show action" (procore/documentation using_sync_actions.md). A GET
        only without one, or if that entity shows none of the tier arrays after all.
        """
        entity = self._contracts.get(write.po_number)
        if entity is not None and change_order_tier(entity) is not None:
            return entity
        return self.client.purchase_order_contract(write.desired.project_id, contract_id)

    def _synced(self, write: CommitmentWrite, contract_id: int, line_ids: dict,
                action: str | None = None, extra: list[str] | None = None,
                details: dict | None = None, change_orders: bool | None = None,
                unlabelled: dict[str, int] | None = None) -> None:
        c = write.desired
        changes = write.changes + (extra or [])
        if change_orders is None:
            change_orders = _has_change_orders(write.state)
        details = dict(details or {})
        if write.adoption is not None:
            # The audit trail of an adoption: the rule, and the twin before -> after.
            action = "adopt"
            adoption = write.adoption
            line_ids = {**adoption.pairing.line_ids, **line_ids}
            details["adoption"] = {"rule": adoption.rule, "contract_id": adoption.contract_id,
                                   "before": adoption.before(), "after": {
                                       "header": c.header, "lines": c.lines},
                                   "differences": adoption.differences}
            if unlabelled is None and adoption.locked:
                unlabelled = adoption.pairing.unlabelled
        if unlabelled is None:
            unlabelled = _unlabelled(write.state)
        self.breaker.success()
        self._recorded.add(c.po_number)
        self.batch.add(Change(
            entity=ENTITY, key=c.po_number, status="synced", action=action or write.action,
            reason="; ".join(changes), procore_id=contract_id, project_id=c.project_id,
            content_hash=c.hash, x3_stamp=c.x3_stamp,
            summary=_summary(c, line_ids, deleted=write.deleted, change_orders=change_orders,
                             unlabelled=unlabelled, adopted=_adopted(write)),
            changes={"summary": changes, "revision": c.revision, **details},
            request_id=self._request_ids.get(c.po_number),
        ))
        self.outcomes.append(WriteOutcome(ENTITY, c.po_number, action or write.action,
                                          "synced", contract_id, None, changes))

    # --- approved commitments: the amendment becomes a change order ---------------------
    def _change_order(self, write: CommitmentWrite, contract_id: int, contract: dict,
                      lead: str) -> None:
        """Package + PCO line items holding the deltas (single tier), idempotent without the
        ledger: the delta is computed from what Procore holds, and our own package is found
        again by its title key (see `mlc_dagster.defs.purchase_orders.change_orders`)."""
        c = write.desired
        tier = change_order_tier(contract)
        if tier != 1:
            where = (f"project {c.project_id} uses {tier}-tier change orders" if tier else
                     "Procore's commitment shows no change order packages, so the project's "
                     "change-order tier is unknown")
            self._hold(write, f"{LOCKED}: {lead} and {where}; the connector "
                              "creates change orders only on single-tier projects. Enter this "
                              "change as a change order in Procore by hand, or set "
                              "MLC_APPROVED_POLICY=hold; the X3 change is kept", contract_id)
            return
        try:
            procore = self._procore_change_orders(c.project_id, contract_id, _known_lines(write),
                                                  {line["origin_id"]: line.get("description")
                                                   for line in c.lines})
        except ProcoreError as exc:
            self._fail(write, f"reading the change orders of the approved commitment failed: "
                              f"{exc}", contract_id, exc.request_id, cause=exc)
            return
        held = procore.held(c)
        problems = unrepresentable_changes(c.lines, held)
        if problems:
            unlock = "" if _has_change_orders(write.state) else " (or unlock it)"
            self._hold(write, f"{LOCKED}: {lead} and a change order cannot carry these changes "
                              f"faithfully: {'; '.join(problems)}. Change the commitment in "
                              f"Procore by hand{unlock}, or revert them in Sage X3; the X3 change "
                              "is kept", contract_id)
            return
        line_ids = procore.sov_line_ids()
        deltas = delta_lines(c.lines, held)
        if not deltas:
            self._synced(write, contract_id, line_ids, action="change_order", extra=[
                f"{lead}: Procore already holds this version (its line items and change "
                "orders); nothing sent"], change_orders=procore.has_ours(c))
            return
        package, key = procore.own_package(c)
        if package is not None:
            if str(package.get("status") or "").lower() in NOT_COUNTED_PACKAGE_STATUSES:
                self._hold(write, f"{LOCKED}: change order package #{package.get('number')} "
                                  f"'{package.get('title')}' for this X3 version is "
                                  f"{package.get('status')} in Procore, so it is not created "
                                  "again; a person decides (change it in Procore by hand or "
                                  "amend the PO in Sage X3)", contract_id)
                return
            deltas = delta_lines(c.lines, procore.held(c, without=package["id"]))
        try:
            if package is None:
                key = target_key(c.lines, held)
                package = self.client.create_change_order_package(
                    c.project_id, contract_id, _package_body(c, key, deltas))
            pco = procore.pco_of(package["id"]) or self._find_pco(c.project_id, contract_id,
                                                                 package["id"])
            if pco is None:
                self._fail(write, f"change order package #{package.get('number')} has no "
                                  "potential change order to hold its line items",
                           contract_id)
                return
            result = self.client.sync_potential_change_order_line_items(
                c.project_id, int(pco["id"]), change_order_line_payloads(deltas, key))
        except ProcoreError as exc:
            self._fail(write, f"change order for the approved commitment failed: {exc}",
                       contract_id, exc.request_id, cause=exc)
            return
        if result.request_ids:
            self._request_ids[c.po_number] = result.request_ids[-1]
        refused = [f"{origin}: {error_text(item['errors'])}"
                   for origin, item in result.by_origin_id().items()
                   if "errors" in item and "id" not in item]
        if refused:
            self._fail(write, f"Procore rejected the change order line items of package "
                              f"#{package.get('number')}: {'; '.join(refused)}", contract_id)
            return
        total = total_amount(deltas)
        texts = delta_texts(deltas)
        summary = (f"{lead}: change order package #{package.get('number')} "
                   f"'{package.get('title')}' for {total:+.2f}: {'; '.join(texts)}")
        self._synced(write, contract_id, line_ids, action="change_order", extra=[summary],
                     change_orders=True, details={"change_order": {
                         "package_id": package.get("id"), "package_number": package.get("number"),
                         "title": package.get("title"), "potential_change_order_id": pco.get("id"),
                         "total": money_text(total), "lines": texts}})

    def _procore_change_orders(self, project_id: int, contract_id: int,
                               known: dict[int, str] | None = None,
                               descriptions: dict[str, str] | None = None
                               ) -> ProcoreChangeOrders:
        """One read of everything the delta depends on: SOV lines, packages, PCOs, PCO lines.

        `known`: line item id -> X3 line origin_id for adopted lines of a locked twin, which
        carry no origin_id (Procore refuses any write to a locked schedule of values). Their
        hand-typed descriptions stay as typed and do not count as a change (`descriptions`)."""
        known, descriptions = known or {}, descriptions or {}
        sov = []
        for item in self.client.contract_line_items(project_id, contract_id):
            origin = known.get(int(item["id"]))
            if origin is not None and not item.get("origin_id"):
                item = dict(item, origin_id=origin,
                            description=descriptions.get(origin, item.get("description")))
            sov.append(item)
        packages = sorted(self.client.change_order_packages(project_id, contract_id),
                          key=lambda p: int(p["id"]))
        pcos = self.client.potential_change_orders(project_id, contract_id)
        by_package = {pco_package_id(p): p for p in pcos if pco_package_id(p) is not None}
        lines = {}
        for package in packages:
            status = str(package.get("status") or "").lower()
            pco = by_package.get(int(package["id"]))
            if pco is not None and status not in NOT_COUNTED_PACKAGE_STATUSES:
                lines[int(package["id"])] = sorted(
                    self.client.potential_change_order_line_items(project_id, int(pco["id"])),
                    key=lambda item: int(item["id"]))
        return ProcoreChangeOrders(sov, packages, by_package, lines)

    def _find_pco(self, project_id: int, contract_id: int, package_id: int) -> dict | None:
        """The PCO Procore created with the package (tutorial_change_orders.md, single tier)."""
        for pco in self.client.potential_change_orders(project_id, contract_id):
            if pco_package_id(pco) == int(package_id):
                return pco
        return None

    def _delete_line(self, project_id: int, contract_id: int, line_id: int) -> None:
        """Delete a removed line; 404 means an earlier attempt already did (its answer was lost)."""
        try:
            self.client.delete_contract_line_item(project_id, contract_id, line_id)
        except ProcoreError as exc:
            if exc.status != 404:
                raise

    def _find_line_id(self, project_id: int, contract_id: int, origin_id: str) -> int | None:
        for item in self.client.contract_line_items(project_id, contract_id):
            if item.get("origin_id") == origin_id:
                return int(item["id"])
        return None

    def _fail(self, write: CommitmentWrite, reason: str, contract_id: int | None = None,
              request_id: str | None = None, cause: ProcoreError | None = None) -> None:
        """Failed with the reason and the payload for replay. `cause`: the error of this PO's
        own call, which the breaker counts (an error shared by a batch is counted once by
        the caller)."""
        c = write.desired
        if cause is not None:
            self._note(cause, c.po_number)
        self._recorded.add(c.po_number)
        procore_id = contract_id or (write.state.procore_id if write.state else None)
        if write.adoption is not None:
            # Not linked for sure: the next run adopts the twin again (never a blind create).
            procore_id = None
        self.batch.add(Change(
            entity=ENTITY, key=c.po_number, status="failed", action="fail", reason=reason,
            procore_id=procore_id, project_id=c.project_id, content_hash=None, x3_stamp=c.x3_stamp,
            summary=write.state.summary if write.state else None,
            payload={"project_id": c.project_id, "header": c.header, "status": write.status,
                     "line_updates": write.line_updates,
                     "line_deletes": [o for o, _ in write.line_deletes]},
            changes={"summary": write.changes},
            request_id=request_id or self._request_ids.get(c.po_number),
        ))
        self.outcomes.append(WriteOutcome(ENTITY, c.po_number, write.action, "failed",
                                          procore_id, reason, write.changes))

    def _hold(self, write: CommitmentWrite, reason: str, contract_id: int | None = None) -> None:
        """Held with the reason; the X3 change stays pending (no content hash), and the same
        hold is not appended again on every run that retries it."""
        state = write.state
        self._unsent(write, "held", "hold", reason,
                     contract_id or (state.procore_id if state else None),
                     again=bool(state and state.status == "held" and state.reason == reason))

    def _unsent(self, write: CommitmentWrite, status: str, action: str, reason: str,
                procore_id: int | None, *, again: bool) -> None:
        """A PO with nothing sent for it this run (held or deferred): its outcome, and one
        ledger event unless `again` (the same outcome is already recorded). No content hash,
        so the X3 change stays pending; the ledger's summary is kept."""
        c, state = write.desired, write.state
        self._recorded.add(c.po_number)
        self.outcomes.append(WriteOutcome(ENTITY, c.po_number, write.action, status,
                                          procore_id, reason, write.changes))
        if again:
            return
        self.batch.add(Change(
            entity=ENTITY, key=c.po_number, status=status, action=action, reason=reason,
            procore_id=procore_id, project_id=c.project_id, content_hash=None, x3_stamp=c.x3_stamp,
            summary=state.summary if state else None,
            changes={"summary": write.changes}, request_id=self._request_ids.get(c.po_number),
        ))


def _by_project(writes: list[CommitmentWrite]) -> list[list[CommitmentWrite]]:
    """The writes grouped by project, in the order projects first appear."""
    groups: dict[int, list[CommitmentWrite]] = {}
    for write in writes:
        groups.setdefault(write.desired.project_id, []).append(write)
    return list(groups.values())


def _adopted(write: CommitmentWrite) -> bool:
    return write.adoption is not None or bool(write.state and (write.state.summary or {}).get(
        "adopted"))


def _header_payload(write: CommitmentWrite) -> dict:
    """The header to sync. An adopted twin keeps its own accounting method: Procore does not
    let a commitment with line items change it (docs/api-assumptions.md §1.6)."""
    if _adopted(write):
        return {k: v for k, v in write.desired.header.items() if k != "accounting_method"}
    return write.desired.header


def _known_lines(write: CommitmentWrite) -> dict[int, str]:
    """Line item id -> X3 line origin_id of adopted lines known by id only."""
    known = {int(line_id): origin for origin, line_id in _unlabelled(write.state).items()}
    if write.adoption is not None:
        known.update({line_id: origin for origin, line_id in
                      write.adoption.pairing.unlabelled.items()})
    return known


def _status_after(write: CommitmentWrite) -> bool:
    """A contract the ledger does not know gets its new-commitment status only after Procore
    answered (a closed PO's inactive status goes at once: X3 closing wins over an approval,
    as it does for a known contract)."""
    return (bool(write.status) and not write.desired.closed
            and not (write.state and write.state.procore_id))


def _package_body(c: DesiredCommitment, key: str, deltas: list[dict]) -> dict:
    """OAS: POST /rest/v1.0/change_order_packages `change_order` (origin_code is shown to users
    next to the change order's number: tutorial_financial_tools.md, "CCOs")."""
    return {
        "title": package_title(c.po_number, c.revision, key),
        "description": clean_text(f"Sage X3 PO {c.po_number} revision {c.revision}: "
                                  + "; ".join(delta_texts(deltas)), 1000),
        "origin_code": f"{c.po_number} rev {c.revision}",
        "origin_id": f"{c.header['origin_id']}{CO_MARK}{key}",
    }


@dataclass
class ProcoreChangeOrders:
    """What one commitment holds in Procore: SOV line items, packages, PCOs and PCO lines."""

    sov: list[dict]
    packages: list[dict]
    pco_by_package: dict[int, dict]
    lines_by_package: dict[int, list[dict]]  # counted packages only

    def held(self, c: DesiredCommitment, without: int | None = None) -> dict[str, HeldLine]:
        items = [item for package_id, lines in self.lines_by_package.items()
                 if package_id != without for item in lines]
        return held_lines(f"{c.header['origin_id']}:", self.sov, items)

    def has_ours(self, c: DesiredCommitment) -> bool:
        """Whether any counted change order carries a line of this PO."""
        prefix = f"{c.header['origin_id']}:"
        return any(str(line_origin_of(item.get("origin_id")) or "").startswith(prefix)
                   for lines in self.lines_by_package.values() for item in lines)

    def sov_line_ids(self) -> dict[str, int]:
        return {str(item["origin_id"]): int(item["id"]) for item in self.sov
                if item.get("origin_id")}

    def pco_of(self, package_id: int) -> dict | None:
        return self.pco_by_package.get(int(package_id))

    def own_package(self, c: DesiredCommitment) -> tuple[dict | None, str | None]:
        """Our package for exactly this X3 version on top of what Procore held without it:
        one created just before a crash, reused instead of created twice."""
        for package in self.packages:
            key = title_key(package, c.po_number)
            if key is not None and key == target_key(c.lines, self.held(c, without=package["id"])):
                return package, key
        return None, None
