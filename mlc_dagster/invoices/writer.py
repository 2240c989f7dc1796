"""Execute a requisition plan against Procore; record every invoice's outcome in the ledger.

Requisitions have no batch `sync` endpoint, so creation is made safe differently: before
writing to a commitment, its requisitions are listed once and an `origin_id` already there
is updated instead of created again. That listing also says whether ours is still the
latest open invoice, the only one Procore lets us change. A run touching few commitments of
a project lists each one (a filtered GET); a run touching many (a backfill) lists the whole
project once, in pages of 1000, which halves the calls of an invoice backfill.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from mlc_dagster.invoices.requisitions import (
    ENTITY,
    RequisitionPlan,
    RequisitionWrite,
    ResolvedPart,
    new_period,
    period_for,
)
from mlc_dagster.ledger.batch import ChangeBatch
from mlc_dagster.ledger.store import Change, Ledger
from mlc_dagster.resources.procore_client import ProcoreError

LOCKED_STATUSES = ("approved", "approved_as_noted")
# From this many commitments touched in one project, one project-wide listing (usually a
# single page of 1000) replaces a filtered listing per commitment.
PROJECT_LISTING_MIN_COMMITMENTS = 5
PROJECT_LISTING_PAGE = 1000


@dataclass
class InvoiceOutcome:
    invoice_number: str
    action: str
    status: str
    procore_id: int | None = None
    reason: str | None = None
    changes: list[str] = field(default_factory=list)


class _Held(Exception):
    """This invoice cannot be written now; the reason says why and what would fix it.

    `locked` holds are not retried until the X3 invoice changes again (Procore would refuse
    the same write on every poll); others (no billing period yet) are retried every run.
    """

    def __init__(self, reason: str, locked: bool = False) -> None:
        super().__init__(reason)
        self.locked = locked


class RequisitionWriter:
    def __init__(self, client, ledger: Ledger, run_id: str | None, *,
                 create_periods: bool = False, log: Callable[[str], None] = lambda _m: None
                 ) -> None:
        self.client = client
        self.create_periods = create_periods
        self.log = log
        self.batch = ChangeBatch(ledger, run_id)
        self.outcomes: list[InvoiceOutcome] = []
        self._listings: dict[int, list[dict]] = {}
        self._periods: dict[int, list[dict]] = {}

    def run(self, plan: RequisitionPlan) -> list[InvoiceOutcome]:
        self.batch.add(*plan.new_holds)
        self.outcomes += [InvoiceOutcome(c.key, "hold", "held", c.procore_id, c.reason)
                          for c in plan.new_holds]
        self._list_busy_projects(plan.writes)
        for done, write in enumerate(plan.writes, start=1):
            self._write_invoice(write)
            if done % 100 == 0:
                self.log(f"requisitions: {done}/{len(plan.writes)} invoices written")
        self.batch.flush()
        return self.outcomes

    # --- one invoice: every part (requisition) or none recorded as synced -----------------

    def _write_invoice(self, write: RequisitionWrite) -> None:
        inv = write.invoice
        before = (write.state.summary or {}).get("parts", {}) if write.state else {}
        parts: dict[str, dict] = dict(before)
        changes: list[str] = ["invoice deleted in Sage X3: requisition amounts set to 0"
                              ] if inv.deleted else []
        status, reason, request_id, locked = "synced", None, None, False
        for resolved in write.parts:
            try:
                parts[resolved.part.po_number] = self._write_part(inv, resolved, changes)
            except _Held as held:
                status, reason, locked = "held", str(held), held.locked
                break
            except ProcoreError as exc:
                if exc.status == 422 and _is_lock(str(exc)):
                    status, reason, locked = "held", _locked_reason(resolved, str(exc)), True
                else:
                    status, reason = "failed", f"requisition write failed: {exc}"
                request_id = exc.request_id
                break
        state = write.state
        if status == "held" and state and state.status == "held" and state.reason == reason \
                and parts == before:
            return  # the same hold as last run: nothing new to record
        first = next(iter(parts.values()), {})
        summary = {"parts": parts,
                   "total": f"{sum(Decimal(p.get('total') or 0) for p in parts.values()):.2f}"}
        if locked:
            summary["held_hash"] = write.write_hash
        if inv.deleted:
            summary["deleted"] = True
        self.batch.add(Change(
            entity=ENTITY, key=inv.invoice_number, status=status,
            action=write.action if status == "synced" else ("hold" if status == "held" else "fail"),
            reason=reason or "; ".join(changes), procore_id=first.get("id"),
            project_id=first.get("project_id"),
            content_hash=write.write_hash if status == "synced" else None,
            x3_stamp=inv.x3_stamp, summary=summary,
            payload=None if status == "synced" else {
                "header": inv.header, "parts": {p.part.po_number: p.items_body()
                                                for p in write.parts}},
            changes={"summary": changes}, request_id=request_id))
        self.outcomes.append(InvoiceOutcome(inv.invoice_number, write.action, status,
                                            first.get("id"), reason, changes))

    def _write_part(self, inv, resolved: ResolvedPart, changes: list[str]) -> dict:
        part, previous = resolved.part, resolved.previous
        listing = self._listing(resolved.project_id, resolved.commitment_id)
        existing = next((r for r in listing if r.get("id") == previous.get("id")
                         or r.get("origin_id") == part.origin_id), None)
        body = dict(inv.header, origin_id=part.origin_id, items=resolved.items_body())
        if existing is None and not part.items:  # nothing billed, nothing in Procore to zero
            return dict(previous, amounts={}, line_ids={}, total="0.00")
        if existing is not None:
            latest = max(listing, key=lambda r: r.get("number") or 0)
            if latest.get("id") != existing.get("id") or existing.get("status") in LOCKED_STATUSES:
                why = (f"status {existing.get('status')}" if existing.get("status")
                       in LOCKED_STATUSES else f"invoice #{latest.get('number')} came after it")
                raise _Held(_locked_reason(resolved, why), locked=True)
        if part.items or existing is None:
            body["period_id"] = self._period(resolved.project_id, date.fromisoformat(
                inv.invoice_date), changes)["id"]
        if existing is None:
            saved = self.client.create_requisition(resolved.project_id, resolved.commitment_id,
                                                   body)
            listing.append(saved)
            changes.append(f"PO {part.po_number}: requisition #{saved.get('number')} created, "
                           f"{part.total}")
        else:
            saved = self.client.update_requisition(resolved.project_id, resolved.commitment_id,
                                                   existing["id"], body)
            listing[listing.index(existing)] = saved
            changes += _amount_changes(part.po_number, previous.get("amounts", {}),
                                       {o: v["amount"] for o, v in part.items.items()})
        return {"id": int(saved["id"]), "number": saved.get("number"), "origin_id": part.origin_id,
                "project_id": resolved.project_id, "commitment_id": resolved.commitment_id,
                "period_id": saved.get("period_id"), "line_ids": resolved.line_ids,
                "amounts": {o: v["amount"] for o, v in part.items.items()},
                "total": str(saved.get("total_claimed_amount", part.total))}

    # --- Procore reads, once per commitment / project per run --------------------------------

    def _list_busy_projects(self, writes: list[RequisitionWrite]) -> None:
        touched: dict[int, set[int]] = defaultdict(set)
        for write in writes:
            for part in write.parts:
                touched[part.project_id].add(part.commitment_id)
        for project_id, commitments in touched.items():
            if len(commitments) < PROJECT_LISTING_MIN_COMMITMENTS:
                continue
            try:
                listed = self.client.requisitions(project_id, per_page=PROJECT_LISTING_PAGE)
            except ProcoreError as exc:  # each invoice then lists (and fails) on its own
                self.log(f"requisitions: listing project {project_id} failed ({exc}); "
                         "listing per commitment instead")
                continue
            for commitment_id in commitments:
                self._listings[commitment_id] = []
            for requisition in listed:
                if requisition.get("commitment_id") in commitments:
                    self._listings[requisition["commitment_id"]].append(requisition)

    def _listing(self, project_id: int, commitment_id: int) -> list[dict]:
        if commitment_id not in self._listings:
            self._listings[commitment_id] = list(self.client.requisitions(project_id,
                                                                          commitment_id))
        return self._listings[commitment_id]

    def _period(self, project_id: int, day: date, changes: list[str]) -> dict:
        if project_id not in self._periods:
            self._periods[project_id] = list(self.client.billing_periods(project_id))
        periods = self._periods[project_id]
        found = period_for(day, periods)
        if found is not None:
            return found
        if not self.create_periods:
            raise _Held(f"no Procore billing period covers {day} in project {project_id}; "
                        "create it in Procore, or set MLC_CREATE_BILLING_PERIODS=1")
        start, end = new_period(day, periods)
        created = self.client.request(
            "POST", f"/rest/v1.0/projects/{project_id}/billing_periods",
            json={"billing_period": {"start_date": start.isoformat(), "end_date": end.isoformat(),
                                     "due_date": end.isoformat()}}).json()
        periods.append(created)
        changes.append(f"billing period {start}..{end} created in project {project_id}")
        return created


def _is_lock(text: str) -> bool:
    text = text.lower()
    return "latest open" in text or "locked" in text or "approved" in text


def _locked_reason(resolved: ResolvedPart, why: str) -> str:
    return (f"requisition locked in Procore: the requisition for PO {resolved.part.po_number} "
            f"can no longer be changed ({why}); the X3 change is held, not lost")


def _amount_changes(po: str, before: dict[str, str], after: dict[str, str]) -> list[str]:
    out = []
    for origin in sorted(set(before) | set(after)):
        old, new = before.get(origin, "0.00"), after.get(origin, "0.00")
        if old != new:
            out.append(f"PO {po} line {origin.rsplit(':', 1)[-1]}: {old} -> {new}")
    return out or [f"PO {po}: re-sent"]
