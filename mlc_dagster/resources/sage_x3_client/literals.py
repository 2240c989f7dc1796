"""Everything placed into a query text: stamps, names and literal values, checked first.

Values in a REST `where` go through `where_literal`, GraphQL filter values through
`filter_literal`, mutation arguments through `graphql_literal`; configured names must match
`X3_NAME` / `GRAPHQL_NAME`. Nothing user-supplied is concatenated into a query raw.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
ISO_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
X3_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
GRAPHQL_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")


def parse_stamp(value: str) -> datetime:
    """Parse an ISO-8601 UTC stamp strictly; anything else is a ValueError, not a query."""
    if not isinstance(value, str) or not ISO_DATETIME.match(value):
        raise ValueError(f"not an ISO-8601 datetime: {value!r}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime(STAMP_FORMAT)


def is_stamp(value: Any) -> bool:
    """Whether `value` is an ISO-8601 datetime text (a canonical stamp can be compared)."""
    return isinstance(value, str) and ISO_DATETIME.match(value) is not None


def _finite_number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TypeError(f"not a number: {value!r}")
    if isinstance(value, float | Decimal) and not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return str(value)


def where_literal(value: Any) -> str:
    """Render a value for a REST `where` clause (SData syntax).

    Strings are single-quoted with `'` doubled; datetimes become `@YYYY-MM-DDTHH:MM:SSZ@`
    and dates `@YYYY-MM-DD@`; numbers must be finite. Anything else is refused.
    """
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return f"@{format_stamp(aware)}@"
    if isinstance(value, date):
        return f"@{value.isoformat()}@"
    return _finite_number(value)


_FILTER_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def filter_literal(value: Any) -> str:
    """Render a value for a GraphQL `filter`/`orderBy` string (relaxed JSON).

    Strings are single-quoted with backslash escapes (control characters as `\\uXXXX`);
    datetimes are quoted canonical stamps; lists become `[...]`.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        escaped = "".join(_FILTER_ESCAPES.get(ch) or (f"\\u{ord(ch):04x}" if ord(ch) < 0x20 else ch)
                          for ch in value)
        return f"'{escaped}'"
    if isinstance(value, datetime):
        return filter_literal(format_stamp(value if value.tzinfo else value.replace(tzinfo=UTC)))
    if isinstance(value, date):
        return filter_literal(value.isoformat())
    if isinstance(value, list | tuple):
        return "[" + ",".join(filter_literal(item) for item in value) + "]"
    return _finite_number(value)


def graphql_literal(value: Any) -> str:
    """Render a value as a GraphQL input literal (for inline mutation arguments)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        for name in value:
            check_graphql_name(name)
        return "{" + ", ".join(f"{k}: {graphql_literal(v)}" for k, v in value.items()) + "}"
    return _finite_number(value)


def check_graphql_name(name: str) -> str:
    """`name` itself when it is a GraphQL name; a ValueError otherwise."""
    if not GRAPHQL_NAME.match(name):
        raise ValueError(f"not a GraphQL name: {name!r}")
    return name


def since_where(stamp_column: str, since_stamp: str | None) -> str | None:
    """REST `where` for records stamped at or after `since_stamp` (None: no filter)."""
    if since_stamp is None:
        return None
    return f"{stamp_column} ge {where_literal(parse_stamp(since_stamp))}"


def since_filter(since_stamp: str | None) -> str | None:
    """GraphQL `filter` for nodes stamped at or after `since_stamp` (None: no filter)."""
    if since_stamp is None:
        return None
    return f"{{_updateStamp:{{_gte:{filter_literal(parse_stamp(since_stamp))}}}}}"
