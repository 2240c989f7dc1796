"""Execute a requisition plan against Procore; record every invoice's outcome in the ledger.

Only creates: a requisition carries an origin_id, which makes it immutable in Procore
(procore/documentation tutorials/tutorial_financial_tools.md, "Subcontractor Invoices"), so
nothing here ever PATCHes or DELETEs one. Requisitions have no batch `sync` endpoint, so
creation is made safe differently: before creating on a commitment, its requisitions are
listed once, and a requisition already carrying our origin_id (created by a run whose ledger
write was lost) is linked, never created again. A run touching few commitments of a project
lists each one (a filtered GET); a run touching many (a backfill) lists the whole project
once, in pages of 1000.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal

from mlc_dagster.invoices.requisitions import (
    CHANGED_AFTER_SEND,
    ENTITY,
    RequisitionPlan,
    RequisitionWrite,
    ResolvedPart,
    money,
    new_period,
    open_period,
    period_for,
    sent_differences,
    sent_parts,
)
from mlc_dagster.ledger.batch import ChangeBatch
from mlc_dagster.ledger.store import Change, Ledger
from mlc_dagster.resources.procore_client import ProcoreError

# From this many commitments touched in one project, one project-wide listing (usually a
# single page of 1000) replaces a filtered listing per commitment.
PROJECT_LISTING_MIN_COMMITMENTS = 5
PROJECT_LISTING_PAGE = 1000


def invoicing_disabled_reason(po_number: str) -> str:
    return (f"invoicing is not enabled on this commitment in Procore (PO {po_number}): enable "
            "subcontractor invoices on the commitment; the next run sends the invoice")


@dataclass
class InvoiceOutcome:
    invoice_number: str
    action: str
    status: str
    procore_id: int | None = None
    reason: str | None = None
    changes: list[str] = field(default_factory=list)


class _Held(Exception):
    """This invoice cannot be sent now; the reason says why and what would fix it.

    `part`: a requisition found in Procore for it, recorded so it is never created again.
    `disabled`: the commitment refuses invoices; the next run checks it before a POST.
    """

    def __init__(self, reason: str, *, part: dict | None = None, sent: dict | None = None,
                 disabled: int | None = None) -> None:
        super().__init__(reason)
        self.part, self.sent, self.disabled = part, sent, disabled


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
        self._invoicing: dict[int, bool] = {}  # commitment id -> requisitions_are_enabled

    def run(self, plan: RequisitionPlan) -> list[InvoiceOutcome]:
        self.batch.add(*plan.new_holds, *plan.resolved)
        self.outcomes += [InvoiceOutcome(c.key, c.action, c.status, c.procore_id, c.reason)
                          for c in plan.new_holds + plan.resolved]
        self._list_busy_projects(plan.writes)
        for done, write in enumerate(plan.writes, start=1):
            self._write_invoice(write)
            if done % 100 == 0:
                self.log(f"requisitions: {done}/{len(plan.writes)} invoices written")
        self.batch.flush()
        return self.outcomes

    # --- one invoice: every part (requisition) or none recorded as synced -----------------

    def _write_invoice(self, write: RequisitionWrite) -> None:
        inv, state = write.invoice, write.state
        before = sent_parts(state)
        disabled_before = set((state.summary or {}).get("invoicing_disabled") or []) if state \
            else set()
        parts: dict[str, dict] = dict(before)
        sent_header = (state.summary or {}).get("sent") if before else None
        changes: list[str] = []
        actions: set[str] = set()
        status, reason, request_id, disabled = "synced", None, None, []
        for resolved in write.parts:
            try:
                parts[resolved.part.po_number], action = self._write_part(
                    inv, resolved, changes, resolved.commitment_id in disabled_before)
                actions.add(action)
            except _Held as held:
                status, reason = "held", str(held)
                if held.part is not None:
                    parts[resolved.part.po_number] = held.part
                    sent_header = held.sent
                if held.disabled is not None:
                    disabled.append(held.disabled)
                break
            except ProcoreError as exc:
                status, reason = "failed", f"requisition write failed: {exc}"
                request_id = exc.request_id
                break
        if status == "held" and state and state.status == "held" and state.reason == reason \
                and parts == before:
            return  # the same hold as last run: nothing new to record
        action = "link" if actions == {"link"} else "create"
        first = next(iter(parts.values()), {})
        summary = {"parts": parts, "pos": sorted(p.po_number for p in inv.parts),
                   "sent": inv.sent_header if sent_header is None else sent_header,
                   "total": f"{sum(Decimal(p.get('total') or 0) for p in parts.values()):.2f}"}
        if disabled:
            summary["invoicing_disabled"] = disabled
        self.batch.add(Change(
            entity=ENTITY, key=inv.invoice_number, status=status,
            action=action if status == "synced" else ("hold" if status == "held" else "fail"),
            reason=reason or "; ".join(changes), procore_id=first.get("id"),
            project_id=first.get("project_id"),
            content_hash=write.write_hash if status == "synced" else None,
            x3_stamp=inv.x3_stamp, summary=summary,
            payload=None if status == "synced" else {
                "header": inv.header, "parts": {p.part.po_number: p.items_body()
                                                for p in write.parts}},
            changes={"summary": changes}, request_id=request_id))
        self.outcomes.append(InvoiceOutcome(inv.invoice_number, action, status,
                                            first.get("id"), reason, changes))

    def _write_part(self, inv, resolved: ResolvedPart, changes: list[str],
                    was_disabled: bool) -> tuple[dict, str]:
        """Create the requisition, or link the one a lost ledger write left in Procore."""
        part = resolved.part
        # Invoicing found disabled (by this invoice's last run, or another invoice this run):
        # read the commitment first. No POST follows a hold, so no listing is needed for it.
        known = was_disabled or resolved.commitment_id in self._invoicing
        if known and not self._invoicing_enabled(resolved):
            raise _Held(invoicing_disabled_reason(part.po_number),
                        disabled=resolved.commitment_id)
        listing = self._listing(resolved.project_id, resolved.commitment_id)
        existing = next((r for r in listing if r.get("origin_id") == part.origin_id), None)
        if existing is not None:
            return self._link(inv, resolved, existing, changes), "link"
        period = self._period(resolved.project_id, date.fromisoformat(inv.invoice_date),
                              changes)
        body = dict(inv.header, origin_id=part.origin_id, period_id=period["id"],
                    items=resolved.items_body())
        try:
            saved = self.client.create_requisition(resolved.project_id, resolved.commitment_id,
                                                   body)
        except ProcoreError as exc:
            # Decided from the status and the commitment's own field, not from the words.
            if exc.refused and not self._invoicing_enabled(resolved):
                raise _Held(invoicing_disabled_reason(part.po_number),
                            disabled=resolved.commitment_id) from None
            raise
        listing.append(saved)
        changes.append(f"PO {part.po_number}: requisition #{saved.get('number')} created, "
                       f"{part.total}")
        return _part_record(resolved, saved, part.items), "create"

    def _link(self, inv, resolved: ResolvedPart, existing: dict, changes: list[str]) -> dict:
        """Our origin_id is already in Procore (a run whose ledger write was lost): record it.
        If it holds other amounts than X3 says now, hold with the difference."""
        part = resolved.part
        detail = {**existing, **self.client.requisition(resolved.project_id, existing["id"])}
        total = money(detail.get("total_claimed_amount"))
        record = dict(_part_record(resolved, detail, {}), total=f"{total}", differs=[])
        del record["quantities"]  # Procore's are not compared: amounts are what is billed
        if detail.get("items") is None:  # no item view: compare the totals only
            record["amounts"] = {o: v["amount"] for o, v in part.items.items()}
            if total != money(part.total):
                record["differs"].append(f"PO {part.po_number}: requisition "
                                         f"#{detail.get('number')} holds {total} in Procore")
        else:
            origin_of = {line_id: origin for origin, line_id in resolved.line_ids.items()}
            billed = {i.get("line_item_id"): money(i.get("work_completed_this_period"))
                      for i in detail["items"]
                      if i.get("item_type", "contract_item") == "contract_item"}
            record["amounts"] = {origin_of[lid]: f"{v}" for lid, v in billed.items()
                                 if lid in origin_of and v}
            record["differs"] = [f"PO {part.po_number}: Procore line item {lid} holds {v}, "
                                 "not billed by the X3 invoice" for lid, v in sorted(billed.items())
                                 if lid not in origin_of and v]
        sent = {"invoice_number": detail.get("invoice_number"),
                "billing_date": detail.get("billing_date")}
        differences = sent_differences({"parts": {part.po_number: record}, "sent": sent},
                                       replace(inv, parts=[part]))
        if differences:
            raise _Held(f"{CHANGED_AFTER_SEND}: {'; '.join(differences)}", part=record,
                        sent=sent)
        changes.append(f"PO {part.po_number}: requisition #{detail.get('number')} already in "
                       "Procore with this invoice's origin_id: linked, not created again")
        return dict(record, quantities={o: v["quantity"] for o, v in part.items.items()})

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

    def _invoicing_enabled(self, resolved: ResolvedPart) -> bool:
        """The commitment's `requisitions_are_enabled` (show response), once per run.

        A failed read counts as enabled (not remembered): the caller then reports Procore's
        own refusal."""
        if resolved.commitment_id not in self._invoicing:
            try:
                contract = self.client.purchase_order_contract(resolved.project_id,
                                                               resolved.commitment_id)
            except ProcoreError:
                return True
            self._invoicing[resolved.commitment_id] = (contract or {}).get(
                "requisitions_are_enabled") is not False
        return self._invoicing[resolved.commitment_id]

    def _period(self, project_id: int, day: date, changes: list[str]) -> dict:
        """The project's open billing period (Procore puts new invoices there), created when
        there is none and MLC_CREATE_BILLING_PERIODS allows it."""
        if project_id not in self._periods:
            self._periods[project_id] = list(self.client.billing_periods(project_id))
        periods = self._periods[project_id]
        found = open_period(day, periods)
        if found is not None:
            if period_for(day, [found]) is None:
                changes.append(f"invoice date {day} is outside the open billing period "
                               f"{found.get('start_date')}..{found.get('end_date')}, where "
                               "Procore puts every new invoice")
            return found
        covering = period_for(day, periods)
        if not self.create_periods or covering is not None:
            why = (f"; the period covering {day} ({covering.get('start_date')}.."
                   f"{covering.get('end_date')}) is closed" if covering else "")
            fix = ("open a billing period in Procore" if covering or self.create_periods else
                   "open a billing period in Procore, or set MLC_CREATE_BILLING_PERIODS=1")
            raise _Held(f"no open Procore billing period in project {project_id} (new invoices "
                        f"go into the open period){why}; {fix}")
        start, end = new_period(day, periods)
        created = self.client.create_billing_period(project_id, start.isoformat(),
                                                    end.isoformat())
        periods.append(created)
        changes.append(f"billing period {start}..{end} created (open) in project {project_id}")
        return created


def _part_record(resolved: ResolvedPart, saved: dict, items: dict[str, dict]) -> dict:
    """What the ledger keeps of one requisition: its ids, and what it holds, to name a later
    X3 change (`amounts`, `quantities` per PO line origin_id)."""
    return {"id": int(saved["id"]), "number": saved.get("number"),
            "origin_id": resolved.part.origin_id, "project_id": resolved.project_id,
            "commitment_id": resolved.commitment_id, "period_id": saved.get("period_id"),
            "line_ids": resolved.line_ids,
            "amounts": {o: v["amount"] for o, v in items.items()},
            "quantities": {o: v["quantity"] for o, v in items.items()},
            # Procore's figure when it gives one (a null must not become the text "None")
            "total": resolved.part.total if saved.get("total_claimed_amount") is None
            else str(saved["total_claimed_amount"])}
