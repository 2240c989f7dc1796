"""Standard cost code lists, their standard cost codes, and each project's cost codes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from mlc_sandbox.procore.errors import Invalid, add_error, not_found
from mlc_sandbox.procore.listing import filtered, paged
from mlc_sandbox.procore.routing import Call, api, json_response
from mlc_sandbox.procore.tables import Table, public, record_or_404
from mlc_sandbox.procore.values import coerce, integer, opaque, origin, text
from mlc_sandbox.procore.writes import check_origin, require, run_sync, taken
from mlc_sandbox.seed import COMPANY_ID

if TYPE_CHECKING:
    from mlc_sandbox.procore.state import ProcoreState


def place_code(table: Table, values: dict, code: dict | None, parent: dict | None,
               siblings: list[dict], errors: dict) -> None:
    """The rules a standard and a project cost code share: its code unique among its siblings
    and its origin_id in the company (the errors found so far are raised then), and a full
    code under its parent's (`03.100`)."""
    if taken(siblings, code, "code", values.get("code")):
        add_error(errors, "code", "has already been taken")
    check_origin(table, values, code, errors)
    if errors:
        raise Invalid(errors)
    own_code = values.get("code", code and code["code"])
    values["full_code"] = f"{parent['full_code']}.{own_code}" if parent else own_code


# --- standard cost code lists and standard cost codes -----------------------------------------


def cost_code_list_or_404(call: Call, rid: int) -> dict:
    return record_or_404(call.state.cost_code_lists, rid, "Standard cost code list")


@api("GET", "/rest/v1.0/standard_cost_code_lists", query=("company_id",))
def list_cost_code_lists(call: Call) -> Response:
    call.company("query")
    return paged(call, call.state.cost_code_lists.all(), public)


@api("GET", "/rest/v1.0/standard_cost_code_lists/{id}", query=("company_id",))
def show_cost_code_list(call: Call) -> Response:
    call.company("query")
    return json_response(200, public(cost_code_list_or_404(call, call.id())))


@api("POST", "/rest/v1.0/standard_cost_code_lists")
def create_cost_code_list(call: Call) -> Response:
    call.company("body")
    values, errors = coerce(call.wrapper("standard_cost_code_list"), {"name": text})
    require(values, None, errors, "name")
    if errors:
        raise Invalid(errors)
    record = call.state.write(call.state.cost_code_lists, None, values, {"company_id": COMPANY_ID})
    return json_response(201, public(record))


STANDARD_COST_CODE_FIELDS = {"parent_id": integer, "code": text, "name": text, "origin_id": origin,
                             "origin_data": opaque}


def save_standard_cost_code(state: ProcoreState, code_list: dict, attrs: dict,
                            code: dict | None) -> dict:
    values, errors = coerce(attrs, STANDARD_COST_CODE_FIELDS)
    require(values, code, errors, "code", "name")
    siblings = state.standard_cost_codes.all(code_list["id"])
    parent_id = values.get("parent_id", code and code["parent_id"])
    parent = state.standard_cost_codes.get(parent_id, code_list["id"])
    if parent_id is not None and parent is None:
        add_error(errors, "parent_id", "does not exist in this standard cost code list")
    place_code(state.standard_cost_codes, values, code, parent,
               [s for s in siblings if s["parent_id"] == parent_id], errors)
    new = {**dict.fromkeys(STANDARD_COST_CODE_FIELDS),
           "standard_cost_code_list_id": code_list["id"]}
    return state.write(state.standard_cost_codes, code, values, new)


def standard_cost_code_or_404(call: Call) -> dict:
    return record_or_404(call.state.standard_cost_codes, call.id(), "Standard cost code")


@api("GET", "/rest/v1.0/standard_cost_codes", query=("company_id", "standard_cost_code_list_id"))
def list_standard_cost_codes(call: Call) -> Response:
    call.company("query")
    code_list = cost_code_list_or_404(call, call.id("standard_cost_code_list_id", "query"))
    records = filtered(call, call.state.standard_cost_codes.all(code_list["id"]),
                       {"id": "id", "origin_id": "origin_id"})
    return paged(call, records, public)


@api("GET", "/rest/v1.0/standard_cost_codes/{id}",
     query=("company_id", "standard_cost_code_list_id"))
def show_standard_cost_code(call: Call) -> Response:
    call.company("query")
    return json_response(200, public(standard_cost_code_or_404(call)))


@api("POST", "/rest/v1.0/standard_cost_codes")
def create_standard_cost_code(call: Call) -> Response:
    call.company("body")
    code_list = cost_code_list_or_404(call, call.id("standard_cost_code_list_id", "body"))
    attrs = call.wrapper("standard_cost_code")
    return json_response(201, public(save_standard_cost_code(call.state, code_list, attrs, None)))


@api("PATCH", "/rest/v1.0/standard_cost_codes/{id}")
def update_standard_cost_code(call: Call) -> Response:
    call.company("body")
    code = standard_cost_code_or_404(call)
    code_list = cost_code_list_or_404(call, code["standard_cost_code_list_id"])
    attrs = call.wrapper("standard_cost_code")
    return json_response(200, public(save_standard_cost_code(call.state, code_list, attrs, code)))


@api("PATCH", "/rest/v1.0/standard_cost_codes/sync")
def sync_standard_cost_codes(call: Call) -> Response:
    call.company("body")
    code_list = cost_code_list_or_404(call, call.id("standard_cost_code_list_id", "body"))
    return run_sync(call, call.state.standard_cost_codes, code_list["id"],
                    lambda item, rec: save_standard_cost_code(call.state, code_list, item, rec),
                    public)


# --- project cost codes -----------------------------------------------------------------------


COST_CODE_FIELDS = {"name": text, "code": text, "position": integer, "parent_id": integer,
                    "standard_cost_code_id": integer, "origin_id": origin, "origin_data": opaque}


def biller(call: Call, project: dict, where: str) -> tuple[str, int]:
    """Cost codes belong to the project, or to one of its sub jobs when sub_job_id is given."""
    sub_job_id = call.id("sub_job_id", where, required=False)
    if sub_job_id is None:
        return "Project", project["id"]
    if call.state.sub_jobs.get(sub_job_id, project["id"]) is None:
        raise not_found("Sub job")
    return "SubJob", sub_job_id


def save_cost_code(state: ProcoreState, project: dict, owner: tuple[str, int], attrs: dict,
                   code: dict | None) -> dict:
    values, errors = coerce(attrs, COST_CODE_FIELDS)
    require(values, code, errors, "code", "name")
    parent_id = values.pop("parent_id", code["parent"]["id"] if code and code["parent"] else None)
    parent = state.cost_codes.get(parent_id, project["id"])
    if parent_id is not None and parent is None:
        add_error(errors, "parent_id", "does not exist in this project")
    standard_id = values.get("standard_cost_code_id")
    if standard_id is not None and state.standard_cost_codes.get(standard_id) is None:
        add_error(errors, "standard_cost_code_id", "does not exist")
    if code is None:
        values["biller_type"], values["biller_id"] = owner
    owner_id = (code or values)["biller_id"]
    same_owner = [c for c in state.cost_codes.all(project["id"])
                  if c["biller_id"] == owner_id and (c["parent"] or {}).get("id") == parent_id]
    place_code(state.cost_codes, values, code, parent, same_owner, errors)
    values["parent"] = {"id": parent_id} if parent_id else None
    new = {**{k: None for k in COST_CODE_FIELDS if k != "parent_id"},  # stored as `parent`
           "_project_id": project["id"], "deleted_at": None,
           "position": state.cost_codes.size(project["id"])}
    return state.write(state.cost_codes, code, values, new)


def cost_code_or_404(call: Call, project: dict) -> dict:
    return record_or_404(call.state.cost_codes, call.id(), "Cost code", project["id"])


@api("GET", "/rest/v1.0/cost_codes", query=("project_id",))
def list_cost_codes(call: Call) -> Response:
    project = call.project("query")
    records = call.state.cost_codes.all(project["id"])
    if call.param("sub_job_id", "query"):
        owner_id = biller(call, project, "query")[1]
        records = [c for c in records if c["biller_id"] == owner_id]
    return paged(call, filtered(call, records, {"id": "id", "origin_id": "origin_id"}), public)


@api("GET", "/rest/v1.0/cost_codes/{id}", query=("project_id",))
def show_cost_code(call: Call) -> Response:
    return json_response(200, public(cost_code_or_404(call, call.project("query"))))


@api("POST", "/rest/v1.0/cost_codes")
def create_cost_code(call: Call) -> Response:
    project = call.project("body")
    code = save_cost_code(call.state, project, biller(call, project, "body"),
                          call.wrapper("cost_code"), None)
    return json_response(201, public(code))


@api("PATCH", "/rest/v1.0/cost_codes/{id}")
def update_cost_code(call: Call) -> Response:
    project = call.project("body")
    code = cost_code_or_404(call, project)
    code = save_cost_code(call.state, project, (code["biller_type"], code["biller_id"]),
                          call.wrapper("cost_code"), code)
    return json_response(200, public(code))


@api("PATCH", "/rest/v1.0/cost_codes/sync", query=("project_id",))
def sync_cost_codes(call: Call) -> Response:
    """project_id (and sub_job_id) travel in the query string on this endpoint."""
    project = call.project("query")
    owner = biller(call, project, "query")
    return run_sync(call, call.state.cost_codes, project["id"],
                    lambda item, rec: save_cost_code(call.state, project, owner, item, rec), public)
