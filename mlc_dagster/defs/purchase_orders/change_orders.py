"""Change orders for amendments to Approved commitments (pure functions, no I/O).

Procore locks the schedule of values of a commitment whose status is Approved or Complete
(procore/documentation tutorials/tutorial_financial_tools.md, "Record locking"). An X3
amendment then becomes a change order, built the way Procore documents it for single-tier
projects: a change order package on the contract, and the per-line deltas as line items of
the potential change order (PCO) Procore creates with it (tutorials/tutorial_change_orders.md,
"Single-Tier Change Order Behavior"). The create body of `commitment_change_orders` has no
line items and no origin_id, so it is never used.

What Procore already holds for each X3 line is read back from Procore, never taken from the
ledger: the contract's line item with the line's origin_id, plus every PCO line item whose
origin_id is `<line origin_id>:CO:<key>`. The delta is the desired X3 line minus that, so a
re-run after a crash (lines written, ledger not updated) finds nothing left to send.

Which changes a change order can carry faithfully (the rule, also in the README):

- a new X3 line: a PCO line with its quantity, unit cost, amount, cost code, cost type,
  unit of measure and description;
- a removed X3 line: a PCO line with the negative quantity at its unit cost (minus its amount);
- a quantity change of an existing line at the same unit cost: a PCO line with the quantity
  delta at that unit cost (the amount delta must equal quantity delta x unit cost, to the cent).

Anything else on an existing line (unit cost, unit of measure, cost code, cost type,
description, or an amount that the quantity change does not explain) cannot be shown on a
change order without Procore displaying figures X3 does not have: the PO is held, the reason
naming each line and field, and nothing is sent for it.

Our packages are found again by title: `Sage X3 PO <number> rev <revision> [<key>]`, where
`key` hashes the target lines and what Procore held without that package. A package created
just before a crash (no lines yet) therefore gets the same key on the re-run and is reused.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

CENT = Decimal("0.01")
LOCKED_STATUSES = frozenset({"approved", "complete"})
# Packages that do not count towards the commitment's value (Procore's contract sums add only
# approved, pending and draft change orders). Lower case: ASSUMPTION, no source gives the enum.
NOT_COUNTED_PACKAGE_STATUSES = frozenset({"rejected", "void"})
CO_MARK = ":CO:"
TITLE = re.compile(r"^Sage X3 PO (?P<po>\S+) rev (?P<revision>-?\d+) \[(?P<key>[0-9a-f]{8})\]$")
LINE_REFERENCE_FIELDS = (("cost_code_id", "cost code"), ("line_item_type_id", "cost type"),
                         ("uom", "unit of measure"), ("description", "description"))


def is_locked_status(status: object) -> bool:
    """Approved or Complete: Procore refuses schedule-of-values edits (if the company says so)."""
    return str(status or "").strip().lower() in LOCKED_STATUSES


def change_order_tier(contract: dict) -> int | None:
    """The project's change-order tier, from a purchase order contract's show response.

    OAS: GET /rest/v1.0/purchase_order_contracts/{id} (Show Purchase Order Contract),
    "Special notes (Tiers)": 1-tier shows change order packages; 2-tier adds potential change
    orders; 3-tier adds change order requests. None when the response shows none of them.
    """
    def shown(name: str) -> bool:
        return isinstance(contract.get(name), list)

    if shown("change_order_requests"):
        return 3
    if shown("potential_change_orders"):
        return 2
    if shown("change_order_packages"):
        return 1
    return None


def package_title(po_number: str, revision: int, key: str) -> str:
    return f"Sage X3 PO {po_number} rev {revision} [{key}]"


def title_key(package: dict, po_number: str) -> str | None:
    """The key of one of our packages for this PO, or None for anyone else's package."""
    match = TITLE.match(str(package.get("title") or ""))
    if match is None or match["po"] != po_number:
        return None
    return match["key"]


def pco_package_id(pco: dict) -> int | None:
    """The package a PCO belongs to: `change_order_package_id` (the sandbox contract), or a
    nested `change_order_package` object. ASSUMPTION: the OAS has no PCO response example."""
    value = pco.get("change_order_package_id")
    if value is None:
        value = (pco.get("change_order_package") or {}).get("id")
    return int(value) if value not in (None, "") else None


def line_origin_of(change_order_origin_id: object) -> str | None:
    """`X3:PO:<po>:<line>:CO:<key>` -> `X3:PO:<po>:<line>`; None for anything else."""
    text = str(change_order_origin_id or "")
    if CO_MARK not in text:
        return None
    return text.split(CO_MARK, 1)[0]


def change_order_line_origin(line_origin: str, key: str) -> str:
    return f"{line_origin}{CO_MARK}{key}"


def dec(value: object) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)


def number_text(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def money_text(value: Decimal) -> str:
    return str(value.quantize(CENT))


@dataclass(frozen=True)
class HeldLine:
    """What Procore holds for one X3 line: its SOV line plus the change order lines on it."""

    origin_id: str
    quantity: Decimal
    amount: Decimal
    unit_cost: Decimal | None
    cost_code_id: int | None
    line_item_type_id: int | None
    uom: str | None
    description: str | None

    @property
    def empty(self) -> bool:
        return self.quantity == 0 and self.amount == 0


def ref_id(item: dict, name: str) -> int | None:
    value = item.get(f"{name}_id")
    if value is None:
        value = (item.get(name) or {}).get("id")
    return int(value) if value not in (None, "") else None


def _held_from(origin: str, item: dict) -> HeldLine:
    unit_cost = item.get("unit_cost")
    return HeldLine(origin, dec(item.get("quantity")), dec(item.get("amount")).quantize(CENT),
                    dec(unit_cost) if unit_cost not in (None, "") else None,
                    ref_id(item, "cost_code"), ref_id(item, "line_item_type"),
                    item.get("uom"), item.get("description"))


def held_lines(po_origin_prefix: str, sov_items: list[dict],
               change_order_items: list[dict]) -> dict[str, HeldLine]:
    """X3 line origin_id -> what Procore holds for it.

    `po_origin_prefix` is `X3:PO:<number>:`; items of other POs and items without our
    origin_id (added by hand) are left out: they cannot be attributed to an X3 line.
    """
    held: dict[str, HeldLine] = {}
    for item in sov_items:
        origin = str(item.get("origin_id") or "")
        if origin.startswith(po_origin_prefix) and CO_MARK not in origin:
            held[origin] = _held_from(origin, item)
    for item in change_order_items:
        origin = line_origin_of(item.get("origin_id"))
        if origin is None or not origin.startswith(po_origin_prefix):
            continue
        line = _held_from(origin, item)
        before = held.get(origin)
        if before is None:
            held[origin] = line
            continue
        # A line removed earlier and added back takes the fields of the change order that
        # added it back; otherwise the change order lines sit on the line's own fields.
        fields = line if before.empty else before
        held[origin] = HeldLine(origin, before.quantity + line.quantity,
                                before.amount + line.amount, fields.unit_cost,
                                fields.cost_code_id, fields.line_item_type_id, fields.uom,
                                fields.description)
    return held


def _line_no(origin_id: str) -> str:
    return origin_id.rsplit(":", 1)[-1]


def unrepresentable_changes(desired_lines: list[dict], held: dict[str, HeldLine]) -> list[str]:
    """Each change a change order cannot carry faithfully, as `line <n>: <field> a -> b`."""
    problems = []
    for line in desired_lines:
        before = held.get(line["origin_id"])
        if before is None or before.empty:
            continue  # a new line (or one removed earlier and added back): carried whole
        where = f"line {_line_no(line['origin_id'])}"
        for name, label in LINE_REFERENCE_FIELDS:
            old, new = getattr(before, name), line.get(name)
            if (old or None) != (new or None):
                problems.append(f"{where}: {label} {old} -> {new}")
        unit_cost = dec(line.get("unit_cost"))
        if before.unit_cost is None or before.unit_cost != unit_cost:
            old_cost = "none" if before.unit_cost is None else number_text(before.unit_cost)
            problems.append(f"{where}: unit cost {old_cost} -> {number_text(unit_cost)}")
            continue
        quantity_delta = dec(line.get("quantity")) - before.quantity
        amount = dec(line.get("amount")).quantize(CENT)
        if abs((amount - before.amount) - quantity_delta * unit_cost) > CENT:
            problems.append(
                f"{where}: quantity {number_text(before.quantity)} -> "
                f"{number_text(dec(line.get('quantity')))} and amount {money_text(before.amount)}"
                f" -> {money_text(amount)} do not agree at unit cost {number_text(unit_cost)}")
    return problems


def delta_lines(desired_lines: list[dict], held: dict[str, HeldLine]) -> list[dict]:
    """Per X3 line, what a change order must add so Procore holds the desired line.

    Call only when `unrepresentable_changes` is empty. Each delta keeps the X3 line's
    origin_id under `line_origin`; `change_order_line_payloads` turns them into PCO lines.
    """
    deltas = []
    desired = {line["origin_id"]: line for line in desired_lines}
    for origin, line in desired.items():
        before = held.get(origin)
        quantity, amount = dec(line.get("quantity")), dec(line.get("amount")).quantize(CENT)
        if before is not None and not before.empty:
            quantity, amount = quantity - before.quantity, amount - before.amount
        if quantity == 0 and amount == 0:
            continue
        deltas.append(_delta(origin, quantity, dec(line.get("unit_cost")), amount, line))
    for origin, before in sorted(held.items()):
        if origin in desired or before.empty:
            continue
        fields = {"cost_code_id": before.cost_code_id, "line_item_type_id": before.line_item_type_id,
                  "uom": before.uom, "description": f"Removed: {before.description or ''}".strip()}
        deltas.append(_delta(origin, -before.quantity, before.unit_cost or Decimal(0),
                             -before.amount, fields))
    return deltas


def _delta(origin: str, quantity: Decimal, unit_cost: Decimal, amount: Decimal,
           fields: dict) -> dict:
    delta = {"line_origin": origin, "quantity": number_text(quantity),
             "unit_cost": number_text(unit_cost), "amount": money_text(amount),
             "uom": fields.get("uom"), "description": fields.get("description"),
             "cost_code_id": fields.get("cost_code_id")}
    if fields.get("line_item_type_id"):
        delta["line_item_type_id"] = fields["line_item_type_id"]
    return delta


def change_order_line_payloads(deltas: list[dict], key: str) -> list[dict]:
    """Bodies for PATCH potential_change_orders/{id}/line_items/sync, keyed by origin_id
    (OAS: Sync Potential Change Order Line Items)."""
    return [{**{k: v for k, v in d.items() if k != "line_origin" and v is not None},
             "origin_id": change_order_line_origin(d["line_origin"], key)} for d in deltas]


def target_key(desired_lines: list[dict], held: dict[str, HeldLine]) -> str:
    """8 hex characters naming 'this X3 version on top of what Procore held before'."""
    target = sorted((line["origin_id"], number_text(dec(line.get("quantity"))),
                     money_text(dec(line.get("amount"))),
                     number_text(dec(line.get("unit_cost")))) for line in desired_lines)
    base = sorted((origin, number_text(h.quantity), money_text(h.amount))
                  for origin, h in held.items() if not h.empty)
    text = json.dumps({"target": target, "held": base}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def total_amount(deltas: list[dict]) -> Decimal:
    return sum((dec(d["amount"]) for d in deltas), Decimal("0.00"))


def delta_texts(deltas: list[dict]) -> list[str]:
    """Audit wording: `line 1000: quantity +10 at 98.5 = +985.00`."""
    out = []
    for d in deltas:
        quantity, amount = dec(d["quantity"]), dec(d["amount"])
        sign = "+" if quantity >= 0 else ""
        out.append(f"line {_line_no(d['line_origin'])}: quantity {sign}{number_text(quantity)} "
                   f"at {d['unit_cost']} = {amount:+.2f}")
    return out
