"""The company, the service account (`/me`) and projects."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from mlc_sandbox.procore.errors import ApiError, Invalid, add_error
from mlc_sandbox.procore.listing import MAX_PER_PAGE, filtered, paged
from mlc_sandbox.procore.routing import Call, api, json_response
from mlc_sandbox.procore.tables import public
from mlc_sandbox.procore.values import (
    boolean,
    check_state_code,
    coerce,
    country_code,
    iso_date,
    opaque,
    origin,
    state_code,
    text,
)
from mlc_sandbox.procore.writes import check_origin, require, run_sync, taken
from mlc_sandbox.seed import COMPANY_ID

if TYPE_CHECKING:
    from mlc_sandbox.procore.state import ProcoreState


# The OAS exempts /companies and /me from Procore-Company-Id, but a DMSA "_must_ include the
# `Procore-Company-Id` request header when making calls to the `/rest/v1.0/me` or
# `/rest/v1.0/companies` endpoints" (procore/documentation oauth/oauth_client_credentials.md,
# "Using Developer Managed Service Accounts with MPR"). Every sandbox token is a DMSA's.
@api("GET", "/rest/v1.0/companies")
def list_companies(call: Call) -> Response:
    company = {**call.state.company, "logo_url": None, "pcn_business_experience": False,
               "my_company": True}
    return paged(call, [company], dict)


@api("GET", "/rest/v1.0/me")  # the header, as for /companies above
def show_me(call: Call) -> Response:
    return json_response(200, call.state.user)


PROJECT_FIELDS = {
    "name": text, "project_number": text, "active": boolean, "address": text, "city": text,
    "state_code": state_code, "zip": text, "country_code": country_code, "description": text,
    "phone": text, "public_notes": text, "start_date": iso_date, "completion_date": iso_date,
    "time_zone": text, "store_number": text, "accounting_project_number": text,
    "origin_id": origin, "origin_data": opaque, "origin_code": text,
}


def project_out(project: dict) -> dict:
    number, name = project.get("project_number"), project.get("name")
    return {**public(project), "display_name": f"{number} - {name}" if number else name}


def save_project(state: ProcoreState, attrs: dict, project: dict | None) -> dict:
    values, errors = coerce(attrs, PROJECT_FIELDS)
    require(values, project, errors, "name")
    check_state_code(values, project, errors)
    if taken(state.projects.all(), project, "project_number", values.get("project_number")):
        add_error(errors, "project_number", "has already been taken")
    check_origin(state.projects, values, project, errors)
    if errors:
        raise Invalid(errors)
    new = {**dict.fromkeys(PROJECT_FIELDS), "active": True,
           "company": {"id": COMPANY_ID, "name": state.company["name"]}}
    return state.write(state.projects, project, values, new)


PROJECT_STATUS_FILTERS = ("Active", "Inactive", "All")


def list_projects(call: Call, extra_filters: dict[str, str], max_per_page: int) -> Response:
    call.company("query")
    # OAS: GET /rest/v1.0/projects (List projects): "Return a list of active Projects";
    # filters[by_status] "Must be one of Active, Inactive, or All": anything else is a 400
    # (the status code: ASSUMPTION, per api_essentials/error_reference.md "invalid parameter
    # values").
    status = call.filter_value("by_status") or "Active"
    if status not in PROJECT_STATUS_FILTERS:
        raise ApiError(400, {"errors": "filters[by_status] must be one of "
                                       f"{', '.join(PROJECT_STATUS_FILTERS)}"})
    records = call.state.projects.all()
    if status != "All":
        records = [p for p in records if p.get("active") == (status == "Active")]
    name = call.filter_value("name")
    if name:
        records = [p for p in records if name.lower() in (p.get("name") or "").lower()]
    records = filtered(call, records, {"id": "id", "origin_id": "origin_id", **extra_filters})
    return paged(call, records, project_out, max_per_page)


@api("GET", "/rest/v1.0/projects", query=("company_id",))
def list_projects_v10(call: Call) -> Response:
    return list_projects(call, {}, MAX_PER_PAGE)


@api("GET", "/rest/v1.1/projects", query=("company_id",))
def list_projects_v11(call: Call) -> Response:
    return list_projects(call, {"project_number": "project_number"}, 300)


@api("POST", "/rest/v1.0/projects")
def create_project(call: Call) -> Response:
    call.company("body")
    return json_response(201, project_out(save_project(call.state, call.wrapper("project"), None)))


@api("PATCH", "/rest/v1.0/projects/sync")
def sync_projects(call: Call) -> Response:
    call.company("body" if "company_id" in call.body else "query")
    return run_sync(call, call.state.projects, None,
                    lambda item, rec: save_project(call.state, item, rec), project_out)
