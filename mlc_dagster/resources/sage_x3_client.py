"""Sage X3 clients: the Syracuse REST web API and the GraphQL API, behind one interface.

Both clients yield the same *canonical* records (decimals as normalised strings, stamps
as `YYYY-MM-DDTHH:MM:SSZ`), so nothing downstream knows which API was used. Class,
representation, node and field names differ between X3 versions and set-ups, so they are
configuration (`X3Names`); GraphQL selection sets are built from the configured paths.

Safety rules enforced here rather than by convention:
- values placed in a REST `where` go through `where_literal`, GraphQL filter values through
  `filter_literal`; nothing user-supplied is concatenated raw;
- only suppliers and analytical dimension values can be written; GL accounts, journals and
  accounting entries are refused by an allow-list (`WRITABLE_REST_CLASSES`) and a deny pattern.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx
import jwt

from mlc_dagster.resources.http_core import (
    HttpClientBase,
    RequestRecord,
    RetryPolicy,
    RetrySender,
    Secret,
    is_retryable,
    redact,
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

# The only X3 REST classes this connector may ever write. Extend in code, deliberately.
WRITABLE_REST_CLASSES = frozenset({"BPSUPPLIER", "CACCE"})
WRITABLE_GRAPHQL_NODES = frozenset({"supplier", "dimension"})
# Belt and braces: even an extended allow-list can never reach the general ledger.
_LEDGER_NAMES = re.compile(r"GACC|ACCOUNT|JOU|ENTRY|LEDGER", re.IGNORECASE)

JWT_CLOCK_SKEW_SECONDS = 5

_STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_X3_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_GRAPHQL_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")


# --- errors -------------------------------------------------------------------------

class SageX3Error(Exception):
    """A Sage X3 call failed; `message` carries X3's own diagnosis text."""

    def __init__(self, status: int | None, method: str, path: str, message: str,
                 diagnoses: list | None = None) -> None:
        self.status = status
        self.method = method
        self.path = path
        self.message = message
        self.diagnoses = diagnoses or []
        outcome = f"failed with {status}" if status is not None else "failed"
        super().__init__(f"Sage X3 {method} {path} {outcome}: {message}")

    @property
    def retryable(self) -> bool:
        return (self.status is None or self.status == 429 or self.status >= 500) \
            and not self.record_missing

    @property
    def record_missing(self) -> bool:
        """X3 said the record does not exist. Recognised from the diagnosis, never from the
        status alone: Sage documents only "4xx or 5xx" for failed calls (integration-guide
        ws-query), and a 404 also answers an unknown class, representation or endpoint."""
        return any(_is_missing_diagnosis(d) for d in self.diagnoses)


# X3's "record does not exist" diagnosis: message number 721 of the supervisor's message
# table ("721 : Record does not exist", as quoted in the `$diagnoses` example of the REST
# notes, sage_x3_api.md 2.6). Matched on the number or the text, case-insensitively.
MISSING_RECORD_MESSAGE = re.compile(r"(?:^|\D)721\s*:|record does not exist", re.IGNORECASE)


def _is_missing_diagnosis(diagnosis: Any) -> bool:
    return (isinstance(diagnosis, dict)
            and str(diagnosis.get("$severity", "error")).lower() in ("error", "fatal")
            and bool(MISSING_RECORD_MESSAGE.search(str(diagnosis.get("$message", "")))))


class SageX3AuthError(SageX3Error):
    """X3 refused our credentials; retrying will not help."""


class X3WriteForbidden(PermissionError):
    """An attempt to write an X3 class or node outside the allow-list (e.g. the GL)."""


# --- literals and stamps ------------------------------------------------------------

def parse_stamp(value: str) -> datetime:
    """Parse an ISO-8601 UTC stamp strictly; anything else is a ValueError, not a query."""
    if not isinstance(value, str) or not _ISO_DATETIME.match(value):
        raise ValueError(f"not an ISO-8601 datetime: {value!r}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime(_STAMP_FORMAT)


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
            _check_graphql_name(name)
        return "{" + ", ".join(f"{k}: {graphql_literal(v)}" for k, v in value.items()) + "}"
    return _finite_number(value)


def _since_where(stamp_column: str, since_stamp: str | None) -> str | None:
    """REST `where` for records stamped at or after `since_stamp` (None: no filter)."""
    if since_stamp is None:
        return None
    return f"{stamp_column} ge {where_literal(parse_stamp(since_stamp))}"


def _since_filter(since_stamp: str | None) -> str | None:
    """GraphQL `filter` for nodes stamped at or after `since_stamp` (None: no filter)."""
    if since_stamp is None:
        return None
    return f"{{_updateStamp:{{_gte:{filter_literal(parse_stamp(since_stamp))}}}}}"


def _check_graphql_name(name: str) -> str:
    if not _GRAPHQL_NAME.match(name):
        raise ValueError(f"not a GraphQL name: {name!r}")
    return name


# --- configuration --------------------------------------------------------------------

@dataclass(frozen=True)
class EntityNames:
    """Where one canonical entity lives in X3, for both APIs.

    Field maps go canonical name -> REST column / GraphQL dotted path
    (`orderFromSupplier.code.code`). `graphql_inputs` maps canonical names to the flat
    argument names of the create/update mutations, for the writable entities.
    `rest_line_class` / `graphql_line_node` name where the document's *lines* can be
    queried by their own update stamp (None = lines are not polled separately);
    `*_line_document` names the column / path of a line that holds the document key.
    """

    rest_class: str
    rest_representation: str
    rest_key: tuple[str, ...]
    rest_fields: dict[str, str]
    graphql_package: str
    graphql_node: str
    graphql_fields: dict[str, str]
    rest_lines: str | None = None
    rest_line_fields: dict[str, str] = field(default_factory=dict)
    graphql_lines: str | None = None
    graphql_line_fields: dict[str, str] = field(default_factory=dict)
    graphql_inputs: dict[str, str] = field(default_factory=dict)
    rest_line_class: str | None = None
    rest_line_representation: str | None = None
    rest_line_document: str | None = None
    graphql_line_node: str | None = None
    graphql_line_document: str | None = None

    def __post_init__(self) -> None:
        for name in (self.rest_class, self.rest_representation, *self.rest_key,
                     *self.rest_fields.values(), *self.rest_line_fields.values(),
                     *filter(None, [self.rest_lines, self.rest_line_class,
                                    self.rest_line_representation, self.rest_line_document])):
            if not _X3_NAME.match(name):
                raise ValueError(f"not an X3 class/column name: {name!r}")
        paths = [*self.graphql_fields.values(), *self.graphql_line_fields.values(),
                 *filter(None, [self.graphql_line_document])]
        for name in (self.graphql_package, self.graphql_node, *self.graphql_inputs.values(),
                     *filter(None, [self.graphql_lines, self.graphql_line_node]),
                     *(part for path in paths for part in path.split("."))):
            _check_graphql_name(name)


@dataclass(frozen=True)
class LineValueSource:
    """Where one analytic value of a PO line is read on REST.

    `member` None: `values` is a column of the line itself. Otherwise `member` is an array
    of the PO `$details` with one entry per line, matched on `line_key` (the line number).
    `values` may be an X3 array column (JSON list); then `selectors` is the parallel array
    saying what each position holds (chart of accounts, dimension type), as in the X3 link
    expressions `COA(indice);LINACC(indice)` and `DIE(indice);CCE(indice)`.
    """

    member: str | None
    line_key: str | None
    values: str
    selectors: str | None = None

    def __post_init__(self) -> None:
        for name in filter(None, (self.member, self.line_key, self.values, self.selectors)):
            if not _X3_NAME.match(name):
                raise ValueError(f"not an X3 column name: {name!r}")
        if (self.member is None) != (self.line_key is None):
            raise ValueError("a line value source needs both a member and its line key, or neither")

    @classmethod
    def parse(cls, text: str, setting: str) -> LineValueSource:
        """`COLUMN`, `COLUMN[SELECTORS]`, or `MEMBER:LINE_KEY:VALUES[:SELECTORS]`."""
        parts = [p.strip() for p in text.split(":")]
        try:
            if len(parts) == 1:
                values, _, rest = parts[0].partition("[")
                return cls(None, None, values, rest.rstrip("]") or None)
            if len(parts) in (3, 4):
                return cls(parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else None)
        except ValueError as exc:
            raise ValueError(f"{setting}: {exc}") from None
        raise ValueError(f"{setting} must be COLUMN, COLUMN[SELECTORS] or "
                         f"MEMBER:LINE_KEY:VALUES[:SELECTORS], got {text!r}")

    def describe(self) -> str:
        selector = f" chosen by {self.selectors}" if self.selectors else ""
        where = f"{self.member}[{self.line_key}]." if self.member else "line."
        return f"{where}{self.values}{selector}"


@dataclass(frozen=True)
class MappingKey:
    """What a PO line is mapped to a Procore cost code by (`MLC_MAPPING_KEY`).

    `gl_account`: the line's GL account (of chart `chart`, or of the first chart when
    None). `dimension:<TYPE>`: the line's analytical dimension value of that type, e.g.
    the dimension type whose values a contractor maps to cost codes.
    """

    kind: str = "gl_account"
    dimension_type: str | None = None
    chart: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("gl_account", "dimension"):
            raise ValueError(f"MLC_MAPPING_KEY must be gl_account or dimension:<TYPE>, "
                             f"got {self.kind!r}")
        if (self.kind == "dimension") != bool(self.dimension_type):
            raise ValueError("MLC_MAPPING_KEY=dimension needs a dimension type, "
                             "e.g. dimension:CCT")
        for name in filter(None, (self.dimension_type, self.chart)):
            if not _X3_NAME.match(name):
                raise ValueError(f"not an X3 code: {name!r}")

    @classmethod
    def parse(cls, text: str | None, chart: str | None = None) -> MappingKey:
        text = (text or "gl_account").strip()
        kind, _, dimension_type = text.partition(":")
        return cls(kind.strip().lower(), dimension_type.strip() or None, chart or None)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MappingKey:
        """`MLC_MAPPING_KEY` and `MLC_X3_CHART`: the one reading of them, shared by the X3
        client's names and the mapping table's parser."""
        return cls.parse((env.get("MLC_MAPPING_KEY") or "").strip() or None,
                         (env.get("MLC_X3_CHART") or "").strip() or None)

    @property
    def label(self) -> str:
        return "GL account" if self.kind == "gl_account" else f"dimension {self.dimension_type}"

    @property
    def csv_column(self) -> str:
        """The key column of the mapping CSV for this key."""
        return "gl_account" if self.kind == "gl_account" else "dimension"


# Defaults with their sources (C = Sage page, D = V11 table dictionary, A = assumption;
# the full table is in docs/api-assumptions.md).
DEFAULT_LINE_ACCOUNT = LineValueSource("PORDERC", "POPLIN", "LINACC", "COA")  # D: PORDERC
DEFAULT_LINE_DIMENSION = LineValueSource("CPTANALIN", "VCRLIN", "CCE", "DIE")  # 3P+D
# X3 GraphQL: x3Purchasing lists node purchaseOrderLineDimensionDimensions (C: reference/
# x3Purchasing); its properties by analogy with purchaseRequestLineDimensionDimensions (C).
DEFAULT_GRAPHQL_LINE_DIMENSIONS = "purchaseOrderLineDimensionDimensions"


def _purchase_order() -> EntityNames:
    return EntityNames(
        rest_class="PORDER", rest_representation="PORDER", rest_key=("POHNUM",),
        rest_fields={
            "po_number": "POHNUM", "po_type": "POHTYP", "site": "POHFCY", "supplier_code": "BPSNUM",
            "project_code": "PJTH", "order_date": "ORDDAT", "currency": "CUR", "revision": "REVNUM",
            "closed": "CLEFLG", "reference": "ORDREF", "total_amount": "TOTORD",
            "update_stamp": "UPDDATTIM",
        },
        rest_lines="PORDERQ",
        rest_line_fields={
            "line_number": "POPLIN", "item_code": "ITMREF", "description": "ITMDES",
            "project_code": "PJT", "quantity": "QTYUOM", "uom": "UOM",
            "unit_price": "NETPRI", "amount": "LINAMT", "closed": "LINCLEFLG",
            "update_stamp": "UPDDATTIM",
        },
        rest_line_class="PORDERQ", rest_line_representation="PORDERQ",
        rest_line_document="POHNUM",
        graphql_package="Purchasing", graphql_node="purchaseOrder",
        graphql_fields={
            "po_number": "_id", "site": "purchaseSite.code",
            "supplier_code": "orderFromSupplier.code.code", "project_code": "project.code",
            "order_date": "orderDate", "currency": "currency.code", "revision": "revisionNumber",
            "closed": "isClosed", "reference": "internalOrderReference",
            "total_amount": "totalAmountExcludingTax", "update_stamp": "_updateStamp",
        },
        graphql_lines="purchaseOrderLines",
        graphql_line_fields={
            "line_number": "lineNumber", "item_code": "product.code",
            "description": "productDescriptionInUserLanguage", "gl_account": "account.code",
            "project_code": "project.code", "quantity": "quantityInOrderUnitOrdered",
            "uom": "orderUnit.code", "unit_price": "netPrice", "amount": "lineAmountExcludingTax",
            "closed": "isClosed", "update_stamp": "_updateStamp",
        },
        graphql_line_node="purchaseOrderLine", graphql_line_document="purchaseOrder._id",
    )


def _purchase_invoice() -> EntityNames:
    return EntityNames(
        rest_class="PINVOICE", rest_representation="PINVOICE", rest_key=("NUM",),
        rest_fields={
            "invoice_number": "NUM", "invoice_type": "PIHTYP", "supplier_code": "BPSNUM",
            "supplier_invoice_ref": "BPSINV", "invoice_date": "INVDAT", "accounting_date": "ACCDAT",
            "currency": "CUR", "project_code": "PJT", "total_amount": "AMTNOT", "status": "STA",
            "update_stamp": "UPDDATTIM",
        },
        rest_lines="PINVOICED",
        rest_line_fields={
            "line_number": "PIDLIN", "po_number": "POHNUM", "po_line": "POPLIN",
            "item_code": "ITMREF", "description": "ITMDES",
            "quantity": "QTYUOM", "uom": "UOM", "unit_price": "NETPRI", "amount": "AMTNOTLIN",
        },
        graphql_package="Purchasing", graphql_node="purchaseInvoice",
        graphql_fields={
            "invoice_number": "_id", "invoice_type": "category",
            "supplier_code": "billBySupplier.code.code", "supplier_invoice_ref": "sourceDocument",
            "invoice_date": "sourceDocumentDate", "accounting_date": "accountingDate",
            "currency": "currency.code", "total_amount": "amountOfLinesExcludingTax",
            "status": "status", "update_stamp": "_updateStamp",
        },
        graphql_lines="purchaseInvoiceLines",
        graphql_line_fields={
            "line_number": "lineNumber", "po_number": "sourceDocument",
            "po_line": "sourceDocumentLineNumber", "item_code": "product.code",
            "description": "productDescriptionInUserLanguage",
            "quantity": "quantityInPurchaseUnitInvoiced", "uom": "purchaseUnit.code",
            "unit_price": "netPrice", "amount": "lineAmountExcludingTax",
        },
    )


def _supplier() -> EntityNames:
    return EntityNames(
        rest_class="BPSUPPLIER", rest_representation="BPSUPPLIER", rest_key=("BPSNUM",),
        rest_fields={
            "supplier_code": "BPSNUM", "name": "BPSNAM", "short_name": "BPSSHO", "active": "ENAFLG",
            "currency": "CUR", "country": "CRY", "city": "CTY", "postcode": "POSCOD",
            "address": "ADDLIG", "phone": "TEL", "email": "WEB", "tax_id": "EECNUM",
            "update_stamp": "UPDDATTIM",
        },
        graphql_package="MasterData", graphql_node="supplier",
        graphql_fields={
            "supplier_code": "code.code", "name": "companyName1", "short_name": "shortCompanyName",
            "active": "isActive", "currency": "currency.code",
            "country": "addressByDefault.country.code", "city": "addressByDefault.city",
            "postcode": "addressByDefault.zipCode", "address": "addressByDefault.addressLine1",
            "phone": "addressByDefault.phone", "email": "addressByDefault.email",
            "tax_id": "code.vatNumber", "update_stamp": "_updateStamp",
        },
        graphql_inputs={
            "supplier_code": "code", "name": "companyName1", "short_name": "shortCompanyName",
            "active": "isActive", "tax_id": "vatNumber", "currency": "currency",
            "country": "country", "city": "city", "postcode": "zipCode", "address": "addressLine1",
            "phone": "phone", "email": "email",
        },
    )


def _gl_account() -> EntityNames:
    return EntityNames(
        rest_class="GACCOUNT", rest_representation="GACCOUNT", rest_key=("COA", "ACC"),
        rest_fields={"chart": "COA", "account": "ACC", "description": "DES",
                     "update_stamp": "UPDDATTIM"},
        graphql_package="FinanceData", graphql_node="account",
        graphql_fields={"chart": "chartOfAccounts.code", "account": "code",
                        "description": "localizedDescription", "update_stamp": "_updateStamp"},
    )


def _dimension() -> EntityNames:
    return EntityNames(
        rest_class="CACCE", rest_representation="CACCE", rest_key=("DIE", "CCE"),
        rest_fields={"dimension_type": "DIE", "code": "CCE", "description": "DES",
                     "short_description": "DESSHO", "active": "ENAFLG", "update_stamp": "UPDDATTIM"},
        graphql_package="FinanceData", graphql_node="dimension",
        graphql_fields={"dimension_type": "dimensionType.code", "code": "dimension",
                        "description": "localizedDescription",
                        "short_description": "localizedShortDescription", "active": "isActive",
                        "update_stamp": "_updateStamp"},
        graphql_inputs={"dimension_type": "dimensionType", "code": "dimension",
                        "description": "localizedDescription",
                        "short_description": "localizedShortDescription", "active": "isActive"},
    )


@dataclass(frozen=True)
class X3Names:
    """All X3 names in one place; override any part with `dataclasses.replace`.

    `invoice_final_rest` / `invoice_final_graphql`: the values of the purchase invoice
    status field (canonical `status`) that mean the invoice is final (posted) in X3; every
    other value, and a missing field, reads as not final (`is_final` False).
    """

    graphql_root_prefix: str = "x3"
    purchase_order: EntityNames = field(default_factory=_purchase_order)
    purchase_invoice: EntityNames = field(default_factory=_purchase_invoice)
    supplier: EntityNames = field(default_factory=_supplier)
    gl_account: EntityNames = field(default_factory=_gl_account)
    dimension: EntityNames = field(default_factory=_dimension)
    mapping_key: MappingKey = field(default_factory=MappingKey)
    line_account: LineValueSource = DEFAULT_LINE_ACCOUNT
    line_dimension: LineValueSource = DEFAULT_LINE_DIMENSION
    graphql_line_dimensions: str = DEFAULT_GRAPHQL_LINE_DIMENSIONS
    invoice_final_rest: tuple[str, ...] = ("2",)
    invoice_final_graphql: tuple[str, ...] = ("posted",)

    def entity(self, name: str) -> EntityNames:
        if name not in ENTITIES:
            raise ValueError(f"unknown X3 entity {name!r}; choose one of {', '.join(ENTITIES)}")
        return getattr(self, name)

    def graphql_package(self, entity: str) -> str:
        return _check_graphql_name(self.graphql_root_prefix + self.entity(entity).graphql_package)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def names_from_env(env: Mapping[str, str]) -> X3Names:
    """X3Names with the `MLC_X3_*` / `MLC_MAPPING_KEY` overrides of an environment.

    Pure (the environment is passed in), so the resource, `ping` and tests share it. Every
    bad value raises a ValueError naming its setting.
    """
    def get(name: str) -> str:
        return (env.get(name) or "").strip()

    names = X3Names()
    changes: dict[str, Any] = {"mapping_key": MappingKey.from_env(env)}
    if get("MLC_X3_GRAPHQL_ROOT_PREFIX"):
        changes["graphql_root_prefix"] = get("MLC_X3_GRAPHQL_ROOT_PREFIX")
    if get("MLC_X3_REST_LINE_ACCOUNT"):
        changes["line_account"] = LineValueSource.parse(get("MLC_X3_REST_LINE_ACCOUNT"),
                                                        "MLC_X3_REST_LINE_ACCOUNT")
    if get("MLC_X3_REST_LINE_DIMENSION"):
        changes["line_dimension"] = LineValueSource.parse(get("MLC_X3_REST_LINE_DIMENSION"),
                                                          "MLC_X3_REST_LINE_DIMENSION")
    if get("MLC_X3_GRAPHQL_LINE_DIMENSIONS"):
        changes["graphql_line_dimensions"] = _check_graphql_name(
            get("MLC_X3_GRAPHQL_LINE_DIMENSIONS"))
    if get("MLC_X3_INVOICE_FINAL_VALUES"):
        changes["invoice_final_rest"] = _csv(get("MLC_X3_INVOICE_FINAL_VALUES"))
    if get("MLC_X3_GRAPHQL_INVOICE_FINAL_VALUES"):
        changes["invoice_final_graphql"] = _csv(get("MLC_X3_GRAPHQL_INVOICE_FINAL_VALUES"))

    order, invoice = names.purchase_order, names.purchase_invoice
    line_fields = dict(order.graphql_line_fields)
    if get("MLC_X3_GRAPHQL_LINE_ACCOUNT"):
        line_fields["gl_account"] = get("MLC_X3_GRAPHQL_LINE_ACCOUNT")
    order_changes: dict[str, Any] = {"graphql_line_fields": line_fields}
    if get("MLC_X3_POLL_LINE_STAMPS").lower() in ("0", "false", "no", "off"):
        order_changes.update(rest_line_class=None, rest_line_representation=None,
                             graphql_line_node=None)
    invoice_changes: dict[str, Any] = {}
    if get("MLC_X3_INVOICE_STATUS_FIELD"):
        invoice_changes["rest_fields"] = {**invoice.rest_fields,
                                          "status": get("MLC_X3_INVOICE_STATUS_FIELD")}
    if get("MLC_X3_GRAPHQL_INVOICE_STATUS_FIELD"):
        invoice_changes["graphql_fields"] = {**invoice.graphql_fields,
                                             "status": get("MLC_X3_GRAPHQL_INVOICE_STATUS_FIELD")}
    try:
        changes["purchase_order"] = replace(order, **order_changes)
        changes["purchase_invoice"] = replace(invoice, **invoice_changes)
    except ValueError as exc:
        raise ValueError(f"Sage X3 name settings: {exc}") from None
    return replace(names, **changes)


# --- canonical values -----------------------------------------------------------------
# Converters never raise: a malformed value is passed on as text for staging to reject.

def _text(value: Any) -> str | None:
    if value is None or value == "" or isinstance(value, dict | list):
        return None
    return value if isinstance(value, str) else str(value)


def _decimal(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if isinstance(value, bool) or not number.is_finite():
        return str(value)
    return format((number + 0).normalize(), "f")


def _int(value: Any) -> int | str | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
        if number.is_finite() and number == number.to_integral_value() and not isinstance(value, bool):
            return int(number)
    except (InvalidOperation, OverflowError):
        pass
    return str(value)


_YES_NO = {2: True, 1: False, "2": True, "1": False, "yes": True, "no": False,
           "true": True, "false": False}


def _yes_no(value: Any) -> bool | str | None:
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


def _invoice_type(value: Any) -> str | None:
    """PIHTYP (1 invoice, 2 additional, 3 credit memo, 4 credit memo/return) or GraphQL category."""
    if value is None or value == "":
        return None
    key = value.lower() if isinstance(value, str) else value
    if isinstance(key, str) and key.isdigit():
        key = int(key)
    return _INVOICE_TYPES.get(key, str(value)) if isinstance(key, int | str) else str(value)


_PO_TYPES = {1: "order", 2: "contract", "order": "order", "contract": "contract"}


def _po_type(value: Any) -> str | None:
    """POHTYP (local menu 506: 1 order, 2 contract) or the GraphQL `orderType` enum."""
    if value is None or value == "":
        return None
    key = int(value) if isinstance(value, str) and value.isdigit() else value
    return _PO_TYPES.get(key, str(value)) if isinstance(key, int | str) else str(value)


def _date(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = str(value)
    return text[:10] if _ISO_DATE.match(text) else text


def _stamp(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return format_stamp(parse_stamp(str(value)))
    except ValueError:
        return str(value)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "revision": _int, "line_number": _int, "po_line": _int,
    "closed": _yes_no, "active": _yes_no, "invoice_type": _invoice_type, "po_type": _po_type,
    "order_date": _date, "invoice_date": _date, "accounting_date": _date,
    "update_stamp": _stamp,
    "total_amount": _decimal, "quantity": _decimal, "unit_price": _decimal, "amount": _decimal,
}


class _RecordConverter:
    """Builds canonical records from one API's records: paths split and converters chosen
    once per entity, since hundreds of thousands of PO lines may pass through."""

    def __init__(self, names: tuple[str, ...], fields_map: dict[str, str]) -> None:
        self._plan = [(name, tuple(fields_map[name].split(".")) if name in fields_map else (),
                       _CONVERTERS.get(name, _text)) for name in names]

    def __call__(self, record: dict) -> dict:
        canonical = {}
        for name, path, convert in self._plan:
            value: Any = record if path else None
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
            canonical[name] = convert(value)
        return canonical


def _dig(record: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(record, dict):
            return None
        record = record.get(part)
    return record


def record_key(entity: str, record: dict) -> str:
    """The canonical key of a record; composite keys are joined with `~` as X3 does."""
    return "~".join(str(record.get(name)) for name in CANONICAL_KEYS[entity])


# --- delta cursor ---------------------------------------------------------------------

@dataclass
class DeltaCursor:
    """High-water update stamp plus the (key, stamp) pairs already seen inside the overlap.

    Each poll reads from `window_start()` (the high-water stamp minus the overlap) and passes
    every page through `advance()`, which returns only the records not seen before. So
    same-second changes split across pages or polls are read once, and a change committed
    late with an earlier stamp (inside the overlap) is still picked up. Serialises to a
    short JSON string for a Dagster sensor cursor.
    """

    entity: str
    stamp: str | None = None
    overlap_seconds: float = 300.0
    seen: set[tuple[str, str]] = field(default_factory=set)

    def window_start(self, overlap_seconds: float | None = None) -> str | None:
        """Where the next read starts; a given overlap is remembered for pruning."""
        if overlap_seconds is not None:
            self.overlap_seconds = overlap_seconds
        if self.stamp is None:
            return None
        return format_stamp(parse_stamp(self.stamp) - timedelta(seconds=self.overlap_seconds))

    def advance(self, records: Iterable[dict]) -> list[dict]:
        """Record a page of changes; return those not seen before, in order."""
        fresh = []
        for record in records:
            stamp = record.get("update_stamp")
            pair = (record_key(self.entity, record), stamp)
            if pair in self.seen:
                continue
            fresh.append(record)
            if isinstance(stamp, str) and _ISO_DATETIME.match(stamp):
                self.seen.add(pair)
                if self.stamp is None or stamp > self.stamp:
                    self.stamp = stamp
        floor = self.window_start()
        if floor is not None:
            self.seen = {pair for pair in self.seen if pair[1] >= floor}
        return fresh

    def to_json(self) -> str:
        by_stamp: dict[str, list[str]] = {}
        for key, stamp in sorted(self.seen):
            by_stamp.setdefault(stamp, []).append(key)
        return json.dumps({"e": self.entity, "s": self.stamp, "o": self.overlap_seconds,
                           "k": dict(sorted(by_stamp.items()))}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> DeltaCursor:
        data = json.loads(text)
        seen = {(key, stamp) for stamp, keys in data.get("k", {}).items() for key in keys}
        return cls(data["e"], data.get("s"), float(data.get("o", 300.0)), seen)


# --- clients --------------------------------------------------------------------------

def _diagnosis_messages(body: Any) -> list[str]:
    """Error texts from a REST `$diagnoses` list or GraphQL `errors` / `extensions.diagnoses`."""
    if not isinstance(body, dict):
        return []
    messages = []
    for diagnosis in body.get("$diagnoses") or []:
        if isinstance(diagnosis, dict) and diagnosis.get("$severity", "error") in ("error", "fatal"):
            messages.append(str(diagnosis.get("$message", "")))
    for error in body.get("errors") or []:
        messages.append(str(error.get("message", error)) if isinstance(error, dict) else str(error))
    extensions = body.get("extensions")
    for diagnosis in (extensions.get("diagnoses") or []) if isinstance(extensions, dict) else []:
        if isinstance(diagnosis, dict) and diagnosis.get("severity") in ("error", "fatal"):
            messages.append(str(diagnosis.get("message", "")))
    return messages


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _x3_should_retry(response: httpx.Response, idempotent: bool) -> bool:
    """Retry what http_core retries, plus X3 running out of sessions ("too many sessions");
    never a missing record, whatever its status (X3 may answer it with a 5xx)."""
    if response.status_code >= 400 and b"$diagnoses" in response.content:
        body = _json_or_none(response)
        if isinstance(body, dict) and any(_is_missing_diagnosis(d)
                                          for d in body.get("$diagnoses") or []):
            return False
    if is_retryable(response, idempotent):
        return True
    if response.status_code < 400 and b"$diagnoses" not in response.content \
            and b'"errors"' not in response.content:
        return False
    return any("session" in message.lower()
               for message in _diagnosis_messages(_json_or_none(response)))


def _pick(values: Any, selectors: Any, wanted: str | None) -> str | None:
    """One value of an X3 array column: the position where `selectors` holds `wanted`
    (position 0 when nothing is wanted); a plain (non-array) value is taken as is."""
    if not isinstance(values, list):
        return _text(values)
    if wanted is None:
        return _text(values[0]) if values else None
    if not isinstance(selectors, list):
        return None
    for index, selector in enumerate(selectors):
        if _text(selector) == wanted and index < len(values):
            return _text(values[index])
    return None


def _line_values(record: dict, raw_lines: list[dict], line_number: str,
                 source: LineValueSource, wanted: str | None) -> list[str | None]:
    """`source`'s value for each raw REST line of a `$details` record."""
    if source.member is None:
        return [_pick(raw.get(source.values), raw.get(source.selectors or ""), wanted)
                for raw in raw_lines]
    entries = record.get(source.member)
    by_line: dict[str, str | None] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict):
            by_line[str(entry.get(source.line_key))] = _pick(
                entry.get(source.values), entry.get(source.selectors or ""), wanted)
    return [by_line.get(str(raw.get(line_number))) for raw in raw_lines]


class SageX3Client(HttpClientBase, ABC):
    """What both X3 APIs offer the connector: delta reads, full reads, a few writes."""

    system = "sage_x3"

    def __init__(
        self,
        base_url: str,
        endpoint: str,
        *,
        names: X3Names | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        max_wait_seconds: float = 120.0,
        verify: bool = True,
        transport: httpx.BaseTransport | None = None,
        on_request: Callable[[RequestRecord], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        auth: httpx.Auth | None = None,
    ) -> None:
        if not _X3_NAME.match(endpoint):
            raise ValueError(f"not an X3 endpoint name: {endpoint!r}")
        self.base_url = base_url.rstrip("/")
        self.endpoint = endpoint
        self.names = names or X3Names()
        self._clock = clock
        self._http = httpx.Client(timeout=timeout, verify=verify, transport=transport, auth=auth,
                                  headers={"Accept": "application/json"})
        self._sender = RetrySender(self._http, self.system, retry=retry,
                                   max_wait_seconds=max_wait_seconds, sleep=sleep, clock=clock,
                                   on_request=on_request, should_retry=_x3_should_retry)
        self._converter_cache: dict[str, tuple[_RecordConverter, _RecordConverter]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, endpoint={self.endpoint!r})"

    # The interface -------------------------------------------------------------------

    @abstractmethod
    def changed(self, entity: str, since_stamp: str | None, *, page_size: int = 200
                ) -> Iterator[list[dict]]:
        """Pages of canonical records with update stamp >= `since_stamp`, in no promised
        order (REST pages by the class key). Overlap and de-duplication are the caller's
        (see `DeltaCursor`, which does not depend on the order)."""

    @abstractmethod
    def read_all(self, entity: str, *, page_size: int = 200) -> Iterator[list[dict]]:
        """Every record of an entity, page by page, ordered by key (for reconciliation)."""

    @abstractmethod
    def changed_line_documents(self, entity: str, since_stamp: str | None, *,
                               page_size: int = 200) -> Iterator[list[dict]]:
        """Pages of `{<document key>: ..., "update_stamp": <line stamp>}` for the document
        lines stamped >= `since_stamp`: whether a line-only change moves the header stamp is
        not documented, so line stamps are polled too. Empty when the entity's line class /
        node is not configured (`rest_line_class` / `graphql_line_node` None)."""

    @abstractmethod
    def read_purchase_orders(self, numbers: Iterable[str], *, max_concurrency: int = 4) -> list[dict]:
        """Purchase orders with their lines; numbers X3 doesn't know are left out."""

    @abstractmethod
    def read_purchase_invoices(self, numbers: Iterable[str], *, max_concurrency: int = 4) -> list[dict]:
        """Purchase invoices with their lines; numbers X3 doesn't know are left out."""

    @abstractmethod
    def create_supplier(self, record: dict) -> str:
        """Create a supplier from a canonical record; returns its code."""

    @abstractmethod
    def update_supplier(self, code: str, fields: dict) -> None:
        """Change some canonical fields of one supplier."""

    @abstractmethod
    def upsert_dimension(self, dimension_type: str, code: str, description: str, active: bool,
                         short_description: str | None = None) -> str:
        """Create or update one analytical dimension value; returns "created" or "updated"."""

    # Shared helpers ------------------------------------------------------------------

    def _secrets(self) -> list[Any]:
        return []

    def _send(self, build: Callable[[], httpx.Request], method: str, path: str, *,
              idempotent: bool = True) -> httpx.Response:
        try:
            return self._sender.send(build, idempotent=idempotent)
        except httpx.TransportError as exc:
            message = redact(f"{type(exc).__name__}: {exc}", self._secrets())
            raise SageX3Error(None, method, path, message) from None

    def _error(self, response: httpx.Response, method: str, path: str,
               messages: list[str] | None = None) -> SageX3Error:
        body = _json_or_none(response)
        messages = messages or _diagnosis_messages(body) or [response.text[:500] or response.reason_phrase]
        message = redact("; ".join(messages), self._secrets())
        diagnoses = body.get("$diagnoses") if isinstance(body, dict) else None
        return SageX3Error(response.status_code, method, path, message, diagnoses)

    def _converters(self, entity: str) -> tuple[_RecordConverter, _RecordConverter]:
        """(header, line) converters for an entity on this client's API."""
        if entity not in self._converter_cache:
            header_map, line_map = self._field_maps(self.names.entity(entity))
            self._converter_cache[entity] = (
                _RecordConverter(CANONICAL_FIELDS[entity], header_map),
                _RecordConverter(CANONICAL_LINE_FIELDS.get(entity, ()), line_map))
        return self._converter_cache[entity]

    @abstractmethod
    def _field_maps(self, names: EntityNames) -> tuple[dict[str, str], dict[str, str]]:
        """(header, line) field maps of this client's API."""

    @abstractmethod
    def _final_values(self) -> tuple[str, ...]:
        """Invoice status values meaning "final" on this client's API."""

    def _finish(self, entity: str, record: dict) -> dict:
        """Derived canonical fields, the same on both APIs.

        - invoices: `is_final` (status is one of the configured final values; a missing or
          unknown status is not final, the stricter reading);
        - PO lines: `mapping_key` (the GL account, or the configured dimension's value that
          the API-specific reader put in `mapping_key`);
        - POs with lines: `update_stamp` is the newest of the header and line stamps, so a
          line-only change (which may leave the header stamp alone) still changes it.
        """
        if entity == "purchase_invoice":
            finals = {value.lower() for value in self._final_values()}
            status = record.get("status")
            record["is_final"] = status is not None and str(status).strip().lower() in finals
        lines = record.get("lines")
        if entity == "purchase_order" and isinstance(lines, list):
            by_account = self.names.mapping_key.kind == "gl_account"
            stamps = [record.get("update_stamp")]
            for line in lines:
                if by_account:
                    line["mapping_key"] = line.get("gl_account")
                stamps.append(line.get("update_stamp"))
            valid = [s for s in stamps if isinstance(s, str) and _ISO_DATETIME.match(s)]
            if valid:
                record["update_stamp"] = max(valid)
        return record


class SageX3RestClient(SageX3Client):
    """The Syracuse REST web API (`/api1/x3/erp/{ENDPOINT}/{CLASS}`), HTTP Basic."""

    def __init__(self, base_url: str, endpoint: str, user: str, password: str, **options: Any) -> None:
        self.user = user
        self._password = Secret(password)
        super().__init__(base_url, endpoint, auth=httpx.BasicAuth(user, password), **options)

    def _secrets(self) -> list[Any]:
        return [self._password]

    # reads ---------------------------------------------------------------------------

    def changed(self, entity: str, since_stamp: str | None, *, page_size: int = 200
                ) -> Iterator[list[dict]]:
        """Records stamped >= since, ordered by the class key: the `$next` links page with a
        `key=gt.<last key>` cursor over the class key (integration-guide ws-query), so an
        `orderBy` on anything else would skip or repeat records across pages."""
        names = self.names.entity(entity)
        where = _since_where(names.rest_fields["update_stamp"], since_stamp)
        return self._pages(entity, where, self._key_order(names), page_size)

    def read_all(self, entity: str, *, page_size: int = 200) -> Iterator[list[dict]]:
        names = self.names.entity(entity)
        return self._pages(entity, None, self._key_order(names), page_size)

    def changed_line_documents(self, entity: str, since_stamp: str | None, *,
                               page_size: int = 200) -> Iterator[list[dict]]:
        names = self.names.entity(entity)
        if not (names.rest_line_class and names.rest_line_document):
            return iter(())
        stamp_column = names.rest_line_fields.get("update_stamp", "UPDDATTIM")
        where = _since_where(stamp_column, since_stamp)
        key = CANONICAL_KEYS[entity][0]
        document = names.rest_line_document
        representation = names.rest_line_representation or names.rest_line_class

        def pages() -> Iterator[list[dict]]:
            # No orderBy: the server's own order is the class key, which is what its
            # key-cursor `$next` links page over.
            for page in self._query_pages(names.rest_line_class, representation, where, None,
                                          page_size):
                rows = [{key: _text(r.get(document)), "update_stamp": _stamp(r.get(stamp_column))}
                        for r in page]
                if rows:
                    yield rows
        return pages()

    @staticmethod
    def _key_order(names: EntityNames) -> str:
        return ",".join(f"{column} asc" for column in names.rest_key)

    def read_purchase_orders(self, numbers: Iterable[str], *, max_concurrency: int = 4) -> list[dict]:
        return self._read_details("purchase_order", numbers, max_concurrency)

    def read_purchase_invoices(self, numbers: Iterable[str], *, max_concurrency: int = 4) -> list[dict]:
        return self._read_details("purchase_invoice", numbers, max_concurrency)

    def _pages(self, entity: str, where: str | None, order_by: str | None, page_size: int
               ) -> Iterator[list[dict]]:
        names = self.names.entity(entity)
        for page in self._query_pages(names.rest_class, names.rest_representation, where,
                                      order_by, page_size):
            records = [self._from_rest(entity, r) for r in page]
            if records:
                yield records

    def _query_pages(self, rest_class: str, representation: str, where: str | None,
                     order_by: str | None, page_size: int) -> Iterator[list[dict]]:
        """Raw `$resources` pages of a `$query`, following `$links.$next.$url`."""
        url: str | None = self._class_url(rest_class)
        params: dict | None = {"representation": f"{representation}.$query", "count": page_size}
        if order_by:
            params["orderBy"] = order_by
        if where is not None:
            params["where"] = where
        while url:
            body = self._get(url, params)
            yield [r for r in body.get("$resources") or [] if isinstance(r, dict)]
            next_link = (body.get("$links") or {}).get("$next") or {}
            url, params = (self._same_origin(next_link["$url"]) if next_link.get("$url") else None), None

    def _read_details(self, entity: str, keys: Iterable[str], max_concurrency: int) -> list[dict]:
        """`$details` per record (list views carry no lines), a few at a time."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(max_concurrency, len(keys)))) as pool:
            records = list(pool.map(lambda key: self._details(entity, key), keys))
        return [record for record in records if record is not None]

    def _details(self, entity: str, key: str) -> dict | None:
        """One record with its lines; None only when X3's diagnosis says it does not exist."""
        names = self.names.entity(entity)
        url = self._class_url(names.rest_class) + _key_segment(key)
        try:
            body = self._get(url, {"representation": f"{names.rest_representation}.$details"})
        except SageX3Error as exc:
            if exc.record_missing:
                return None
            raise
        return self._from_rest(entity, body, with_lines=True)

    def _field_maps(self, names: EntityNames) -> tuple[dict[str, str], dict[str, str]]:
        return names.rest_fields, names.rest_line_fields

    def _final_values(self) -> tuple[str, ...]:
        return self.names.invoice_final_rest

    def _from_rest(self, entity: str, record: dict, with_lines: bool = False) -> dict:
        names = self.names.entity(entity)
        header, line = self._converters(entity)
        canonical = header(record)
        if with_lines and names.rest_lines:
            lines = record.get(names.rest_lines)
            raw_lines = [item for item in (lines if isinstance(lines, list) else [])
                         if isinstance(item, dict)]
            canonical["lines"] = [line(item) for item in raw_lines]
            if entity == "purchase_order":
                self._read_line_analytics(names, record, raw_lines, canonical["lines"])
        return self._finish(entity, canonical)

    def _read_line_analytics(self, names: EntityNames, record: dict, raw_lines: list[dict],
                             lines: list[dict]) -> None:
        """GL account and mapping dimension of each PO line, from where X3 keeps them."""
        key = self.names.mapping_key
        line_number = names.rest_line_fields.get("line_number", "POPLIN")
        accounts = _line_values(record, raw_lines, line_number, self.names.line_account,
                                key.chart)
        for canonical, account in zip(lines, accounts, strict=True):
            canonical["gl_account"] = account
        if key.kind == "dimension":
            values = _line_values(record, raw_lines, line_number, self.names.line_dimension,
                                  key.dimension_type)
            for canonical, value in zip(lines, values, strict=True):
                canonical["mapping_key"] = value

    # writes --------------------------------------------------------------------------

    def create_supplier(self, record: dict) -> str:
        names = self.names.supplier
        body = self._to_rest(names, record)
        created = self._write("POST", names, None, "$create", body)
        return _text(created.get(names.rest_fields["supplier_code"])) or record["supplier_code"]

    def update_supplier(self, code: str, fields: dict) -> None:
        names = self.names.supplier
        self._write("PUT", names, code, "$edit", self._to_rest(names, fields))

    def upsert_dimension(self, dimension_type: str, code: str, description: str, active: bool,
                         short_description: str | None = None) -> str:
        names = self.names.dimension
        record = {"dimension_type": dimension_type, "code": code, "description": description,
                  "active": active}
        if short_description is not None:
            record["short_description"] = short_description
        key = f"{dimension_type}~{code}"
        try:
            self._write("PUT", names, key, "$edit",
                        self._to_rest(names, {k: v for k, v in record.items()
                                              if k not in CANONICAL_KEYS["dimension"]}))
            return "updated"
        except SageX3Error as exc:
            if not exc.record_missing:
                raise
        self._write("POST", names, None, "$create", self._to_rest(names, record))
        return "created"

    def _write(self, method: str, names: EntityNames, key: str | None, facet: str, body: dict) -> dict:
        """The only REST write path; it refuses anything outside the allow-list."""
        _guard_rest_class(names.rest_class)
        url = self._class_url(names.rest_class) + (_key_segment(key) if key is not None else "")
        params = {"representation": f"{names.rest_representation}.{facet}"}
        path = urlsplit(url).path
        response = self._send(lambda: self._http.build_request(method, url, params=params, json=body),
                              method, path, idempotent=method != "POST")
        return self._check(response, method, path)

    @staticmethod
    def _to_rest(names: EntityNames, record: dict) -> dict:
        body = {}
        for name, value in record.items():
            column = names.rest_fields.get(name)
            if column is None or name == "update_stamp":
                continue
            body[column] = (2 if value else 1) if name == "active" else value
        return body

    # transport -----------------------------------------------------------------------

    def _class_url(self, rest_class: str) -> str:
        return f"{self.base_url}/api1/x3/erp/{self.endpoint}/{rest_class}"

    def _same_origin(self, url: str) -> str:
        url = urljoin(self.base_url + "/", url)
        if urlsplit(url)[:2] != urlsplit(self.base_url)[:2]:
            raise SageX3Error(None, "GET", urlsplit(url).path,
                              "refusing to follow a $next link to a different host")
        return url

    def _get(self, url: str, params: dict | None) -> dict:
        path = urlsplit(url).path
        response = self._send(lambda: self._http.build_request("GET", url, params=params), "GET", path)
        return self._check(response, "GET", path)

    def _check(self, response: httpx.Response, method: str, path: str) -> dict:
        if response.status_code == 401:
            raise SageX3AuthError(401, method, path,
                                  f"Sage X3 rejected the user/password for user {self.user!r} "
                                  f"at {self.base_url}/api1/x3/erp/{self.endpoint}")
        if response.is_error:
            raise self._error(response, method, path)
        body = _json_or_none(response)
        if not isinstance(body, dict):
            raise SageX3Error(response.status_code, method, path, "response is not a JSON object")
        messages = _diagnosis_messages(body)
        if messages:
            raise self._error(response, method, path, messages)
        return body


class SageX3GraphQLClient(SageX3Client):
    """The X3 GraphQL API (`POST /xtrem/api`).

    On-premise, a connected application signs its own HS256 JWT (`iss` = client id,
    `sub` = X3 user); behind Sage's cloud gateway pass `bearer_token_provider`, a callable
    returning a current OAuth2 access token.
    """

    def __init__(
        self,
        base_url: str,
        endpoint: str,
        *,
        jwt_client_id: str | None = None,
        jwt_secret: str | None = None,
        jwt_user: str | None = None,
        token_lifetime: int = 300,
        jwt_audience: str | None = None,
        bearer_token_provider: Callable[[], str] | None = None,
        api_path: str = "/xtrem/api",
        **options: Any,
    ) -> None:
        if bearer_token_provider is None and not (jwt_client_id and jwt_secret and jwt_user):
            raise ValueError("give jwt_client_id, jwt_secret and jwt_user, or a bearer_token_provider")
        if token_lifetime <= JWT_CLOCK_SKEW_SECONDS:
            raise ValueError(f"token_lifetime must exceed the {JWT_CLOCK_SKEW_SECONDS} s clock-skew allowance")
        super().__init__(base_url, endpoint, **options)
        self.jwt_client_id = jwt_client_id
        self.jwt_user = jwt_user
        self._jwt_secret = Secret(jwt_secret or "")
        self.token_lifetime = token_lifetime
        self.jwt_audience = jwt_audience
        self._provider = bearer_token_provider
        self.api_url = self.base_url + api_path
        self._token: Secret | None = None
        self._token_expires_at = 0.0
        self._token_lock = threading.Lock()

    def _secrets(self) -> list[Any]:
        return [self._jwt_secret, self._token]

    # reads ---------------------------------------------------------------------------

    def changed(self, entity: str, since_stamp: str | None, *, page_size: int = 200
                ) -> Iterator[list[dict]]:
        return self._pages(entity, _since_filter(since_stamp), "{_updateStamp:1,_id:1}",
                           page_size)

    def read_all(self, entity: str, *, page_size: int = 200) -> Iterator[list[dict]]:
        return self._pages(entity, None, "{_id:1}", page_size)

    def changed_line_documents(self, entity: str, since_stamp: str | None, *,
                               page_size: int = 200) -> Iterator[list[dict]]:
        names = self.names.entity(entity)
        if not (names.graphql_line_node and names.graphql_line_document):
            return iter(())
        where = _since_filter(since_stamp)
        key = CANONICAL_KEYS[entity][0]
        document = names.graphql_line_document
        selection = _selection([document, "_updateStamp"])

        def pages() -> Iterator[list[dict]]:
            for nodes in self._node_pages(self.names.graphql_package(entity),
                                          names.graphql_line_node, selection, where,
                                          "{_updateStamp:1,_id:1}", page_size):
                rows = [{key: _text(_dig(n, document)), "update_stamp": _stamp(n.get("_updateStamp"))}
                        for n in nodes]
                if rows:
                    yield rows
        return pages()

    def read_purchase_orders(self, numbers: Iterable[str], *, max_concurrency: int = 4) -> list[dict]:
        return self._read_by_ids("purchase_order", numbers)

    def read_purchase_invoices(self, numbers: Iterable[str], *, max_concurrency: int = 4) -> list[dict]:
        return self._read_by_ids("purchase_invoice", numbers)

    def _read_by_ids(self, entity: str, ids: Iterable[str], chunk: int = 100) -> list[dict]:
        """One filtered query per chunk (`{_id:{_in:[...]}}`), results in the order asked."""
        ids = list(dict.fromkeys(ids))
        found: dict[str, dict] = {}
        key = CANONICAL_KEYS[entity][0]
        for start in range(0, len(ids), chunk):
            where = f"{{_id:{{_in:{filter_literal(ids[start:start + chunk])}}}}}"
            for page in self._pages(entity, where, "{_id:1}", chunk):
                found.update({record[key]: record for record in page})
        return [found[i] for i in ids if i in found]

    def _pages(self, entity: str, where: str | None, order_by: str, page_size: int
               ) -> Iterator[list[dict]]:
        names = self.names.entity(entity)
        for nodes in self._node_pages(self.names.graphql_package(entity), names.graphql_node,
                                      self._node_selection(entity), where, order_by, page_size):
            records = [self._from_node(entity, node) for node in nodes]
            if entity == "purchase_order" and self.names.mapping_key.kind == "dimension":
                self._attach_line_dimensions(records)
            records = [self._finish(entity, record) for record in records]
            if records:
                yield records

    def _node_pages(self, package: str, node: str, selection: str, where: str | None,
                    order_by: str | None, page_size: int) -> Iterator[list[dict]]:
        """Raw node pages of `<package> { <node> { query(...) } }`, following endCursor."""
        query = (
            "query($filter: String, $orderBy: String, $first: Int, $after: String) { "
            f"{package} {{ {node} {{ "
            "query(filter: $filter, orderBy: $orderBy, first: $first, after: $after) { "
            f"edges {{ cursor node {{ {selection} }} }} pageInfo {{ endCursor hasNextPage }} "
            "} } } }"
        )
        after = None
        while True:
            data = self._execute(query, {"filter": where, "orderBy": order_by,
                                         "first": page_size, "after": after})
            connection = _dig(data, f"{package}.{node}.query") or {}
            yield [edge["node"] for edge in connection.get("edges") or []
                   if isinstance(edge, dict) and isinstance(edge.get("node"), dict)]
            info = connection.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                return
            if not info.get("endCursor") or info["endCursor"] == after:
                raise SageX3Error(200, "POST", urlsplit(self.api_url).path,
                                  f"{node}: hasNextPage without a new endCursor")
            after = info["endCursor"]

    # Properties of the line-dimension node, as on purchaseRequestLineDimensionDimensions
    # (developer.sage.com/x3/graphql/reference/x3Purchasing/...): the order number and line
    # number as plain values, the dimension type and dimension value as references.
    DIMENSION_DOCUMENT, DIMENSION_LINE = "purchaseOrder", "purchaseOrderLine"
    DIMENSION_TYPE, DIMENSION_VALUE = "dimensionType._id", "dimension.dimension"

    def _attach_line_dimensions(self, records: list[dict]) -> None:
        """Set each PO line's `mapping_key` to its value of the configured dimension type,
        read from the line-dimension node for the whole page of POs at once."""
        numbers = [r["po_number"] for r in records if r.get("po_number")]
        if not numbers:
            return
        wanted = self.names.mapping_key.dimension_type
        selection = _selection([self.DIMENSION_DOCUMENT, self.DIMENSION_LINE,
                                self.DIMENSION_TYPE, self.DIMENSION_VALUE])
        where = f"{{{self.DIMENSION_DOCUMENT}:{{_in:{filter_literal(numbers)}}}}}"
        values: dict[tuple[str, str], str | None] = {}
        for nodes in self._node_pages(self.names.graphql_package("purchase_order"),
                                      self.names.graphql_line_dimensions, selection, where,
                                      "{_id:1}", 500):
            for node in nodes:
                if _text(_dig(node, self.DIMENSION_TYPE)) == wanted:
                    values[(str(node.get(self.DIMENSION_DOCUMENT)),
                            str(node.get(self.DIMENSION_LINE)))] = _text(
                        _dig(node, self.DIMENSION_VALUE))
        for record in records:
            for line in record.get("lines") or []:
                line["mapping_key"] = values.get((str(record["po_number"]),
                                                  str(line.get("line_number"))))

    def _node_selection(self, entity: str) -> str:
        """The node selection of an entity, built from the configured paths."""
        names = self.names.entity(entity)
        node = _selection(["_id", *names.graphql_fields.values()])
        if names.graphql_lines:
            lines = _selection(names.graphql_line_fields.values())
            node += f" {names.graphql_lines} {{ query {{ edges {{ node {{ {lines} }} }} }} }}"
        return node

    def _field_maps(self, names: EntityNames) -> tuple[dict[str, str], dict[str, str]]:
        return names.graphql_fields, names.graphql_line_fields

    def _final_values(self) -> tuple[str, ...]:
        return self.names.invoice_final_graphql

    def _from_node(self, entity: str, node: dict) -> dict:
        names = self.names.entity(entity)
        header, line = self._converters(entity)
        canonical = header(node)
        if names.graphql_lines:
            edges = _dig(node, f"{names.graphql_lines}.query.edges")
            canonical["lines"] = [line(edge["node"]) for edge in (edges if isinstance(edges, list) else [])
                                  if isinstance(edge, dict) and isinstance(edge.get("node"), dict)]
        return canonical

    # writes --------------------------------------------------------------------------

    def create_supplier(self, record: dict) -> str:
        created = self._mutate("supplier", "create", record)
        return _text(created.get("_id")) or record["supplier_code"]

    def update_supplier(self, code: str, fields: dict) -> None:
        self._mutate("supplier", "update", {**fields, "supplier_code": code})

    def upsert_dimension(self, dimension_type: str, code: str, description: str, active: bool,
                         short_description: str | None = None) -> str:
        record = {"dimension_type": dimension_type, "code": code, "description": description,
                  "active": active}
        if short_description is not None:
            record["short_description"] = short_description
        where = (f"{{dimensionType:{{code:{filter_literal(dimension_type)}}},"
                 f"dimension:{filter_literal(code)}}}")
        exists = any(self._pages("dimension", where, "{_id:1}", 1))
        self._mutate("dimension", "update" if exists else "create", record)
        return "updated" if exists else "created"

    def _mutate(self, entity: str, operation: str, record: dict) -> dict:
        """The only GraphQL write path; it refuses nodes outside the allow-list."""
        names = self.names.entity(entity)
        _guard_graphql_node(names.graphql_node)
        data = {names.graphql_inputs[name]: value for name, value in record.items()
                if name in names.graphql_inputs}
        package = self.names.graphql_package(entity)
        mutation = (f"mutation {{ {package} {{ {names.graphql_node} {{ "
                    f"{operation}(data: {graphql_literal(data)}) {{ _id }} }} }} }}")
        result = self._execute(mutation, {}, idempotent=False)
        return _dig(result, f"{package}.{names.graphql_node}.{operation}") or {}

    # transport -----------------------------------------------------------------------

    def _bearer(self) -> str:
        if self._provider is not None:
            return self._provider()
        with self._token_lock:
            now = self._clock()
            if self._token is None or now >= self._token_expires_at:
                # Back-dated so a server clock slightly behind ours does not see a token
                # "issued in the future"; exp - iat stays within the app's token validity.
                issued = int(now) - JWT_CLOCK_SKEW_SECONDS
                expires = issued + self.token_lifetime
                claims = {"iss": self.jwt_client_id, "sub": self.jwt_user, "iat": issued, "exp": expires}
                if self.jwt_audience is not None:
                    claims["aud"] = self.jwt_audience
                self._token = Secret(jwt.encode(claims, self._jwt_secret.reveal(), algorithm="HS256"))
                self._token_expires_at = expires - min(30.0, (expires - now) / 5)
            return self._token.reveal()

    def _forget_token(self, token: str) -> None:
        with self._token_lock:
            if self._token is not None and self._token.reveal() == token:
                self._token = None

    def _execute(self, query: str, variables: dict, *, idempotent: bool = True) -> dict:
        path = urlsplit(self.api_url).path
        used: list[str] = []

        def build() -> httpx.Request:
            token = self._bearer()
            used.append(token)
            return self._http.build_request(
                "POST", self.api_url, json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {token}", "x-xtrem-endpoint": self.endpoint})

        for renewed in (False, True):
            response = self._send(build, "POST", path, idempotent=idempotent)
            if response.status_code != 401:
                break
            if renewed:
                who = (f"client id {self.jwt_client_id!r}, user {self.jwt_user!r}"
                       if self._provider is None else "the bearer token provider")
                reason = "; ".join(_diagnosis_messages(_json_or_none(response)))
                raise SageX3AuthError(401, "POST", path, redact(
                    f"Sage X3 rejected the token from {who} at {self.api_url}: {reason}",
                    self._secrets()))
            self._forget_token(used[-1])
        if response.is_error:
            raise self._error(response, "POST", path)
        body = _json_or_none(response)
        messages = _diagnosis_messages(body)
        if messages or not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise self._error(response, "POST", path, messages or ["response has no data"])
        return body["data"]


def _selection(paths: Iterable[str]) -> str:
    """`["a", "b.c", "b.d"]` -> `a b { c d }`."""
    tree: dict[str, dict] = {}
    for path in paths:
        node = tree
        for part in path.split("."):
            node = node.setdefault(part, {})

    def render(node: dict) -> str:
        return " ".join(f"{name} {{ {render(sub)} }}" if sub else name for name, sub in node.items())

    return render(tree)


def _key_segment(key: str) -> str:
    """`PO'1` -> `('PO''1')`, percent-encoded for the URL path."""
    return "('" + quote(key.replace("'", "''"), safe="~") + "')"


def _guard_rest_class(rest_class: str) -> None:
    if rest_class not in WRITABLE_REST_CLASSES or _LEDGER_NAMES.search(rest_class):
        raise X3WriteForbidden(
            f"refusing to write Sage X3 class {rest_class!r}: only {sorted(WRITABLE_REST_CLASSES)} "
            "may be written; GL accounts, journals and accounting entries are never written")


def _guard_graphql_node(node: str) -> None:
    if node not in WRITABLE_GRAPHQL_NODES or _LEDGER_NAMES.search(node):
        raise X3WriteForbidden(
            f"refusing to write Sage X3 node {node!r}: only {sorted(WRITABLE_GRAPHQL_NODES)} "
            "may be written; GL accounts, journals and accounting entries are never written")

