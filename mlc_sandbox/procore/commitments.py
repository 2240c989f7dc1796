"""Purchase order contracts (commitments) and their line items (the schedule of values)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from mlc_sandbox.procore.change_orders import package_out, pco_out
from mlc_sandbox.procore.errors import Invalid, add_error
from mlc_sandbox.procore.listing import filtered, include_deleted, paged
from mlc_sandbox.procore.routing import Call, api, empty_ok, json_response
from mlc_sandbox.procore.sov_lines import holder_line_out, line_or_404, save_schedule_line
from mlc_sandbox.procore.tables import next_number, public
from mlc_sandbox.procore.totals import contract_sums
from mlc_sandbox.procore.values import (
    boolean,
    coerce,
    id_list,
    integer,
    iso_date,
    now_iso,
    number,
    one_of,
    opaque,
    origin,
    text,
)
from mlc_sandbox.procore.writes import check_origin, run_sync

if TYPE_CHECKING:
    from mlc_sandbox.procore.state import ProcoreState

PO_STATUSES = ("Draft", "Processing", "Submitted", "Partially Received", "Received", "Approved",
               "Closed")
ACCOUNTING_METHODS = ("amount", "unit")
# "If a Commitment ... has a Status of Approved or Complete, the Contract Company and the
# Schedule of Values are not able to be modified ... cannot be deleted" (procore/documentation
# tutorials/tutorial_financial_tools.md, "Record locking"), when the company setting is on.
LOCKED_COMMITMENT_STATUSES = ("Approved", "Complete")
SOV_LOCKED = "The schedule of values is locked because the commitment is Approved or Complete"


CONTRACT_DATES = ("contract_date", "delivery_date", "execution_date", "issued_on_date",
                  "letter_of_intent_date", "returned_date")
CONTRACT_FIELDS = {
    "number": text, "title": text, "description": text, "status": one_of(*PO_STATUSES),
    "executed": boolean, "private": boolean, "vendor_id": integer,
    "accounting_method": one_of(*ACCOUNTING_METHODS), "assignee_id": integer,
    "bill_to_address": text, "ship_to_address": text, "ship_via": text, "payment_terms": text,
    "retainage_percent": number, "approval_letter_date": text,
    **dict.fromkeys(CONTRACT_DATES, iso_date), "invoice_contact_user_ids": id_list,
    "origin_id": origin, "origin_code": text, "origin_data": opaque, "currency_iso_code": text,
    "currency_exchange_rate": number,
}
CONTRACTS = "/rest/v1.0/purchase_order_contracts"


def save_contract(state: ProcoreState, project: dict, attrs: dict, contract: dict | None) -> dict:
    """Create/update a PO; under the Approved lock it keeps its vendor (status stays editable)."""
    values, errors = coerce(attrs, CONTRACT_FIELDS)
    vendor_id = values.get("vendor_id")
    if vendor_id is not None and state.vendors.get(vendor_id) is None:
        add_error(errors, "vendor_id", "does not exist")
    if (contract is not None and state.sov_locked(contract) and "vendor_id" in values
            and vendor_id != contract["vendor_id"]):
        add_error(errors, "vendor_id", "is locked because the commitment is Approved or Complete")
    # ASSUMPTION (stricter, docs/api-assumptions.md §1.6): the accounting method of a commitment
    # that has line items cannot change.
    if (contract is not None and "accounting_method" in values
            and values["accounting_method"] != contract["accounting_method"]
            and state.line_items.all(contract["id"])):
        add_error(errors, "accounting_method",
                  "cannot be changed once the commitment has line items")
    same_number = state.contracts.find_number(project["id"], values.get("number"))
    if same_number is not None and same_number is not contract:
        add_error(errors, "number", "has already been taken")
    check_origin(state.contracts, values, contract, errors)
    if errors:
        raise Invalid(errors)
    if contract is not None:
        return state.write(state.contracts, contract, values)
    number = values.get("number") or next_number(state.contracts, project["id"])
    new = {**dict.fromkeys(CONTRACT_FIELDS), "_project_id": project["id"], "status": "Draft",
           "executed": False, "private": False, "accounting_method": "amount",
           "number": number, "deleted_at": None,
           # requisitions_are_enabled is set in Procore's UI, not through this body: the seed
           # names the POs whose commitments have invoicing disabled.
           "_requisitions_enabled": not ({number, values.get("origin_code")}
                                         & state.requisitions_disabled_pos)}
    return state.write(state.contracts, None, values, new)


def contract_out(state: ProcoreState, contract: dict, detail: bool = False) -> dict:
    vendor = state.vendors.get(contract["vendor_id"])
    project = state.projects.get(contract["_project_id"])
    out = public(contract)
    del out["vendor_id"], out["currency_iso_code"]
    out.update(contract_sums(state, contract))
    out.update({
        "vendor": {"id": vendor["id"], "company": vendor["name"], "origin_id": vendor["origin_id"],
                   "origin_data": vendor["origin_data"]} if vendor else None,
        "project": {"id": project["id"], "name": project["name"]},
        "requisitions_are_enabled": contract["_requisitions_enabled"],
        "currency_configuration": {"currency_iso_code": contract["currency_iso_code"]},
    })
    if detail:
        out["line_items"] = [line_out(state, line) for line in state.line_items.all(contract["id"])]
        out.update(tier_arrays(state, contract))
    return out


def tier_arrays(state: ProcoreState, contract: dict) -> dict[str, list]:
    """OAS: GET /rest/v1.0/purchase_order_contracts/:id (Show Purchase Order Contract), "Special
    notes (Tiers)": 1-tier shows Change Order Packages; 2-tier adds Potential Change Orders;
    3-tier adds Change Order Requests (not modelled: always empty). Detail responses only."""
    tier = state.change_order_tier(contract["_project_id"])
    arrays = {"change_order_packages": [package_out(state, p)
                                        for p in state.packages.all(contract["id"])]}
    if tier >= 2:
        arrays["potential_change_orders"] = [pco_out(state, p)
                                             for p in state.pcos.all(contract["id"])]
    if tier >= 3:
        arrays["change_order_requests"] = []
    return arrays


@api("GET", CONTRACTS, query=("project_id",))
def list_contracts(call: Call) -> Response:
    project = call.project("query")
    records = filtered(call, include_deleted(call, call.state.contracts, project["id"]),
                       {"id": "id", "origin_id": "origin_id", "status": "status"})
    return paged(call, records, lambda c: contract_out(call.state, c))


@api("GET", CONTRACTS + "/{id}", query=("project_id",))
def show_contract(call: Call) -> Response:
    contract = call.contract(call.project("query"))
    return json_response(200, contract_out(call.state, contract, detail=True))


@api("POST", CONTRACTS)
def create_contract(call: Call) -> Response:
    project = call.project("body")
    contract = save_contract(call.state, project, call.wrapper("purchase_order_contract"), None)
    return json_response(201, contract_out(call.state, contract, detail=True))


@api("PATCH", CONTRACTS + "/{id}")
def update_contract(call: Call) -> Response:
    project = call.project("body")
    contract = save_contract(call.state, project, call.wrapper("purchase_order_contract"),
                             call.contract(project))
    return json_response(200, contract_out(call.state, contract, detail=True))


@api("DELETE", CONTRACTS + "/{id}", query=("project_id",))
def delete_contract(call: Call) -> Response:
    contract = call.contract(call.project("query"))
    if call.state.sov_locked(contract):
        raise Invalid({"base": ["An Approved or Complete commitment cannot be deleted"]})
    call.state.write(call.state.contracts, contract, {"deleted_at": now_iso()})
    return empty_ok()


@api("PATCH", CONTRACTS + "/sync")
def sync_contracts(call: Call) -> Response:
    project = call.project("body")
    return run_sync(call, call.state.contracts, project["id"],
                    lambda item, rec: save_contract(call.state, project, item, rec),
                    lambda c: contract_out(call.state, c, detail=True))


@api("GET", "/rest/v1.0/commitments", query=("project_id",))
def list_commitments(call: Call) -> Response:
    project = call.project("query")
    return paged(call, call.state.contracts.all(project["id"]),
                 lambda c: contract_out(call.state, c))


@api("GET", "/rest/v1.0/commitments/{id}", query=("project_id",))
def show_commitment(call: Call) -> Response:
    contract = call.contract(call.project("query"))
    return json_response(200, contract_out(call.state, contract, detail=True))


# --- purchase order contract line items (schedule of values) ----------------------------------


LINE_ITEMS = CONTRACTS + "/{purchase_order_contract_id}/line_items"


def save_line_item(state: ProcoreState, contract: dict, attrs: dict, line: dict | None) -> dict:
    # Any write to the schedule of values of a locked commitment is refused, a quantity or
    # unit cost change that keeps the amount included (issue 13 point 6b).
    if state.sov_locked(contract):
        raise Invalid({"base": [SOV_LOCKED]})
    return save_schedule_line(state, state.line_items, contract["id"], contract["_project_id"],
                              attrs, line)


def line_out(state: ProcoreState, line: dict) -> dict:
    contract = state.contracts.get(line["_contract_id"], include_deleted=True)
    return holder_line_out(state, line, contract, "PurchaseOrderContract")


def line_item_or_404(call: Call, contract: dict) -> dict:
    return line_or_404(call, call.state.line_items, contract)


@api("GET", LINE_ITEMS, query=("project_id",))
def list_line_items(call: Call) -> Response:
    contract = call.contract(call.project("query"), "purchase_order_contract_id")
    records = filtered(call, include_deleted(call, call.state.line_items, contract["id"]),
                       {"id": "id", "origin_id": "origin_id", "cost_code_id": "cost_code_id",
                        "line_item_type_id": "line_item_type_id"})
    return paged(call, records, lambda line: line_out(call.state, line))


@api("GET", LINE_ITEMS + "/{id}", query=("project_id",))
def show_line_item(call: Call) -> Response:
    contract = call.contract(call.project("query"), "purchase_order_contract_id")
    return json_response(200, line_out(call.state, line_item_or_404(call, contract)))


@api("POST", LINE_ITEMS)
def create_line_item(call: Call) -> Response:
    contract = call.contract(call.project("body"), "purchase_order_contract_id")
    line = save_line_item(call.state, contract, call.wrapper("line_item"), None)
    return json_response(201, line_out(call.state, line))


@api("PATCH", LINE_ITEMS + "/{id}")
def update_line_item(call: Call) -> Response:
    contract = call.contract(call.project("body"), "purchase_order_contract_id")
    line = save_line_item(call.state, contract, call.wrapper("line_item"),
                          line_item_or_404(call, contract))
    return json_response(200, line_out(call.state, line))


@api("DELETE", LINE_ITEMS + "/{id}", query=("project_id",))
def delete_line_item(call: Call) -> Response:
    contract = call.contract(call.project("query"), "purchase_order_contract_id")
    line = line_item_or_404(call, contract)
    if call.state.sov_locked(contract):
        raise Invalid({"base": [SOV_LOCKED]})
    call.state.write(call.state.line_items, line, {"deleted_at": now_iso()})
    return empty_ok()


@api("PATCH", LINE_ITEMS + "/sync", query=("project_id",))
def sync_line_items(call: Call) -> Response:
    """project_id is a query parameter here; the body is just {updates: [...]}."""
    contract = call.contract(call.project("query"), "purchase_order_contract_id")
    return run_sync(call, call.state.line_items, contract["id"],
                    lambda item, rec: save_line_item(call.state, contract, item, rec),
                    lambda line: line_out(call.state, line))
