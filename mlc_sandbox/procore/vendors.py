"""Company vendors, active and inactive."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from mlc_sandbox.procore.errors import Invalid
from mlc_sandbox.procore.listing import filtered, paged
from mlc_sandbox.procore.routing import Call, api, json_response
from mlc_sandbox.procore.tables import public, record_or_404
from mlc_sandbox.procore.values import (
    boolean,
    check_state_code,
    coerce,
    country_code,
    id_list,
    integer,
    opaque,
    origin,
    state_code,
    text,
)
from mlc_sandbox.procore.writes import check_origin, require, run_sync

if TYPE_CHECKING:
    from mlc_sandbox.procore.state import ProcoreState


VENDOR_FIELDS = {
    "name": text, "abbreviated_name": text, "trade_name": text, "address": text, "city": text,
    "state_code": state_code, "zip": text, "country_code": country_code, "business_phone": text,
    "mobile_phone": text, "fax_number": text, "email_address": text, "website": text,
    "is_active": boolean, "authorized_bidder": boolean, "prequalified": boolean,
    "labor_union": text, "license_number": text, "union_member": boolean,
    "non_union_prevailing_wage": boolean, "notes": text, "vendor_group_id": integer,
    "parent_id": integer, "primary_contact_id": integer, "origin_id": origin,
    "origin_data": opaque, "origin_code": text, "trade_ids": id_list,
    "bidding_distribution_ids": id_list, "standard_cost_code_ids": id_list, "bidding": opaque,
}
VENDOR_BLANK = dict.fromkeys(VENDOR_FIELDS)


def vendor_out(vendor: dict) -> dict:
    return {**VENDOR_BLANK, **public(vendor), "synced_to_erp": bool(vendor.get("origin_id"))}


def save_vendor(state: ProcoreState, attrs: dict, vendor: dict | None) -> dict:
    values, errors = coerce(attrs, VENDOR_FIELDS)
    require(values, vendor, errors, "name")
    check_state_code(values, vendor, errors)
    check_origin(state.vendors, values, vendor, errors)
    if errors:
        raise Invalid(errors)
    new = {**VENDOR_BLANK, "is_active": True, "company": state.company["name"]}
    return state.write(state.vendors, vendor, values, new)


def vendor_or_404(call: Call) -> dict:
    return record_or_404(call.state.vendors, call.id(), "Vendor")


# OAS: GET /rest/v1.0/vendors, filters[search]: "matches the vendor name, keywords,
# origin_code, or ABN/EIN number" (the sandbox keeps the ABN/EIN in `tax_id`).
VENDOR_SEARCH_FIELDS = ("name", "keywords", "origin_code", "tax_id")


@api("GET", "/rest/v1.0/vendors", query=("company_id",))
def list_vendors(call: Call) -> Response:
    """OAS: GET /rest/v1.0/vendors (List company vendors): "Return a list of all Vendors
    associated with a Company" - active and inactive alike (the reader checks is_active);
    `view` is served as its documented default, extended."""
    call.company("query")
    records = call.state.vendors.all()
    search = call.filter_value("search")
    if search:
        needle = search.lower()
        records = [v for v in records if any(needle in str(v.get(f) or "").lower()
                                             for f in VENDOR_SEARCH_FIELDS)]
    records = filtered(call, records, {"id": "id", "origin_id": "origin_id",
                                       "parent_id": "parent_id"})
    for name, field in (("trade_id", "trade_ids"), ("standard_cost_code_id",
                                                     "standard_cost_code_ids")):
        wanted = call.filters(name)
        if wanted is not None:
            records = [v for v in records if {str(i) for i in v.get(field) or []} & set(wanted)]
    return paged(call, records, vendor_out)


@api("GET", "/rest/v1.0/vendors/{id}", query=("company_id",))
def show_vendor(call: Call) -> Response:
    call.company("query")
    return json_response(200, vendor_out(vendor_or_404(call)))


@api("POST", "/rest/v1.0/vendors")
def create_vendor(call: Call) -> Response:
    call.company("body")
    return json_response(201, vendor_out(save_vendor(call.state, call.wrapper("vendor"), None)))


@api("PATCH", "/rest/v1.0/vendors/{id}")
def update_vendor(call: Call) -> Response:
    call.company("body")
    vendor = vendor_or_404(call)
    return json_response(200, vendor_out(save_vendor(call.state, call.wrapper("vendor"), vendor)))


@api("PATCH", "/rest/v1.0/vendors/sync")
def sync_vendors(call: Call) -> Response:
    call.company("body")
    return run_sync(call, call.state.vendors, None,
                    lambda item, rec: save_vendor(call.state, item, rec), vendor_out)


@api("GET", "/rest/v1.0/companies/{company_id}/vendors/inactive")
def list_inactive_vendors(call: Call) -> Response:
    call.company("path")
    return paged(call, [v for v in call.state.vendors.all() if not v.get("is_active")], vendor_out)


@api("PATCH", "/rest/v1.0/companies/{company_id}/vendors/inactive/{id}")
def reactivate_vendor(call: Call) -> Response:
    call.company("path")
    vendor = vendor_or_404(call)
    return json_response(200, vendor_out(call.state.write(call.state.vendors, vendor,
                                                          {"is_active": True})))
