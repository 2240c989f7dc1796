"""Schedule-of-values lines, one set of fields and rules for both holders: a commitment's
line items (commitments.py) and a potential change order's (change_orders.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from mlc_sandbox.procore.errors import Invalid, add_error
from mlc_sandbox.procore.routing import Call
from mlc_sandbox.procore.tables import Table, public, record_or_404
from mlc_sandbox.procore.values import (
    coerce,
    integer,
    money,
    number,
    one_of,
    opaque,
    origin,
    text,
    to_cents,
)
from mlc_sandbox.procore.writes import check_origin
from mlc_sandbox.seed import COMPANY_ID

if TYPE_CHECKING:
    from mlc_sandbox.procore.state import ProcoreState


LINE_ITEM_FIELDS = {
    "amount": money, "quantity": number, "unit_cost": number, "uom": text, "description": text,
    "cost_code_id": integer, "line_item_type_id": integer,
    "extended_type": one_of("manual", "calculated"), "origin_id": origin, "origin_data": opaque,
}


def check_line_references(state: ProcoreState, project_id: int, values: dict, errors: dict,
                          prefix: str = "") -> None:
    """A line's cost code must be the project's; its cost type and UOM the company's."""
    code_id = values.get("cost_code_id")
    if code_id is not None and state.cost_codes.get(code_id, project_id) is None:
        add_error(errors, prefix + "cost_code_id", "does not exist in this project")
    type_id = values.get("line_item_type_id")
    if type_id is not None and state.line_item_types.get(type_id) is None:
        add_error(errors, prefix + "line_item_type_id", "does not exist")
    uom = values.get("uom")
    if uom is not None and uom not in {u["name"] for u in state.uoms.all()}:
        add_error(errors, prefix + "uom", "is not a unit of measure of this company")


def line_amount(values: dict, line: dict | None) -> Decimal:
    """amount when sent; else quantity x unit_cost (unit accounting); else unchanged / 0."""
    if values.get("amount") is not None:
        return values["amount"]
    if line is not None and "quantity" not in values and "unit_cost" not in values:
        return line["amount"]
    merged = {**(line or {}), **values}
    if merged.get("quantity") is not None and merged.get("unit_cost") is not None:
        return to_cents(merged["quantity"] * merged["unit_cost"])
    return line["amount"] if line else Decimal("0.00")


def save_schedule_line(state: ProcoreState, table: Table, holder_id: int, project_id: int,
                       attrs: dict, line: dict | None) -> dict:
    """Create or update a schedule-of-values line under its holder (a commitment's or a
    potential change order's: same fields and rules); `table` groups lines by holder."""
    values, errors = coerce(attrs, LINE_ITEM_FIELDS)
    check_line_references(state, project_id, values, errors)
    check_origin(table, values, line, errors)
    if errors:
        raise Invalid(errors)
    values["amount"] = line_amount(values, line)
    if line is not None:
        return state.write(table, line, values)
    new = {**dict.fromkeys(LINE_ITEM_FIELDS), table.group_by: holder_id,
           "extended_type": "manual", "deleted_at": None, "position": table.size(holder_id) + 1}
    return state.write(table, None, values, new)


def holder_line_out(state: ProcoreState, line: dict, holder: dict, holder_type: str) -> dict:
    """A schedule-of-values line as Procore returns it, under its holder (a commitment or a
    PCO record, of Procore's `holder_type`): cost_code_id / line_item_type_id become the
    nested objects Procore returns."""
    out = public(line)
    code = state.cost_codes.get(out.pop("cost_code_id"), include_deleted=True)
    lit = state.line_item_types.get(out.pop("line_item_type_id"))
    project = state.projects.get(holder["_project_id"])
    return {
        **out,
        "cost_code": {key: code[key] for key in ("id", "code", "full_code", "name",
                                                 "origin_id")} if code else None,
        "line_item_type": {key: lit[key] for key in ("id", "name", "code", "base_type",
                                                     "origin_id", "origin_data")} if lit else None,
        "total_amount": line["amount"], "extended_amount": line["amount"], "wbs_code": None,
        "tax_code_id": None, "holder": {"id": holder["id"], "holder_type": holder_type},
        "project": {"id": project["id"], "name": project["name"]},
        "company": {"id": COMPANY_ID, "name": state.company["name"]},
    }


def line_or_404(call: Call, table: Table, holder: dict) -> dict:
    """The holder's live line `{id}` of the path, or Procore's 404."""
    return record_or_404(table, call.id(), "Line item", holder["id"])
