"""Request fields to stored values: the converters every resource's field table uses.

A converter takes the JSON value of one request attribute and returns what the sandbox
stores, or raises ValueError with the message Procore would put under that field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

from mlc_sandbox.procore.errors import add_error
from mlc_sandbox.procore.spec import ISO_3166_2_SUBDIVISIONS, ISO_3166_ALPHA2, STATE_CODE

MAX_AMOUNT = Decimal(10) ** 13


def text(value: Any) -> str:
    if isinstance(value, (bool, dict, list)):
        raise ValueError("must be a string")
    return str(value)


def origin(value: Any) -> str | None:
    """origin_id is a string in Procore; blank means 'none' for matching."""
    value = text(value).strip()
    return value or None


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ValueError("must be true or false")


def integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ValueError("is not an integer")


def id_list(value: Any) -> list[int]:
    if not isinstance(value, list):
        raise ValueError("must be an array of ids")
    return [integer(v) for v in value]


def iso_date(value: Any) -> str:
    try:
        return date.fromisoformat(text(value)).isoformat()
    except ValueError:
        raise ValueError("is not a valid date") from None


def number(value: Any) -> Decimal:
    """A decimal from a JSON number or numeric string; never NaN/Infinity or absurd sizes."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("is not a number")
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("is not a number") from None
    if not result.is_finite():
        raise ValueError("is not a number")
    if abs(result) >= MAX_AMOUNT:
        raise ValueError(f"must be less than {MAX_AMOUNT}")
    return result.quantize(Decimal(1)) if result.as_tuple().exponent > 0 else result


def money(value: Any) -> Decimal:
    return to_cents(number(value))


def to_cents(value: Decimal) -> Decimal:
    # Wide context: quantity x unit_cost of two large (but valid) inputs must not overflow.
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP, context=Context(prec=60))


def one_of(*choices: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"is not included in the list ({', '.join(choices)})")
        return value
    return convert


def country_code(value: Any) -> str:
    """An officially assigned ISO 3166-1 alpha-2 code (`UK` is not one: `GB` is); the source
    is next to ISO_3166_ALPHA2 in spec.py."""
    value = text(value)
    if value not in ISO_3166_ALPHA2:
        raise ValueError("must be an ISO-3166 alpha-2 code")
    return value


def state_code(value: Any) -> str:
    """Two upper-case characters (procore/documentation best_practices/country_codes.md)."""
    value = text(value)
    if not STATE_CODE.fullmatch(value):
        raise ValueError("must be an ISO-3166 alpha-2 subdivision code")
    return value


def check_state_code(values: dict, record: dict | None, errors: dict) -> None:
    """A US or Canadian state_code must be one of that country's ISO 3166-2 subdivisions."""
    merged = {**(record or {}), **values}
    known = ISO_3166_2_SUBDIVISIONS.get(merged.get("country_code") or "")
    if known and merged.get("state_code") and merged["state_code"] not in known:
        add_error(errors, "state_code", f"is not a subdivision of {merged['country_code']}")


def opaque(value: Any) -> Any:
    return value


def coerce(attrs: dict, fields: dict[str, Callable[[Any], Any]]) -> tuple[dict, dict]:
    """Convert the known fields present in attrs; unknown keys are ignored, like Procore."""
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, convert in fields.items():
        if name not in attrs:
            continue
        if attrs[name] is None:
            values[name] = None
            continue
        try:
            values[name] = convert(attrs[name])
        except ValueError as exc:
            add_error(errors, name, str(exc))
    return values, errors


def total(values: Iterable[Decimal | None]) -> Decimal:
    return sum((v for v in values if v is not None), Decimal("0.00"))


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
