"""Compare what X3 says, what we wrote, and what Procore holds (pure functions).

Statuses per PO: `in_sync`, `held` (known, with its reason), `deleted` (gone from X3, its
commitment inactivated by the sync), and the three that fail the
reconciliation check: `missing` (we synced it, Procore has no commitment), `drift`
(Procore's amount or vendor differs from X3: typically a manual edit of a field we own)
and `orphan` (the PO is gone from X3 but its commitment is still active).

Two more say what is still unmatched after go-live, without failing the check:
`unmatched_procore` (a commitment no X3 PO owns: typed by hand and not adopted, or another
integration's; or an invoice entered by hand that no X3 invoice was linked to) and
`unmatched_x3` (a placeable X3 PO with no commitment yet).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pandas as pd

from mlc_dagster.defs.purchase_orders.desired import DesiredCommitments
from mlc_dagster.ledger.store import RecordState

ORIGIN_PREFIX = "X3:PO:"
FAILING = ("missing", "drift", "orphan")
UNMATCHED = ("unmatched_procore", "unmatched_x3")
REPORT_COLUMNS = ["project_id", "po_number", "procore_number", "status", "x3_amount",
                  "procore_amount", "detail"]
CHANGE_ORDER_TOTALS = ("approved_change_orders", "pending_change_orders",
                       "draft_change_orders_amount")


def _money(value) -> Decimal:
    try:
        return Decimal(str(value or 0)).quantize(Decimal("0.01"))
    except ArithmeticError:
        return Decimal("0.00")


def procore_total(contract: dict) -> Decimal:
    """The commitment's value including its change orders (our deltas on approved POs)."""
    return _money(contract.get("grand_total")) + sum(
        (_money(contract.get(k)) for k in CHANGE_ORDER_TOTALS), Decimal("0.00"))


def compare_commitments(desired: DesiredCommitments, states: dict[str, RecordState],
                        contracts: list[dict], deleted: set[str], inactive_status: str
                        ) -> pd.DataFrame:
    by_origin = {c.get("origin_id"): c for c in contracts
                 if str(c.get("origin_id") or "").startswith(ORIGIN_PREFIX)
                 and ":CO:" not in str(c.get("origin_id"))}
    wanted = {c.po_number: c for c in desired.commitments}
    held = desired.held_reasons()
    rows = []
    for po, state in sorted(states.items()):
        contract = by_origin.pop(f"{ORIGIN_PREFIX}{po}", None)
        summary = state.summary or {}
        if po in deleted or summary.get("deleted"):
            if contract and contract.get("status") != inactive_status:
                rows.append(_row(state.project_id, po, "orphan", None, contract,
                                 f"PO deleted in Sage X3 but commitment is {contract.get('status')}"))
            else:
                rows.append(_row(state.project_id, po, "deleted", None, contract,
                                 f"PO deleted in Sage X3; commitment set to {inactive_status}"))
            continue
        if state.status == "held" and not state.procore_id:
            rows.append(_row(state.project_id, po, "held", None, contract, state.reason or ""))
            continue
        x3_total = _desired_total(wanted.get(po), summary)
        if contract is None:
            if state.procore_id:
                rows.append(_row(state.project_id, po, "missing", x3_total, None,
                                 "synced PO has no commitment in Procore"))
            continue
        problems = []
        if procore_total(contract) != x3_total:
            problems.append(f"amount in Procore {procore_total(contract)} != X3 {x3_total}")
        vendor_id = (contract.get("vendor") or {}).get("id")
        expected_vendor = (wanted[po].header if po in wanted else summary.get("header", {})
                           ).get("vendor_id")
        if expected_vendor and vendor_id and int(vendor_id) != int(expected_vendor):
            problems.append(f"vendor in Procore {vendor_id} != {expected_vendor}")
        status = "drift" if problems else ("held" if po in held else "in_sync")
        detail = "; ".join(problems) or (held.get(po) or "")
        rows.append(_row(state.project_id, po, status, x3_total, contract, detail))
    for origin, contract in sorted(by_origin.items()):
        po = origin[len(ORIGIN_PREFIX):]
        if contract.get("status") != inactive_status:
            rows.append(_row(contract.get("project_id"), po, "orphan", None, contract,
                             "commitment carries our origin_id but the ledger has no such PO"))
    rows.extend(_unmatched(desired, states, contracts))
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


def _unmatched(desired: DesiredCommitments, states: dict[str, RecordState],
               contracts: list[dict]) -> list[dict]:
    """Both sides of what adoption and sync have not matched (yet)."""
    rows = []
    for contract in sorted(contracts, key=lambda c: (c.get("project_id") or 0, int(c["id"]))):
        origin = str(contract.get("origin_id") or "")
        if origin.startswith(ORIGIN_PREFIX):
            continue
        why = (f"belongs to another integration (origin_id {origin})" if origin else
               "typed by hand, adopted by no X3 PO")
        rows.append(_row(contract.get("project_id"), None, "unmatched_procore", None, contract,
                         f"commitment #{contract.get('number')} (id {contract['id']}) {why}"))
    held = desired.held_reasons()
    for c in desired.commitments:
        if c.po_number not in states and c.po_number not in held:
            rows.append(_row(c.project_id, c.po_number, "unmatched_x3",
                             _desired_total(c, {}), None,
                             "no commitment in Procore yet: the next sync creates or adopts it"))
    return rows


def unmatched_requisitions(requisitions: list[dict], linked_ids: set[int],
                           contracts: list[dict]) -> pd.DataFrame:
    """Invoices in Procore that no X3 invoice created or was linked to (entered by hand)."""
    numbers = {int(c["id"]): c.get("number") for c in contracts}
    rows = []
    for r in sorted(requisitions, key=lambda r: (r.get("project_id") or 0, int(r["id"]))):
        if str(r.get("origin_id") or "").startswith("X3:PI:") or int(r["id"]) in linked_ids:
            continue
        commitment = numbers.get(int(r.get("commitment_id") or 0), r.get("commitment_id"))
        rows.append(_row(r.get("project_id"), None, "unmatched_procore", None, None,
                         f"invoice #{r.get('number')} '{r.get('invoice_number') or ''}' (id "
                         f"{r['id']}) on commitment #{commitment}: entered in Procore, no Sage "
                         "X3 invoice is linked to it"))
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


def cost_code_differences(desired_lines: list[dict], procore_lines: list[dict],
                          code_of: dict[int, str]) -> list[str]:
    """Per-cost-code totals that differ, for the detail of a drifted commitment."""
    ours, theirs = defaultdict(Decimal), defaultdict(Decimal)
    for line in desired_lines:
        ours[code_of.get(line["cost_code_id"], str(line["cost_code_id"]))] += _money(line["amount"])
    for line in procore_lines:
        code = (line.get("cost_code") or {}).get("full_code") or (line.get("cost_code") or {}).get("code")
        theirs[code] += _money(line.get("amount"))
    return [f"cost code {code}: Procore {theirs[code]} != X3 {ours[code]}"
            for code in sorted(set(ours) | set(theirs)) if ours[code] != theirs[code]]


def summarise(report: pd.DataFrame) -> pd.DataFrame:
    """One row per project: how many POs in each status, and amounts."""
    if not len(report):
        return pd.DataFrame(columns=["project_id", "in_sync", "held", "deleted", *FAILING,
                                     *UNMATCHED])
    counts = pd.crosstab(report["project_id"], report["status"])
    for status in ("in_sync", "held", "deleted", *FAILING, *UNMATCHED):
        if status not in counts:
            counts[status] = 0
    amounts = report.groupby("project_id")[["x3_amount", "procore_amount"]].sum(min_count=1)
    return counts[["in_sync", "held", "deleted", *FAILING, *UNMATCHED]].join(amounts
                                                                            ).reset_index()


def _desired_total(commitment, summary: dict) -> Decimal:
    lines = commitment.lines if commitment is not None else [
        info.get("fields", {}) for info in summary.get("lines", {}).values()]
    return sum((_money(line.get("amount")) for line in lines), Decimal("0.00"))


def _row(project_id, po, status, x3_amount, contract, detail) -> dict:
    return {"project_id": project_id, "po_number": po,
            "procore_number": contract.get("number") if contract else None, "status": status,
            "x3_amount": float(x3_amount) if x3_amount is not None else None,
            "procore_amount": float(procore_total(contract)) if contract else None,
            "detail": detail}
