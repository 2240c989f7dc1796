"""Compare desired commitments with the ledger, then write only the difference.

`plan_commitment_writes` is pure: desired state + ledger state in, a plan out.
`CommitmentWriter` executes a plan with a ProcoreClient and records every
outcome in the ledger. Everything is keyed by `origin_id` and sent through
Procore's create-or-update `sync` endpoints, so a re-run after any crash
updates what exists instead of creating a duplicate.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from mlc_dagster.ledger.batch import ChangeBatch
from mlc_dagster.ledger.store import Change, Ledger, RecordState
from mlc_dagster.mapping.commitments import (
    DesiredCommitment,
    DesiredCommitments,
    contract_origin_id,
)
from mlc_dagster.resources.procore_client import ProcoreError

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

    @property
    def po_number(self) -> str:
        return self.desired.po_number


@dataclass
class CommitmentPlan:
    writes: list[CommitmentWrite]
    unchanged: list[str]
    new_holds: list[Change]
    superseded: list[Change] = field(default_factory=list)


def plan_commitment_writes(desired: DesiredCommitments, states: dict[str, RecordState], *,
                           new_status: str = "Draft", inactive_status: str = "Closed",
                           only_keys: set[str] | None = None, replay: bool = False,
                           deleted_keys: set[str] | None = None) -> CommitmentPlan:
    """What to send so Procore matches the desired state; nothing for unchanged POs.

    `only_keys` restricts the plan (replay of given records). With `replay`, a failed
    record whose X3 version moved on since the failure gets a `superseded` event: its
    stale payload is not sent, the current version is. `deleted_keys` are POs gone from
    X3 (found by a full read): their commitments are set to the inactive status.
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
        if replay and state and state.status == "failed":
            write.action = "replay"
            if state.x3_stamp and state.x3_stamp != commitment.x3_stamp:
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


def _summary(c: DesiredCommitment, line_ids: dict[str, int | None], deleted: bool = False) -> dict:
    hashes = c.line_hashes
    return {
        "header_hash": c.header_hash, "closed": c.closed, "header": c.header, "deleted": deleted,
        "lines": {line["origin_id"]: {"hash": hashes[line["origin_id"]],
                                      "id": line_ids.get(line["origin_id"]),
                                      "fields": {k: line.get(k) for k in LINE_FIELDS}}
                  for line in c.lines},
    }


def _error_text(errors) -> str:
    if isinstance(errors, dict):
        return "; ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
                         for k, v in errors.items())
    return str(errors)


def _is_lock(text: str) -> bool:
    """Procore's refusal to edit an Approved commitment's schedule of values."""
    return "locked" in text.lower()


@dataclass
class WriteOutcome:
    po_number: str
    project_id: int
    action: str
    status: str
    procore_id: int | None = None
    reason: str | None = None
    changes: list[str] = field(default_factory=list)


class CommitmentWriter:
    """Executes a plan against Procore; records each PO's outcome in the ledger as it goes.

    `approved_policy` decides what happens when Procore refuses a schedule-of-values edit
    because the commitment is Approved: `change_order` sends the delta as a commitment
    change order, `hold` holds the PO with that reason.
    """

    def __init__(self, client, ledger: Ledger, run_id: str | None,
                 log: Callable[[str], None] = lambda _msg: None, flush_every: int = 100,
                 approved_policy: str = "change_order") -> None:
        if approved_policy not in {"change_order", "hold"}:
            raise ValueError(f"approved policy must be change_order or hold, not {approved_policy!r}")
        self.client = client
        self.ledger = ledger
        self.run_id = run_id
        self.log = log
        self.flush_every = flush_every
        self.approved_policy = approved_policy
        self.outcomes: list[WriteOutcome] = []
        self.batch = ChangeBatch(ledger, run_id, every=flush_every)
        self._request_ids: dict[str, str] = {}

    def run(self, plan: CommitmentPlan) -> list[WriteOutcome]:
        recorded = plan.new_holds + plan.superseded
        if recorded:
            self.ledger.apply(recorded, self.run_id)
            for change in plan.new_holds:
                self.outcomes.append(WriteOutcome(change.key, change.project_id or 0, "hold",
                                                  "held", change.procore_id, change.reason))
        contract_ids = self._sync_headers([w for w in plan.writes if w.send_header])
        total = len(plan.writes)
        for done, write in enumerate(plan.writes, start=1):
            if write.po_number in contract_ids or not write.send_header:
                self._sync_lines(write, contract_ids.get(write.po_number)
                                 or (write.state.procore_id if write.state else None))
            if done % self.flush_every == 0 or done == total:
                self.flush()
                self.log(f"commitments: {done}/{total} POs written; {self._stats_text()}")
        self.flush()
        return self.outcomes

    def flush(self) -> None:
        """Write pending outcomes to the ledger (also called before giving up on a long wait)."""
        self.batch.flush()

    def _stats_text(self) -> str:
        stats = getattr(self.client, "stats", None)
        if stats is None:
            return ""
        return (f"{stats.total_calls} Procore calls, {stats.rate_limited} x 429, "
                f"{stats.waited_seconds:.1f}s waited for rate limits")

    # --- headers: one sync call per project per <=1000 POs ------------------------------
    def _sync_headers(self, writes: list[CommitmentWrite]) -> dict[str, int]:
        by_project: dict[int, list[CommitmentWrite]] = defaultdict(list)
        for write in writes:
            by_project[write.desired.project_id].append(write)
        ids: dict[str, int] = {}
        for project_id, group in by_project.items():
            for start in range(0, len(group), SYNC_BATCH):
                chunk = group[start:start + SYNC_BATCH]
                updates = [dict(w.desired.header, **({"status": w.status} if w.status else {}))
                           for w in chunk]
                try:
                    result = self.client.sync_purchase_order_contracts(project_id, updates)
                except ProcoreError as exc:
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
                        text = _error_text(item["errors"])
                        if _is_lock(text):
                            self._hold_locked(w, text)
                        else:
                            self._fail(w, f"Procore rejected the contract: {text}")
                    else:
                        ids[w.po_number] = int(item["id"])
        return ids

    # --- lines: one sync call per PO, deletes only for removed lines --------------------
    def _sync_lines(self, write: CommitmentWrite, contract_id: int | None) -> None:
        c = write.desired
        if contract_id is None:
            self._fail(write, "no Procore contract id known for this PO")
            return
        line_ids = {o: info.get("id") for o, info in
                    ((write.state.summary or {}).get("lines", {}) if write.state else {}).items()}
        try:
            if write.line_updates:
                result = self.client.sync_contract_line_items(c.project_id, contract_id,
                                                              write.line_updates)
                if result.request_ids:
                    self._request_ids[c.po_number] = result.request_ids[-1]
                problems = []
                for origin, item in result.by_origin_id().items():
                    if "errors" in item and "id" not in item:
                        problems.append(f"line {_line_no(origin)}: {_error_text(item['errors'])}")
                    else:
                        line_ids[origin] = int(item["id"])
                if problems:
                    self._refused(write, contract_id, "; ".join(problems))
                    return
            for origin, line_id in write.line_deletes:
                if line_id is None:
                    line_id = self._find_line_id(c.project_id, contract_id, origin)
                if line_id is not None:
                    self._delete_line(c.project_id, contract_id, line_id)
                line_ids.pop(origin, None)
        except ProcoreError as exc:
            if exc.status == 422 and _is_lock(str(exc)):
                self._refused(write, contract_id, str(exc))
            else:
                self._fail(write, f"line item write failed: {exc}", contract_id, exc.request_id)
            return
        self._synced(write, contract_id, line_ids)

    def _refused(self, write: CommitmentWrite, contract_id: int, text: str) -> None:
        if not _is_lock(text):
            self._fail(write, f"Procore rejected line items: {text}", contract_id)
        elif self.approved_policy == "change_order":
            self._change_order(write, contract_id)
        else:
            self._hold_locked(write, text, contract_id)

    def _synced(self, write: CommitmentWrite, contract_id: int, line_ids: dict,
                action: str | None = None, extra: list[str] | None = None) -> None:
        c = write.desired
        changes = write.changes + (extra or [])
        self.batch.add(Change(
            entity=ENTITY, key=c.po_number, status="synced", action=action or write.action,
            reason="; ".join(changes), procore_id=contract_id, project_id=c.project_id,
            content_hash=c.hash, x3_stamp=c.x3_stamp,
            summary=_summary(c, line_ids, deleted=write.deleted),
            changes={"summary": changes, "revision": c.revision},
            request_id=self._request_ids.get(c.po_number),
        ))
        self.outcomes.append(WriteOutcome(c.po_number, c.project_id, action or write.action,
                                          "synced", contract_id, None, changes))

    # --- approved commitments: the delta becomes a commitment change order -------------
    def _change_order(self, write: CommitmentWrite, contract_id: int) -> None:
        c = write.desired
        before = ((write.state.summary or {}).get("lines", {}) if write.state else {})
        lines = change_order_lines(c, before)
        if not lines:
            self._synced(write, contract_id, {o: i.get("id") for o, i in before.items()})
            return
        origin_id = f"{c.header['origin_id']}:CO:{c.revision}:{c.hash[:10]}"
        try:
            existing = [co for co in self.client.commitment_change_orders(c.project_id)
                        if co.get("origin_id") == origin_id]
            if not existing:  # a re-run after a crash must not create it twice
                self.client.create_commitment_change_order(c.project_id, {"change_order": {
                    "contract_id": contract_id, "origin_id": origin_id,
                    "title": f"Sage X3 revision {c.revision} of PO {c.po_number}",
                    "description": "; ".join(write.changes)[:1000], "line_items": lines}})
        except ProcoreError as exc:
            self._fail(write, f"change order for approved commitment failed: {exc}", contract_id,
                       exc.request_id)
            return
        line_ids = {o: i.get("id") for o, i in before.items()}
        total = sum(float(line["amount"]) for line in lines)
        self._synced(write, contract_id, line_ids, action="change_order",
                     extra=[f"commitment Approved: change order {origin_id} for {total:+.2f}"])

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
              request_id: str | None = None) -> None:
        c = write.desired
        procore_id = contract_id or (write.state.procore_id if write.state else None)
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
        self.outcomes.append(WriteOutcome(c.po_number, c.project_id, write.action, "failed",
                                          procore_id, reason, write.changes))

    def _hold_locked(self, write: CommitmentWrite, detail: str,
                     contract_id: int | None = None) -> None:
        c = write.desired
        reason = f"approved commitment locked: {detail}"
        self.batch.add(Change(
            entity=ENTITY, key=c.po_number, status="held", action="hold", reason=reason,
            procore_id=contract_id or (write.state.procore_id if write.state else None),
            project_id=c.project_id, content_hash=None, x3_stamp=c.x3_stamp,
            summary=write.state.summary if write.state else None,
            changes={"summary": write.changes}, request_id=self._request_ids.get(c.po_number),
        ))
        self.outcomes.append(WriteOutcome(c.po_number, c.project_id, write.action, "held",
                                          contract_id, reason, write.changes))


def change_order_lines(c: DesiredCommitment, before: dict) -> list[dict]:
    """Per-line amount deltas between what the commitment holds and the new X3 version."""
    lines = []
    desired = {line["origin_id"]: line for line in c.lines}
    for origin, line in desired.items():
        old = float((before.get(origin) or {}).get("fields", {}).get("amount") or 0)
        delta = round(float(line["amount"]) - old, 2)
        if delta:
            lines.append({"amount": f"{delta:.2f}", "cost_code_id": line["cost_code_id"],
                          "description": line["description"],
                          **({"line_item_type_id": line["line_item_type_id"]}
                             if line.get("line_item_type_id") else {})})
    for origin, info in before.items():
        if origin not in desired:
            fields = info.get("fields", {})
            lines.append({"amount": f"{-float(fields.get('amount') or 0):.2f}",
                          "cost_code_id": fields.get("cost_code_id"),
                          "description": f"removed: {fields.get('description') or origin}"})
    return lines
