"""Company and project reference lists: units of measure, line item types, sub jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from mlc_sandbox.procore.errors import Invalid, add_error, missing_param
from mlc_sandbox.procore.listing import filtered, paged
from mlc_sandbox.procore.routing import Call, api, json_response
from mlc_sandbox.procore.tables import public, record_or_404
from mlc_sandbox.procore.values import coerce, one_of, opaque, origin, text
from mlc_sandbox.procore.writes import check_origin, require, run_sync, taken

if TYPE_CHECKING:
    from mlc_sandbox.procore.state import ProcoreState

BASE_TYPES = ("labor", "equipment", "materials", "commitment", "owner_cost",
              "professional_services", "other")


# --- units of measure -------------------------------------------------------------------------


@api("GET", "/rest/v1.0/companies/{company_id}/uoms")
def list_uoms(call: Call) -> Response:
    call.company("path")
    return paged(call, call.state.uoms.all(), public)


@api("GET", "/rest/v1.0/companies/{company_id}/uoms/{id}")
def show_uom(call: Call) -> Response:
    call.company("path")
    return json_response(200, public(record_or_404(call.state.uoms, call.id(),
                                                   "Unit of measure")))


# --- line item types (cost types) -------------------------------------------------------------


LINE_ITEM_TYPE_FIELDS = {"name": text, "csv_import_code": text, "base_type": one_of(*BASE_TYPES),
                         "origin_id": origin, "origin_data": opaque}


def save_line_item_type(state: ProcoreState, attrs: dict, lit: dict | None) -> dict:
    values, errors = coerce(attrs, LINE_ITEM_TYPE_FIELDS)
    require(values, lit, errors, "name")
    if "csv_import_code" in values:  # the request says csv_import_code, responses say code
        values["code"] = values.pop("csv_import_code")
    if taken(state.line_item_types.all(), lit, "code", values.get("code")):
        add_error(errors, "csv_import_code", "has already been taken")
    check_origin(state.line_item_types, values, lit, errors)
    if errors:
        raise Invalid(errors)
    new = {"name": None, "code": None, "base_type": "other", "origin_id": None, "origin_data": None}
    return state.write(state.line_item_types, lit, values, new)


def line_item_type_or_404(call: Call) -> dict:
    return record_or_404(call.state.line_item_types, call.id(), "Line item type")


@api("GET", "/rest/v1.0/line_item_types")
def list_line_item_types(call: Call) -> Response:
    """Takes company_id or project_id; the subset marks both (Required), one is enough."""
    if call.param("company_id", "query"):
        call.company("query")
    elif call.param("project_id", "query"):
        call.project("query")
    else:
        raise missing_param("company_id or project_id")
    records = filtered(call, call.state.line_item_types.all(), {"origin_id": "origin_id"})
    return paged(call, records, public)


@api("GET", "/rest/v1.0/line_item_types/{id}", query=("company_id",))
def show_line_item_type(call: Call) -> Response:
    call.company("query")
    return json_response(200, public(line_item_type_or_404(call)))


@api("POST", "/rest/v1.0/line_item_types")
def create_line_item_type(call: Call) -> Response:
    call.company("body")
    lit = save_line_item_type(call.state, call.wrapper("line_item_type"), None)
    return json_response(201, public(lit))


@api("PATCH", "/rest/v1.0/line_item_types/{id}")
def update_line_item_type(call: Call) -> Response:
    call.company("body")
    lit = line_item_type_or_404(call)
    return json_response(200, public(save_line_item_type(call.state,
                                                         call.wrapper("line_item_type"), lit)))


@api("PATCH", "/rest/v1.0/line_item_types/sync")
def sync_line_item_types(call: Call) -> Response:
    call.company("body")
    return run_sync(call, call.state.line_item_types, None,
                    lambda item, rec: save_line_item_type(call.state, item, rec), public)


# --- sub jobs ---------------------------------------------------------------------------------


SUB_JOB_FIELDS = {"name": text, "code": text, "origin_id": origin, "origin_data": opaque}


def save_sub_job(state: ProcoreState, project: dict, attrs: dict, job: dict | None) -> dict:
    values, errors = coerce(attrs, SUB_JOB_FIELDS)
    require(values, job, errors, "name", "code")
    if taken(state.sub_jobs.all(project["id"]), job, "code", values.get("code")):
        add_error(errors, "code", "has already been taken")
    check_origin(state.sub_jobs, values, job, errors)
    if errors:
        raise Invalid(errors)
    new = {**dict.fromkeys(SUB_JOB_FIELDS), "_project_id": project["id"]}
    return state.write(state.sub_jobs, job, values, new)


def sub_job_or_404(call: Call, project: dict) -> dict:
    return record_or_404(call.state.sub_jobs, call.id(), "Sub job", project["id"])


@api("GET", "/rest/v1.0/sub_jobs", query=("project_id",))
def list_sub_jobs(call: Call) -> Response:
    project = call.project("query")
    return paged(call, filtered(call, call.state.sub_jobs.all(project["id"]),
                                {"origin_id": "origin_id"}), public)


@api("GET", "/rest/v1.0/sub_jobs/{id}", query=("project_id",))
def show_sub_job(call: Call) -> Response:
    return json_response(200, public(sub_job_or_404(call, call.project("query"))))


@api("POST", "/rest/v1.0/sub_jobs")
def create_sub_job(call: Call) -> Response:
    project = call.project("body")
    return json_response(201, public(save_sub_job(call.state, project, call.wrapper("sub_job"),
                                                  None)))


@api("PATCH", "/rest/v1.0/sub_jobs/{id}")
def update_sub_job(call: Call) -> Response:
    project = call.project("body")
    job = sub_job_or_404(call, project)
    return json_response(200, public(save_sub_job(call.state, project, call.wrapper("sub_job"),
                                                  job)))


@api("PATCH", "/rest/v1.0/sub_jobs/sync", query=("project_id",))
def sync_sub_jobs(call: Call) -> Response:
    project = call.project("query")
    return run_sync(call, call.state.sub_jobs, project["id"],
                    lambda item, rec: save_sub_job(call.state, project, item, rec), public)
