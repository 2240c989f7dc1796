"""Desired Procore requisitions (subcontractor invoices) from staged X3 invoices (pure).

An X3 purchase invoice becomes one requisition per PO it bills (almost always exactly one),
on that PO's commitment, with one contract item amount per PO line billed. Identity is
`origin_id = X3:PI:<invoice>:<po>`; the ledger keys the invoice by its number.

A requisition with an origin_id is immutable in Procore ("When an origin_id exists on a
Subcontractor Invoice, the entire object is immutable", procore/documentation
tutorials/tutorial_financial_tools.md). So an invoice is sent only once it is final in
Sage X3, created once, and never written again: a later X3 change to it (amounts, lines,
status, deletion) is held with a reason naming the difference, for a person to enter by
hand (README "Supplier invoices").

Credit memos are held, never sent. An invoice whose PO has no commitment in Procore yet, or
bills a PO line Procore does not have yet, waits; because the write step runs after the
commitments step and reads the PO ledger fresh, it syncs in the same run its PO does.

Invoices typed into Procore by hand before go-live (no origin_id) are linked, not doubled:
a requisition on the same commitment whose invoice number is ours once case, spaces and
punctuation are ignored, and whose total equals ours, is adopted as this invoice's part
(`decide_part`); a differing total, or several such requisitions, is held for a person.

The preview (`preview_sync`) plans with the same functions (`preview_requisition_plan`,
`requisition_preview_rows`) so that each row's action is the one the live run records.
"""

from __future__ import annotations

import calendar
import json
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal

import pandas as pd

from mlc_dagster.common.payload import (
    content_hash,
    decimal_text,
    line_origin_id,
    requisition_origin_id,
)
from mlc_dagster.defs.invoices.staging import FINAL, KEY, StagedInvoices
from mlc_dagster.defs.purchase_orders.staging import StagedPurchaseOrders
from mlc_dagster.ledger.store import Change, RecordState
from mlc_dagster.x3_reads.scope import StagingScope

ENTITY = "purchase_invoice"
CREDIT_MEMO_REASON = (
    "credit memo: not sent to Procore by design. A Procore subcontractor invoice cannot be "
    "negative against an already billed period, so the credit must be applied by a person "
    "(reduce the open invoice, or bill it in the next period)")
MANUAL_PATH = ("Procore keeps synced invoices immutable — enter the difference by hand on the "
               "next invoice, or contact the project manager")
CHANGED_AFTER_SEND = f"invoice changed in Sage X3 after it was sent; {MANUAL_PATH}"
DELETED_AFTER_SEND = f"invoice deleted in Sage X3 after it was sent; {MANUAL_PATH}"
AFTER_SEND = (CHANGED_AFTER_SEND, DELETED_AFTER_SEND)  # prefixes of the hold reasons
NO_FINAL_FIELD = ("not final in Sage X3 (the X3 record has no is_final field: this connector "
                  "needs the invoice status setting, see README \"Supplier invoices\")")
HOLD_COLUMNS = [KEY, "reason"]
HEADER_LABELS = {"invoice_number": "supplier invoice number", "billing_date": "invoice date",
                 "x3_status": "Sage X3 status"}


def not_final_reason(status: str) -> str:
    return f"not final in Sage X3 (status {status or 'blank'}), sent once it is final"


@dataclass
class RequisitionPart:
    """The part of one X3 invoice that bills one PO (= one Procore requisition)."""

    po_number: str
    origin_id: str
    items: dict[str, dict]  # PO line origin_id -> {"amount": "12.50", "quantity": "2"}

    @property
    def total(self) -> str:
        return f"{sum(Decimal(i['amount']) for i in self.items.values()):.2f}"


@dataclass
class DesiredInvoice:
    invoice_number: str
    supplier_code: str
    supplier_ref: str
    invoice_date: str
    x3_stamp: str | None
    parts: list[RequisitionPart]
    x3_status: str = ""

    @property
    def header(self) -> dict:
        """Requisition fields carried from X3 (period and items are added at write time)."""
        return {
            "invoice_number": self.supplier_ref or self.invoice_number,
            "billing_date": self.invoice_date,
            "origin_data": json.dumps({"x3_invoice": self.invoice_number,
                                       "supplier_invoice": self.supplier_ref,
                                       "invoice_date": self.invoice_date}, ensure_ascii=False),
        }

    @property
    def sent_header(self) -> dict:
        """What the ledger remembers of the header, to name a later X3 change."""
        return {"invoice_number": self.header["invoice_number"],
                "billing_date": self.invoice_date, "x3_status": self.x3_status}

    @property
    def hash(self) -> str:
        return content_hash({"header": self.header,
                             "parts": {p.origin_id: p.items for p in self.parts}})


@dataclass
class DesiredRequisitions:
    invoices: list[DesiredInvoice]  # valid invoices, final or not (not final ones are held)
    holds: pd.DataFrame  # invoice_number, reason
    stamps: dict[str, str | None]
    x3_totals: pd.DataFrame  # po_number, x3_total, invoices (final, type "invoice", valid)
    invoice_pos: dict[str, list[str]] = field(default_factory=dict)  # every valid invoice
    scope: StagingScope | None = None  # what this run staged (x3_reads/scope.py)

    def held_reasons(self) -> dict[str, str]:
        grouped = self.holds.groupby(KEY, sort=True)["reason"]
        return {key: "; ".join(dict.fromkeys(reasons)) for key, reasons in grouped}


def build_desired_requisitions(staged: StagedInvoices, pos: StagedPurchaseOrders
                               ) -> DesiredRequisitions:
    headers, lines = staged.headers, staged.lines
    holds = [pd.DataFrame({KEY: list(staged.reasons()), "reason": list(staged.reasons().values())})]
    memos = headers.loc[headers["invoice_type"] == "credit_memo", KEY]
    holds.append(pd.DataFrame({KEY: memos, "reason": CREDIT_MEMO_REASON}))

    # Consistency with the PO it bills (checked where the PO itself is valid).
    po_suppliers = dict(zip(pos.headers["po_number"], pos.headers["supplier_code"], strict=True))
    lines = lines.merge(headers[[KEY, "supplier_code"]], on=KEY, how="left")
    po_supplier = lines["po_number"].map(po_suppliers)
    wrong = lines[po_supplier.notna() & (po_supplier != lines["supplier_code"])]
    holds.append(pd.DataFrame({KEY: wrong[KEY], "reason": [
        f"line {n}: supplier {s} differs from PO {p}'s supplier {po_suppliers[p]}"
        for n, s, p in zip(wrong["line_number"], wrong["supplier_code"], wrong["po_number"],
                           strict=True)]}))
    po_lines = set(zip(pos.lines["po_number"], pos.lines["line_number"], strict=True))
    no_line = lines[lines["po_number"].isin(po_suppliers)
                    & ~pd.Series([(p, n) in po_lines for p, n in zip(
                        lines["po_number"], lines["po_line"], strict=True)], index=lines.index,
                        dtype=bool)]
    holds.append(pd.DataFrame({KEY: no_line[KEY], "reason": [
        f"line {n}: PO {p} has no line {pl}" for n, p, pl in zip(
            no_line["line_number"], no_line["po_number"], no_line["po_line"], strict=True)]}))
    held = set(pd.concat([h[KEY] for h in holds], ignore_index=True))

    # Not final in X3: held, yet kept as a desired invoice so that a sent invoice which is
    # no longer final shows its status change as a difference.
    final = headers[FINAL].map(lambda v: v is True).astype(bool)
    unfinished = headers[~final]
    holds.append(pd.DataFrame({KEY: unfinished[KEY], "reason": [
        NO_FINAL_FIELD if flag is None else not_final_reason(status)
        for flag, status in zip(unfinished[FINAL], unfinished["status"], strict=True)]}))

    all_holds = pd.concat([h for h in holds if len(h)], ignore_index=True) if any(
        len(h) for h in holds) else pd.DataFrame(columns=HOLD_COLUMNS)

    final_keys = set(headers.loc[final & (headers["invoice_type"] == "invoice"), KEY])
    billable = lines[lines[KEY].isin(final_keys)]
    x3_totals = (billable.groupby("po_number", as_index=False)
                 .agg(x3_total=("amount", "sum"),
                      invoices=(KEY, lambda s: ", ".join(sorted(set(s)))))
                 if len(billable) else pd.DataFrame(columns=["po_number", "x3_total", "invoices"]))
    invoice_pos = lines.groupby(KEY)["po_number"].agg(lambda s: sorted(set(s))).to_dict()
    return DesiredRequisitions(_invoices(headers[~headers[KEY].isin(held)],
                                         lines[~lines[KEY].isin(held)]),
                               all_holds[HOLD_COLUMNS].reset_index(drop=True), staged.stamps,
                               x3_totals, invoice_pos)


def _invoices(headers: pd.DataFrame, lines: pd.DataFrame) -> list[DesiredInvoice]:
    sums = (lines.groupby([KEY, "po_number", "po_line"], as_index=False)[["amount", "quantity"]]
            .sum().sort_values([KEY, "po_number", "po_line"]))
    parts: dict[str, dict[str, dict[str, dict]]] = {}
    for row in sums.itertuples(index=False):
        items = parts.setdefault(getattr(row, KEY), {}).setdefault(row.po_number, {})
        items[line_origin_id(row.po_number, row.po_line)] = {
            "amount": decimal_text(row.amount, 2), "quantity": decimal_text(row.quantity)}
    result = []
    for row in headers.sort_values(["invoice_date", KEY]).itertuples(index=False):
        number = getattr(row, KEY)
        result.append(DesiredInvoice(
            invoice_number=number, supplier_code=row.supplier_code,
            supplier_ref=row.supplier_invoice_ref, invoice_date=row.invoice_date.date().isoformat(),
            x3_stamp=row.update_stamp or None,
            parts=[RequisitionPart(po, requisition_origin_id(number, po), items)
                   for po, items in sorted(parts.get(number, {}).items())],
            x3_status=row.status))
    return result


# --- what Procore holds vs what X3 says now (pure) ------------------------------------------


def sent_parts(state: RecordState | None) -> dict[str, dict]:
    """The requisitions Procore holds for an invoice (ledger summary parts with an id)."""
    parts = ((state.summary or {}).get("parts") or {}) if state else {}
    return {po: part for po, part in parts.items() if part.get("id")}


def money(value) -> Decimal:
    """A Procore or ledger amount as cents."""
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


def _line(origin: str) -> str:
    return origin.rsplit(":", 1)[-1]


def sent_differences(summary: dict, invoice: DesiredInvoice) -> list[str]:
    """Each way the X3 invoice now differs from what was sent, worded `before -> after`.

    Compares only what the ledger recorded (older ledgers lack quantities and the header),
    and treats a PO part never created (a partial write) as still to be sent, not changed.
    """
    differences = []
    sent_header = summary.get("sent") or {}
    now_header = invoice.sent_header
    for key, label in HEADER_LABELS.items():
        if key in sent_header and str(sent_header[key]) != str(now_header[key]):
            differences.append(f"{label} {sent_header[key] or 'blank'} -> "
                               f"{now_header[key] or 'blank'}")
    sent = {po: p for po, p in (summary.get("parts") or {}).items() if p.get("id")}
    billed_then = set(summary.get("pos") or sent)
    now = {p.po_number: p for p in invoice.parts}
    for po in sorted(set(sent) | set(now)):
        part, before = now.get(po), sent.get(po)
        if before is None:
            if po not in billed_then:
                differences.append(f"PO {po}: newly billed by this invoice, {part.total} "
                                   "(not sent)")
            continue
        if part is None:
            differences.append(f"PO {po}: no longer billed by this invoice (requisition "
                               f"#{before.get('number')} keeps {money(before.get('total'))})")
            continue
        differences += before.get("differs") or []  # found when linked after a lost ledger
        amounts, quantities = before.get("amounts") or {}, before.get("quantities")
        for origin in sorted(set(amounts) | set(part.items)):
            item = part.items.get(origin, {"amount": "0.00", "quantity": "0"})
            old, new = money(amounts.get(origin)), money(item["amount"])
            what = []
            if old != new:
                what.append(f"amount {old} -> {new}")
            if quantities is not None and Decimal(str(quantities.get(origin, 0))) != Decimal(
                    item["quantity"]):
                what.append(f"quantity {quantities.get(origin, '0')} -> {item['quantity']}")
            if what:
                suffix = (" (new line)" if origin not in amounts else
                          " (line removed)" if origin not in part.items else "")
                differences.append(f"PO {po} line {_line(origin)}: {', '.join(what)}{suffix}")
    if differences:
        before_total = sum((money(p.get("total")) for p in sent.values()), Decimal("0.00"))
        after_total = sum((Decimal(p.total) for p in invoice.parts), Decimal("0.00"))
        if before_total != after_total:
            differences.append(f"total in Procore {before_total}, in Sage X3 now {after_total} "
                               f"(difference {after_total - before_total:+.2f})")
    return differences


def _deleted_difference(parts: dict[str, dict]) -> str:
    kept = ", ".join(f"requisition #{p.get('number')} on PO {po} keeps "
                     f"{money(p.get('total'))}" for po, p in sorted(parts.items()))
    return f"{DELETED_AFTER_SEND}: {kept}"


# --- planning: desired state + ledger state -> what to write -------------------------------


@dataclass
class ResolvedPart:
    """A requisition part with the Procore ids it needs, taken from the PO ledger."""

    part: RequisitionPart
    project_id: int
    commitment_id: int
    line_ids: dict[str, int]  # PO line origin_id -> Procore commitment line item id

    def items_body(self) -> list[dict]:
        """Contract items as in OAS: POST /rest/v1.1/requisitions (Create Requisition),
        `requisition.items[]`: item_type, line_item_id, work_completed_this_period(_quantity)."""
        return [{"item_type": "contract_item", "line_item_id": self.line_ids[origin],
                 "work_completed_this_period": v["amount"],
                 "work_completed_this_period_quantity": v["quantity"]}
                for origin, v in self.part.items.items()]


@dataclass
class RequisitionWrite:
    """Requisitions to create for one invoice: every part not in Procore yet. Never updates."""

    invoice: DesiredInvoice
    state: RecordState | None
    parts: list[ResolvedPart]
    write_hash: str
    action: str = "create"


@dataclass
class RequisitionPlan:
    writes: list[RequisitionWrite]
    unchanged: list[str]
    new_holds: list[Change] = field(default_factory=list)
    resolved: list[Change] = field(default_factory=list)  # held, and X3 matches Procore again
    # Procore requisition id -> the X3 invoice whose ledger part it is: a hand-entered invoice
    # already adopted by one X3 invoice is never adopted by a second one.
    claimed: dict[int, str] = field(default_factory=dict, compare=False)
    # held because the commitment refuses invoices, X3 unchanged, not re-checked this run
    awaiting_invoicing: list[str] = field(default_factory=list)


def plan_requisition_writes(desired: DesiredRequisitions, states: dict[str, RecordState],
                            po_states: dict[str, RecordState],
                            deleted_keys: set[str] | None = None, *,
                            recheck_invoicing: bool = True) -> RequisitionPlan:
    """What to do with every invoice, never an edit of what Procore already holds.

    Not in Procore yet: created when final and its PO is in Procore, else held with why.
    In Procore: unchanged, or held with the difference (X3 changed, deleted by a full read,
    no longer final), once - the same hold is not recorded again on the next poll.
    `recheck_invoicing=False`: an invoice held because its commitment refuses invoices, and
    unchanged in X3 since, is not tried (each try reads the commitment; nothing in X3 tells
    when someone enables invoicing in Procore, so the caller re-checks on a slower clock).
    """
    plan = RequisitionPlan([], [], claimed={
        int(part["id"]): number for number, state in states.items()
        for part in sent_parts(state).values()})
    holds = desired.held_reasons()
    invoices = {i.invoice_number: i for i in desired.invoices}
    deleted = {k for k in deleted_keys or set() if sent_parts(states.get(k))}
    for number in sorted(set(invoices) | set(holds) | deleted):
        state, invoice = states.get(number), invoices.get(number)
        sent = sent_parts(state)
        if sent:
            _plan_sent(plan, number, state, invoice, holds.get(number), number in deleted,
                       desired.stamps.get(number), po_states, recheck_invoicing)
        elif number in holds:
            _hold(plan, number, state, holds[number], desired.stamps.get(number))
        elif invoice is not None:
            _plan_create(plan, invoice, state, invoice.parts, po_states, recheck_invoicing)
    return plan


def _plan_sent(plan: RequisitionPlan, number: str, state: RecordState,
               invoice: DesiredInvoice | None, held: str | None, deleted: bool,
               stamp: str | None, po_states: dict[str, RecordState],
               recheck_invoicing: bool) -> None:
    summary = state.summary or {}
    if deleted:
        _hold(plan, number, state, _deleted_difference(sent_parts(state)), stamp)
        return
    differences = sent_differences(summary, invoice) if invoice is not None else []
    if held:  # quarantined, credit memo, not final (unless the status change says it already)
        if invoice is not None and any(d.startswith(HEADER_LABELS["x3_status"])
                                       for d in differences):
            held = "; ".join(r for r in held.split("; ")
                             if r != not_final_reason(invoice.x3_status))
        differences += [held] if held else []
    if differences:
        _hold(plan, number, state, f"{CHANGED_AFTER_SEND}: {'; '.join(differences)}", stamp)
        return
    sent = sent_parts(state)
    billed_then = set(summary.get("pos") or sent)
    missing = [p for p in invoice.parts if p.po_number not in sent and p.po_number in billed_then]
    if missing:  # a part not created yet (partial write): still to be sent
        _plan_create(plan, invoice, state, missing, po_states, recheck_invoicing)
        return
    if state.status == "synced":
        plan.unchanged.append(number)
    else:
        plan.resolved.append(Change(
            entity=ENTITY, key=number, status="synced", action="resolve",
            reason="Sage X3 matches what Procore holds again", procore_id=state.procore_id,
            project_id=state.project_id, summary=summary, x3_stamp=stamp))


def _hold(plan: RequisitionPlan, number: str, state: RecordState | None, reason: str,
          stamp: str | None) -> None:
    if state and state.status == "held" and state.reason == reason:
        return  # recorded already; no event per poll
    plan.new_holds.append(Change(
        entity=ENTITY, key=number, status="held", action="hold", reason=reason,
        procore_id=state.procore_id if state else None,
        project_id=state.project_id if state else None,
        summary=state.summary if state else None, x3_stamp=stamp))


def awaits_invoicing(state: RecordState | None, invoice: DesiredInvoice) -> bool:
    """Held only because its commitment refuses invoices, and unchanged in X3 since."""
    return bool(state and state.status == "held"
                and (state.summary or {}).get("invoicing_disabled")
                and state.x3_stamp == invoice.x3_stamp)


def _plan_create(plan: RequisitionPlan, invoice: DesiredInvoice, state: RecordState | None,
                 parts: list[RequisitionPart], po_states: dict[str, RecordState],
                 recheck_invoicing: bool = True) -> None:
    if not recheck_invoicing and awaits_invoicing(state, invoice):
        plan.awaiting_invoicing.append(invoice.invoice_number)
        return
    resolved, waiting = [], []
    for part in parts:
        found = _resolve(part, po_states.get(part.po_number))
        (resolved if isinstance(found, ResolvedPart) else waiting).append(found)
    if waiting:
        _hold(plan, invoice.invoice_number, state, "; ".join(waiting), invoice.x3_stamp)
        return
    write_hash = content_hash({"invoice": invoice.hash, "targets": sorted(
        (p.part.origin_id, p.commitment_id, sorted(p.line_ids.items())) for p in resolved)})
    plan.writes.append(RequisitionWrite(invoice, state, resolved, write_hash))


def _resolve(part: RequisitionPart, po_state: RecordState | None) -> ResolvedPart | str:
    if po_state is None or not po_state.procore_id or not po_state.project_id:
        why = (po_state.reason if po_state and po_state.reason else "not yet in Procore")
        return f"waiting for PO {part.po_number}: {why}"
    written = (po_state.summary or {}).get("lines", {})
    line_ids = {origin: (written.get(origin) or {}).get("id") for origin in part.items}
    missing = sorted(_line(o) for o, i in line_ids.items() if not i)
    if missing:
        return (f"waiting for PO {part.po_number} line(s) {', '.join(missing)} to reach "
                f"Procore (PO status {po_state.status})")
    return ResolvedPart(part, int(po_state.project_id), int(po_state.procore_id),
                        {o: int(i) for o, i in line_ids.items()})


# --- what Procore already holds for a part: ours, a hand-entered twin, or nothing (pure) ------

ADOPT_RULE = "invoice_number"  # the match rule an adoption records
TOTAL_TOLERANCE = Decimal("0.01")
ITEM_TOTAL_FIELDS = ("work_completed_this_period", "materials_presently_stored")


def invoicing_disabled_reason(po_number: str) -> str:
    return (f"invoicing is not enabled on this commitment in Procore (PO {po_number}): enable "
            "subcontractor invoices on the commitment; the next run sends the invoice")


def normalise_invoice_number(value: object) -> str:
    """`INV-00001`, `inv 00001` and `Inv.00001` are one number: case, spaces and punctuation
    are ignored (NFKC first, so full-width digits or a `№` read as typed)."""
    text = unicodedata.normalize("NFKC", str(value or "")).casefold()
    return "".join(c for c in text if c.isalnum())


def hand_entered_twins(listing: Iterable[dict], invoice_number: str) -> list[dict]:
    """The commitment's requisitions typed by hand (no origin_id) that carry our invoice number.
    A number with nothing but punctuation matches nothing."""
    wanted = normalise_invoice_number(invoice_number)
    return [r for r in listing if wanted and not r.get("origin_id")
            and normalise_invoice_number(r.get("invoice_number")) == wanted]


def requisition_total(requisition: dict) -> Decimal | None:
    """What a requisition claims: its contract items' work completed this period plus materials
    presently stored; Procore's `total_claimed_amount` when it shows no items; None if neither."""
    items = requisition.get("items")
    if items is None:
        claimed = requisition.get("total_claimed_amount")
        return None if claimed is None else money(claimed)
    return sum((money(item.get(name)) for item in items
                if item.get("item_type", "contract_item") == "contract_item"
                for name in ITEM_TOTAL_FIELDS), Decimal("0.00"))


def _named(requisition: dict) -> str:
    return f"#{requisition.get('number')} '{requisition.get('invoice_number')}'"


def twin_total_differs_reason(twin: dict, twin_total: Decimal | None, x3_total: str) -> str:
    shown = twin_total if twin_total is not None else "an amount Procore does not show"
    return (f"a hand-entered invoice {_named(twin)} on the commitment totals {shown}, Sage X3 "
            f"says {x3_total}: correct one side; nothing is created")


def several_twins_reason(twins: list[dict], invoice_number: str) -> str:
    listed = "; ".join(f"{_named(t)} {requisition_total(t) or 'total not shown'}"
                       for t in sorted(twins, key=lambda t: (str(t.get("number")), t["id"])))
    return (f"{len(twins)} hand-entered invoices on the commitment carry invoice number "
            f"'{invoice_number}' ({listed}): keep one (delete or renumber the others in "
            "Procore); nothing is created")


def twin_claimed_reason(twin: dict, other_invoice: str) -> str:
    return (f"a hand-entered invoice {_named(twin)} on the commitment is already linked to Sage "
            f"X3 invoice {other_invoice}: correct the supplier invoice number on one side; "
            "nothing is created")


def part_record(resolved: ResolvedPart, saved: dict, items: dict[str, dict]) -> dict:
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


@dataclass
class PartDecision:
    """What the write step does with one part, given what its commitment already holds."""

    action: str  # create | link | adopt | hold
    record: dict | None = None  # the ledger part: linked, adopted, or found (kept by a hold)
    reason: str | None = None  # hold
    sent: dict | None = None  # the header Procore holds, recorded with a found part
    change: str = ""  # one summary line
    before: dict | None = None  # adopt: the hand-entered invoice as it was

    @property
    def twin_id(self) -> int | None:
        return self.record["id"] if self.action == "adopt" else None


def decide_part(invoice: DesiredInvoice, resolved: ResolvedPart, listing: list[dict],
                claimed: Mapping[int, str], show: Callable[[dict], dict]) -> PartDecision:
    """Our origin_id already on a requisition (a run whose ledger write was lost) -> link, or
    hold if it differs from X3 now; else a hand-entered twin -> adopt, or hold (total differs,
    several twins, adopted by another X3 invoice already); else create.

    `show(requisition)` returns the requisition with its items (Show Requisition): the writer
    reads it, the preview passes what it read already. Decided the same way on every run
    from the listing alone, so a lost ledger finds the same twin again.
    """
    part = resolved.part
    ours = next((r for r in listing if r.get("origin_id") == part.origin_id), None)
    if ours is not None:
        return _found_ours(invoice, resolved, {**ours, **show(ours)})
    twins = hand_entered_twins(listing, invoice.header["invoice_number"])
    if not twins:
        return PartDecision("create")
    detailed = [t if t.get("items") is not None else {**t, **show(t)} for t in twins]
    return _hand_twin(invoice, resolved, detailed, claimed)


def _found_ours(invoice: DesiredInvoice, resolved: ResolvedPart, detail: dict) -> PartDecision:
    """Our origin_id is already in Procore: record it; if it holds other amounts than X3 says
    now, hold with the difference (it is immutable: never written again)."""
    part = resolved.part
    total = money(detail.get("total_claimed_amount"))
    record = dict(part_record(resolved, detail, {}), total=f"{total}", differs=[])
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
                                   replace(invoice, parts=[part]))
    if differences:
        return PartDecision("hold", record, f"{CHANGED_AFTER_SEND}: {'; '.join(differences)}",
                            sent)
    return PartDecision(
        "link", dict(record, quantities={o: v["quantity"] for o, v in part.items.items()}),
        change=f"PO {part.po_number}: requisition #{detail.get('number')} already in Procore "
               "with this invoice's origin_id: linked, not created again")


def _hand_twin(invoice: DesiredInvoice, resolved: ResolvedPart, twins: list[dict],
               claimed: Mapping[int, str]) -> PartDecision:
    """Adopt the one hand-entered twin whose total is ours, recorded exactly like a part we
    created (so it is never created again, and a later X3 change is held as for a sent one).

    Procore is not written: stamping our origin_id on it would make it immutable for its
    owners ("When an origin_id exists on a Subcontractor Invoice, the entire object is
    immutable", tutorial_financial_tools.md), and Procore refuses most edits anyway (only the
    latest, open invoice is editable: Update Requisition). So it is found again by number.
    """
    part = resolved.part
    number = invoice.header["invoice_number"]
    free = [t for t in twins if claimed.get(int(t["id"]), invoice.invoice_number)
            == invoice.invoice_number]
    if not free:
        return PartDecision("hold", reason=twin_claimed_reason(
            twins[0], claimed[int(twins[0]["id"])]))
    if len(free) > 1:
        return PartDecision("hold", reason=several_twins_reason(free, number))
    twin = free[0]
    total = requisition_total(twin)
    if total is None or abs(total - money(part.total)) > TOTAL_TOLERANCE:
        return PartDecision("hold", reason=twin_total_differs_reason(twin, total, part.total))
    before = {"number": twin.get("number"), "invoice_number": twin.get("invoice_number"),
              "total": f"{total}", "status": twin.get("status")}
    record = dict(part_record(resolved, twin, part.items), origin_id=None, total=f"{total}",
                  hand_entered=True)
    return PartDecision(
        "adopt", record, before=before,
        change=f"PO {part.po_number}: hand-entered invoice {_named(twin)} ({total}, "
               f"{twin.get('status')}) is this invoice: linked, not created again; left as "
               "it is in Procore")


def invoice_action(part_actions: Iterable[str]) -> str:
    """The ledger action of an invoice synced part by part: `adopt` when any part took over a
    hand-entered invoice (the audit trail must show it), `link` when every part was found by
    our origin_id, else `create`."""
    actions = set(part_actions)
    if "adopt" in actions:
        return "adopt"
    return "link" if actions == {"link"} else "create"


# --- billing periods ---------------------------------------------------------------------------


def period_for(day: date, periods: list[dict]) -> dict | None:
    """The billing period whose start..end covers `day` (periods never overlap)."""
    text = day.isoformat()
    return next((p for p in periods if p.get("start_date") and p.get("end_date")
                 and p["start_date"] <= text <= p["end_date"]), None)


def open_period(day: date, periods: list[dict]) -> dict | None:
    """The billing period a new requisition goes into: the project's open one.

    "The billing period on a new invoice always corresponds to the dates on the Open billing
    period" and "Only one (1) billing period can be Open" (Procore support, "Edit a Billing
    Period"); the sandbox refuses any other period. Should several be open, the one covering
    `day`, else the latest.
    """
    opened = [p for p in periods if str(p.get("status") or "").lower() == "open"]
    return period_for(day, opened) or max(opened, key=lambda p: p.get("start_date") or "",
                                          default=None)


def no_open_period_reason(project_id: int, day: date, periods: list[dict],
                          create_periods: bool) -> str | None:
    """Why a new invoice cannot go into the project now, or None: there is an open period,
    or none covers `day` and MLC_CREATE_BILLING_PERIODS lets the connector create one."""
    if open_period(day, periods) is not None:
        return None
    covering = period_for(day, periods)
    if create_periods and covering is None:
        return None
    why = (f"; the period covering {day} ({covering.get('start_date')}.."
           f"{covering.get('end_date')}) is closed" if covering else "")
    fix = ("open a billing period in Procore" if covering or create_periods else
           "open a billing period in Procore, or set MLC_CREATE_BILLING_PERIODS=1")
    return (f"no open Procore billing period in project {project_id} (new invoices go into "
            f"the open period){why}; {fix}")


def new_period(day: date, periods: list[dict]) -> tuple[date, date]:
    """The calendar month around `day`, trimmed so it does not overlap existing periods."""
    start = day.replace(day=1)
    end = day.replace(day=calendar.monthrange(day.year, day.month)[1])
    for period in periods:
        p_start, p_end = date.fromisoformat(period["start_date"]), date.fromisoformat(
            period["end_date"])
        if p_end < day:
            start = max(start, p_end + timedelta(days=1))
        elif p_start > day:
            end = min(end, p_start - timedelta(days=1))
    return start, end


# --- reconciliation ------------------------------------------------------------------------------


def reconcile_totals(desired: DesiredRequisitions, invoice_states: dict[str, RecordState],
                     po_states: dict[str, RecordState]) -> pd.DataFrame:
    """Per commitment: X3 invoice total vs the requisition totals Procore reported for it.

    X3 side: every valid X3 invoice (type invoice) billing the PO that is final in X3.
    Procore side: the `total_claimed_amount` Procore returned for each requisition we
    created, whatever the invoice's status now: an invoice changed or deleted in X3 after
    it was sent still counts at what Procore holds, so the difference shows, with its reason.
    """
    procore: dict[str, float] = {}
    pending: dict[str, list[str]] = {}
    for number, state in invoice_states.items():
        for po, part in sent_parts(state).items():
            procore[po] = procore.get(po, 0.0) + float(part.get("total") or 0)
        if state.status != "synced":
            pos = set(desired.invoice_pos.get(number, [])) | set(
                (state.summary or {}).get("parts") or {})
            for po in pos:
                pending.setdefault(po, []).append(f"{number}: {state.reason}")
    x3_totals = desired.x3_totals
    x3 = dict(zip(x3_totals["po_number"], x3_totals["x3_total"].astype(float), strict=True))
    names = dict(zip(x3_totals["po_number"], x3_totals["invoices"], strict=True))
    rows = []
    for po in sorted(set(x3) | set(procore)):
        state = po_states.get(po)
        if state is None or not state.procore_id:
            continue  # no commitment in Procore: its invoices wait (listed by the ledger)
        x3_total, procore_total = round(x3.get(po, 0.0), 2), round(procore.get(po, 0.0), 2)
        rows.append({"po": po, "commitment_id": state.procore_id, "x3_total": x3_total,
                     "procore_total": procore_total,
                     "difference": round(x3_total - procore_total, 2),
                     "x3_invoices": names.get(po, ""),
                     "why": "; ".join(pending.get(po, []))})
    return pd.DataFrame(rows, columns=["po", "commitment_id", "x3_total", "procore_total",
                                       "difference", "x3_invoices", "why"])



# --- preview: what the live run's invoice step would record (pure) -----------------------------

PLANNED_ID = -1  # a commitment or line item the same run creates: Procore has no id for it yet
# PO outcomes after which the PO ledger is as it was (the invoice step reads it as it is).
PO_NOT_WRITTEN = frozenset({"hold", "fail", "unchanged", "skip", "defer"})


@dataclass
class RequisitionPreview:
    """The invoice step's plan as the live run would make it, after the commitments step."""

    desired: DesiredRequisitions
    plan: RequisitionPlan
    po_states: dict[str, RecordState]  # the PO ledger as the commitments step leaves it


@dataclass
class ProcoreInvoiceReads:
    """What the preview read from Procore (GETs only) for the invoices it would write."""

    requisitions: dict[int, list[dict]] = field(default_factory=dict)  # commitment id -> listed
    shown: dict[int, dict] = field(default_factory=dict)  # requisition id -> Show Requisition
    invoicing: dict[int, bool] = field(default_factory=dict)  # commitment -> invoicing enabled
    periods: dict[int, list[dict]] = field(default_factory=dict)  # project id -> billing periods


def predicted_po_states(desired: DesiredRequisitions, po_states: Mapping[str, RecordState],
                        po_outcomes: Mapping[str, tuple[str, int | None]],
                        po_projects: Mapping[str, int]) -> dict[str, RecordState]:
    """The PO ledger as the commitments step of the same run leaves it (what the invoice step
    reads): a PO it creates, adopts or updates is in Procore with every line an invoice bills
    (ids not known yet are PLANNED_ID); a held or failed one stays as the ledger has it."""
    billed: dict[str, set[str]] = {}
    for invoice in desired.invoices:
        for part in invoice.parts:
            billed.setdefault(part.po_number, set()).update(part.items)
    predicted = dict(po_states)
    for po, (action, commitment_id) in po_outcomes.items():
        if action in PO_NOT_WRITTEN:
            continue
        state = po_states.get(po)
        summary = dict(state.summary or {}) if state else {}
        lines = {o: dict(v or {}) for o, v in (summary.get("lines") or {}).items()}
        for origin in billed.get(po, ()):
            if not lines.get(origin, {}).get("id"):
                lines[origin] = {**lines.get(origin, {}), "id": PLANNED_ID}
        predicted[po] = RecordState(
            "purchase_order", po, "synced",
            procore_id=commitment_id or (state.procore_id if state else None) or PLANNED_ID,
            project_id=po_projects.get(po) or (state.project_id if state else None),
            summary={**summary, "lines": lines})
    return predicted


def preview_requisition_plan(desired: DesiredRequisitions, states: dict[str, RecordState],
                             po_states: Mapping[str, RecordState],
                             po_outcomes: Mapping[str, tuple[str, int | None]],
                             po_projects: Mapping[str, int], *,
                             deleted_keys: set[str] | None = None,
                             max_invoices: int = 0,
                             recheck_invoicing: bool = True) -> RequisitionPreview:
    """`plan_requisition_writes` over the PO ledger as this run's commitments step leaves it.

    `po_outcomes`: PO number -> (the action the PO plan predicts, its commitment id when known:
    adopt/update; None for create); `po_projects`: PO number -> Procore project id (needed for
    the POs created this run). Invoices whose PO the run creates are planned as created, as
    the live write step (run after the commitments step) creates them in the same run.
    """
    predicted = predicted_po_states(desired, po_states, po_outcomes, po_projects)
    plan = plan_requisition_writes(desired, states, predicted, deleted_keys,
                                   recheck_invoicing=recheck_invoicing)
    if max_invoices:
        plan.writes = plan.writes[:max_invoices]  # the rest waits for a later run: no event
    return RequisitionPreview(desired, plan, predicted)


def requisition_preview_rows(preview: RequisitionPreview, reads: ProcoreInvoiceReads, *,
                             create_periods: bool = False) -> list[dict]:
    """One row per invoice the live run records an event for, with that event's action:
    create | adopt | link | hold | resolve. Unchanged invoices, and a hold already recorded
    with the same reason, have no row (the live run records nothing for them).

    Mirrors `RequisitionWriter`: the same part decision (`decide_part`) over what `reads`
    holds, the same billing-period rule, invoicing found disabled on a commitment.
    """
    plan = preview.plan
    invoices = {i.invoice_number: i for i in preview.desired.invoices}
    rows = [_preview_row(c.key, c.project_id or _project_of(preview, c.key), c.action,
                         c.reason or "", invoices.get(c.key))
            for c in plan.new_holds + plan.resolved]
    claimed = dict(plan.claimed)
    refused: set[int] = set()  # commitments a create was refused on (invoicing disabled)
    for write in plan.writes:
        row = _preview_write(write, reads, claimed, refused, create_periods)
        if row is not None:
            rows.append(row)
    return sorted(rows, key=lambda r: r["key"])


def _preview_row(key: str, project_id: int | None, action: str, detail: str,
                 invoice: DesiredInvoice | None) -> dict:
    amount = (sum((Decimal(p.total) for p in invoice.parts), Decimal("0.00"))
              if invoice is not None else None)
    return {"flow": ENTITY, "key": key, "project_id": project_id, "action": action,
            "detail": detail, "amount": amount}


def _project_of(preview: RequisitionPreview, number: str) -> int | None:
    for po in preview.desired.invoice_pos.get(number, []):
        state = preview.po_states.get(po)
        if state is not None and state.project_id:
            return int(state.project_id)
    return None


def _preview_write(write: RequisitionWrite, reads: ProcoreInvoiceReads, claimed: dict[int, str],
                   refused: set[int], create_periods: bool) -> dict | None:
    inv, state = write.invoice, write.state
    before = sent_parts(state)
    disabled_before = set((state.summary or {}).get("invoicing_disabled") or []) if state \
        else set()
    parts, decisions, held = dict(before), [], None
    for resolved in write.parts:
        decision = _preview_part(inv, resolved, reads, claimed, refused,
                                 resolved.commitment_id in disabled_before, create_periods)
        if decision.action == "hold":
            held = decision
            if decision.record is not None:
                parts[resolved.part.po_number] = decision.record
            break
        decisions.append(decision)
        parts[resolved.part.po_number] = decision.record or {"id": PLANNED_ID}
        if decision.twin_id is not None:
            claimed[decision.twin_id] = inv.invoice_number
    project_id = write.parts[0].project_id if write.parts else None
    if held is not None:
        if state and state.status == "held" and state.reason == held.reason and parts == before:
            return None  # the same hold as last run: the live run records nothing
        return _preview_row(inv.invoice_number, project_id, "hold", held.reason or "", inv)
    return _preview_row(inv.invoice_number, project_id, invoice_action(
        d.action for d in decisions), "; ".join(d.change for d in decisions), inv)


def _preview_part(inv: DesiredInvoice, resolved: ResolvedPart, reads: ProcoreInvoiceReads,
                  claimed: Mapping[int, str], refused: set[int], was_disabled: bool,
                  create_periods: bool) -> PartDecision:
    commitment_id, po = resolved.commitment_id, resolved.part.po_number
    enabled = reads.invoicing.get(commitment_id, True)
    if commitment_id != PLANNED_ID:
        if (was_disabled or commitment_id in refused) and not enabled:
            return PartDecision("hold", reason=invoicing_disabled_reason(po))
        decision = decide_part(inv, resolved, reads.requisitions.get(commitment_id, []),
                               claimed, show=lambda r: reads.shown.get(int(r["id"]), {}))
        if decision.action != "create":
            return decision
    reason = no_open_period_reason(resolved.project_id, date.fromisoformat(inv.invoice_date),
                                   reads.periods.get(resolved.project_id, []), create_periods)
    if reason is not None:
        return PartDecision("hold", reason=reason)
    if not enabled:  # Procore refuses the POST; the writer then holds it
        refused.add(commitment_id)
        return PartDecision("hold", reason=invoicing_disabled_reason(po))
    where = ("the commitment this run creates" if commitment_id == PLANNED_ID
             else f"commitment {commitment_id}")
    return PartDecision("create", change=f"PO {po}: requisition {resolved.part.total} to "
                                         f"create on {where} ({len(resolved.part.items)} "
                                         "line(s))")
