"""Desired Procore requisitions (subcontractor invoices) from staged X3 invoices (pure).

An X3 purchase invoice becomes one requisition per PO it bills (almost always exactly one),
on that PO's commitment, with one contract item amount per PO line billed. Identity is
`origin_id = X3:PI:<invoice>:<po>`; the ledger keys the invoice by its number.

Credit memos are held, never sent (see README "Supplier invoices"). An invoice whose PO has
no commitment in Procore yet, or bills a PO line Procore does not have yet, waits; because
the write step runs after the commitments step and reads the PO ledger fresh, it syncs in
the same run its PO does.
"""

from __future__ import annotations

import calendar
import json
from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd

from mlc_dagster.invoices.staging import KEY, StagedInvoices
from mlc_dagster.ledger.store import Change, RecordState
from mlc_dagster.mapping.commitments import _decimal, content_hash, line_origin_id
from mlc_dagster.sage_x3.staging import StagedPurchaseOrders

ENTITY = "purchase_invoice"
CREDIT_MEMO_REASON = (
    "credit memo: not sent to Procore by design. A Procore subcontractor invoice cannot be "
    "negative against an already billed period, so the credit must be applied by a person "
    "(reduce the open invoice, or bill it in the next period)")
HOLD_COLUMNS = [KEY, "reason"]


def requisition_origin_id(invoice_number: str, po_number: str) -> str:
    return f"X3:PI:{invoice_number}:{po_number}"


@dataclass
class RequisitionPart:
    """The part of one X3 invoice that bills one PO (= one Procore requisition)."""

    po_number: str
    origin_id: str
    items: dict[str, dict]  # PO line origin_id -> {"amount": "12.50", "quantity": "2"}

    @property
    def total(self) -> str:
        return f"{sum(float(i['amount']) for i in self.items.values()):.2f}"


@dataclass
class DesiredInvoice:
    invoice_number: str
    supplier_code: str
    supplier_ref: str
    invoice_date: str
    x3_stamp: str | None
    parts: list[RequisitionPart]
    deleted: bool = False  # gone from X3: every requisition written for it goes to zero

    @property
    def header(self) -> dict:
        """Requisition fields carried from X3 (period and items are added at write time)."""
        if self.deleted:  # keep what Procore shows; say why the amounts went to zero
            return {"comment": f"Sage X3 invoice {self.invoice_number} was deleted; "
                               "amounts set to zero by ml-connector"}
        return {
            "invoice_number": self.supplier_ref or self.invoice_number,
            "billing_date": self.invoice_date,
            "origin_data": json.dumps({"x3_invoice": self.invoice_number,
                                       "supplier_invoice": self.supplier_ref,
                                       "invoice_date": self.invoice_date}, ensure_ascii=False),
        }

    @property
    def hash(self) -> str:
        return content_hash({"header": self.header,
                             "parts": {p.origin_id: p.items for p in self.parts}})


@dataclass
class DesiredRequisitions:
    invoices: list[DesiredInvoice]
    holds: pd.DataFrame  # invoice_number, reason
    stamps: dict[str, str | None]
    x3_totals: pd.DataFrame  # po_number, x3_total, invoices (type "invoice", not quarantined)
    invoice_pos: dict[str, list[str]] = field(default_factory=dict)  # every valid invoice

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

    all_holds = pd.concat([h for h in holds if len(h)], ignore_index=True) if any(
        len(h) for h in holds) else pd.DataFrame(columns=HOLD_COLUMNS)
    held = set(all_holds[KEY])

    billable = lines[lines[KEY].isin(set(headers.loc[headers["invoice_type"] == "invoice", KEY]))]
    x3_totals = (billable.groupby("po_number", as_index=False)
                 .agg(x3_total=("amount", "sum"), invoices=(KEY, lambda s: ", ".join(sorted(set(s)))))
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
            "amount": f"{row.amount:.2f}", "quantity": _decimal(row.quantity)}
    result = []
    for row in headers.sort_values(["invoice_date", KEY]).itertuples(index=False):
        number = getattr(row, KEY)
        result.append(DesiredInvoice(
            invoice_number=number, supplier_code=row.supplier_code,
            supplier_ref=row.supplier_invoice_ref, invoice_date=row.invoice_date.date().isoformat(),
            x3_stamp=row.update_stamp or None,
            parts=[RequisitionPart(po, requisition_origin_id(number, po), items)
                   for po, items in sorted(parts.get(number, {}).items())]))
    return result


# --- planning: desired state + ledger state -> what to write -------------------------------


@dataclass
class ResolvedPart:
    """A requisition part with the Procore ids it needs, taken from the PO ledger."""

    part: RequisitionPart
    project_id: int
    commitment_id: int
    line_ids: dict[str, int]  # PO line origin_id -> Procore commitment line item id
    previous: dict  # this part as last written (ledger summary), {} if never

    def items_body(self) -> list[dict]:
        """Contract item amounts; lines billed before but not any more go back to zero."""
        items = [{"item_type": "contract_item", "line_item_id": self.line_ids[origin],
                  "work_completed_this_period": v["amount"],
                  "work_completed_this_period_quantity": v["quantity"]}
                 for origin, v in self.part.items.items()]
        dropped = set(self.previous.get("line_ids", {})) - set(self.part.items)
        items += [{"item_type": "contract_item", "line_item_id": self.previous["line_ids"][o],
                   "work_completed_this_period": "0.00",
                   "work_completed_this_period_quantity": "0"} for o in sorted(dropped)]
        return items


@dataclass
class RequisitionWrite:
    invoice: DesiredInvoice
    state: RecordState | None
    parts: list[ResolvedPart]
    write_hash: str

    @property
    def action(self) -> str:
        if self.invoice.deleted:
            return "void"
        return "update" if self.state and (self.state.summary or {}).get("parts") else "create"


@dataclass
class RequisitionPlan:
    writes: list[RequisitionWrite]
    unchanged: list[str]
    new_holds: list[Change] = field(default_factory=list)


def plan_requisition_writes(desired: DesiredRequisitions, states: dict[str, RecordState],
                            po_states: dict[str, RecordState],
                            deleted_keys: set[str] | None = None) -> RequisitionPlan:
    """What to write: new and changed invoices, plus invoices deleted in X3 (`deleted_keys`,
    found by a full read) whose requisitions still bill something - those are zeroed, not
    deleted, so Procore keeps the record of what was billed and why it was withdrawn."""
    writes, unchanged = [], []
    holds = desired.held_reasons()
    for invoice in desired.invoices + _deleted_invoices(deleted_keys or set(), states):
        state = states.get(invoice.invoice_number)
        parts, waiting = [], []
        summary_parts = ((state.summary or {}).get("parts", {}) if state else {})
        for part in invoice.parts:
            resolved = _resolve(part, po_states.get(part.po_number),
                                summary_parts.get(part.po_number, {}))
            (parts if isinstance(resolved, ResolvedPart) else waiting).append(resolved)
        # A PO no longer billed keeps its requisition, zeroed (never deleted behind a user).
        for po, previous in sorted(summary_parts.items()):
            if po not in {p.po_number for p in invoice.parts} and previous.get("id"):
                zeroed = RequisitionPart(po, previous["origin_id"], {})
                parts.append(ResolvedPart(zeroed, previous["project_id"],
                                          previous["commitment_id"], {}, previous))
        if waiting:
            holds[invoice.invoice_number] = "; ".join(waiting)
            continue
        write_hash = content_hash({"invoice": invoice.hash, "targets": sorted(
            (p.part.origin_id, p.commitment_id, sorted(p.line_ids.items())) for p in parts)})
        if state and state.status == "synced" and state.content_hash == write_hash:
            unchanged.append(invoice.invoice_number)
        elif state and state.status == "held" and (state.summary or {}).get(
                "held_hash") == write_hash:
            unchanged.append(invoice.invoice_number)  # locked in Procore: flagged, not retried
        else:
            writes.append(RequisitionWrite(invoice, state, parts, write_hash))

    new_holds = []
    for number, reason in sorted(holds.items()):
        state = states.get(number)
        if state and state.status == "held" and state.reason == reason:
            continue  # recorded already; no event per poll
        new_holds.append(Change(
            entity=ENTITY, key=number, status="held", action="hold", reason=reason,
            procore_id=state.procore_id if state else None,
            project_id=state.project_id if state else None,
            summary=state.summary if state else None, x3_stamp=desired.stamps.get(number)))
    return RequisitionPlan(writes, unchanged, new_holds)


def _deleted_invoices(keys: set[str], states: dict[str, RecordState]) -> list[DesiredInvoice]:
    """Invoices gone from X3 that have requisitions in Procore, as invoices billing nothing."""
    out = []
    for key in sorted(keys):
        state = states.get(key)
        parts = ((state.summary or {}).get("parts") or {}) if state else {}
        if any(p.get("id") for p in parts.values()):
            out.append(DesiredInvoice(key, "", "", "", state.x3_stamp, [], deleted=True))
    return out


def _resolve(part: RequisitionPart, po_state: RecordState | None, previous: dict
             ) -> ResolvedPart | str:
    if po_state is None or not po_state.procore_id or not po_state.project_id:
        why = (po_state.reason if po_state and po_state.reason else "not yet in Procore")
        return f"waiting for PO {part.po_number}: {why}"
    written = (po_state.summary or {}).get("lines", {})
    line_ids = {origin: (written.get(origin) or {}).get("id") for origin in part.items}
    missing = sorted(o.rsplit(":", 1)[-1] for o, i in line_ids.items() if not i)
    if missing:
        return (f"waiting for PO {part.po_number} line(s) {', '.join(missing)} to reach "
                f"Procore (PO status {po_state.status})")
    return ResolvedPart(part, int(po_state.project_id), int(po_state.procore_id),
                        {o: int(i) for o, i in line_ids.items()}, previous)


# --- billing periods ---------------------------------------------------------------------------


def period_for(day: date, periods: list[dict]) -> dict | None:
    """The billing period whose start..end covers `day` (periods never overlap)."""
    text = day.isoformat()
    return next((p for p in periods if p.get("start_date") and p.get("end_date")
                 and p["start_date"] <= text <= p["end_date"]), None)


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

    X3 side: every valid X3 invoice (type invoice) billing the PO. Procore side: the
    `total_claimed_amount` Procore returned for each requisition we wrote, whatever the
    invoice's status now (a locked requisition still counts at what it holds).
    """
    procore: dict[str, float] = {}
    pending: dict[str, list[str]] = {}
    for number, state in invoice_states.items():
        for po, part in ((state.summary or {}).get("parts") or {}).items():
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

