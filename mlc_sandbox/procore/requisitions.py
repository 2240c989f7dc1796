"""Requisitions (subcontractor invoices) of a commitment and their contract items."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from mlc_sandbox.procore.errors import ApiError, Invalid, add_error, missing_param
from mlc_sandbox.procore.listing import filtered, paged
from mlc_sandbox.procore.routing import Call, api, empty_ok, json_response
from mlc_sandbox.procore.tables import contract_in, public, record_or_404
from mlc_sandbox.procore.totals import claimed, contract_sums
from mlc_sandbox.procore.values import (
    boolean,
    coerce,
    integer,
    iso_date,
    money,
    number,
    one_of,
    opaque,
    origin,
    text,
    to_cents,
    total,
)
from mlc_sandbox.procore.writes import check_origin, require

if TYPE_CHECKING:
    from mlc_sandbox.procore.state import ProcoreState

REQUISITION_STATUSES = ("draft", "under_review", "revise_and_resubmit", "approved",
                        "approved_as_noted", "pending_owner_approval")
# OAS: PATCH /rest/v1.1/requisitions/:id (Update Requisition): "Users without admin
# permissions can only update a requisition (sub invoice) if it is the most recent and has a
# status of 'draft' or 'revise_and_resubmit'" (the sandbox takes the non-admin reading).
EDITABLE_REQUISITION_STATUSES = ("draft", "revise_and_resubmit")
REQUISITION_ITEM_TYPES = ("contract_item", "contract_detail_item", "change_order_item")
INVOICE_LOCKED = ("Only the latest subcontractor invoice of a commitment, in status draft or "
                  "revise_and_resubmit, can be changed")
# tutorial_financial_tools.md, "Subcontractor Invoices": the notice Procore shows.
INVOICE_SYNCED = "The invoice is not editable because it has been synced with ERP"
INVOICING_DISABLED = "Subcontractor invoices are not enabled on this commitment"


REQUISITION_FIELDS = {
    "period_id": integer, "requisition_start": iso_date, "requisition_end": iso_date,
    "billing_date": iso_date, "final": boolean, "invoice_number": text,
    "payment_date": iso_date, "submitted_at": text, "comment": text,
    "status": one_of(*REQUISITION_STATUSES), "origin_id": origin, "origin_data": opaque,
}
ITEM_AMOUNTS = ("work_completed_this_period", "materials_presently_stored",
                "work_completed_retainage_retained_this_period",
                "work_completed_retainage_released_this_period",
                "materials_stored_retainage_currently_retained", "subcontractor_claimed_amount")
CONTRACT_ITEM_FIELDS = {**dict.fromkeys(ITEM_AMOUNTS, money),
                        "work_completed_this_period_quantity": number}
REQUISITION_ITEM_FIELDS = {
    "id": integer, "item_type": one_of(*REQUISITION_ITEM_TYPES), "line_item_id": integer,
    "status": one_of("approved", "rejected", "no_action"), "comment": text,
    **CONTRACT_ITEM_FIELDS,
}


def requisition_is_editable(state: ProcoreState, requisition: dict) -> bool:
    return editing_refusal(state, requisition) is None


def editing_refusal(state: ProcoreState, requisition: dict) -> str | None:
    """Why an invoice may not change (update, item update or delete), or None.

    tutorial_financial_tools.md, "Subcontractor Invoices": "When an origin_id exists on a
    Subcontractor Invoice, the entire object is immutable". Otherwise the Update / Delete
    Requisition descriptions (OAS; tutorial_requisitions.md: "Must be the latest, open
    subcontractor invoice"): the most recent invoice, in draft or revise_and_resubmit.
    """
    if requisition["origin_id"]:
        return INVOICE_SYNCED
    latest = max(state.requisitions.all(requisition["_commitment_id"]), key=lambda r: r["number"])
    if latest is not requisition or requisition["status"] not in EDITABLE_REQUISITION_STATUSES:
        return INVOICE_LOCKED
    return None


def ensure_editable(state: ProcoreState, requisition: dict) -> None:
    refusal = editing_refusal(state, requisition)
    if refusal is not None:
        raise Invalid({"base": [refusal]})


def plan_items(state: ProcoreState, contract: dict, requisition: dict | None, raw: Any,
               errors: dict) -> list[tuple[int, dict]]:
    """Validate v1.1 `items` into (line_item_id, values) pairs before anything is written.

    On create an item names a schedule-of-values line (`line_item_id`; the OAS create body
    has no item id). On update it names the invoice's own item by `id` (OAS: PATCH
    /rest/v1.1/requisitions/:id, `requisition.items[].id`); `line_item_id` does not select.
    """
    if not isinstance(raw, list):
        add_error(errors, "items", "must be an array")
        return []
    billable = {line["id"] for line in state.line_items.all(contract["id"])}
    plan = []
    for index, item in enumerate(raw):
        prefix = f"items[{index}]."
        if not isinstance(item, dict):
            add_error(errors, prefix.rstrip("."), "must be a JSON object")
            continue
        values, item_errors = coerce(item, REQUISITION_ITEM_FIELDS)
        item_type = values.pop("item_type", None)
        if item_type is None:
            add_error(item_errors, "item_type", "can't be blank")
        elif item_type != "contract_item":
            add_error(item_errors, "item_type", "only contract_item is supported by the sandbox")
        item_id, line_id = values.pop("id", None), values.pop("line_item_id", None)
        if requisition is not None:
            target = state.requisition_items.get(item_id, requisition["id"])
            if item_id is None:
                add_error(item_errors, "id", "can't be blank")
            elif target is None:
                add_error(item_errors, "id", "is not an item of this invoice")
            elif line_id is not None and line_id != target["line_item_id"]:
                add_error(item_errors, "line_item_id", "is not the line of this item")
            line_id = target["line_item_id"] if target else None
        elif line_id not in billable:
            add_error(item_errors, "line_item_id", "is not on this commitment's schedule of values")
        for field, messages in item_errors.items():
            errors.setdefault(prefix + field, []).extend(messages)
        plan.append((line_id, values))
    return plan


def check_period(state: ProcoreState, project: dict, values: dict, errors: dict) -> None:
    """The invoice goes into the project's open billing period and takes its dates (Procore
    support, "Edit a Billing Period": "The billing period on a new invoice always corresponds to
    the dates on the Open billing period"). Dates sent by the client are not kept."""
    values.pop("requisition_start", None)
    values.pop("requisition_end", None)
    if "period_id" not in values:
        return
    period = state.billing_periods.get(values["period_id"], project["id"])
    if period is None:
        add_error(errors, "period_id", "is not a billing period of this project")
    elif period["status"] != "open":
        add_error(errors, "period_id", "is not the open billing period of this project")
    else:
        values["requisition_start"], values["requisition_end"] = (period["start_date"],
                                                                  period["end_date"])


def save_requisition(state: ProcoreState, project: dict, contract: dict, attrs: dict,
                     requisition: dict | None, items: Any = None) -> dict:
    """Create/update an invoice; a new one gets a contract item per schedule-of-values line."""
    if requisition is not None:
        ensure_editable(state, requisition)
    elif not contract["_requisitions_enabled"]:
        # The commitment's requisitions_are_enabled (OAS Show Purchase Order Contract: "If
        # true, Requisitions (Subcontractor Invoices) are enabled") is false.
        raise Invalid({"base": [INVOICING_DISABLED]})
    values, errors = coerce(attrs, REQUISITION_FIELDS)
    require(values, requisition, errors, "period_id")
    if requisition is not None and values.get("period_id", -1) == requisition["period_id"]:
        del values["period_id"]  # unchanged: the period may have closed since
    check_period(state, project, values, errors)
    check_origin(state.requisitions, values, requisition, errors)
    plan = plan_items(state, contract, requisition, items, errors) if items is not None else []
    if errors:
        raise Invalid(errors)
    siblings = state.requisitions.all(contract["id"])
    new = {**dict.fromkeys(REQUISITION_FIELDS), "_commitment_id": contract["id"],
           "_project_id": project["id"], "status": "draft", "final": False,
           "number": 1 + max((r["number"] for r in siblings), default=0)}
    created = requisition is None
    requisition = state.write(state.requisitions, requisition, values, new)
    if created:
        for line in state.line_items.all(contract["id"]):
            state.write(state.requisition_items, None, {}, {
                "_requisition_id": requisition["id"], "item_type": "contract_item",
                "line_item_id": line["id"], "cost_code_id": line["cost_code_id"],
                "description_of_work": line["description"], "scheduled_value": line["amount"],
                **dict.fromkeys(ITEM_AMOUNTS, Decimal("0.00")),
                "work_completed_this_period_quantity": Decimal(0), "status": "no_action",
                "comment": None})
    by_line = {i["line_item_id"]: i for i in state.requisition_items.all(requisition["id"])}
    for line_id, item_values in plan:
        state.write(state.requisition_items, by_line[line_id], item_values)
    return requisition


def previous_work(state: ProcoreState, requisition: dict) -> dict[int, Decimal]:
    """Work billed per line item on the commitment's earlier invoices."""
    done: dict[int, Decimal] = {}
    for earlier in state.requisitions.all(requisition["_commitment_id"]):
        if earlier["number"] < requisition["number"]:
            for item in state.requisition_items.all(earlier["id"]):
                done[item["line_item_id"]] = (done.get(item["line_item_id"], Decimal("0.00"))
                                              + item["work_completed_this_period"])
    return done


def contract_item_out(item: dict, previous: dict[int, Decimal]) -> dict:
    before = previous.get(item["line_item_id"], Decimal("0.00"))
    to_date = before + item["work_completed_this_period"] + item["materials_presently_stored"]
    scheduled = item["scheduled_value"]
    return {
        **public(item), "work_completed_from_previous_application": before,
        "total_completed_and_stored_to_date": to_date,
        "total_completed_and_stored_to_date_percent":
            to_cents(to_date * 100 / scheduled) if scheduled else Decimal("0.00"),
        "balance_to_finish": scheduled - to_date,
    }


def requisition_out(state: ProcoreState, requisition: dict, with_items: bool = False) -> dict:
    contract = state.contracts.get(requisition["_commitment_id"], include_deleted=True)
    vendor = state.vendors.get(contract["vendor_id"])
    previous = previous_work(state, requisition)
    items = [contract_item_out(i, previous)
             for i in state.requisition_items.all(requisition["id"])]
    sums = contract_sums(state, contract)
    completed = total(i["total_completed_and_stored_to_date"] for i in items)
    this_period = claimed(state, requisition)
    contract_sum = sums["revised_contract"]
    out = {
        **public(requisition), "commitment_id": contract["id"],
        "commitment_type": "PurchaseOrderContract", "contract_name": contract["title"],
        "vendor_id": vendor["id"] if vendor else None,
        "vendor_name": vendor["name"] if vendor else None,
        "total_claimed_amount": this_period,
        "percent_complete": to_cents(completed * 100 / contract_sum) if contract_sum else
        Decimal("0.00"),
        "deletable": requisition_is_editable(state, requisition), "erp_status": "not_ready",
        "summary": {
            "original_contract_sum": sums["grand_total"],
            "net_change_by_change_orders": sums["approved_change_orders"],
            "contract_sum_to_date": contract_sum,
            "total_completed_and_stored_to_date": completed,
            "total_retainage": Decimal("0.00"),
            "total_earned_less_retainage": completed,
            "less_previous_certificates_for_payment": completed - this_period,
            "current_payment_due": this_period,
            "balance_to_finish_including_retainage": contract_sum - completed,
        },
    }
    if with_items:
        out["items"] = items
    return out


def is_v11(call: Call) -> bool:
    return call.request.url.path.startswith("/rest/v1.1/")


def requisition_or_404(call: Call, project: dict, name: str = "id") -> dict:
    return record_or_404(call.state.requisitions, call.id(name), "Requisition", project=project)


def commitment_for(call: Call, project: dict) -> dict:
    return contract_in(call.state, project, call.id("commitment_id", "body"), "commitment_id")


def write_requisition(call: Call, project: dict, contract: dict,
                      requisition: dict | None) -> Response:
    """Create (201) or update (200) an invoice from the body's `requisition`, whose v1.1 form
    may carry `items`."""
    attrs = call.wrapper("requisition")
    items = attrs.get("items") if is_v11(call) else None
    saved = save_requisition(call.state, project, contract, attrs, requisition, items)
    return json_response(201 if requisition is None else 200,
                         requisition_out(call.state, saved, is_v11(call)))


@api("GET", "/rest/v1.0/requisitions", query=("project_id",))
@api("GET", "/rest/v1.1/requisitions", query=("project_id",))
def list_requisitions(call: Call) -> Response:
    project = call.project("query")
    records = [r for r in call.state.requisitions.all() if r["_project_id"] == project["id"]]
    records = filtered(call, records, {"id": "id", "commitment_id": "_commitment_id",
                                       "period_id": "period_id", "status": "status",
                                       "origin_id": "origin_id"})
    is_last = call.filter_value("is_last")
    if is_v11(call) and is_last in ("true", "false"):
        # OAS: "Setting this to true will return only the last item. Setting this to false
        # will return all the items except the last one" (per commitment).
        latest = {}  # each commitment's newest invoice: higher numbers overwrite lower ones
        for record in sorted(records, key=lambda r: r["number"]):
            latest[record["_commitment_id"]] = record
        last_ids = {r["id"] for r in latest.values()}
        records = [r for r in records if (r["id"] in last_ids) == (is_last == "true")]
    with_items = is_v11(call) and call.request.query_params.get("view") in ("extended", "items")
    # OAS: GET /rest/v1.1/requisitions, per_page: "Elements per page, default 30".
    return paged(call, records, lambda r: requisition_out(call.state, r, with_items),
                 default_per_page=30 if is_v11(call) else 100)


@api("GET", "/rest/v1.0/requisitions/{id}", query=("project_id",))
@api("GET", "/rest/v1.1/requisitions/{id}", query=("project_id",))
def show_requisition(call: Call) -> Response:
    requisition = requisition_or_404(call, call.project("query"))
    return json_response(200, requisition_out(call.state, requisition, is_v11(call)))


@api("POST", "/rest/v1.0/requisitions")
@api("POST", "/rest/v1.1/requisitions")
def create_requisition(call: Call) -> Response:
    """Body {project_id, commitment_id, requisition: {...}}; v1.1 may carry requisition.items."""
    project = call.project("body")
    return write_requisition(call, project, commitment_for(call, project), None)


@api("PATCH", "/rest/v1.0/requisitions/{id}")
@api("PATCH", "/rest/v1.1/requisitions/{id}")
def update_requisition(call: Call) -> Response:
    project = call.project("body")
    requisition = requisition_or_404(call, project)
    contract = call.state.contracts.get(requisition["_commitment_id"], include_deleted=True)
    return write_requisition(call, project, contract, requisition)


@api("DELETE", "/rest/v1.0/requisitions/{id}", query=("project_id",))
@api("DELETE", "/rest/v1.1/requisitions/{id}", query=("project_id",))
def delete_requisition(call: Call) -> Response:
    requisition = requisition_or_404(call, call.project("query"))
    ensure_editable(call.state, requisition)
    for item in call.state.requisition_items.all(requisition["id"]):
        call.state.requisition_items.remove(item)
    call.state.requisitions.remove(requisition)
    return empty_ok()


CONTRACT_ITEMS = "/rest/v1.0/requisitions/{requisition_id}/contract_items"


def contract_item_or_404(call: Call, requisition: dict) -> dict:
    return record_or_404(call.state.requisition_items, call.id(), "Contract item",
                         requisition["id"])


@api("GET", CONTRACT_ITEMS, query=("project_id",))
def list_contract_items(call: Call) -> Response:
    requisition = requisition_or_404(call, call.project("query"), "requisition_id")
    previous = previous_work(call.state, requisition)
    return paged(call, call.state.requisition_items.all(requisition["id"]),
                 lambda item: contract_item_out(item, previous))


@api("GET", CONTRACT_ITEMS + "/{id}", query=("project_id",))
def show_contract_item(call: Call) -> Response:
    requisition = requisition_or_404(call, call.project("query"), "requisition_id")
    item = contract_item_or_404(call, requisition)
    return json_response(200, contract_item_out(item, previous_work(call.state, requisition)))


@api("PATCH", CONTRACT_ITEMS + "/{id}", query=("project_id",))
def update_contract_item(call: Call) -> Response:
    requisition = requisition_or_404(call, call.project("query"), "requisition_id")
    item = contract_item_or_404(call, requisition)
    ensure_editable(call.state, requisition)
    values, errors = coerce(call.wrapper("requisition_contract_item"), CONTRACT_ITEM_FIELDS)
    if errors:
        raise Invalid(errors)
    item = call.state.write(call.state.requisition_items, item, values)
    return json_response(200, contract_item_out(item, previous_work(call.state, requisition)))


BULK_ITEM_FIELDS = {key: REQUISITION_ITEM_FIELDS[key] for key in (
    "item_type", "status", "comment", *CONTRACT_ITEM_FIELDS)}


@api("PATCH", "/rest/v1.0/requisitions/{requisition_id}/bulk_item_update", query=("project_id",))
def bulk_update_requisition_items(call: Call) -> Response:
    """OAS: PATCH .../bulk_item_update: "Updates all requisition items received in the body";
    items by `id`, all validated before any is written; 200 with an empty body (SDK docs)."""
    requisition = requisition_or_404(call, call.project("query"), "requisition_id")
    ensure_editable(call.state, requisition)
    raw = call.body.get("requisition_items")
    if raw is None or raw == []:
        raise missing_param("requisition_items")
    if not isinstance(raw, list):
        raise ApiError(400, {"errors": "requisition_items must be an array"})
    plan, errors = [], {}
    for index, entry in enumerate(raw):
        prefix = f"requisition_items[{index}]."
        entry = entry if isinstance(entry, dict) else {}
        values, item_errors = coerce(entry, BULK_ITEM_FIELDS)
        if values.pop("item_type", None) != "contract_item":
            add_error(item_errors, "item_type", "only contract_item is supported by the sandbox")
        try:
            item = call.state.requisition_items.get(integer(entry.get("id")), requisition["id"])
        except ValueError:
            item = None
        if item is None:
            add_error(item_errors, "id", "is not an item of this invoice")
        for field, messages in item_errors.items():
            errors.setdefault(prefix + field, []).extend(messages)
        plan.append((item, values))
    if errors:
        raise Invalid(errors)
    for item, values in plan:
        call.state.write(call.state.requisition_items, item, values)
    return empty_ok()
