"""List endpoints: Procore's paging headers, `filters[...]` and deleted-record views."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from datetime import time as dt_time
from typing import Any

from starlette.responses import Response

from mlc_sandbox.procore.errors import ApiError
from mlc_sandbox.procore.routing import Call, json_response
from mlc_sandbox.procore.spec import range_bound_format, range_formats
from mlc_sandbox.procore.tables import Table
from mlc_sandbox.procore.values import parse_stamp

MAX_PER_PAGE = 1000


def paged(call: Call, records: list, serialize: Callable[[Any], Any],
          max_per_page: int = MAX_PER_PAGE, default_per_page: int = 100) -> Response:
    """One page of records with Procore's Total / Per-Page / Link headers."""
    page = call.id("page", "query", required=False) or 1
    per_page = min(call.id("per_page", "query", required=False) or default_per_page,
                   max_per_page)
    last = max(1, math.ceil(len(records) / per_page))
    chunk = records[(page - 1) * per_page: page * per_page]
    url = call.request.url
    headers = {"Total": str(len(records)), "Per-Page": str(per_page), "Link": ", ".join(
        f'<{url.include_query_params(page=n, per_page=per_page)}>; rel="{rel}"'
        for rel, n in page_links(page, last))}
    return json_response(200, [serialize(r) for r in chunk], headers)


def page_links(page: int, last: int) -> list[tuple[str, int]]:
    """The Link relations procore/documentation plan_your_app/pagination.md lists: page 1 has
    next and last; page 2 first, next and last; later pages first, prev, next and last; the
    last page omits next (and keeps the others, `last` included)."""
    links = [("first", 1)] if page > 1 else []
    if page > 2:
        links.append(("prev", min(page - 1, last)))
    if page < last:
        links.append(("next", page + 1))
    return [*links, ("last", last)]


def _filter_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _range_bound(text_value: str, end: bool) -> datetime:
    if len(text_value) == 10:
        day = date.fromisoformat(text_value)
        return datetime.combine(day, dt_time.max if end else dt_time.min, tzinfo=UTC)
    return parse_stamp(text_value)


def filtered(call: Call, records: list[dict], fields: dict[str, str]) -> list[dict]:
    """Apply filters[name]=v / filters[name][]=v equality filters and created/updated ranges."""
    for name, field in fields.items():
        wanted = call.filters(name)
        if wanted is not None:
            records = [r for r in records if _filter_text(r.get(field)) in wanted]
    for name in ("created_at", "updated_at"):
        raw = call.filter_value(name)
        if raw is None:
            continue
        low, high = date_range(call, name, raw)
        records = [r for r in records if r.get(name) and low <= parse_stamp(r[name]) <= high]
    return records


def date_range(call: Call, name: str, raw: str) -> tuple[datetime, datetime]:
    """`start...end`, both bounds in the same one of the formats the operation's OAS lists
    for filters[name] (spec.range_formats); anything else is a 400 (ASSUMPTION: the
    docs do not say what Procore answers). A date end bound covers that whole day."""
    formats = range_formats(*call.route, name)
    parts = raw.split("...")
    kinds = {range_bound_format(part, formats) for part in parts}
    if len(parts) == 2 and len(kinds) == 1 and None not in kinds:
        try:
            return _range_bound(parts[0], end=False), _range_bound(parts[1], end=True)
        except ValueError:
            pass  # matched the pattern but is no calendar date or time
    raise ApiError(400, {"errors": f"filters[{name}] must be a range 'start...end' with both "
                                   f"bounds in one of the formats {', '.join(formats)}"})


def include_deleted(call: Call, table: Table, group: Any) -> list[dict]:
    """filters[include_deleted]: `only` -> deleted only, `with` -> deleted and live
    (procore/documentation tutorials/filtering_on_list_actions.md, "Filtering on Deleted
    Objects"; OAS: "Use 'only' ... Use 'with' ..."). Absent, unlisted for the operation, or
    any other value (`true`, `false`, `1`): live only, as if the filter were not sent
    (ASSUMPTION: the docs name no other value)."""
    mode = call.filter_value("include_deleted")
    if mode not in ("only", "with"):
        return table.all(group)
    rows = table.all(group, include_deleted=True)
    return [r for r in rows if r.get("deleted_at")] if mode == "only" else rows
