"""Change orders in the Procore sandbox: packages, potential change orders and their lines.

Sources: procore/documentation tutorials/tutorial_change_orders.md ("Single-Tier Change
Order Behavior": a commitment change order is a Change Order Package plus a Potential
Change Order that holds its line items), tutorials/tutorial_financial_tools.md (origin_code
on change order packages; "when the Status of a Change Order is Approved or Complete, the
SOV cannot be modified, nor can the Change Order be deleted"), and the OAS operations
registered below (their request shapes are in procore_api_subset.json).

Each project has a change-order tier (state.ProcoreState.change_order_tier), never
shown as a field: a client learns it from the arrays of the purchase order contract's show
response (commitments.tier_arrays). Only a single-tier package gets a potential change
order; on two- and three-tier projects nothing creates one (the sandbox does not serve
potential change order creation), so line items can only be written on single-tier projects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from mlc_sandbox.procore.errors import ApiError, Invalid, add_error, not_found
from mlc_sandbox.procore.listing import filtered, include_deleted, paged
from mlc_sandbox.procore.routing import Call, api, empty_ok, json_response, no_content
from mlc_sandbox.procore.sov_lines import holder_line_out, line_or_404, save_schedule_line
from mlc_sandbox.procore.tables import contract_in, next_number, record_or_404
from mlc_sandbox.procore.totals import package_total
from mlc_sandbox.procore.values import (
    boolean,
    coerce,
    integer,
    iso_date,
    now_iso,
    one_of,
    opaque,
    origin,
    text,
)
from mlc_sandbox.procore.writes import check_origin, require, run_sync

if TYPE_CHECKING:
    from mlc_sandbox.procore.state import ProcoreState

# ASSUMPTION: no source gives the enum (GET /rest/v1.0/change_order/statuses lists a company's
# own); lower case, as the OAS examples spell statuses.
PACKAGE_STATUSES = ("draft", "pending", "approved", "rejected", "void")
LOCKED_PACKAGE_STATUS = "approved"
CO_LOCKED = "The change order is approved: its schedule of values cannot be modified"
CO_NOT_DELETABLE = "An approved change order cannot be deleted"
TIER_3_UNSUPPORTED = ("This endpoint currently only supports projects using 1 and 2 tier change "
                      "order configurations")

# OAS: POST /rest/v1.0/change_order_packages `change_order`. grand_total is permitted there but
# derived here (the sum of the package's PCO line items), so a sent value has no effect.
PACKAGE_FIELDS = {
    "title": text, "description": text, "status": one_of(*PACKAGE_STATUSES),
    "origin_id": origin, "origin_code": text, "origin_data": opaque, "due_date": iso_date,
    "paid_date": iso_date, "invoiced_date": iso_date, "executed": boolean,
    "schedule_impact_amount": integer, "signed_change_order_received_date": iso_date,
}
# OAS: POST /rest/v1.0/projects/:project_id/commitment_change_orders `change_order` (the
# attributes the sandbox stores; no origin_id, no line items).
CCO_FIELDS = {
    **{key: PACKAGE_FIELDS[key] for key in (
        "title", "description", "status", "due_date", "paid_date", "invoiced_date", "executed",
        "schedule_impact_amount", "signed_change_order_received_date")},
    "number": text,
}
# Package JSON: origin_id / origin_data are stored but not echoed (stricter than the SDK's
# response model, so a client cannot rely on them; lookups go by title or number).
PACKAGE_OUT = ("id", "number", "title", "description", "status", "contract_id", "origin_code",
               "created_at", "updated_at")
CCO_OUT = ("id", "number", "title", "description", "status", "contract_id", "executed",
           "due_date", "paid_date", "invoiced_date", "signed_change_order_received_date",
           "schedule_impact_amount", "created_at", "updated_at")
PACKAGES = "/rest/v1.0/change_order_packages"
PCOS = "/rest/v1.0/potential_change_orders"
PCO_LINES = PCOS + "/{potential_change_order_id}/line_items"
CCOS = "/rest/v1.0/projects/{project_id}/commitment_change_orders"


# --- packages ---------------------------------------------------------------------------------


def save_package(state: ProcoreState, project: dict, contract: dict, values: dict,
                 package: dict | None) -> dict:
    """Create (with its PCO on a single-tier project) or update a change order package."""
    errors: dict[str, list[str]] = {}
    check_origin(state.packages, values, package, errors)
    same_number = state.packages.find_number(contract["id"], values.get("number"))
    if same_number is not None and same_number is not package:
        add_error(errors, "number", "has already been taken")
    if errors:
        raise Invalid(errors)
    if package is not None:
        return state.write(state.packages, package, values)
    new = {**dict.fromkeys(PACKAGE_FIELDS), "_project_id": project["id"],
           "contract_id": contract["id"], "number": next_number(state.packages, contract["id"]),
           "status": "draft", "executed": False, "deleted_at": None}
    package = state.write(state.packages, None, values, new)
    if state.change_order_tier(project["id"]) == 1:
        # tutorial_change_orders.md, Single-Tier: "both a Change Order Package and a Potential
        # Change Order (to hold the line items for the change order) is created".
        state.write(state.pcos, None, {}, {
            "_project_id": project["id"], "contract_id": contract["id"],
            "change_order_package_id": package["id"], "number": package["number"],
            "origin_id": None, "deleted_at": None})
    return package


def update_on_its_contract(state: ProcoreState, project: dict, package: dict, values: dict,
                           contract_id: int | None) -> dict:
    """Update a package (through either endpoint); it never moves to another contract."""
    if contract_id is not None and contract_id != package["contract_id"]:
        raise Invalid({"contract_id": ["is not the contract of this change order"]})
    contract = state.contracts.get(package["contract_id"], include_deleted=True)
    return save_package(state, project, contract, values, package)


def package_out(state: ProcoreState, package: dict) -> dict:
    return {**{key: package.get(key) for key in PACKAGE_OUT},
            "grand_total": package_total(state, package)}


def package_values(call: Call) -> dict:
    values, errors = coerce(call.wrapper("change_order"), PACKAGE_FIELDS)
    if errors:
        raise Invalid(errors)
    return values


def package_or_404(call: Call, project: dict) -> dict:
    return record_or_404(call.state.packages, call.id(), "Change order package", project=project)


@api("GET", PACKAGES, query=("project_id",))
def list_packages(call: Call) -> Response:
    project = call.project("query")
    contract_id = call.id("contract_id", "query", required=False)
    if contract_id is not None and call.state.contracts.get(contract_id, project["id"]) is None:
        raise not_found("Contract")
    records = [p for p in include_deleted(call, call.state.packages, contract_id)
               if p["_project_id"] == project["id"]]
    return paged(call, filtered(call, records, {"id": "id"}),
                 lambda p: package_out(call.state, p))


@api("GET", PACKAGES + "/{id}", query=("project_id",))
def show_package(call: Call) -> Response:
    package = package_or_404(call, call.project("query"))
    contract_id = call.id("contract_id", "query", required=False)
    if contract_id is not None and contract_id != package["contract_id"]:
        raise not_found("Change order package")
    return json_response(200, package_out(call.state, package))


@api("POST", PACKAGES, invalid_status=400)
def create_package(call: Call) -> Response:
    """Allowed on Approved commitments: that is how their value changes."""
    project = call.project("body")
    contract = contract_in(call.state, project, call.id("contract_id", "body"), "contract_id")
    package = save_package(call.state, project, contract, package_values(call), None)
    return json_response(201, package_out(call.state, package))


@api("PATCH", PACKAGES + "/{id}", invalid_status=400)
def update_package(call: Call) -> Response:
    project = call.project("body")
    package = package_or_404(call, project)
    contract_id = call.id("contract_id", "body", required=False)
    package = update_on_its_contract(call.state, project, package, package_values(call),
                                     contract_id)
    return json_response(200, package_out(call.state, package))


# --- potential change orders ------------------------------------------------------------------


def pco_out(state: ProcoreState, pco: dict) -> dict:
    """A single-tier PCO mirrors its package's title and status (ASSUMPTION: the OAS has no
    PCO response example; the SDK model names these attributes)."""
    package = state.packages.get(pco["change_order_package_id"], include_deleted=True)
    return {
        "id": pco["id"], "number": pco["number"], "title": package["title"],
        "status": package["status"], "contract_id": pco["contract_id"],
        "change_order_package_id": pco["change_order_package_id"],
        "grand_total": package_total(state, package),
        "created_at": pco["created_at"], "updated_at": pco["updated_at"],
    }


def pco_or_404(call: Call, project: dict, name: str = "id") -> dict:
    return record_or_404(call.state.pcos, call.id(name), "Potential change order",
                         project=project)


@api("GET", PCOS, query=("project_id",))
def list_pcos(call: Call) -> Response:
    project = call.project("query")
    records = [p for p in include_deleted(call, call.state.pcos, None)
               if p["_project_id"] == project["id"]]
    records = filtered(call, records, {"id": "id", "origin_id": "origin_id",
                                       "contract_id": "contract_id"})
    return paged(call, records, lambda p: pco_out(call.state, p))


@api("GET", PCOS + "/{id}", query=("project_id", "contract_id"))
def show_pco(call: Call) -> Response:
    pco = pco_or_404(call, call.project("query"))
    if call.id("contract_id", "query") != pco["contract_id"]:
        raise not_found("Potential change order")
    return json_response(200, pco_out(call.state, pco))


# --- potential change order line items --------------------------------------------------------


def ensure_package_open(state: ProcoreState, pco: dict) -> None:
    """An approved package locks its PCO's line items (create, update and delete)."""
    package = state.packages.get(pco["change_order_package_id"], include_deleted=True)
    if package["status"] == LOCKED_PACKAGE_STATUS:
        raise Invalid({"base": [CO_LOCKED]})


def save_pco_line(state: ProcoreState, pco: dict, attrs: dict, line: dict | None) -> dict:
    """Same fields and rules as a commitment's line items (sov_lines.save_schedule_line)."""
    ensure_package_open(state, pco)
    return save_schedule_line(state, state.pco_lines, pco["id"], pco["_project_id"], attrs, line)


def pco_line_out(state: ProcoreState, line: dict) -> dict:
    """The commitment line item shape; holder_type is an ASSUMPTION."""
    pco = state.pcos.get(line["_pco_id"], include_deleted=True)
    return holder_line_out(state, line, pco, "PotentialChangeOrder")


def pco_line_or_404(call: Call, pco: dict) -> dict:
    return line_or_404(call, call.state.pco_lines, pco)


@api("GET", PCO_LINES, query=("project_id",))
def list_pco_lines(call: Call) -> Response:
    pco = pco_or_404(call, call.project("query"), "potential_change_order_id")
    records = filtered(call, call.state.pco_lines.all(pco["id"]),
                       {"id": "id", "cost_code_id": "cost_code_id",
                        "line_item_type_id": "line_item_type_id"})
    return paged(call, records, lambda line: pco_line_out(call.state, line))


@api("GET", PCO_LINES + "/{id}", query=("project_id",))
def show_pco_line(call: Call) -> Response:
    pco = pco_or_404(call, call.project("query"), "potential_change_order_id")
    return json_response(200, pco_line_out(call.state, pco_line_or_404(call, pco)))


@api("POST", PCO_LINES, invalid_status=400)
def create_pco_line(call: Call) -> Response:
    pco = pco_or_404(call, call.project("body"), "potential_change_order_id")
    line = save_pco_line(call.state, pco, call.wrapper("line_item"), None)
    return json_response(201, pco_line_out(call.state, line))


@api("PATCH", PCO_LINES + "/{id}", invalid_status=400)
def update_pco_line(call: Call) -> Response:
    pco = pco_or_404(call, call.project("body"), "potential_change_order_id")
    line = save_pco_line(call.state, pco, call.wrapper("line_item"), pco_line_or_404(call, pco))
    return json_response(200, pco_line_out(call.state, line))


@api("DELETE", PCO_LINES + "/{id}", query=("project_id",))
def delete_pco_line(call: Call) -> Response:
    pco = pco_or_404(call, call.project("query"), "potential_change_order_id")
    line = pco_line_or_404(call, pco)
    ensure_package_open(call.state, pco)
    call.state.write(call.state.pco_lines, line, {"deleted_at": now_iso()})
    return empty_ok()


@api("PATCH", PCO_LINES + "/sync", query=("project_id",))
def sync_pco_lines(call: Call) -> Response:
    """Matched by id / origin_id like every sync (procore/documentation using_sync_actions.md)."""
    pco = pco_or_404(call, call.project("query"), "potential_change_order_id")
    return run_sync(call, call.state.pco_lines, pco["id"],
                    lambda item, rec: save_pco_line(call.state, pco, item, rec),
                    lambda line: pco_line_out(call.state, line))


# --- commitment change orders (the package seen through the CCO endpoints) --------------------


def cco_project(call: Call) -> dict:
    """OAS (every commitment_change_orders operation): "This endpoint currently only supports
    projects using 1 and 2 tier change order configurations" - a three-tier project gets a 400."""
    project = call.project("path")
    if call.state.change_order_tier(project["id"]) == 3:
        raise ApiError(400, {"errors": TIER_3_UNSUPPORTED})
    return project


def cco_out(state: ProcoreState, package: dict) -> dict:
    """The CCO form of a package: no origin_id and no line items (issue 13 point 1)."""
    contract = state.contracts.get(package["contract_id"], include_deleted=True)
    vendor = state.vendors.get(contract["vendor_id"])
    return {
        **{key: package.get(key) for key in CCO_OUT},
        "grand_total": package_total(state, package),
        "contract": {"id": contract["id"], "number": contract["number"],
                     "title": contract["title"]},
        "vendor": {"id": vendor["id"], "name": vendor["name"]} if vendor else None,
    }


def cco_values(call: Call, creating: bool) -> tuple[dict, int | None]:
    attrs = call.wrapper("change_order")
    values, errors = coerce(attrs, {**CCO_FIELDS, "contract_id": integer})
    if creating:
        require(values, None, errors, "contract_id")
    if errors:
        raise Invalid(errors)
    return values, values.pop("contract_id", None)


@api("GET", CCOS)
def list_ccos(call: Call) -> Response:
    project = cco_project(call)
    records = [p for p in call.state.packages.all() if p["_project_id"] == project["id"]]
    records = filtered(call, records, {"id": "id", "contract_id": "contract_id",
                                       "status": "status", "executed": "executed"})
    return paged(call, records, lambda p: cco_out(call.state, p))


@api("GET", CCOS + "/{id}")
def show_cco(call: Call) -> Response:
    return json_response(200, cco_out(call.state, package_or_404(call, cco_project(call))))


@api("POST", CCOS)
def create_cco(call: Call) -> Response:
    """Creates a package (and, single-tier, its empty PCO): the body carries no line items."""
    project = cco_project(call)
    values, contract_id = cco_values(call, creating=True)
    contract = contract_in(call.state, project, contract_id, "contract_id")
    return json_response(201, cco_out(call.state, save_package(call.state, project, contract,
                                                               values, None)))


@api("PATCH", CCOS + "/{id}")
def update_cco(call: Call) -> Response:
    project = cco_project(call)
    package = package_or_404(call, project)
    values, contract_id = cco_values(call, creating=False)
    package = update_on_its_contract(call.state, project, package, values, contract_id)
    return json_response(200, cco_out(call.state, package))


@api("DELETE", CCOS + "/{id}", invalid_status=400)
def delete_cco(call: Call) -> Response:
    """204 (SDK docs); an approved change order "cannot be deleted" (financial tools)."""
    package = package_or_404(call, cco_project(call))
    if package["status"] == LOCKED_PACKAGE_STATUS:
        raise Invalid({"base": [CO_NOT_DELETABLE]})
    stamp = now_iso()
    for pco in call.state.pcos.all(package["contract_id"]):
        if pco["change_order_package_id"] == package["id"]:
            for line in call.state.pco_lines.all(pco["id"]):
                call.state.write(call.state.pco_lines, line, {"deleted_at": stamp})
            call.state.write(call.state.pcos, pco, {"deleted_at": stamp})
    call.state.write(call.state.packages, package, {"deleted_at": stamp})
    return no_content()
