"""The Sage X3 half of the preflight: each entity answers, every configured field exists,
and what the go-live checks need from X3 (the POs' project codes, the supplier codes).

Secrets are never printed: error texts come from the clients, which redact them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mlc_dagster.common.env import env_flag
from mlc_dagster.preflight.report import FAIL, PingRow, attempt, fix_for_status
from mlc_dagster.resources.sage_x3_client import key_segment

X3_ENTITIES = ("purchase_order", "purchase_invoice", "supplier", "gl_account", "dimension")
# Read in full (every page): the go-live checks need all of them.
READ_IN_FULL = ("purchase_order", "supplier")


@dataclass
class X3Inventory:
    """What the Procore go-live checks need from X3; None where X3 could not be read."""

    po_projects: Counter | None = None  # project code -> number of POs
    pos_without_project: int = 0
    supplier_codes: set[str] | None = None


def insecure_loopback(env: Mapping[str, str]) -> bool:
    """MLC_ALLOW_INSECURE_LOOPBACK, read from the environment `ping` was given, with the same
    words a run accepts (common/env.py)."""
    return env_flag("MLC_ALLOW_INSECURE_LOOPBACK", env)


X3_FIXES = {
    401: "check SAGE_X3_USER / SAGE_X3_PASSWORD (REST) or the connected app's SAGE_X3_JWT_* "
         "settings (GraphQL)",
    404: "check SAGE_X3_ENDPOINT (the Syracuse endpoint / folder name) and SAGE_X3_URL",
    500: "the representation may not expose UPDDATTIM; check the class/representation names",
}


def x3_fix(exc: Exception) -> str:
    return fix_for_status(exc, X3_FIXES,
                          "check SAGE_X3_URL, SAGE_X3_API (rest|graphql) and network access")


class FieldMissing(Exception):
    """A configured X3 field is not on the customer's X3; args = (what, fix)."""


_UNKNOWN_GRAPHQL_FIELD = re.compile(r"Cannot query field '([^']+)'")


def graphql_field_settings(names) -> dict[str, str]:
    """Configured GraphQL name -> the setting that changes it."""
    order, invoice = names.purchase_order, names.purchase_invoice
    settings = {
        invoice.graphql_fields["status"].split(".")[0]: "MLC_X3_GRAPHQL_INVOICE_STATUS_FIELD",
        order.graphql_line_fields["gl_account"].split(".")[0]:
            "MLC_X3_GRAPHQL_LINE_ACCOUNT (or MLC_MAPPING_KEY=dimension:<TYPE>)",
        names.graphql_line_dimensions: "MLC_X3_GRAPHQL_LINE_DIMENSIONS",
    }
    if order.graphql_line_node:
        settings[order.graphql_line_node] = "MLC_X3_POLL_LINE_STAMPS=0 (no line node to poll)"
    return settings


def _x3_fields_fix(names) -> Callable[[Exception], str]:
    settings = graphql_field_settings(names)

    def fix(exc: Exception) -> str:
        if isinstance(exc, FieldMissing):
            return str(exc.args[1])
        unknown = _UNKNOWN_GRAPHQL_FIELD.search(str(exc))
        if unknown and unknown[1] in settings:
            return f"set {settings[unknown[1]]}: {unknown[1]!r} is not published by this X3"
        if unknown:
            return (f"{unknown[1]!r} is not published by this X3: check MLC_X3_GRAPHQL_ROOT_PREFIX "
                    "and the node/field names (docs/api-assumptions.md)")
        return x3_fix(exc)

    return fix


def check_x3_rest_fields(client, entity: str) -> str:
    """Read one record's `$details` and check every configured column / member is there."""
    names = client.names.entity(entity)
    row = next(iter(next(iter(client._query_pages(
        names.rest_class, names.rest_representation, None, None, 1)), [])), None)
    if row is None:
        return f"{names.rest_class}: no record to check the fields on"
    stamp = names.rest_fields["update_stamp"]
    if stamp not in row:
        raise FieldMissing(f"{names.rest_class}.$query has no {stamp}", f"use a {names.rest_class} "
                           f"representation whose $query facet has {stamp}")
    key = "~".join(str(row.get(k, "")) for k in names.rest_key)
    details = client._get(client._class_url(names.rest_class) + key_segment(key),
                          {"representation": f"{names.rest_representation}.$details"})
    absent = [f"{name} ({column})" for name, column in names.rest_fields.items()
              if column not in details and name != "status"]
    if absent:
        raise FieldMissing(f"{names.rest_class} has no {', '.join(absent)}",
                           "check the class/representation (the connector's X3 names)")
    if entity == "purchase_invoice" and names.rest_fields.get("status") not in details:
        raise FieldMissing(f"PINVOICE has no status column {names.rest_fields.get('status')!r}",
                           "set MLC_X3_INVOICE_STATUS_FIELD (and MLC_X3_INVOICE_FINAL_VALUES)")
    checked = [names.rest_class]
    if entity == "purchase_order":
        checked += _check_line_sources(client, details)
        if names.rest_line_class:
            try:
                next(iter(client.changed_line_documents(entity, None, page_size=1)), [])
            except Exception as exc:  # noqa: BLE001
                raise FieldMissing(f"line class {names.rest_line_class}: {exc}",
                                   "set MLC_X3_POLL_LINE_STAMPS=0, or publish a "
                                   f"{names.rest_line_class} representation with UPDDATTIM"
                                   ) from None
            checked.append(f"{names.rest_line_class} line stamps")
    return "fields present: " + ", ".join(checked)


def _check_line_sources(client, details: dict) -> list[str]:
    """The configured line account / dimension sources exist on a real PO."""
    names = client.names
    key = names.mapping_key
    sources = [("MLC_X3_REST_LINE_ACCOUNT", names.line_account, key.chart)]
    if key.kind == "dimension":
        sources.append(("MLC_X3_REST_LINE_DIMENSION", names.line_dimension, key.dimension_type))
    lines = details.get(names.purchase_order.rest_lines) or []
    checked = []
    for setting, source, wanted in sources:
        entries = details.get(source.member) if source.member else lines
        if not isinstance(entries, list) or not entries:
            raise FieldMissing(f"PO {details.get('POHNUM')} has no {source.describe()}",
                               f"set {setting} to where your X3 keeps it")
        if not any(isinstance(e, dict) and source.values in e for e in entries):
            raise FieldMissing(f"no {source.describe()} on PO {details.get('POHNUM')}",
                               f"set {setting} to where your X3 keeps it")
        if wanted and source.selectors and not any(
                wanted in (e.get(source.selectors) or []) for e in entries if isinstance(e, dict)):
            label = "dimension type" if source is names.line_dimension else "chart"
            fix = ("set MLC_MAPPING_KEY=dimension:<a type your lines carry>"
                   if source is names.line_dimension else "set MLC_X3_CHART")
            raise FieldMissing(f"{label} {wanted} is on no line of PO {details.get('POHNUM')}", fix)
        checked.append(source.describe())
    return checked


def check_x3_graphql_fields(client, entity: str) -> str:
    """GraphQL validates every name of a query: the entity's query row (run first) has
    checked the node's configured paths, so only the separately queried nodes remain."""
    names = client.names.entity(entity)
    checked = [names.graphql_node]  # validated by the entity's own query row, not re-read
    if entity == "purchase_order" and names.graphql_line_node:
        next(iter(client.changed_line_documents(entity, None, page_size=1)), [])
        checked.append(f"{names.graphql_line_node} line stamps")
    if entity == "purchase_order" and client.names.mapping_key.kind == "dimension":
        checked.append(client.names.graphql_line_dimensions)
    return "fields present: " + ", ".join(checked)


def _inventory(records: dict[str, list[dict]]) -> X3Inventory:
    """Project codes of the POs (stripped, as staging does) and the supplier codes."""
    inventory = X3Inventory()
    if "purchase_order" in records:
        codes = [str(r.get("project_code") or "").strip() for r in records["purchase_order"]]
        inventory.po_projects = Counter(code for code in codes if code)
        inventory.pos_without_project = codes.count("")
    if "supplier" in records:
        inventory.supplier_codes = {str(r["supplier_code"]).strip()
                                    for r in records["supplier"] if r.get("supplier_code")}
    return inventory


def x3_preflight(env: Mapping[str, str]) -> tuple[list[PingRow], X3Inventory]:
    """Rows for X3, and the POs' project codes and supplier codes (all pages) when readable."""
    from mlc_dagster.resources.sage_x3_client import (
        SageX3GraphQLClient,
        SageX3RestClient,
        names_from_env,
    )
    from mlc_dagster.resources.tls import check_url

    rows: list[PingRow] = []
    api = env.get("SAGE_X3_API", "rest")
    try:
        names = names_from_env(env)
    except ValueError as exc:
        rows.append(PingRow("sage x3 name settings", FAIL, str(exc),
                            "fix the setting named in the message (see .env.example)"))
        return rows, X3Inventory()
    try:
        url = check_url(env.get("SAGE_X3_URL", ""), allow_insecure_loopback=insecure_loopback(env),
                        setting="SAGE_X3_URL")
        if api == "graphql":
            x3 = SageX3GraphQLClient(url, env.get("SAGE_X3_ENDPOINT", ""),
                                     jwt_client_id=env.get("SAGE_X3_JWT_CLIENT_ID", ""),
                                     jwt_secret=env.get("SAGE_X3_JWT_SECRET", ""),
                                     jwt_user=env.get("SAGE_X3_JWT_USER", ""), names=names)
        else:
            x3 = SageX3RestClient(url, env.get("SAGE_X3_ENDPOINT", ""), env.get("SAGE_X3_USER", ""),
                                  env.get("SAGE_X3_PASSWORD", ""), names=names)
    except ValueError as exc:
        rows.append(PingRow("sage x3 settings", FAIL, str(exc),
                            "set SAGE_X3_URL (https://) and SAGE_X3_API=rest|graphql"))
        return rows, X3Inventory()
    records: dict[str, list[dict]] = {}

    def query(entity: str) -> str:
        if entity not in READ_IN_FULL:
            first = next(iter(x3.changed(entity, None, page_size=1)), [])
            return f"query ok ({len(first)} record on first page)"
        records[entity] = [r for page in x3.changed(entity, None) for r in page]
        return f"query ok ({len(records[entity])} records, all pages)"

    with x3:
        for entity in X3_ENTITIES:
            # GraphQL fails on the first unknown configured name
            row = attempt(f"sage x3 {api} {entity}", lambda e=entity: query(e),
                          _x3_fields_fix(names))
            rows.append(row)
            if row.ok and entity in ("purchase_order", "purchase_invoice"):
                check = check_x3_graphql_fields if api == "graphql" else check_x3_rest_fields
                rows.append(attempt(f"sage x3 {api} {entity} fields",
                                    lambda e=entity, c=check: c(x3, e), _x3_fields_fix(names)))
    return rows, _inventory(records)


def ping_x3(env: Mapping[str, str]) -> list[PingRow]:
    """The X3 half of ping: each entity answers, and every configured field exists."""
    return x3_preflight(env)[0]
