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

from mlc_dagster.ledger.store import Change, Ledger, RecordState
from mlc_dagster.mapping.commitments import DesiredCommitment, DesiredCommitments

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

    @property
    def po_number(self) -> str:
        return self.desired.po_number


@dataclass
class CommitmentPlan:
    writes: list[CommitmentWrite]
    unchanged: list[str]
    new_holds: list[Change]


def plan_commitment_writes(desired: DesiredCommitments, states: dict[str, RecordState], *,
                           new_status: str = "Draft", inactive_status: str = "Closed"
                           ) -> CommitmentPlan:
    writes, unchanged = [], []
    for commitment in desired.commitments:
        state = states.get(commitment.po_number)
        if state and state.status == "synced" and state.content_hash == commitment.hash:
            unchanged.append(commitment.po_number)
            continue
        writes.append(_plan_one(commitment, state, new_status, inactive_status))

    new_holds = []
    for po, reason in desired.held_reasons().items():
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
    return CommitmentPlan(writes, unchanged, new_holds)


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


def _summary(c: DesiredCommitment, line_ids: dict[str, int | None]) -> dict:
    hashes = c.line_hashes
    return {
        "header_hash": c.header_hash, "closed": c.closed, "header": c.header,
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
    """Executes a plan against Procore; records each PO's outcome in the ledger as it goes."""

    def __init__(self, client, ledger: Ledger, run_id: str | None,
                 log: Callable[[str], None] = lambda _msg: None, flush_every: int = 100) -> None:
        self.client = client
        self.ledger = ledger
        self.run_id = run_id
        self.log = log
        self.flush_every = flush_every
        self.outcomes: list[WriteOutcome] = []
        self._pending: list[Change] = []

    def run(self, plan: CommitmentPlan) -> list[WriteOutcome]:
        if plan.new_holds:
            self.ledger.apply(plan.new_holds, self.run_id)
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
                self._flush()
                self.log(f"commitments: {done}/{total} POs written; "
                         f"{self._stats_text()}")
        self._flush()
        return self.outcomes

    def _stats_text(self) -> str:
        stats = getattr(self.client, "stats", None)
        if stats is None:
            return ""
        calls = sum(getattr(stats, "calls", {}).values()) if hasattr(stats, "calls") else "?"
        return (f"{calls} Procore calls, {getattr(stats, 'rate_limited', 0)} x 429, "
                f"{getattr(stats, 'waited_seconds', 0.0):.1f}s waited for rate limits")

    # --- headers: one sync call per project per <=1000 POs ------------------------------
    def _sync_headers(self, writes: list[CommitmentWrite]) -> dict[str, int]:
        from mlc_dagster.resources.procore_client import ProcoreError

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
                outcome = result.by_origin_id()
                for w in chunk:
                    item = outcome.get(w.desired.header["origin_id"])
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
        from mlc_dagster.resources.procore_client import ProcoreError

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
                problems = []
                for origin, item in result.by_origin_id().items():
                    if "errors" in item and "id" not in item:
                        problems.append(f"line {_line_no(origin)}: {_error_text(item['errors'])}")
                    else:
                        line_ids[origin] = int(item["id"])
                if problems:
                    text = "; ".join(problems)
                    if _is_lock(text):
                        self._hold_locked(write, text, contract_id)
                    else:
                        self._fail(write, f"Procore rejected line items: {text}", contract_id)
                    return
            for origin, line_id in write.line_deletes:
                if line_id is None:
                    line_id = self._find_line_id(c.project_id, contract_id, origin)
                if line_id is not None:
                    self.client.delete_contract_line_item(c.project_id, contract_id, line_id)
                line_ids.pop(origin, None)
        except ProcoreError as exc:
            if exc.status == 422 and _is_lock(str(exc)):
                self._hold_locked(write, str(exc), contract_id)
            else:
                self._fail(write, f"line item write failed: {exc}", contract_id, exc.request_id)
            return
        self._pending.append(Change(
            entity=ENTITY, key=c.po_number, status="synced", action=write.action,
            reason="; ".join(write.changes), procore_id=contract_id, project_id=c.project_id,
            content_hash=c.hash, x3_stamp=c.x3_stamp, summary=_summary(c, line_ids),
            changes={"summary": write.changes, "revision": c.revision},
        ))
        self.outcomes.append(WriteOutcome(c.po_number, c.project_id, write.action, "synced",
                                          contract_id, None, write.changes))

    def _find_line_id(self, project_id: int, contract_id: int, origin_id: str) -> int | None:
        for item in self.client.contract_line_items(project_id, contract_id):
            if item.get("origin_id") == origin_id:
                return int(item["id"])
        return None

    def _fail(self, write: CommitmentWrite, reason: str, contract_id: int | None = None,
              request_id: str | None = None) -> None:
        c = write.desired
        procore_id = contract_id or (write.state.procore_id if write.state else None)
        self._pending.append(Change(
            entity=ENTITY, key=c.po_number, status="failed", action="fail", reason=reason,
            procore_id=procore_id, project_id=c.project_id, content_hash=None, x3_stamp=c.x3_stamp,
            summary=write.state.summary if write.state else None,
            payload={"project_id": c.project_id, "header": c.header, "status": write.status,
                     "line_updates": write.line_updates,
                     "line_deletes": [o for o, _ in write.line_deletes]},
            changes={"summary": write.changes}, request_id=request_id,
        ))
        self.outcomes.append(WriteOutcome(c.po_number, c.project_id, write.action, "failed",
                                          procore_id, reason, write.changes))

    def _hold_locked(self, write: CommitmentWrite, detail: str,
                     contract_id: int | None = None) -> None:
        c = write.desired
        reason = f"approved commitment locked: {detail}"
        self._pending.append(Change(
            entity=ENTITY, key=c.po_number, status="held", action="hold", reason=reason,
            procore_id=contract_id or (write.state.procore_id if write.state else None),
            project_id=c.project_id, content_hash=None, x3_stamp=c.x3_stamp,
            summary=write.state.summary if write.state else None,
            changes={"summary": write.changes},
        ))
        self.outcomes.append(WriteOutcome(c.po_number, c.project_id, write.action, "held",
                                          contract_id, reason, write.changes))

    def _flush(self) -> None:
        if self._pending:
            self.ledger.apply(self._pending, self.run_id)
            self._pending = []
