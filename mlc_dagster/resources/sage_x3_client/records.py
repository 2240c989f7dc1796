"""Canonical records: the fields every X3 entity has, whichever API it was read from, and the
converters that turn each API's raw values into canonical ones.

Canonical values: decimals as normalised strings, stamps as `YYYY-MM-DDTHH:MM:SSZ`, dates
as `YYYY-MM-DD`, yes/no flags as booleans. Converters never raise: a malformed value is
passed on as text, for staging to quarantine.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from mlc_dagster.resources.sage_x3_client.literals import (
    ISO_DATE,
    format_stamp,
    parse_stamp,
)

ENTITIES = ("purchase_order", "purchase_invoice", "supplier", "gl_account", "dimension")
# Every canonical record carries exactly these fields (None where an API has no source).
CANONICAL_FIELDS = {
    "purchase_order": ("po_number", "po_type", "site", "supplier_code", "project_code",
                       "order_date", "currency", "revision", "closed", "reference",
                       "total_amount", "update_stamp"),
    "purchase_invoice": ("invoice_number", "invoice_type", "supplier_code", "supplier_invoice_ref",
                         "invoice_date", "accounting_date", "currency", "project_code",
                         "total_amount", "status", "is_final", "update_stamp"),
    "supplier": ("supplier_code", "name", "short_name", "active", "currency", "country", "city",
                 "postcode", "address", "phone", "email", "tax_id", "update_stamp"),
    "gl_account": ("chart", "account", "description", "update_stamp"),
    "dimension": ("dimension_type", "code", "description", "short_description", "active",
                  "update_stamp"),
}
CANONICAL_LINE_FIELDS = {
    "purchase_order": ("line_number", "item_code", "description", "gl_account", "project_code",
                       "quantity", "uom", "unit_price", "amount", "closed", "mapping_key",
                       "update_stamp"),
    "purchase_invoice": ("line_number", "po_number", "po_line", "item_code", "description",
                         "gl_account", "quantity", "uom", "unit_price", "amount"),
}
CANONICAL_KEYS = {
    "purchase_order": ("po_number",),
    "purchase_invoice": ("invoice_number",),
    "supplier": ("supplier_code",),
    "gl_account": ("chart", "account"),
    "dimension": ("dimension_type", "code"),
}


def record_key(entity: str, record: dict) -> str:
    """The canonical key of a record; composite keys are joined with `~` as X3 does."""
    return "~".join(str(record.get(name)) for name in CANONICAL_KEYS[entity])


# --- canonical values -----------------------------------------------------------------

def canonical_text(value: Any) -> str | None:
    if value is None or value == "" or isinstance(value, dict | list):
        return None
    return value if isinstance(value, str) else str(value)


def canonical_decimal(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if isinstance(value, bool) or not number.is_finite():
        return str(value)
    return format((number + 0).normalize(), "f")


def canonical_int(value: Any) -> int | str | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
        if number.is_finite() and number == number.to_integral_value() \
                and not isinstance(value, bool):
            return int(number)
    except (InvalidOperation, OverflowError):
        pass
    return str(value)


_YES_NO = {2: True, 1: False, "2": True, "1": False, "yes": True, "no": False,
           "true": True, "false": False}


def canonical_yes_no(value: Any) -> bool | str | None:
    """X3 local menu 1 (1 = No, 2 = Yes) on REST; `yes`/`no` or booleans on GraphQL.

    Anything else passes through as text, so staging quarantines it instead of reading
    a garbage closed flag as "open".
    """
    if value is None or isinstance(value, bool):  # bool first: True == 1 would read as "No"
        return value
    key = value.strip().lower() if isinstance(value, str) else value
    if isinstance(key, int | str) and key in _YES_NO:
        return _YES_NO[key]
    return str(value)


_INVOICE_TYPES = {1: "invoice", 2: "invoice", 3: "credit_memo", 4: "credit_memo",
                  "invoice": "invoice", "additionalinvoice": "invoice",
                  "creditmemo": "credit_memo", "creditmemoreturn": "credit_memo"}


def canonical_invoice_type(value: Any) -> str | None:
    """PIHTYP (1 invoice, 2 additional, 3 credit memo, 4 credit memo/return) or GraphQL category."""
    if value is None or value == "":
        return None
    key = value.lower() if isinstance(value, str) else value
    if isinstance(key, str) and key.isdigit():
        key = int(key)
    return _INVOICE_TYPES.get(key, str(value)) if isinstance(key, int | str) else str(value)


_PO_TYPES = {1: "order", 2: "contract", "order": "order", "contract": "contract"}


def canonical_po_type(value: Any) -> str | None:
    """POHTYP (local menu 506: 1 order, 2 contract) or the GraphQL `orderType` enum."""
    if value is None or value == "":
        return None
    key = int(value) if isinstance(value, str) and value.isdigit() else value
    return _PO_TYPES.get(key, str(value)) if isinstance(key, int | str) else str(value)


def canonical_date(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = str(value)
    return text[:10] if ISO_DATE.match(text) else text


def canonical_stamp(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return format_stamp(parse_stamp(str(value)))
    except ValueError:
        return str(value)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "revision": canonical_int, "line_number": canonical_int, "po_line": canonical_int,
    "closed": canonical_yes_no, "active": canonical_yes_no,
    "invoice_type": canonical_invoice_type, "po_type": canonical_po_type,
    "order_date": canonical_date, "invoice_date": canonical_date,
    "accounting_date": canonical_date,
    "update_stamp": canonical_stamp,
    "total_amount": canonical_decimal, "quantity": canonical_decimal,
    "unit_price": canonical_decimal, "amount": canonical_decimal,
}


# --- records --------------------------------------------------------------------------

class RecordConverter:
    """Builds canonical records from one API's records: paths split and converters chosen
    once per entity, since hundreds of thousands of PO lines may pass through."""

    def __init__(self, names: tuple[str, ...], fields_map: dict[str, str]) -> None:
        self._plan = [(name, tuple(fields_map[name].split(".")) if name in fields_map else (),
                       _CONVERTERS.get(name, canonical_text)) for name in names]

    def __call__(self, record: dict) -> dict:
        canonical = {}
        for name, path, convert in self._plan:
            value: Any = record if path else None
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
            canonical[name] = convert(value)
        return canonical


def dig(record: Any, path: str) -> Any:
    """The value at a dotted path of nested dicts (`a.b.c`), None where the path breaks."""
    for part in path.split("."):
        if not isinstance(record, dict):
            return None
        record = record.get(part)
    return record
