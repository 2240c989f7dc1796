"""A project's billing periods, into whose open one subcontractor invoices go."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from mlc_sandbox.procore.errors import Invalid, add_error
from mlc_sandbox.procore.listing import filtered, paged
from mlc_sandbox.procore.routing import Call, api, json_response
from mlc_sandbox.procore.tables import public, record_or_404
from mlc_sandbox.procore.values import coerce, iso_date, one_of
from mlc_sandbox.procore.writes import require

if TYPE_CHECKING:
    from mlc_sandbox.procore.state import ProcoreState

# "Select Open or Closed from the Status list" (Procore support, "Edit a Billing Period").
BILLING_PERIOD_STATUSES = ("open", "closed")


BILLING_PERIOD_FIELDS = {"start_date": iso_date, "end_date": iso_date, "due_date": iso_date,
                         "status": one_of(*BILLING_PERIOD_STATUSES)}
BILLING_PERIODS = "/rest/v1.0/projects/{project_id}/billing_periods"


@api("GET", BILLING_PERIODS)
def list_billing_periods(call: Call) -> Response:
    project = call.project("path")
    records = filtered(call, call.state.billing_periods.all(project["id"]),
                       {"id": "id", "status": "status"})
    return paged(call, records, public)


@api("GET", BILLING_PERIODS + "/{id}")
def show_billing_period(call: Call) -> Response:
    period = record_or_404(call.state.billing_periods, call.id(), "Billing period",
                           call.project("path")["id"])
    return json_response(200, public(period))


def save_billing_period(state: ProcoreState, project: dict, attrs: dict,
                        period: dict | None) -> dict:
    """Procore support, "Edit a Billing Period": "Every billing period you create must have a
    unique date range" and "Only one (1) billing period can be Open ... at any given time"; a
    period opened while another is open is refused (stricter than closing the other one).
    A new period is open unless the body says closed (ASSUMPTION: the default status)."""
    values, errors = coerce(attrs, BILLING_PERIOD_FIELDS)
    require(values, period, errors, "start_date", "end_date")
    merged = {"status": "open", **(period or {}), **values}
    others = [p for p in state.billing_periods.all(project["id"]) if p is not period]
    if not errors and merged["end_date"] < merged["start_date"]:
        add_error(errors, "end_date", "must be on or after the start date")
    if not errors and any(p["start_date"] <= merged["end_date"] and
                          merged["start_date"] <= p["end_date"] for p in others):
        add_error(errors, "base", "overlaps an existing billing period")
    if merged["status"] == "open" and any(p["status"] == "open" for p in others):
        add_error(errors, "status", "another billing period of this project is open")
    if errors:
        raise Invalid(errors)
    new = {"_project_id": project["id"], "due_date": merged["end_date"], "status": "open",
           "position": len(others) + 1}
    return state.write(state.billing_periods, period, values, new)


@api("POST", BILLING_PERIODS)
def create_billing_period(call: Call) -> Response:
    project = call.project("path")
    period = save_billing_period(call.state, project, call.wrapper("billing_period"), None)
    return json_response(201, public(period))


@api("PATCH", BILLING_PERIODS + "/{id}")
def update_billing_period(call: Call) -> Response:
    project = call.project("path")
    period = record_or_404(call.state.billing_periods, call.id(), "Billing period", project["id"])
    period = save_billing_period(call.state, project, call.wrapper("billing_period"), period)
    return json_response(200, public(period))
