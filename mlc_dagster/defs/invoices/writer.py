"""Execute a requisition plan against Procore; record every invoice's outcome in the ledger.

Only creates: a requisition carries an origin_id, which makes it immutable in Procore
(procore/documentation tutorials/tutorial_financial_tools.md, "Subcontractor Invoices"), so
nothing here ever PATCHes or DELETEs one. Requisitions have no batch `sync` endpoint, so
creation is made safe differently: before creating on a commitment, its requisitions are
listed once, and a requisition already carrying our origin_id (created by a run whose ledger
write was lost) is linked, never created again. A run touching few commitments of a project
lists each one (a filtered GET); a run touching many (a backfill) lists the whole project
once, in pages of 1000.

The same listing finds invoices typed into Procore by hand before go-live (no origin_id, our
invoice number once case, spaces and punctuation are ignored): one whose total is ours is
adopted (recorded as this invoice's requisition, action `adopt`, never written), anything
else is held for a person; see `decide_part` in defs/invoices/plan.py.

`read_procore_for_preview` makes the same reads, GETs only, for the preview.

Each invoice's outcome feeds the run's circuit breaker (resources/breaker.py, shared with the
commitments step): once it is open nothing more is sent, and every invoice not tried yet is
recorded `deferred` with what the ledger knew of it (parts already created stay recorded).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date
from decimal import Decimal

from mlc_dagster.common.payload import WriteOutcome
from mlc_dagster.defs.invoices.plan import (
    ADOPT_RULE,
    ENTITY,
    PLANNED_ID,
    PartDecision,
    ProcoreInvoiceReads,
    RequisitionPlan,
    RequisitionWrite,
    ResolvedPart,
    decide_part,
    hand_entered_twins,
    invoice_action,
    invoicing_disabled_reason,
    new_period,
    no_open_period_reason,
    open_period,
    part_record,
    period_for,
    sent_parts,
)
from mlc_dagster.ledger.batch import ChangeBatch
from mlc_dagster.ledger.store import Change, Ledger
from mlc_dagster.procore_writes.continuation import Progress
from mlc_dagster.resources.breaker import BreakerSettings, CircuitBreaker, is_outage
from mlc_dagster.resources.http_core import WaitTooLong
from mlc_dagster.resources.procore_client import ProcoreError
from mlc_dagster.settings import ProgressSettings

# From this many commitments touched in one project, one project-wide listing (usually a
# single page of 1000) replaces a filtered listing per commitment.
PROJECT_LISTING_MIN_COMMITMENTS = 5
PROJECT_LISTING_PAGE = 1000


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
                 create_periods: bool = False, log: Callable[[str], None] = lambda _m: None,
                 breaker: CircuitBreaker | None = None,
                 progress_settings: ProgressSettings = ProgressSettings()) -> None:
        self.client = client
        self.create_periods = create_periods
        self.log = log
        # no breaker given: one that never opens (unit tests, callers outside a run)
        self.breaker = breaker or CircuitBreaker(BreakerSettings(records=0))
        self.progress_settings = progress_settings  # MLC_PROGRESS_LOG_SECONDS, ..._HOURLY_LIMIT
        self.deferred: list[str] = []  # invoices not tried: Procore unavailable or rate limit
        self.over_limit: list[str] = []  # beyond the per-run limit, deferred untried
        self.progress: dict = {}  # written / remaining / rate-limit window / ETA, at the end
        self._mark = 0  # Procore calls made before the current invoice
        self.batch = ChangeBatch(ledger, run_id)
        self.outcomes: list[WriteOutcome] = []
        self._listings: dict[int, list[dict]] = {}
        self._periods: dict[int, list[dict]] = {}
        self._invoicing: dict[int, bool] = {}  # commitment id -> requisitions_are_enabled
        self._claimed: dict[int, str] = {}  # requisition id -> the X3 invoice recorded with it

    def run(self, plan: RequisitionPlan) -> list[WriteOutcome]:
        self._claimed = dict(plan.claimed)
        self.batch.add(*plan.new_holds, *plan.resolved)
        self.outcomes += [WriteOutcome(c.entity, c.key, c.action, c.status, c.procore_id,
                                       c.reason) for c in plan.new_holds + plan.resolved]
        progress = Progress("requisitions", len(plan.writes), self.log, self.client,
                            settings=self.progress_settings)
        try:
            if not self.breaker.stopped:
                self._list_busy_projects(plan.writes)
        except WaitTooLong as exc:
            self._pause(exc)
        for done, write in enumerate(plan.writes, start=1):
            if self.breaker.stopped:
                self._defer(write)
            else:
                self._mark = self._calls()
                try:
                    self._write_invoice(write)
                except WaitTooLong as exc:  # parts created before it are found by origin_id
                    self._pause(exc)
                    self._defer(write)
            progress.tick(done)
        self.batch.flush()
        self.progress = progress.facts(len(plan.writes) - len(self.deferred))
        if plan.writes:
            progress.tick(len(plan.writes) - len(self.deferred), force=True)
        if self.deferred:
            self.log(f"requisitions: {len(self.deferred)} invoice(s) deferred: "
                     f"{self.breaker.reason()}")
        return self.outcomes

    def defer(self, writes: list[RequisitionWrite], reason: str) -> None:
        """Record `writes` as deferred without trying them (over the per-run limit)."""
        for write in writes:
            self._defer(write, reason=reason)
        self.batch.flush()

    def _pause(self, exc: WaitTooLong) -> None:
        """The rate-limit allowance is out for longer than a step may wait: stop sending."""
        self.breaker.pause(exc.resume_at, exc.reason)

    # --- the circuit breaker: outcomes in, `deferred` out ---------------------------------

    def _calls(self) -> int:
        stats = getattr(self.client, "stats", None)
        return int(stats.total_calls) if stats is not None else 0

    def _note(self, exc: ProcoreError, invoice_number: str) -> None:
        if not is_outage(exc):
            self.breaker.success()  # Procore answered: a refusal is this invoice's problem
            return
        if self.breaker.failure(invoice_number, str(exc), max(1, self._calls() - self._mark)):
            self.log(f"requisitions: {self.breaker.reason()}; {self.breaker.streak} different "
                     "records failed in a row, so nothing more is sent to Procore in this run "
                     "and every invoice not tried yet is deferred to the next run")

    def _defer(self, write: RequisitionWrite, *, reason: str | None = None) -> None:
        """Not tried: recorded `deferred` with what the ledger knew (its parts already in
        Procore stay recorded, so none is created twice); once per record and outage."""
        inv, state = write.invoice, write.state
        (self.deferred if reason is None else self.over_limit).append(inv.invoice_number)
        reason = reason or self.breaker.reason()
        self.outcomes.append(WriteOutcome(ENTITY, inv.invoice_number, "defer", "deferred",
                                          state.procore_id if state else None, reason))
        if state and state.status == "deferred":
            return
        self.batch.add(Change(
            entity=ENTITY, key=inv.invoice_number, status="deferred", action="defer",
            reason=reason, procore_id=state.procore_id if state else None,
            project_id=state.project_id if state else None, content_hash=None,
            x3_stamp=inv.x3_stamp, summary=state.summary if state else None))

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
        adopted: list[dict] = []  # the hand-entered invoices taken over, as they were
        status, reason, request_id, disabled = "synced", None, None, []
        for resolved in write.parts:
            try:
                parts[resolved.part.po_number], action = self._write_part(
                    inv, resolved, changes, resolved.commitment_id in disabled_before, adopted)
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
                self._note(exc, inv.invoice_number)
                break
        if status == "held" and state and state.status == "held" and state.reason == reason \
                and parts == before:
            return  # the same hold as last run: nothing new to record
        if status == "synced":
            self.breaker.success()
        action = (invoice_action(actions) if status == "synced" else
                  "hold" if status == "held" else "fail")
        first = next(iter(parts.values()), {})
        summary = {"parts": parts, "pos": sorted(p.po_number for p in inv.parts),
                   "sent": inv.sent_header if sent_header is None else sent_header,
                   "total": f"{sum(Decimal(p.get('total') or 0) for p in parts.values()):.2f}"}
        if disabled:
            summary["invoicing_disabled"] = disabled
        self.batch.add(Change(
            entity=ENTITY, key=inv.invoice_number, status=status,
            action=action,
            reason=reason or "; ".join(changes), procore_id=first.get("id"),
            project_id=first.get("project_id"),
            content_hash=write.write_hash if status == "synced" else None,
            x3_stamp=inv.x3_stamp, summary=summary,
            payload=None if status == "synced" else {
                "header": inv.header, "parts": {p.part.po_number: p.items_body()
                                                for p in write.parts}},
            changes=_changes_record(changes, adopted), request_id=request_id))
        self.outcomes.append(WriteOutcome(ENTITY, inv.invoice_number, action, status,
                                          first.get("id"), reason, changes))

    def _write_part(self, inv, resolved: ResolvedPart, changes: list[str], was_disabled: bool,
                    adopted: list[dict]) -> tuple[dict, str]:
        """Create the requisition, or link the one Procore already holds for it (ours after a
        lost ledger write, or the twin typed by hand before go-live)."""
        part = resolved.part
        # Invoicing found disabled (by this invoice's last run, or another invoice this run):
        # read the commitment first. No POST follows a hold, so no listing is needed for it.
        known = was_disabled or resolved.commitment_id in self._invoicing
        if known and not self._invoicing_enabled(resolved):
            raise _Held(invoicing_disabled_reason(part.po_number),
                        disabled=resolved.commitment_id)
        listing = self._listing(resolved.project_id, resolved.commitment_id)
        decision = decide_part(inv, resolved, listing, self._claimed,
                               show=lambda r: self.client.requisition(resolved.project_id,
                                                                      r["id"]))
        if decision.action != "create":
            return self._found(inv, decision, changes, adopted)
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
        return part_record(resolved, saved, part.items), "create"

    def _found(self, inv, decision: PartDecision, changes: list[str],
               adopted: list[dict]) -> tuple[dict, str]:
        """A requisition Procore already holds for this part: linked (ours), adopted (typed by
        hand), or a hold; recorded so that it is never created again."""
        if decision.action == "hold":
            raise _Held(decision.reason or "", part=decision.record, sent=decision.sent)
        if decision.twin_id is not None:
            self._claimed[decision.twin_id] = inv.invoice_number
            adopted.append(decision.before)
        changes.append(decision.change)
        return decision.record, decision.action

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
        reason = no_open_period_reason(project_id, day, periods, self.create_periods)
        if reason is not None:
            raise _Held(reason)
        start, end = new_period(day, periods)
        created = self.client.create_billing_period(project_id, start.isoformat(),
                                                    end.isoformat())
        periods.append(created)
        changes.append(f"billing period {start}..{end} created (open) in project {project_id}")
        return created


def _changes_record(summary: list[str], adopted: list[dict]) -> dict:
    """The event's `changes`: the summary; for an adoption also the rule and the hand-entered
    invoice as it was (`before`: one dict, or a list when several POs' twins were adopted)."""
    if not adopted:
        return {"summary": summary}
    return {"rule": ADOPT_RULE, "before": adopted[0] if len(adopted) == 1 else adopted,
            "summary": summary}


def read_procore_for_preview(client, plan: RequisitionPlan) -> ProcoreInvoiceReads:
    """What the write step would read before creating, GETs only (for `preview_sync`).

    Per project an invoice would go to: its billing periods and its commitments (list
    responses carry `requisitions_are_enabled`; a commitment that lacks it is shown). Per
    commitment that exists already: its requisitions (one project-wide listing when many are
    touched, as the writer does), and Show Requisition for ours and for hand-entered twins the
    listing shows without items. Commitments the same run creates are not read: they are new.
    """
    reads = ProcoreInvoiceReads()
    touched: dict[int, set[int]] = defaultdict(set)
    for write in plan.writes:
        for part in write.parts:
            touched[part.project_id].add(part.commitment_id)
    for project_id, commitments in sorted(touched.items()):
        reads.periods[project_id] = list(client.billing_periods(project_id))
        existing = commitments - {PLANNED_ID}
        if not existing:
            continue
        for contract in client.purchase_order_contracts(project_id):
            if int(contract["id"]) in existing and "requisitions_are_enabled" in contract:
                reads.invoicing[int(contract["id"])] = \
                    contract["requisitions_are_enabled"] is not False
        for commitment_id in sorted(existing - set(reads.invoicing)):
            try:  # as the writer: a failed read counts as enabled
                shown = client.purchase_order_contract(project_id, commitment_id) or {}
            except ProcoreError:
                shown = {}
            reads.invoicing[commitment_id] = shown.get("requisitions_are_enabled") is not False
        if len(existing) >= PROJECT_LISTING_MIN_COMMITMENTS:
            reads.requisitions.update({c: [] for c in existing})
            for requisition in client.requisitions(project_id, per_page=PROJECT_LISTING_PAGE):
                if requisition.get("commitment_id") in existing:
                    reads.requisitions[requisition["commitment_id"]].append(requisition)
        else:
            for commitment_id in sorted(existing):
                reads.requisitions[commitment_id] = list(client.requisitions(project_id,
                                                                             commitment_id))
    for write in plan.writes:
        for part in write.parts:
            listing = reads.requisitions.get(part.commitment_id, [])
            wanted = [r for r in listing if r.get("origin_id") == part.part.origin_id] + [
                t for t in hand_entered_twins(listing, write.invoice.header["invoice_number"])
                if t.get("items") is None]
            for requisition in wanted:
                if int(requisition["id"]) not in reads.shown:
                    reads.shown[int(requisition["id"])] = client.requisition(
                        part.project_id, requisition["id"])
    return reads
