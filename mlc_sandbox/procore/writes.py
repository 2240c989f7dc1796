"""Rules every write shares: the `/sync` matching table, origin_id uniqueness, blanks, taken."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from starlette.responses import Response

from mlc_sandbox.procore.errors import Invalid, add_error
from mlc_sandbox.procore.routing import Call, json_response
from mlc_sandbox.procore.tables import Table
from mlc_sandbox.procore.values import integer, origin


def run_sync(call: Call, table: Table, scope: Any, save: Callable[[dict, dict | None], dict],
             serialize: Callable[[dict], dict]) -> Response:
    """A Procore `/sync` call: each item matched, validated and saved on its own.

    Matching table: `id` given -> update that record (error if absent); else `origin_id` found
    in scope -> update; else create (save() rejects an origin_id used elsewhere in the company).
    """
    entities, errors = [], []
    for item in call.updates():
        try:
            if not isinstance(item, dict):
                raise Invalid({"base": ["must be a JSON object"]})
            entities.append(serialize(save(item, match_sync_item(table, scope, item))))
        except Invalid as exc:
            echo = dict(item) if isinstance(item, dict) else {"item": item}
            errors.append({**echo, "errors": exc.errors})
    return json_response(200, {"entities": entities, "errors": errors})


def match_sync_item(table: Table, scope: Any, item: dict) -> dict | None:
    if item.get("id") is not None:
        try:
            record = table.get(integer(item["id"]), scope)
        except ValueError:
            raise Invalid({"id": ["is not an integer"]}) from None
        if record is None:
            raise Invalid({"id": ["Entity with this ID not found"]})
        return record
    try:
        record = table.find_origin(origin(item["origin_id"])) if item.get("origin_id") else None
    except ValueError:
        raise Invalid({"origin_id": ["must be a string"]}) from None
    if record is not None and (scope is None or record[table.group_by] == scope):
        return record
    return None


def check_origin(table: Table, values: dict, record: dict | None, errors: dict) -> None:
    """origin_id is unique within the company, across all projects, where a source says so
    (using_sync_actions.md; tutorial_financial_tools.md "unique (per object type)")."""
    if not table.unique_origin:
        return
    other = table.find_origin(values.get("origin_id"))
    if other is not None and other is not record:
        add_error(errors, "origin_id", "has already been taken")


def require(values: dict, record: dict | None, errors: dict, *names: str) -> None:
    """Fields that must be present on create and may not be blanked on update."""
    for name in names:
        if (record is None and not values.get(name)) or (name in values and not values[name]):
            add_error(errors, name, "can't be blank")


def taken(records: Iterable[dict], record: dict | None, field: str, value: Any) -> bool:
    return value is not None and any(r[field] == value and r is not record for r in records)
