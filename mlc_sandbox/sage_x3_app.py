"""Sage X3 sandbox: the Syracuse REST web API (`/api1/...`) and the GraphQL API (`/xtrem/api`).

The connector is developed and tested without any real X3, so this simulator has to be
strict where the real system is strict (auth, representations, where syntax, key-cursor
paging, JWT claims, validation) and realistic where the real system is awkward (UPDDATTIM
with one-second resolution that several changes can share, an unknown property in `where`
answering HTTP 500, a line-only change that leaves the header stamp alone, a missing record
answered with a varying 4xx/5xx status). The contract it follows is
`reference/sage_x3_api.md`; the choices the reference leaves open are fixed here and noted
in the docstrings.

Both APIs read and write one in-memory `X3State` (a deep copy of the seed), exposed as
`build_app(...).state_obj` so tests can inspect it or age stamps directly.

REST classes (field names = X3 columns): PORDER (key POHNUM, lines PORDERQ by POPLIN, line
accounts in member PORDERC, line dimensions in member CPTANALIN), PINVOICE (key NUM, lines
PINVOICED by PIDLIN, status STA), BPSUPPLIER (BPSNUM), GACCOUNT (COA~ACC, read-only), CACCE
(DIE~CCE), PORDERQ (POHNUM~POPLIN~POQSEQ, list-only: line stamps). Internally, as in the
seed, lines live under "lines". Every source and assumption: docs/api-assumptions.md.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import hmac
import json
import logging
import re
import threading
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlencode

import jwt
from graphql import GraphQLError, build_schema, execute, parse, validate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mlc_sandbox import x3_where
from mlc_sandbox.controls import ControlsMiddleware, SandboxControls
from mlc_sandbox.seed import SANDBOX_CREDENTIALS, SeedData, money, stamp
from mlc_sandbox.x3_where import (
    InvalidValueError,
    QueryError,
    UnknownPropertyError,
    WhereSyntaxError,
)
from mlc_dagster.x3_import.templates import (
    ImportTemplate,
    dimension_template,
    supplier_template,
    supplier_update_template,
)

log = logging.getLogger(__name__)

REST_PAGE_DEFAULT = 20
REST_PAGE_CAP = 200
GRAPHQL_FIRST_DEFAULT = 20
GRAPHQL_FIRST_MAX = 500
# The connected application's "Tokens validity" (seconds); a JWT living longer is refused.
CONNECTED_APP_TOKEN_VALIDITY = 600
# Tolerated clock skew for `iat`: beyond this the token is "issued in the future".
JWT_IAT_SKEW_SECONDS = 30

_UUID_NAMESPACE = uuid.UUID("6f0c3c59-1d51-4b0e-9a43-3bd1d0c8e2a1")


# ======================================================================================
# Class dictionary
# ======================================================================================


@dataclass(frozen=True)
class Field:
    """One X3 column: kind ("str", "int", "dec", "date", "datetime"), max length, default,
    allowed local-menu values, and whether the server computes it (read-only)."""

    kind: str
    max_len: int | None = None
    default: Any = None
    choices: tuple[int, ...] | None = None
    read_only: bool = False


def _s(max_len: int, default: str = "") -> Field:
    return Field("str", max_len, default)


def _i(default: int = 0, choices: tuple[int, ...] | None = None) -> Field:
    return Field("int", None, default, choices)


_DEC = Field("dec", default="0")
_COMPUTED_DEC = Field("dec", read_only=True)
_STAMP = Field("datetime", read_only=True)
_YES_NO = (1, 2)  # local menu 1: 1 = No, 2 = Yes


@dataclass(frozen=True)
class LineMember:
    """A per-line child array of a document's `$details`, kept on the line internally.

    X3 keeps neither GL accounts nor analytical dimensions on the PO quantity/price lines
    (V11 table dictionary: PORDERQ and PORDERP have no ACC / CCE column). The line accounts
    are the LINACC(10) array of PORDERC ("Cumulative POs", key POHNUM+POPLIN), indexed like
    its COA(10) chart array (dictionary link `COA(indice);LINACC(indice)`); the line
    dimensions are the CCE array of CPTANALIN (key VCRNUM+VCRLIN, community SQL), indexed
    like DIE (`DIE(indice);CCE(indice)`). The sandbox serves each as its own member of the
    `$details`, one entry per line: `{"POPLIN": 1000, "COA": ["SEED"], "LINACC": ["601100"]}`.
    ASSUMPTION: the member names and the JSON shape of X3 array columns (a JSON list).
    `arrays` maps served array columns to the internal line keys holding them.
    """

    name: str
    line_key: str
    arrays: dict[str, str]


@dataclass(frozen=True)
class X3Class:
    name: str
    seed_attr: str  # list attribute on SeedData / X3State
    keys: tuple[str, ...]
    fields: dict[str, Field]
    mandatory: tuple[str, ...]
    writable: bool = True
    lines_member: str | None = None  # REST member name of the embedded lines
    line_key: str | None = None
    line_fields: dict[str, Field] = field(default_factory=dict)
    line_amount: str | None = None  # line amount computed from QTYUOM * NETPRI
    total_field: str | None = None  # header total = sum of line amounts
    line_members: tuple[LineMember, ...] = ()
    query_fields: tuple[str, ...] | None = None  # the $query facet; None = every field
    details: bool = True  # False: only the $query facet exists (a list-only class)

    @property
    def kinds(self) -> dict[str, str]:
        return {name: f.kind for name, f in self.fields.items()}

    @property
    def query_facet(self) -> tuple[str, ...]:
        return self.query_fields if self.query_fields is not None else tuple(self.fields)


# X3 computes a PO line's amount (LINAMT, "Line amount - tax") from the ordered quantity and
# the net price, and the header totals from the lines: they are read-only to a client.
# ASSUMPTION (no Sage page found stating the formula): LINAMT = QTYUOM x NETPRI rounded to
# 2 decimals (NETPRI is already net of the line's discounts/charges); TOTORD = sum(LINAMT).
_COMPUTED_LINE_AMOUNT = Field("dec", default="0.00", read_only=True)

PORDER = X3Class(
    name="PORDER", seed_attr="x3_purchase_orders", keys=("POHNUM",),
    fields={
        "POHNUM": _s(20), "POHTYP": _i(1, (1, 2)), "POHFCY": _s(5), "ORDDAT": Field("date"),
        "BPSNUM": _s(15), "PJTH": _s(24), "CUR": _s(3), "REVNUM": _i(0),
        "CLEFLG": _i(1, _YES_NO), "APPFLG": _i(1, (1, 2, 3, 4, 5)), "ORDREF": _s(20),
        "TOTORD": _COMPUTED_DEC, "CREDATTIM": _STAMP, "UPDDATTIM": _STAMP,
    },
    mandatory=("POHNUM", "BPSNUM"),
    lines_member="PORDERQ", line_key="POPLIN",
    line_fields={
        "POHNUM": Field("str", 20, read_only=True), "POPLIN": _i(0), "POQSEQ": _i(1),
        "ITMREF": _s(20), "ITMDES": _s(30), "PJT": _s(24), "QTYUOM": _DEC,
        "UOM": _s(3), "NETPRI": _DEC, "LINAMT": _COMPUTED_LINE_AMOUNT,
        "LINCLEFLG": _i(1, _YES_NO), "LINSTA": _i(1, (1, 2, 3)), "LINREVNUM": _i(0),
        "UPDDATTIM": _STAMP,
    },
    line_amount="LINAMT", total_field="TOTORD",
    line_members=(
        LineMember("PORDERC", "POPLIN", {"COA": "COA", "LINACC": "LINACC"}),
        LineMember("CPTANALIN", "VCRLIN", {"DIE": "DIE", "CCE": "CCE"}),
    ),
    # ASSUMPTION: the representation's $query facet lists these header properties (not
    # APPFLG nor CREDATTIM); which properties a facet has is the representation's choice.
    query_fields=("POHNUM", "POHTYP", "POHFCY", "ORDDAT", "BPSNUM", "PJTH", "CUR", "REVNUM",
                  "CLEFLG", "ORDREF", "TOTORD", "UPDDATTIM"),
)

# PINVOICE.STA, the invoice status: ASSUMPTION (no Sage page found naming the column and
# its local menu): 1 = not posted, 2 = posted. The connector reads it through the
# configurable MLC_X3_INVOICE_STATUS_FIELD / MLC_X3_INVOICE_FINAL_VALUES.
INVOICE_NOT_POSTED, INVOICE_POSTED = 1, 2

PINVOICE = X3Class(
    name="PINVOICE", seed_attr="x3_purchase_invoices", keys=("NUM",),
    fields={
        "NUM": _s(20), "PIHTYP": _i(1, (1, 2, 3, 4)), "BPSNUM": _s(15), "BPSINV": _s(30),
        "INVDAT": Field("date"), "ACCDAT": Field("date"), "CUR": _s(3), "PJT": _s(24),
        "STA": _i(INVOICE_NOT_POSTED, (INVOICE_NOT_POSTED, INVOICE_POSTED)),
        "AMTNOT": _COMPUTED_DEC, "CREDATTIM": _STAMP, "UPDDATTIM": _STAMP,
    },
    mandatory=("NUM", "BPSNUM"),
    lines_member="PINVOICED", line_key="PIDLIN",
    # V11 dictionary: PINVOICED has no account or dimension column either.
    line_fields={
        "NUM": Field("str", 20, read_only=True), "PIDLIN": _i(0), "POHNUM": _s(20),
        "POPLIN": _i(0), "POQSEQ": _i(0), "ITMREF": _s(20), "ITMDES": _s(30),
        "QTYUOM": _DEC, "UOM": _s(3), "NETPRI": _DEC, "AMTNOTLIN": _COMPUTED_LINE_AMOUNT,
        "UPDDATTIM": _STAMP,
    },
    line_amount="AMTNOTLIN", total_field="AMTNOT",
    query_fields=("NUM", "PIHTYP", "BPSNUM", "BPSINV", "INVDAT", "ACCDAT", "CUR", "PJT", "STA",
                  "AMTNOT", "UPDDATTIM"),
)

# The PO quantity lines as a class of their own, list-only, so lines can be polled by their
# own UPDDATTIM (technical column of every table, developer-guide technical-columns).
# ASSUMPTION: a PORDERQ class/representation with a $query facet exists on the customer's X3
# (MLC_X3_POLL_LINE_STAMPS=0 turns line polling off where it does not).
PORDERQ = X3Class(
    name="PORDERQ", seed_attr="x3_purchase_order_lines", keys=("POHNUM", "POPLIN", "POQSEQ"),
    fields={"POHNUM": _s(20), "POPLIN": _i(0), "POQSEQ": _i(1), "ITMREF": _s(20),
            "QTYUOM": _DEC, "LINAMT": _COMPUTED_LINE_AMOUNT, "UPDDATTIM": _STAMP},
    mandatory=(), writable=False, details=False,
)

BPSUPPLIER = X3Class(
    name="BPSUPPLIER", seed_attr="x3_suppliers", keys=("BPSNUM",),
    fields={
        "BPSNUM": _s(15), "BPSNAM": _s(35), "BPSSHO": _s(10), "BPSTYP": _i(1, (1, 2, 3)),
        "ENAFLG": _i(2, _YES_NO), "CUR": _s(3), "CRY": _s(3), "CTY": _s(40), "POSCOD": _s(10),
        "ADDLIG": _s(50), "TEL": _s(40), "WEB": _s(80), "EECNUM": _s(20),
        "CREDATTIM": _STAMP, "UPDDATTIM": _STAMP,
    },
    mandatory=("BPSNUM", "BPSNAM"),
)

GACCOUNT = X3Class(
    name="GACCOUNT", seed_attr="x3_gl_accounts", keys=("COA", "ACC"),
    fields={"COA": _s(10), "ACC": _s(15), "DES": _s(60), "UPDDATTIM": _STAMP},
    mandatory=("COA", "ACC"), writable=False,
)

CACCE = X3Class(
    name="CACCE", seed_attr="x3_dimensions", keys=("DIE", "CCE"),
    fields={
        "DIE": _s(10), "CCE": _s(15), "DES": _s(30), "DESSHO": _s(10),
        "ENAFLG": _i(2, _YES_NO), "CREDATTIM": _STAMP, "UPDDATTIM": _STAMP,
    },
    mandatory=("DIE", "CCE", "DES"),
)

# Classic objects whose standard representation is read-only through the web API (class
# -> the classic function that maintains it). Sources: "SOAP web services are connected to
# classic code (V6 style objects and sub-programs) ... REST web services are connected to
# classes and representations (V7 style programming)" (online-help V7DEV
# integration-guide_index); "When a Sage X3 function is available in read mode only, the
# representation and the class have been described only for query and detail facets ... an
# automatic switch is done to the corresponding Classic page when an edit activity is
# requested" (V7DEV workbench-reference_launching-url). Suppliers (FCT/GESBPS, classic
# masks BPS0..BPS4) and dimensions (FCT/GESCCE) are classic functions; that their standard
# representations have no $create/$edit facet is the stricter reading (ASSUMPTION, see
# docs/api-assumptions.md). The sandbox setting `writable_classes` stands for a customer
# who built a writable class/representation ("a custom class that you have implemented",
# integration-guide_ws-update).
WEB_API_READ_ONLY = {"BPSUPPLIER": "GESBPS", "CACCE": "GESCCE"}


def _read_only_message(class_name: str) -> str:
    return (f"{class_name}: the $create and $edit facets are not available; the standard "
            f"{class_name} representation is read-only (query and details only: "
            f"{WEB_API_READ_ONLY[class_name]} is a classic function). Write it with an import "
            "template (GESAOE) or a class/representation built for updates.")


CLASSES: dict[str, X3Class] = {c.name: c for c in (PORDER, PINVOICE, BPSUPPLIER, GACCOUNT, CACCE,
                                                    PORDERQ)}


class X3Error(Exception):
    """A business/validation error, rendered as $diagnoses (REST) or a GraphQL error."""

    def __init__(self, status: int, message: str, sdata_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.sdata_code = sdata_code


# Sage promises only "4xx or 5xx" for a failed call (integration-guide ws-query), so a
# missing record answers with a status chosen deterministically from its key among these,
# always with the same diagnosis; a client has to read the diagnosis, not the status.
MISSING_RECORD_STATUSES = (404, 400, 500)
MISSING_RECORD_MESSAGE = "721 : Record does not exist"


def _not_found(cls_name: str = "", key: str = "") -> X3Error:
    status = MISSING_RECORD_STATUSES[zlib.crc32(f"{cls_name}:{key}".encode())
                                     % len(MISSING_RECORD_STATUSES)]
    return X3Error(status, MISSING_RECORD_MESSAGE)


# ======================================================================================
# State: the one copy of the data both APIs read and write
# ======================================================================================


class X3State:
    """In-memory X3 folder. The record lists are the seed's own lists (deep-copied), so a
    test can append, remove or age records directly; every API call scans them under
    `lock` (a few thousand records: indexes would only add stale-index bugs)."""

    X3_ATTRS = ("x3_purchase_orders", "x3_purchase_invoices", "x3_suppliers",
                "x3_gl_accounts", "x3_dimensions")

    def __init__(self, seed: SeedData, controls: SandboxControls | None = None) -> None:
        self.lock = threading.RLock()
        self.controls = controls
        self.reset(seed)

    def reset(self, seed: SeedData) -> None:
        """Back to a fresh copy of `seed` (and the real clock) without restarting the
        server. Only the X3 lists are deep-copied: the Procore half of the seed is never
        read here, and copying it would triple the cost of every reset."""
        data = copy.copy(seed)
        for attr in self.X3_ATTRS:
            setattr(data, attr, _copy_json(getattr(seed, attr)))
        with self.lock:
            self.data = data
            self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
            self.token_validity_seconds = CONNECTED_APP_TOKEN_VALIDITY
            # What this customer's X3 has been set up with (sandbox settings, `/_sandbox/x3/
            # settings`). Standard X3 has none of the first two: see WEB_API_READ_ONLY and
            # _mutation_sdl. The import templates are the ones the README tells the X3
            # administrator to create in GESAOE.
            self.writable_classes: set[str] = set()
            self.api_operations: set[str] = set()
            self.import_templates: dict[str, ImportTemplate] = {
                t.code: t for t in (supplier_template(), supplier_update_template(),
                                    dimension_template())}

    # Same attribute names as SeedData, so tests read the state like the seed.
    @property
    def x3_purchase_orders(self) -> list[dict]:
        return self.data.x3_purchase_orders

    @property
    def x3_purchase_invoices(self) -> list[dict]:
        return self.data.x3_purchase_invoices

    @property
    def x3_suppliers(self) -> list[dict]:
        return self.data.x3_suppliers

    @property
    def x3_gl_accounts(self) -> list[dict]:
        return self.data.x3_gl_accounts

    @property
    def x3_dimensions(self) -> list[dict]:
        return self.data.x3_dimensions

    @property
    def x3_purchase_order_lines(self) -> list[dict]:
        """Every PO line (the line dicts themselves, each carrying POHNUM)."""
        return [line for po in self.data.x3_purchase_orders for line in po.get("lines", [])]

    def line_change_moves_header(self) -> bool:
        """Sandbox setting `x3_line_change_moves_header` (POST /_sandbox/config). Whether
        changing only a PO line moves the header UPDDATTIM is undocumented: off by default,
        the stricter reading for a connector (it must watch line stamps itself)."""
        return self.controls is not None and self.controls.config.x3_line_change_moves_header

    def records(self, cls: X3Class) -> list[dict]:
        return getattr(self, cls.seed_attr)

    def now_stamp(self) -> str:
        """UPDDATTIM value for a change made now: UTC, one-second resolution."""
        return stamp(self.clock())

    # --- lookups -----------------------------------------------------------------------

    @staticmethod
    def key_of(cls: X3Class, rec: dict) -> str:
        return "~".join(str(rec.get(k, "")) for k in cls.keys)

    def find(self, cls: X3Class, key: str) -> dict | None:
        parts = key.split("~")
        if len(parts) != len(cls.keys):
            return None
        for rec in self.records(cls):
            if all(str(rec.get(k, "")) == v for k, v in zip(cls.keys, parts, strict=True)):
                return rec
        return None

    def get(self, cls: X3Class, key: str) -> dict:
        rec = self.find(cls, key)
        if rec is None:
            raise _not_found(cls.name, key)
        return rec

    # --- writes ------------------------------------------------------------------------

    def create(self, cls: X3Class, body: dict) -> dict:
        """Insert a record (and its lines) after validating everything; all or nothing."""
        self._require_writable(cls)
        header, lines_body, members = self._split_body(cls, body)
        values = _clean(cls.fields, header, cls.name)
        for name in cls.mandatory:
            if values.get(name) in (None, ""):
                raise X3Error(400, f"{name} : Mandatory field")
        key = self.key_of(cls, values)
        if self.find(cls, key) is not None:
            raise X3Error(400, f"Record already exists ({cls.name} {key})")
        now = self.now_stamp()
        rec: dict[str, Any] = {}
        for name, spec in cls.fields.items():
            rec[name] = values[name] if name in values else spec.default
        self._fill_defaults(cls, rec)
        rec["CREDATTIM"] = rec["UPDDATTIM"] = now
        if cls.lines_member:
            rec["lines"] = []
            if lines_body is not None:
                self._apply_lines(cls, rec, lines_body, now)
            self._apply_members(cls, rec, members, now)
            self._recompute_total(cls, rec)
        self.records(cls).append(rec)
        return rec

    def update(self, cls: X3Class, key: str, body: dict) -> dict:
        """Partial update: only given fields change; given lines are upserted by line
        number (or `$uuid`), `"$delete": true` removes one. A changed line gets a new
        UPDDATTIM; the header's UPDDATTIM moves when a header field changed, and on a
        line-only change only if `line_change_moves_header()` (undocumented; off)."""
        self._require_writable(cls)
        rec = self.get(cls, key)
        header, lines_body, members = self._split_body(cls, body)
        values = _clean(cls.fields, header, cls.name)
        for name in cls.keys:
            if name in values and str(values[name]) != str(rec.get(name)):
                raise X3Error(400, f"{name} : Key fields cannot be modified")
        for name in cls.mandatory:
            if name in values and values[name] in (None, ""):
                raise X3Error(400, f"{name} : Mandatory field")
        work = copy.deepcopy(rec)  # validate and apply on a copy: a bad line changes nothing
        now = self.now_stamp()
        changed = False
        for name, value in values.items():
            if work.get(name) != value:
                work[name] = value
                changed = True
        lines_changed = False
        if lines_body is not None:
            lines_changed = self._apply_lines(cls, work, lines_body, now)
        lines_changed = self._apply_members(cls, work, members, now) or lines_changed
        if changed or lines_changed:
            if cls.total_field:
                self._recompute_total(cls, work)
            if changed or self.line_change_moves_header():
                work["UPDDATTIM"] = now
            rec.clear()
            rec.update(work)
        return rec

    def delete(self, cls: X3Class, key: str) -> None:
        self._require_writable(cls)
        rec = self.get(cls, key)
        records = self.records(cls)
        records[:] = [r for r in records if r is not rec]

    # --- helpers -----------------------------------------------------------------------

    @staticmethod
    def _require_writable(cls: X3Class) -> None:
        if not cls.writable:
            raise X3Error(405, f"{cls.name} is read-only: create, update and delete are not "
                               "available on this representation")

    @staticmethod
    def _split_body(cls: X3Class, body: Any) -> tuple[dict, Any, dict[str, list]]:
        if not isinstance(body, dict):
            raise X3Error(400, "The request body must be a JSON object")
        header = dict(body)
        lines = header.pop(cls.lines_member, None) if cls.lines_member else None
        if lines is not None and not isinstance(lines, list):
            raise X3Error(400, f"{cls.lines_member} must be an array of lines")
        members = {}
        for member in cls.line_members:
            entries = header.pop(member.name, None)
            if entries is not None:
                if not isinstance(entries, list):
                    raise X3Error(400, f"{member.name} must be an array")
                members[member.name] = entries
        return header, lines, members

    def _apply_members(self, cls: X3Class, rec: dict, members: dict[str, list], now: str
                       ) -> bool:
        """Set per-line child arrays (PORDERC accounts, CPTANALIN dimensions) on the lines
        they name. Returns True if a line changed (its UPDDATTIM then moves: ASSUMPTION,
        X3 saves the line with its analytics)."""
        changed = False
        for member in cls.line_members:
            for index, entry in enumerate(members.get(member.name, [])):
                where = f"{member.name}[{index}]"
                if not isinstance(entry, dict):
                    raise X3Error(400, f"{where} must be an object")
                unknown = [k for k in entry if not k.startswith("$") and k != member.line_key
                           and k not in member.arrays]
                if unknown:
                    raise X3Error(400, f"{where}: unknown property {unknown[0]}")
                try:
                    number = int(entry.get(member.line_key))
                except (TypeError, ValueError):
                    raise X3Error(400, f"{where}: {member.line_key} must be a line number") \
                        from None
                line = next((ln for ln in rec.get("lines", []) if ln.get(cls.line_key) == number),
                            None)
                if line is None:
                    raise X3Error(400, f"{where}: line {number} does not exist")
                for served, internal in member.arrays.items():
                    if served not in entry:
                        continue
                    values = entry[served]
                    if not isinstance(values, list) or not all(
                            isinstance(v, str) and len(v) <= 15 for v in values):
                        raise X3Error(400, f"{where}: {served} must be an array of codes")
                    if line.get(internal) != values:
                        line[internal] = list(values)
                        line["UPDDATTIM"] = now
                        changed = True
        return changed

    def _fill_defaults(self, cls: X3Class, rec: dict) -> None:
        """Defaults X3 itself would propose on a new record."""
        today = self.clock().date().isoformat()
        if cls is PORDER and not rec.get("ORDDAT"):
            rec["ORDDAT"] = today
        if cls is PINVOICE:
            rec["INVDAT"] = rec.get("INVDAT") or today
            rec["ACCDAT"] = rec.get("ACCDAT") or rec["INVDAT"]
        if cls is BPSUPPLIER and not rec.get("BPSSHO"):
            rec["BPSSHO"] = rec["BPSNAM"][:10]
        if cls in (PORDER, PINVOICE) and not rec.get("CUR"):
            supplier = self.find(BPSUPPLIER, str(rec.get("BPSNUM", "")))
            rec["CUR"] = supplier.get("CUR", "") if supplier else ""

    def _line_uuid(self, cls: X3Class, rec: dict, line: dict) -> str:
        return _uuid(f"{cls.name}:{self.key_of(cls, rec)}:{line.get(cls.line_key)}")

    def _apply_lines(self, cls: X3Class, rec: dict, lines_body: list, now: str) -> bool:
        """Upsert/delete lines in `rec` (already a working copy). Returns True if changed."""
        key_name = cls.line_key
        lines: list[dict] = rec.setdefault("lines", [])
        changed = False
        seen: set[int] = set()
        for index, item in enumerate(lines_body):
            where = f"{cls.lines_member}[{index}]"
            if not isinstance(item, dict):
                raise X3Error(400, f"{where} must be an object")
            values = _clean(cls.line_fields, item, where)
            existing = None
            if key_name in values:
                existing = next((ln for ln in lines if ln.get(key_name) == values[key_name]), None)
            elif item.get("$uuid"):
                existing = next((ln for ln in lines
                                 if self._line_uuid(cls, rec, ln) == item["$uuid"]), None)
                if existing is None:
                    raise X3Error(400, f"{where}: no line with $uuid {item['$uuid']}")
            if item.get("$delete") is True:
                if existing is None:
                    raise X3Error(400, f"{where}: line {values.get(key_name)} does not exist")
                lines.remove(existing)
                changed = True
                continue
            if existing is None:
                line = {name: spec.default for name, spec in cls.line_fields.items()}
                line[cls.keys[0]] = rec[cls.keys[0]]
                if cls is PORDER:
                    line["PJT"] = rec.get("PJTH", "")
                line.update(values)
                if not line.get(key_name):
                    line[key_name] = (max((ln.get(key_name) or 0 for ln in lines), default=0)
                                      // 1000 + 1) * 1000
                if line[key_name] in seen:
                    raise X3Error(400, f"{where}: duplicate line number {line[key_name]}")
                line[cls.line_amount] = _line_amount(line)  # computed, never taken from the body
                line["UPDDATTIM"] = now
                lines.append(line)
                changed = True
            else:
                if existing[key_name] in seen:
                    raise X3Error(400, f"{where}: duplicate line number {existing[key_name]}")
                diff = {k: v for k, v in values.items() if existing.get(k) != v}
                if diff:
                    existing.update(diff)
                    if {"QTYUOM", "NETPRI"} & diff.keys():
                        existing[cls.line_amount] = _line_amount(existing)
                    existing["UPDDATTIM"] = now
                    changed = True
                line = existing
            seen.add(line[key_name])
        lines.sort(key=lambda ln: ln.get(key_name) or 0)
        return changed

    @staticmethod
    def _recompute_total(cls: X3Class, rec: dict) -> None:
        if cls.total_field:
            total = sum((Decimal(str(ln.get(cls.line_amount) or 0)) for ln in rec.get("lines", [])),
                        Decimal(0))
            rec[cls.total_field] = money(total)


def _copy_json(value: Any) -> Any:
    """Deep copy of JSON-shaped data (dicts, lists, immutable scalars). Several times
    faster than copy.deepcopy, which matters because tests reset the state often."""
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    return value


def _uuid(name: str) -> str:
    return str(uuid.uuid5(_UUID_NAMESPACE, name))


def _line_amount(line: dict) -> str:
    try:
        return money(Decimal(str(line.get("QTYUOM") or 0)) * Decimal(str(line.get("NETPRI") or 0)))
    except InvalidOperation:
        return "0.00"


def _clean(fields: dict[str, Field], body: dict, where: str) -> dict:
    """Validate and normalise a (partial) write body against the class dictionary.

    `$`-prefixed members ($uuid, $etag, $delete ...) and `<FIELD>_REF` companions are
    metadata and ignored, as are server-computed columns (UPDDATTIM, TOTORD ...). Unknown
    properties are refused rather than silently dropped, so a client typo is visible.
    """
    values: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("$") or (name.endswith("_REF") and name[:-4] in fields):
            continue
        spec = fields.get(name)
        if spec is None:
            raise X3Error(400, f"{where}: unknown property {name}")
        if spec.read_only:
            continue
        values[name] = _convert(spec, value, name)
    return values


def _convert(spec: Field, value: Any, name: str) -> Any:
    if value is None:
        return spec.default
    if spec.kind == "str":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise X3Error(400, f"{name} : Invalid value (text expected)")
        text = str(value)
        if spec.max_len is not None and len(text) > spec.max_len:
            raise X3Error(400, f"{name} : Too long ({len(text)} characters, maximum "
                               f"{spec.max_len})")
        return text
    if spec.kind == "int":
        try:
            if isinstance(value, bool):
                raise ValueError
            number = int(str(value).strip())
        except ValueError:
            raise X3Error(400, f"{name} : Invalid value {value!r} (integer expected)") from None
        if spec.choices and number not in spec.choices:
            raise X3Error(400, f"{name} : Invalid value {number} (allowed: "
                               f"{', '.join(map(str, spec.choices))})")
        return number
    if spec.kind == "dec":
        try:
            if isinstance(value, bool):
                raise InvalidOperation
            number = Decimal(str(value).strip())
            # X3 decimals are at most 15 integer digits and 9 decimals; refusing more
            # also keeps "1e999999999" from being formatted into a gigabyte string.
            if not number.is_finite() or number.adjusted() > 15 or number.as_tuple().exponent < -9:
                raise InvalidOperation
        except InvalidOperation:
            raise X3Error(400, f"{name} : Invalid value {value!r} (number expected)") from None
        return format(number, "f")
    if spec.kind == "date":
        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise X3Error(400, f"{name} : Invalid date {value!r} (YYYY-MM-DD expected)") from None
    raise X3Error(400, f"{name} : cannot be written")  # pragma: no cover


# ======================================================================================
# REST web API (/api1/x3/erp/{ENDPOINT}/...)
# ======================================================================================


def _diagnoses(status: int, message: str, sdata_code: str | None = None,
               headers: dict | None = None) -> JSONResponse:
    diagnosis = {"$severity": "error", "$message": message}
    if sdata_code:
        diagnosis["$sdataCode"] = sdata_code
    return JSONResponse({"$diagnoses": [diagnosis]}, status_code=status, headers=headers)


def _rest_row(cls: X3Class, rec: dict, with_lines: bool, query: bool = False) -> dict:
    """A record as the web API serves it: `$query` rows carry only the facet's properties;
    `$details` rows carry every property, the lines and the per-line child members."""
    key = X3State.key_of(cls, rec)
    row: dict[str, Any] = {"$uuid": _uuid(f"{cls.name}:{key}"), "$key": key,
                           "$etag": rec.get("UPDDATTIM")}
    for name in (cls.query_facet if query else cls.fields):
        if name in rec:
            row[name] = rec[name]
    if with_lines and cls.lines_member:
        lines = rec.get("lines", [])
        row[cls.lines_member] = [
            {"$uuid": _uuid(f"{cls.name}:{key}:{line.get(cls.line_key)}"),
             **{name: line[name] for name in cls.line_fields if name in line}}
            for line in lines
        ]
        for member in cls.line_members:
            row[member.name] = [
                {member.line_key: line.get(cls.line_key),
                 **{served: list(line.get(internal) or []) for served, internal in
                    member.arrays.items()}}
                for line in lines
            ]
    return row


def _check_basic(header: str | None) -> bool:
    if not header or not header.startswith("Basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:].strip(), validate=True) \
            .decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    ok_user = hmac.compare_digest(user.encode(), SANDBOX_CREDENTIALS["x3_user"].encode())
    ok_pass = hmac.compare_digest(password.encode(), SANDBOX_CREDENTIALS["x3_password"].encode())
    return ok_user and ok_pass


_TARGET = re.compile(r"(?P<name>[A-Za-z0-9_]+)(?:\('(?P<key>(?:[^']|'')*)'\))?(?:/(?P<sub>.+))?")


def _parse_target(rest: str) -> tuple[str, str | None, str | None] | None:
    """`CLASS`, `CLASS('K')`, `CLASS/$prototypes('CLASS.$create')`, `CLASS/$template` ->
    (class, key or None, sub-resource or None). A quote inside a key is doubled."""
    match = _TARGET.fullmatch(rest)
    if match is None:
        return None
    key = match["key"]
    return match["name"], None if key is None else key.replace("''", "'"), match["sub"]


class RestApi:
    """Routing, auth and envelopes of the Syracuse `api1` web API."""

    def __init__(self, state: X3State) -> None:
        self.state = state
        self.endpoint = SANDBOX_CREDENTIALS["x3_endpoint"]

    async def dispatch(self, request: Request) -> Response:
        if not _check_basic(request.headers.get("authorization")):
            return _diagnoses(401, "Authentication required: invalid or missing credentials",
                              headers={"WWW-Authenticate": 'Basic realm="Syracuse"'})
        if request.path_params["endpoint"] != self.endpoint:
            return _diagnoses(404, f"Endpoint {request.path_params['endpoint']} does not exist")
        target = _parse_target(request.path_params["rest"])
        if target is None:
            return _diagnoses(400, f"Invalid resource path {request.path_params['rest']!r}",
                              "BadUrlSyntax")
        class_name, key, sub = target
        cls = CLASSES.get(class_name)
        if cls is None:
            return _diagnoses(404, f"Class {class_name} does not exist")
        try:
            body = None
            if request.method in ("POST", "PUT"):
                body = await self._json_body(request)
            with self.state.lock:
                return self._route(request, cls, key, sub, body)
        except X3Error as exc:
            return _diagnoses(exc.status, exc.message, exc.sdata_code)
        except UnknownPropertyError as exc:
            # Documented X3 behaviour: an unknown property in `where` is a server error.
            return _diagnoses(500, str(exc))
        except WhereSyntaxError as exc:
            return _diagnoses(400, f"BadWhereSyntax: {exc}", "BadWhereSyntax")
        except QueryError as exc:
            return _diagnoses(400, str(exc), "BadQueryParameter")
        except Exception:  # a sandbox bug must still answer like X3, not with a traceback
            log.exception("sage_x3 sandbox: unexpected error on %s %s", request.method,
                          request.url.path)
            return _diagnoses(500, "Internal server error")

    @staticmethod
    async def _json_body(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw)
        except ValueError:
            raise X3Error(400, "The request body is not valid JSON") from None

    def _route(self, request: Request, cls: X3Class, key: str | None, sub: str | None,
               body: Any) -> Response:
        method = request.method
        if sub is not None:
            if method == "GET" and sub == f"$prototypes('{cls.name}.$create')":
                return JSONResponse(_prototype(cls))
            if method == "GET" and sub == "$template":
                self._facet(request, cls, "$create")
                return JSONResponse(self._template(cls))
            return _diagnoses(404, f"Unknown resource {cls.name}/{sub}")
        if method != "GET" and not cls.writable:
            raise X3Error(405, f"{cls.name} is read-only: create, update and delete are not "
                               "available on this representation")
        if method != "GET" and cls.name in WEB_API_READ_ONLY \
                and cls.name not in self.state.writable_classes:
            raise X3Error(405, _read_only_message(cls.name))
        if key is None:
            if method == "GET":
                self._facet(request, cls, "$query")
                return self._query(request, cls)
            if method == "POST":
                self._facet(request, cls, "$create")
                rec = self.state.create(cls, body)
                new_key = X3State.key_of(cls, rec)
                quoted = quote(new_key.replace("'", "''"), safe="~")
                location = (f"{str(request.base_url).rstrip('/')}/api1/x3/erp/{self.endpoint}/"
                            f"{cls.name}('{quoted}')?representation={cls.name}.$details")
                return JSONResponse(_rest_row(cls, rec, True), status_code=201,
                                    headers={"Location": location})
            raise X3Error(405, f"{method} is not allowed on the {cls.name} collection")
        if method == "GET":
            if not cls.details:
                self._facet(request, cls, "$query")
                raise X3Error(400, f"{cls.name} has only a $query facet", "BadQueryParameter")
            self._facet(request, cls, "$details", "$edit")
            return JSONResponse(_rest_row(cls, self.state.get(cls, key), True))
        if method == "PUT":
            self._facet(request, cls, "$edit")
            return JSONResponse(_rest_row(cls, self.state.update(cls, key, body), True))
        if method == "DELETE":
            self._facet(request, cls, "$edit")
            self.state.delete(cls, key)
            return Response(status_code=204)
        raise X3Error(405, f"{method} is not allowed on a {cls.name} record")

    @staticmethod
    def _facet(request: Request, cls: X3Class, *allowed: str) -> str:
        """api1 needs a representation of *this* class with a facet fitting the call."""
        representation = request.query_params.get("representation")
        if not representation:
            raise X3Error(400, "The representation parameter is mandatory "
                               f"(representation={cls.name}.{allowed[0]})", "BadQueryParameter")
        name, dot, facet = representation.rpartition(".")
        if not dot or name != cls.name:
            raise X3Error(400, f"Representation {representation!r} does not belong to class "
                               f"{cls.name}", "BadQueryParameter")
        if facet not in allowed:
            raise X3Error(400, f"Facet {facet!r} is not valid for this request "
                               f"(expected {' or '.join(allowed)})", "BadQueryParameter")
        return facet

    def _template(self, cls: X3Class) -> dict:
        return {name: spec.default for name, spec in cls.fields.items() if not spec.read_only}

    # --- $query --------------------------------------------------------------------------

    def _query(self, request: Request, cls: X3Class) -> Response:
        params = request.query_params
        count = _parse_count(params.get("count"))
        page_size = min(count, REST_PAGE_CAP)
        kinds = cls.kinds
        where = params.get("where")
        predicate = x3_where.compile_where(where, kinds) if where and where.strip() else None
        order = _parse_order_by(params.get("orderBy"), cls)
        descending = tuple(desc for _name, desc in order)

        rows = [rec for rec in self.state.records(cls) if predicate is None or predicate(rec)]
        keyed = [(_sort_tuple(rec, order, kinds), rec) for rec in rows]
        x3_where.sort_keyed(keyed, descending)

        # The `key=` cursor is a condition on the class key (integration-guide ws-query:
        # "key=gt.<value>", composite keys joined with `~`), applied to the rows in the
        # requested order. Ordered by the key it pages exactly; ordered by anything else
        # the server's own `$next` links skip or repeat rows, as the real cursor would.
        key_param = params.get("key")
        # Forward in the key's own direction: gt/ge when the key is sorted ascending.
        key_desc = dict(order).get(cls.keys[0], False)
        forward_op, backward_op = ("lt", "gt") if key_desc else ("gt", "lt")
        previous = False
        if key_param:
            op, values = _parse_key(key_param, cls)
            class_key = [(name, False) for name in cls.keys]

            def keep(rec: dict) -> bool:
                c = x3_where.compare_keys(_sort_tuple(rec, class_key, kinds), values,
                                          (False,) * len(cls.keys))
                return {"gt": c > 0, "ge": c >= 0, "lt": c < 0, "le": c <= 0}[op]

            keyed = [(k, rec) for k, rec in keyed if keep(rec)]
            if op[0] != forward_op[0]:  # a `$previous` link: the page just before the key
                keyed = keyed[-page_size:]
            else:
                previous = True
        page = keyed[:page_size]
        links: dict[str, Any] = {}
        if page and len(keyed) > len(page):
            links["$next"] = self._link(request, cls, page[-1][1], forward_op)
        if page and previous:
            links["$previous"] = self._link(request, cls, page[0][1], backward_op)
        return JSONResponse({
            "$itemsPerPage": page_size,
            "$resources": [_rest_row(cls, rec, False, query=True) for _k, rec in page],
            "$links": links,
        })

    @staticmethod
    def _link(request: Request, cls: X3Class, rec: dict, op: str) -> dict:
        """Absolute next/previous URL: same where/orderBy/count plus a key cursor made of
        the row's class key (`key=gt.<key>`, parts joined with `~`)."""
        params = request.query_params
        query = [("representation", f"{cls.name}.$query")]
        for name in ("where", "orderBy", "count"):
            if params.get(name) is not None:
                query.append((name, params[name]))
        values = "~".join("" if rec.get(name) is None else str(rec.get(name))
                          for name in cls.keys)
        query.append(("key", f"{op}.{values}"))
        url = request.url.replace(query=urlencode(query, quote_via=quote, safe="$'~,:@()"))
        return {"$url": str(url), "$type": "application/json", "$method": "GET"}


def _parse_count(raw: str | None) -> int:
    if raw is None or raw == "":
        return REST_PAGE_DEFAULT
    try:
        count = int(raw)
    except ValueError:
        raise X3Error(400, f"Invalid count {raw!r}", "BadQueryParameter") from None
    if count < 1:
        raise X3Error(400, f"Invalid count {raw!r} (must be at least 1)", "BadQueryParameter")
    return count


def _parse_order_by(raw: str | None, cls: X3Class) -> list[tuple[str, bool]]:
    """`UPDDATTIM asc,POHNUM asc` (or `;`-separated) -> [(field, descending)], followed by
    the key fields not already present, so the order and the key cursor are unique."""
    order: list[tuple[str, bool]] = []
    if raw and raw.strip():
        for item in raw.replace(";", ",").split(","):
            parts = item.split()
            if not parts or len(parts) > 2:
                raise X3Error(400, f"Invalid orderBy item {item.strip()!r}", "BadQueryParameter")
            name = parts[0]
            direction = parts[1].lower() if len(parts) == 2 else "asc"
            if direction not in ("asc", "desc"):
                raise X3Error(400, f"Invalid orderBy direction {parts[1]!r}", "BadQueryParameter")
            if name not in cls.fields:
                raise X3Error(400, f"orderBy: unknown property {name}", "BadQueryParameter")
            if name not in cls.query_facet:
                # integration-guide ws-query: only properties of the $query facet can be
                # sorted on.
                raise X3Error(400, f"orderBy: {name} is not a property of the $query facet "
                                   f"of {cls.name}", "BadQueryParameter")
            if any(existing == name for existing, _d in order):
                raise X3Error(400, f"orderBy: {name} given twice", "BadQueryParameter")
            order.append((name, direction == "desc"))
    for name in cls.keys:
        if not any(existing == name for existing, _d in order):
            order.append((name, False))
    return order


def _sort_tuple(rec: dict, order: list[tuple[str, bool]], kinds: dict[str, str]) -> tuple:
    return tuple(x3_where.stored_value(kinds[name], rec.get(name)) for name, _desc in order)


def _parse_key(raw: str, cls: X3Class) -> tuple[str, tuple]:
    """`gt.PO26000001` (or `gt.DIE~CCE` for a composite key) -> ("gt", typed key values).
    Fewer values than key fields compare on the key prefix."""
    op, dot, rest = raw.partition(".")
    if not dot or op not in ("gt", "ge", "lt", "le"):
        raise X3Error(400, f"Invalid key parameter {raw!r} (expected gt./ge./lt./le.<values>)",
                      "BadQueryParameter")
    parts = rest.split("~")
    if len(parts) > len(cls.keys):
        raise X3Error(400, f"Invalid key parameter {raw!r}: {len(parts)} values for the "
                           f"{len(cls.keys)}-part key of {cls.name}", "BadQueryParameter")
    values = []
    for name, text in zip(cls.keys, parts, strict=False):
        try:
            values.append(x3_where.coerce_literal(cls.kinds[name], text, name)
                          if text != "" else None)
        except InvalidValueError as exc:
            raise X3Error(400, f"Invalid key parameter: {exc}", "BadQueryParameter") from None
    return op, tuple(values)


_PROTO_TYPES = {"str": "application/x-string", "int": "application/x-integer",
                "dec": "application/x-decimal", "date": "application/x-date",
                "datetime": "application/x-datetime"}


def _prototype_properties(fields: dict[str, Field], mandatory: tuple[str, ...]) -> dict:
    props = {}
    for name, spec in fields.items():
        prop: dict[str, Any] = {"$type": _PROTO_TYPES[spec.kind], "$isMandatory": name in mandatory}
        if spec.max_len:
            prop["$maxLength"] = spec.max_len
        if spec.read_only:
            prop["$isReadOnly"] = True
        props[name] = prop
    return props


def _prototype(cls: X3Class) -> dict:
    """Minimal `$prototypes('<CLASS>.$create')`: property types, lengths, mandatory flags."""
    props = _prototype_properties(cls.fields, cls.mandatory)
    if cls.lines_member:
        props[cls.lines_member] = {
            "$type": "application/x-array",
            "$item": {"$properties": _prototype_properties(cls.line_fields, ())},
        }
    return {"$baseType": f"{cls.name}.$create", "$properties": props}


# ======================================================================================
# GraphQL API (/xtrem/api)
# ======================================================================================

SDL = """
scalar Datetime
scalar Date
scalar Decimal

enum YesNo { no yes }
enum InvoiceCategory { invoice creditMemo }
# ASSUMPTION: purchase invoice status property and values (no reference page found).
enum PurchaseInvoiceStatus { notPosted posted }

type PageInfo {
  startCursor: String
  endCursor: String
  hasPreviousPage: Boolean!
  hasNextPage: Boolean!
}

type Site { _id: String! code: String! }
type Currency { _id: String! code: String! }
type ProjectLink { _id: String! code: String! }
type UnitOfMeasure { _id: String! code: String! }
type Country { _id: String! code: String! }
type ChartOfAccounts { _id: String! code: String! }
type DimensionType { _id: String! code: String! }
type Product { _id: String! code: String! description1: String }
type BusinessPartner { _id: String! code: String! vatNumber: String }

type SupplierAddress {
  country: Country
  city: String
  zipCode: String
  addressLine1: String
  phone: String
  email: String
}

type Supplier {
  _id: String!
  _updateStamp: Datetime
  _createStamp: Datetime
  code: BusinessPartner!
  companyName1: String
  shortCompanyName: String
  isActive: Boolean
  currency: Currency
  addressByDefault: SupplierAddress
}

type Account {
  _id: String!
  _updateStamp: Datetime
  chartOfAccounts: ChartOfAccounts
  code: String!
  localizedDescription: String
}

type Dimension {
  _id: String!
  _updateStamp: Datetime
  _createStamp: Datetime
  dimensionType: DimensionType!
  dimension: String!
  localizedDescription: String
  localizedShortDescription: String
  isActive: Boolean
}

# Names from developer.sage.com/x3/graphql/reference/x3Purchasing/purchaseOrderLine
# (_id, purchaseOrder, lineNumber, sequenceNumber, product,
# productDescriptionInUserLanguage) and examples/purchasing (quantityInOrderUnitOrdered,
# orderUnit). ASSUMPTION (not on the part of the reference read): _updateStamp, account,
# project, netPrice, lineAmountExcludingTax, isClosed.
type PurchaseOrderLine {
  _id: String!
  _updateStamp: Datetime
  purchaseOrder: PurchaseOrder
  lineNumber: Int!
  sequenceNumber: Int
  product: Product
  productDescriptionInUserLanguage: String
  account: Account
  project: ProjectLink
  quantityInOrderUnitOrdered: Decimal
  orderUnit: UnitOfMeasure
  netPrice: Decimal
  lineAmountExcludingTax: Decimal
  isClosed: YesNo
}

# Node purchaseOrderLineDimensionDimensions is listed in the x3Purchasing package
# (developer.sage.com/x3/graphql/reference/x3Purchasing); its properties as on
# .../x3Purchasing/purchaseRequestLineDimensionDimensions and
# .../x3Sales/salesOrderLineDimensionDimensions: one row per line and dimension type.
type PurchaseOrderLineDimensionDimensions {
  _id: String!
  _updateStamp: Datetime
  _createStamp: Datetime
  denormalizedIndex: Int
  purchaseOrder: String
  purchaseOrderLine: Int
  dimensionType: DimensionType
  dimension: Dimension
}

# developer.sage.com/x3/graphql/reference/x3Purchasing/purchaseOrder (_id, id,
# revisionNumber, orderDate, internalOrderReference, project, orderFromSupplier,
# purchaseSite), examples/purchasing (isClosed, purchaseOrderLines), Sage sample
# PurchaseOrder_read.graphql (_createStamp, _updateStamp). ASSUMPTION: currency,
# totalAmountExcludingTax.
type PurchaseOrder {
  _id: String!
  id: String!
  _updateStamp: Datetime
  _createStamp: Datetime
  revisionNumber: Int
  orderDate: Date
  isClosed: YesNo
  orderFromSupplier: Supplier
  project: ProjectLink
  purchaseSite: Site
  currency: Currency
  internalOrderReference: String
  totalAmountExcludingTax: Decimal
  purchaseOrderLines: PurchaseOrderLineCollection
}

# developer.sage.com/x3/graphql/reference/x3Purchasing/purchaseInvoiceLine (_id, lineNumber,
# sourceDocument, sourceDocumentLineNumber, product, productDescriptionInUserLanguage,
# purchaseUnit, quantityInPurchaseUnitInvoiced). ASSUMPTION: _updateStamp, netPrice,
# lineAmountExcludingTax; sourceDocument is the PO when the line comes from an order.
type PurchaseInvoiceLine {
  _id: String!
  _updateStamp: Datetime
  lineNumber: Int!
  sourceDocument: String
  sourceDocumentLineNumber: Int
  product: Product
  productDescriptionInUserLanguage: String
  quantityInPurchaseUnitInvoiced: Decimal
  purchaseUnit: UnitOfMeasure
  netPrice: Decimal
  lineAmountExcludingTax: Decimal
}

# developer.sage.com/x3/graphql/reference/x3Purchasing/purchaseInvoice (_id, id, category,
# billBySupplier, currency, amountOfLinesExcludingTax, accountingDate, purchaseInvoiceLines)
# and .../xtremX3Purchasing/purchaseInvoice (sourceDocument, sourceDocumentDate).
# ASSUMPTION: _createStamp/_updateStamp (system properties of X3 nodes), status.
type PurchaseInvoice {
  _id: String!
  id: String!
  _updateStamp: Datetime
  _createStamp: Datetime
  category: InvoiceCategory
  billBySupplier: Supplier
  sourceDocument: String
  sourceDocumentDate: Date
  accountingDate: Date
  currency: Currency
  amountOfLinesExcludingTax: Decimal
  status: PurchaseInvoiceStatus
  purchaseInvoiceLines: PurchaseInvoiceLineCollection
}

""" + "".join(
    f"""
type {name}Edge {{ cursor: String! node: {name}! }}
type {name}Connection {{ edges: [{name}Edge!]! pageInfo: PageInfo! totalCount: Int! }}
"""
    for name in ("PurchaseOrder", "PurchaseOrderLine", "PurchaseInvoice", "PurchaseInvoiceLine",
                 "Supplier", "Account", "Dimension", "PurchaseOrderLineDimensionDimensions")
) + "".join(
    f"""
type {name}Collection {{
  query(first: Int, after: String, filter: String, orderBy: String): {name}Connection
}}
"""
    for name in ("PurchaseOrderLine", "PurchaseInvoiceLine")
) + "".join(
    f"""
type {name}Operations {{
  query(filter: String, orderBy: String, first: Int, after: String): {name}Connection
  read(_id: String!): {name}
}}
"""
    for name in ("PurchaseOrder", "PurchaseInvoice", "Supplier", "Account", "Dimension",
                 "PurchaseOrderLine", "PurchaseOrderLineDimensionDimensions")
) + """
type X3Purchasing {
  purchaseOrder: PurchaseOrderOperations!
  purchaseOrderLine: PurchaseOrderLineOperations!
  purchaseOrderLineDimensionDimensions: PurchaseOrderLineDimensionDimensionsOperations!
  purchaseInvoice: PurchaseInvoiceOperations!
}
type X3MasterData { supplier: SupplierOperations! }
type X3FinanceData { account: AccountOperations! dimension: DimensionOperations! }

type Query {
  x3Purchasing: X3Purchasing!
  x3MasterData: X3MasterData!
  x3FinanceData: X3FinanceData!
  xtremX3Purchasing: X3Purchasing!
  xtremX3MasterData: X3MasterData!
  xtremX3FinanceData: X3FinanceData!
}

"""


def _format_datetime(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


# Mutations. Standard X3 nodes are read-only: the reference pages show every property of
# x3FinanceData.dimension and x3MasterData.supplier as `isWritable: no` and no mutation
# (developer.sage.com/x3/graphql/reference/...); "Active operations are exposed as GraphQL
# mutations" (online-help.sagex3.com/erp/12/en-us/Content/FCT/GESAPIOPE.htm), one create
# and one update per node (developer.sage.com/x3/x3-builder/.../operations/mutations). So
# the schema has a mutation for a node only when the sandbox setting `api_operations` says
# the customer set one up; otherwise a mutation fails GraphQL validation like any unknown
# field. There is never a mutation for GL accounts or any journal / GL entry.
_MUTATION_NODES = {  # node -> (package, GraphQL type, input fields)
    "dimension": ("FinanceData", "Dimension", """
  dimensionType: String!
  dimension: String!
  localizedDescription: String
  localizedShortDescription: String
  isActive: Boolean"""),
    "supplier": ("MasterData", "Supplier", """
  code: String!
  companyName1: String
  shortCompanyName: String
  isActive: Boolean
  vatNumber: String
  currency: String
  country: String
  city: String
  zipCode: String
  addressLine1: String
  phone: String
  email: String"""),
}


def _mutation_sdl(operations: frozenset[str]) -> str:
    packages: dict[str, list[str]] = {}
    parts = []
    for node in sorted(operations & set(_MUTATION_NODES)):
        package, type_name, inputs = _MUTATION_NODES[node]
        parts.append(f"input {type_name}_Input {{{inputs}\n}}\n"
                     f"type {type_name}Mutations {{\n  create(data: {type_name}_Input!): "
                     f"{type_name}\n  update(data: {type_name}_Input!): {type_name}\n}}")
        packages.setdefault(package, []).append(f"{node}: {type_name}Mutations!")
    if not packages:
        return ""
    for package, fields in sorted(packages.items()):
        parts.append(f"type X3{package}Mutations {{ {' '.join(fields)} }}")
    roots = [f"{prefix}{package}: X3{package}Mutations!"
             for package in sorted(packages) for prefix in ("x3", "xtremX3")]
    parts.append("type Mutation {\n  " + "\n  ".join(roots) + "\n}")
    return "\n".join(parts) + "\n"


@functools.cache
def _build_graphql_schema(operations: frozenset[str] = frozenset()):
    """Built once per process and set of API operations: immutable, ~0.1 s to build."""
    schema = build_schema(SDL + _mutation_sdl(operations))
    datetime_type = schema.type_map["Datetime"]
    datetime_type.serialize = _format_datetime
    datetime_type.parse_value = lambda value: x3_where.parse_datetime(str(value))
    date_type = schema.type_map["Date"]
    date_type.serialize = lambda value: value.isoformat() if isinstance(value, date) else str(value)
    date_type.parse_value = lambda value: date.fromisoformat(str(value))
    decimal_type = schema.type_map["Decimal"]
    decimal_type.serialize = lambda value: format(value, "f") if isinstance(value, Decimal) \
        else str(value)
    decimal_type.parse_value = lambda value: Decimal(str(value))
    return schema


def _dt(raw: Any) -> datetime | None:
    return x3_where.stored_value("datetime", raw)


def _day(raw: Any) -> date | None:
    return x3_where.stored_value("date", raw)


def _dec(raw: Any) -> Decimal | None:
    return x3_where.stored_value("dec", raw)


def _ref(code: Any) -> dict | None:
    """A reference to a node we only know by code (site, currency, project, unit ...)."""
    if code in (None, ""):
        return None
    return {"_id": str(code), "code": str(code)}


def _yes_no(flag: Any) -> str | None:
    return None if flag in (None, "") else ("yes" if int(flag) == 2 else "no")


class Node(Mapping):
    """A GraphQL node over one X3 record whose fields are computed on first access.

    graphql-core's default resolver reads Mappings with `.get`, and so do the filter and
    orderBy evaluators; a query over 20,000 POs therefore only computes the one or two
    fields it filters and sorts on, plus the selected fields of the rows it returns.
    """

    __slots__ = ("_rec", "_fields", "_cache")

    def __init__(self, rec: dict, fields: dict[str, Callable[[dict], Any]]) -> None:
        self._rec = rec
        self._fields = fields
        self._cache: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        cache = self._cache
        if key in cache:
            return cache[key]
        value = cache[key] = self._fields[key](self._rec)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """Hot path of every filter, sort and resolver: skip Mapping.get's KeyError dance."""
        return self[key] if key in self._fields else default

    def __iter__(self):
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


class GraphQLNodes:
    """X3 record -> GraphQL node mapping for one request (lookups cached per request).

    Nodes carry typed values (datetime, date, Decimal) so that filters compare by type;
    the custom scalars serialise them. A collection is `{"query": fn}`: graphql-core's
    default resolver calls it with the field arguments.
    """

    def __init__(self, api: GraphQLApi) -> None:
        self.api = api
        self.state = api.state
        self._index: dict[str, dict[Any, dict]] = {}
        self.purchase_order_fields = {
            "_id": lambda r: r["POHNUM"], "id": lambda r: r["POHNUM"],
            "_updateStamp": lambda r: _dt(r.get("UPDDATTIM")),
            "_createStamp": lambda r: _dt(r.get("CREDATTIM")),
            "revisionNumber": lambda r: r.get("REVNUM"),
            "orderDate": lambda r: _day(r.get("ORDDAT")),
            "isClosed": lambda r: _yes_no(r.get("CLEFLG")),
            "orderFromSupplier": lambda r: self.supplier_by_code(r.get("BPSNUM")),
            "project": lambda r: _ref(r.get("PJTH")),
            "purchaseSite": lambda r: _ref(r.get("POHFCY")),
            "currency": lambda r: _ref(r.get("CUR")),
            "internalOrderReference": lambda r: r.get("ORDREF"),
            "totalAmountExcludingTax": lambda r: _dec(r.get("TOTORD")),
            "purchaseOrderLines": lambda r: self._lines(r, "PurchaseOrderLine",
                                                        self.purchase_order_line_fields),
        }
        self.purchase_order_line_fields = {
            "_id": lambda ln: f"{ln.get('POHNUM')}~{ln.get('POPLIN')}",
            "_updateStamp": lambda ln: _dt(ln.get("UPDDATTIM")),
            "purchaseOrder": lambda ln: self.order_by_number(ln.get("POHNUM")),
            "lineNumber": lambda ln: ln.get("POPLIN"),
            "sequenceNumber": lambda ln: ln.get("POQSEQ"),
            "product": _product, "productDescriptionInUserLanguage": lambda ln: ln.get("ITMDES"),
            "account": lambda ln: self.account_by_code(_first(ln.get("LINACC"))),
            "project": lambda ln: _ref(ln.get("PJT")),
            "quantityInOrderUnitOrdered": lambda ln: _dec(ln.get("QTYUOM")),
            "orderUnit": lambda ln: _ref(ln.get("UOM")),
            "netPrice": lambda ln: _dec(ln.get("NETPRI")),
            "lineAmountExcludingTax": lambda ln: _dec(ln.get("LINAMT")),
            "isClosed": lambda ln: _yes_no(ln.get("LINCLEFLG")),
        }
        self.purchase_invoice_fields = {
            "_id": lambda r: r["NUM"], "id": lambda r: r["NUM"],
            "_updateStamp": lambda r: _dt(r.get("UPDDATTIM")),
            "_createStamp": lambda r: _dt(r.get("CREDATTIM")),
            "category": lambda r: "creditMemo" if r.get("PIHTYP") in (3, 4) else "invoice",
            "billBySupplier": lambda r: self.supplier_by_code(r.get("BPSNUM")),
            "sourceDocument": lambda r: r.get("BPSINV"),
            "sourceDocumentDate": lambda r: _day(r.get("INVDAT")),
            "accountingDate": lambda r: _day(r.get("ACCDAT")),
            "currency": lambda r: _ref(r.get("CUR")),
            "amountOfLinesExcludingTax": lambda r: _dec(r.get("AMTNOT")),
            "status": lambda r: "posted" if r.get("STA") == INVOICE_POSTED else "notPosted",
            "purchaseInvoiceLines": lambda r: self._lines(r, "PurchaseInvoiceLine",
                                                          self.purchase_invoice_line_fields),
        }
        self.purchase_invoice_line_fields = {
            "_id": lambda ln: f"{ln.get('NUM')}~{ln.get('PIDLIN')}",
            "_updateStamp": lambda ln: _dt(ln.get("UPDDATTIM")),
            "lineNumber": lambda ln: ln.get("PIDLIN"),
            "sourceDocument": lambda ln: ln.get("POHNUM"),
            "sourceDocumentLineNumber": lambda ln: ln.get("POPLIN"),
            "product": _product, "productDescriptionInUserLanguage": lambda ln: ln.get("ITMDES"),
            "quantityInPurchaseUnitInvoiced": lambda ln: _dec(ln.get("QTYUOM")),
            "purchaseUnit": lambda ln: _ref(ln.get("UOM")),
            "netPrice": lambda ln: _dec(ln.get("NETPRI")),
            "lineAmountExcludingTax": lambda ln: _dec(ln.get("AMTNOTLIN")),
        }
        self.supplier_fields = {
            "_id": lambda r: r["BPSNUM"],
            "_updateStamp": lambda r: _dt(r.get("UPDDATTIM")),
            "_createStamp": lambda r: _dt(r.get("CREDATTIM")),
            "code": lambda r: {"_id": r["BPSNUM"], "code": r["BPSNUM"],
                               "vatNumber": r.get("EECNUM")},
            "companyName1": lambda r: r.get("BPSNAM"),
            "shortCompanyName": lambda r: r.get("BPSSHO"),
            "isActive": lambda r: r.get("ENAFLG") == 2,
            "currency": lambda r: _ref(r.get("CUR")),
            "addressByDefault": lambda r: {
                "country": _ref(r.get("CRY")), "city": r.get("CTY"),
                "zipCode": r.get("POSCOD"), "addressLine1": r.get("ADDLIG"),
                "phone": r.get("TEL"), "email": r.get("WEB"),
            },
        }
        self.account_fields = {
            "_id": lambda r: f"{r['COA']}~{r['ACC']}",
            "_updateStamp": lambda r: _dt(r.get("UPDDATTIM")),
            "chartOfAccounts": lambda r: _ref(r.get("COA")), "code": lambda r: r["ACC"],
            "localizedDescription": lambda r: r.get("DES"),
        }
        self.dimension_fields = {
            "_id": lambda r: f"{r['DIE']}~{r['CCE']}",
            "_updateStamp": lambda r: _dt(r.get("UPDDATTIM")),
            "_createStamp": lambda r: _dt(r.get("CREDATTIM")),
            "dimensionType": lambda r: _ref(r.get("DIE")), "dimension": lambda r: r["CCE"],
            "localizedDescription": lambda r: r.get("DES"),
            "localizedShortDescription": lambda r: r.get("DESSHO"),
            "isActive": lambda r: r.get("ENAFLG") == 2,
        }

        self.line_dimension_fields = {
            "_id": lambda d: f"{d['POHNUM']}~{d['POPLIN']}~{d['index']}",
            "_updateStamp": lambda d: _dt(d.get("UPDDATTIM")),
            "_createStamp": lambda d: _dt(d.get("UPDDATTIM")),
            "denormalizedIndex": lambda d: d["index"] + 1,
            "purchaseOrder": lambda d: d["POHNUM"], "purchaseOrderLine": lambda d: d["POPLIN"],
            "dimensionType": lambda d: _ref(d["DIE"]),
            "dimension": lambda d: self.dimension_by_key(d["DIE"], d["CCE"]),
        }

    # --- nodes ---------------------------------------------------------------------------

    def purchase_order_line(self, rec: dict) -> Node:
        return Node(rec, self.purchase_order_line_fields)

    def line_dimension(self, rec: dict) -> Node:
        return Node(rec, self.line_dimension_fields)

    def purchase_order(self, rec: dict) -> Node:
        return Node(rec, self.purchase_order_fields)

    def purchase_invoice(self, rec: dict) -> Node:
        return Node(rec, self.purchase_invoice_fields)

    def supplier(self, rec: dict) -> Node:
        return Node(rec, self.supplier_fields)

    def account(self, rec: dict) -> Node:
        return Node(rec, self.account_fields)

    def dimension(self, rec: dict) -> Node:
        return Node(rec, self.dimension_fields)

    def _lines(self, rec: dict, type_name: str, fields: dict) -> dict:
        def query(_info=None, first=None, after=None, filter=None, orderBy=None):  # noqa: A002
            nodes = [Node(line, fields) for line in rec.get("lines", [])]
            return self.api.connection(nodes, type_name, filter=filter, order_by=orderBy,
                                       first=first, after=after, default_first=None,
                                       default_order=("lineNumber", "_id"))
        return {"query": query}

    # --- references (a full node when the target exists, else just its key) -------------

    def _lookup(self, name: str, records: list[dict], key: str | tuple[str, ...]
                ) -> dict[Any, dict]:
        """Records by `key` (a column, or a tuple of columns for a composite key)."""
        if name not in self._index:
            index: dict[Any, dict] = {}
            for rec in records:
                value = tuple(rec.get(k) for k in key) if isinstance(key, tuple) else rec.get(key)
                index.setdefault(value, rec)
            self._index[name] = index
        return self._index[name]

    def forget_lookups(self) -> None:
        self._index.clear()

    def supplier_by_code(self, code: Any) -> Node | dict | None:
        if code in (None, ""):
            return None
        rec = self._lookup("supplier", self.state.x3_suppliers, "BPSNUM").get(code)
        return self.supplier(rec) if rec else {"_id": code, "code": {"_id": code, "code": code}}

    def account_by_code(self, acc: Any) -> Node | dict | None:
        if acc in (None, ""):
            return None
        rec = self._lookup("account", self.state.x3_gl_accounts, "ACC").get(acc)
        return self.account(rec) if rec else {"_id": acc, "code": acc}

    def dimension_by_key(self, dimension_type: Any, code: Any) -> Node | dict | None:
        if code in (None, ""):
            return None
        rec = self._lookup("dimension", self.state.x3_dimensions, ("DIE", "CCE")).get(
            (dimension_type, code))
        return self.dimension(rec) if rec else {"_id": f"{dimension_type}~{code}",
                                               "dimensionType": _ref(dimension_type),
                                               "dimension": code}

    def order_by_number(self, number: Any) -> Node | dict | None:
        if number in (None, ""):
            return None
        rec = self._lookup("order", self.state.x3_purchase_orders, "POHNUM").get(number)
        return self.purchase_order(rec) if rec else {"_id": number, "id": number}


def _first(values: Any) -> Any:
    return values[0] if isinstance(values, list) and values else None


def line_dimension_rows(state: X3State) -> list[dict]:
    """One row per PO line and dimension type (the line's DIE/CCE arrays, flattened)."""
    rows = []
    for line in state.x3_purchase_order_lines:
        for index, (die, cce) in enumerate(zip(line.get("DIE") or [], line.get("CCE") or [],
                                               strict=False)):
            if die and cce:
                rows.append({"POHNUM": line.get("POHNUM"), "POPLIN": line.get("POPLIN"),
                             "index": index, "DIE": die, "CCE": cce,
                             "UPDDATTIM": line.get("UPDDATTIM")})
    return rows


def _product(line: dict) -> dict:
    return {"_id": line.get("ITMREF", ""), "code": line.get("ITMREF", ""),
            "description1": line.get("ITMDES")}


# GraphQL node -> (X3 class, GraphQL type, builder name)
_NODES = {
    "purchaseOrder": (PORDER, "PurchaseOrder", "purchase_order"),
    "purchaseOrderLine": (PORDERQ, "PurchaseOrderLine", "purchase_order_line"),
    "purchaseOrderLineDimensionDimensions": (None, "PurchaseOrderLineDimensionDimensions",
                                             "line_dimension"),
    "purchaseInvoice": (PINVOICE, "PurchaseInvoice", "purchase_invoice"),
    "supplier": (BPSUPPLIER, "Supplier", "supplier"),
    "account": (GACCOUNT, "Account", "account"),
    "dimension": (CACCE, "Dimension", "dimension"),
}

_DIMENSION_INPUT = {"dimensionType": "DIE", "dimension": "CCE", "localizedDescription": "DES",
                    "localizedShortDescription": "DESSHO", "isActive": "ENAFLG"}
_SUPPLIER_INPUT = {"code": "BPSNUM", "companyName1": "BPSNAM", "shortCompanyName": "BPSSHO",
                   "isActive": "ENAFLG", "vatNumber": "EECNUM", "currency": "CUR",
                   "country": "CRY", "city": "CTY", "zipCode": "POSCOD",
                   "addressLine1": "ADDLIG", "phone": "TEL", "email": "WEB"}


class GraphQLApi:
    """`POST /xtrem/api`: connected-app JWT, x-xtrem-endpoint, graphql-core execution."""

    def __init__(self, state: X3State) -> None:
        self.state = state
        self.endpoint = SANDBOX_CREDENTIALS["x3_endpoint"]

    @property
    def schema(self):
        """Queries, plus mutations for the API operations this X3 has (sandbox setting)."""
        return _build_graphql_schema(frozenset(self.state.api_operations))

    # --- HTTP --------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        problem = self._check_token(request.headers.get("authorization"))
        if problem:
            return _gql_error(401, problem)
        endpoint = request.headers.get("x-xtrem-endpoint")
        if not endpoint:
            return _gql_error(400, "Missing x-xtrem-endpoint header")
        if endpoint != self.endpoint:
            return _gql_error(404, f"Unknown endpoint {endpoint!r}")
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return _gql_error(400, "Request body must be JSON")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return _gql_error(400, "Request body must be an object with a 'query' string")
        variables = payload.get("variables")
        if variables is not None and not isinstance(variables, dict):
            return _gql_error(400, "'variables' must be an object")
        try:
            document = parse(payload["query"])
        except GraphQLError as exc:
            return JSONResponse({"errors": [exc.formatted]}, status_code=400)
        schema = self.schema  # one schema for the request, even if the settings change
        errors = validate(schema, document)
        if errors:
            return JSONResponse({"errors": [e.formatted for e in errors]}, status_code=400)
        with self.state.lock:
            result = execute(schema, document, root_value=self._root(),
                             variable_values=variables,
                             operation_name=payload.get("operationName"))
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [e.formatted for e in result.errors]
            for error in result.errors:
                if error.original_error is not None and not isinstance(
                        error.original_error, QueryError | X3Error | GraphQLError):
                    log.error("sage_x3 sandbox: GraphQL resolver failed", exc_info=error)
        body["extensions"] = {"diagnoses": []}
        return JSONResponse(body)

    def _check_token(self, header: str | None) -> str | None:
        """Connected-application JWT rules; returns the reason a token is refused."""
        if not header or not header.startswith("Bearer "):
            return "Missing bearer token (Authorization: Bearer <JWT>)"
        token = header[7:].strip()
        creds = SANDBOX_CREDENTIALS
        try:
            # exp/iat are checked below so that each refusal gets X3's own reason.
            claims = jwt.decode(
                token, creds["x3_jwt_secret"], algorithms=["HS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                         "verify_aud": False, "require": ["iss", "sub", "iat", "exp"]},
            )
        except jwt.InvalidSignatureError:
            return "Invalid token: signature verification failed"
        except jwt.MissingRequiredClaimError as exc:
            return f"Invalid token: {exc}"
        except jwt.PyJWTError as exc:
            return f"Invalid token: {exc}"
        if claims.get("iss") != creds["x3_jwt_client_id"]:
            return "Invalid token: unknown connected application (iss)"
        if claims.get("sub") != creds["x3_jwt_user"]:
            return "Invalid token: user (sub) is not allowed for this connected application"
        iat, exp = claims.get("iat"), claims.get("exp")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (iat, exp)):
            return "Invalid token: iat and exp must be numeric dates"
        now = self.state.clock().timestamp()
        if iat > now + JWT_IAT_SKEW_SECONDS:
            return "Invalid token: token issued in the future (check the client clock)"
        if exp <= now:
            return "Invalid token: token expired"
        if exp - iat > self.state.token_validity_seconds:
            return ("Invalid token: lifetime longer than the connected application's token "
                    f"validity ({self.state.token_validity_seconds} s)")
        return None

    # --- execution ---------------------------------------------------------------------

    def _root(self) -> dict:
        nodes = GraphQLNodes(self)
        ops = {name: self._operations(nodes, name) for name in _NODES}
        ops["dimension"].update(create=self._mutation(nodes, CACCE, _DIMENSION_INPUT, True),
                                update=self._mutation(nodes, CACCE, _DIMENSION_INPUT, False))
        ops["supplier"].update(create=self._mutation(nodes, BPSUPPLIER, _SUPPLIER_INPUT, True),
                               update=self._mutation(nodes, BPSUPPLIER, _SUPPLIER_INPUT, False))
        purchasing = {"purchaseOrder": ops["purchaseOrder"],
                      "purchaseOrderLine": ops["purchaseOrderLine"],
                      "purchaseOrderLineDimensionDimensions":
                          ops["purchaseOrderLineDimensionDimensions"],
                      "purchaseInvoice": ops["purchaseInvoice"]}
        master = {"supplier": ops["supplier"]}
        finance = {"account": ops["account"], "dimension": ops["dimension"]}
        return {"x3Purchasing": purchasing, "x3MasterData": master, "x3FinanceData": finance,
                "xtremX3Purchasing": purchasing, "xtremX3MasterData": master,
                "xtremX3FinanceData": finance}

    def _operations(self, nodes: GraphQLNodes, name: str) -> dict:
        cls, type_name, builder = _NODES[name]
        build = getattr(nodes, builder)

        def records() -> list[dict]:
            return line_dimension_rows(self.state) if cls is None else self.state.records(cls)

        def query(_info=None, filter=None, orderBy=None, first=None, after=None):  # noqa: A002
            return self.connection([build(rec) for rec in records()], type_name,
                                   filter=filter, order_by=orderBy, first=first, after=after)

        def read(_info=None, _id=None):
            if cls is None or cls is PORDERQ:  # line nodes: their _id is not the class key
                return next((n for n in map(build, records()) if str(n["_id"]) == str(_id)),
                            None)
            rec = self.state.find(cls, str(_id))
            return build(rec) if rec is not None else None

        return {"query": query, "read": read}

    def _mutation(self, nodes: GraphQLNodes, cls: X3Class, mapping: dict[str, str], create: bool):
        build = nodes.dimension if cls is CACCE else nodes.supplier
        node = "dimension" if cls is CACCE else "supplier"

        def run(_info=None, data=None):
            if node not in self.state.api_operations:  # the schema already lacks it
                raise GraphQLError(f"No API operation is set up for node {node} (GESAPIOPE)")
            body = {}
            for gql_name, value in (data or {}).items():
                column = mapping[gql_name]
                if column == "ENAFLG":
                    value = None if value is None else (2 if value else 1)
                body[column] = value
            try:
                if create:
                    rec = self.state.create(cls, body)
                else:
                    key = "~".join(str(body.pop(k)) for k in cls.keys)
                    rec = self.state.update(cls, key, body)
            except X3Error as exc:
                raise GraphQLError(exc.message) from None
            nodes.forget_lookups()  # later fields of this request must see the write
            return build(rec)

        return run

    def connection(self, nodes: list[dict], type_name: str, *, filter: str | None,  # noqa: A002
                   order_by: str | None, first: int | None, after: str | None,
                   default_first: int | None = GRAPHQL_FIRST_DEFAULT,
                   default_order: tuple[str, ...] = ("_id",)) -> dict:
        """Relay connection over `nodes`: filter, order (with `_id` tiebreaker), then
        resume strictly after the `after` cursor's sort tuple."""
        node_type = self.schema.type_map[type_name]
        predicate = x3_where.compile_filter(filter, node_type)
        order = x3_where.compile_order_by(order_by, node_type, default_order)
        descending = tuple(f.descending for f in order)
        rows = [(x3_where.sort_values(n, order), n) for n in nodes if predicate(n)]
        x3_where.sort_keyed(rows, descending)
        start = 0
        if after:
            cursor = x3_where.decode_cursor(after, order)
            start = next((i for i, (k, _n) in enumerate(rows)
                          if x3_where.compare_keys(k, cursor, descending) > 0), len(rows))
        if first is None:
            first = default_first
        if first is not None:
            if first < 0:
                raise QueryError("first must not be negative")
            first = min(first, GRAPHQL_FIRST_MAX)
        remaining = rows[start:]
        page = remaining if first is None else remaining[:first]
        edges = [{"cursor": x3_where.encode_cursor(k), "node": n} for k, n in page]
        return {
            "edges": edges,
            "pageInfo": {
                "startCursor": edges[0]["cursor"] if edges else None,
                "endCursor": edges[-1]["cursor"] if edges else None,
                "hasPreviousPage": start > 0,
                "hasNextPage": len(page) < len(remaining),
            },
            "totalCount": len(rows),
        }


def _gql_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message}]}, status_code=status)


# ======================================================================================
# Sandbox-only: what an X3 administrator does (import a file, set up writable objects)
# ======================================================================================

# How the sandbox imports a file, as X3's Imports function (GIMPOBJ, batch task IMPORT)
# does with a delimited template (GESAOE). Sources: GESAOE and GIMPOBJ
# (online-help.sagex3.com/erp/12/en-us/Content/FCT/GESAOE.htm, .../GIMPOBJ.htm: the
# template must exist and allow imports, "Import not allowed with this template"); the SEED
# template pages on developer.sage.com/x3/import-export-guide/examples (records separated by
# CR + LF, fields by `;`, a record type first on each line of a multi-level template); the
# BPS template (online-help.sagex3.com/erp/11/en-US/OBJ/AOE_BPS.htm: on import of a supplier
# the compulsory fields are language, statistical group, account code, tax rule, payment
# condition and at least one address code; company name, currency and other BP fields are
# changed by importing the business partner, not the supplier). ASSUMPTIONS (stricter
# readings, docs/api-assumptions.md): a record whose key exists is modified, otherwise
# created; each object instance is all-or-nothing and the others still import; a bare LF,
# a wrong field count or an undecodable file is refused; an empty field blanks the column.
_BPS_HEADER = {"BPSNUM": "BPSNUM", "BPRNAM": "BPSNAM", "BPRSHO": "BPSSHO", "ENAFLG": "ENAFLG",
               "CUR": "CUR", "EECNUM": "EECNUM"}
_BPS_ADDRESS = {"BPAADDLIG(0)": "ADDLIG", "POSCOD": "POSCOD", "CTY": "CTY", "CRY": "CRY",
                "TEL(0)": "TEL", "WEB(0)": "WEB"}
_BPS_CREATE_MANDATORY = ("BSGCOD", "LAN", "TSSCOD(0)", "ACCCOD", "VACBPR", "PTE", "BPAADD")
_BP_OWN_FIELDS = ("BPRNAM", "BPRSHO", "CUR")


def import_file(state: X3State, template_code: str, data: bytes, file_name: str = "") -> dict:
    """Import one file with one template; the log lists what was created, updated, refused."""
    template = state.import_templates.get(template_code)
    if template is None:
        raise X3Error(400, f"Template {template_code}: Import not allowed with this template "
                           "(no such import/export template in GESAOE)")
    try:
        text = data.decode(template.encoding)
    except UnicodeDecodeError as exc:
        raise X3Error(400, f"The file is not in the template's character set "
                           f"({template.encoding}): {exc}") from None
    separator = template.record_separator
    if "\r" in text.replace(separator, "") or "\n" in text.replace(separator, ""):
        raise X3Error(400, "Record separator: the template expects CR+LF between records")
    lines = text.split(separator)
    if lines and lines[-1] == "":
        lines.pop()
    log: dict[str, Any] = {"template": template.code, "file": file_name, "records": 0,
                           "created": [], "updated": [], "unchanged": [], "errors": []}
    instances: list[list[tuple[int, str | None, dict]]] = []
    broken: set[int] = set()
    multi_level = template.records[0].indicator is not None
    for number, line in enumerate(lines, start=1):
        cells = line.split(template.field_separator)
        indicator = cells.pop(0) if multi_level else None
        layout = next((r for r in template.records if r.indicator == indicator), None)
        if layout is None:
            log["errors"].append({"line": number, "message": f"Unknown record type {indicator!r}"})
            broken.add(len(instances) - 1)
            continue
        if layout is template.records[0]:
            instances.append([])
        elif not instances:
            log["errors"].append({"line": number, "message": f"Record type {indicator!r} "
                                  "before any header record"})
            continue
        if len(cells) != len(layout.fields):
            log["errors"].append({"line": number, "message": f"{len(cells)} fields, record "
                                  f"type {indicator or '-'} of {template.code} has "
                                  f"{len(layout.fields)}"})
            broken.add(len(instances) - 1)
        instances[-1].append((number, indicator, dict(zip(layout.names, cells, strict=False))))
    log["records"] = len(instances)
    apply = {"CCE": _import_dimension, "BPS": _import_supplier}.get(template.object)
    if apply is None:
        raise X3Error(400, f"Template {template.code}: object {template.object} is not "
                           "imported by this sandbox")
    with state.lock:
        for index, records in enumerate(instances):
            if index in broken:
                continue
            try:
                key, outcome = apply(state, records)
                log[outcome].append(key)
            except X3Error as exc:
                log["errors"].append({"line": records[0][0], "message": exc.message})
    return log


def _import_dimension(state: X3State, records: list) -> tuple[str, str]:
    values = records[0][2]
    body = {name: value for name, value in values.items() if name in CACCE.fields}
    return _create_or_modify(state, CACCE, body)


def _import_supplier(state: X3State, records: list) -> tuple[str, str]:
    header = records[0][2]
    addresses = [values for _n, indicator, values in records[1:] if indicator == "A"]
    code = header.get("BPSNUM", "")
    existing = state.find(BPSUPPLIER, code) if code else None
    body = {column: header[name] for name, column in _BPS_HEADER.items() if name in header}
    if existing is None:
        missing = [f for f in _BPS_CREATE_MANDATORY if not header.get(f)]
        if missing:
            raise X3Error(400, f"Supplier {code}: mandatory on creation: {', '.join(missing)}")
        default = next((a for a in addresses if a.get("BPAADD") == header["BPAADD"]), None)
        if default is None:
            raise X3Error(400, f"Supplier {code}: address {header['BPAADD']} is not in the file")
        body.update({column: default[name] for name, column in _BPS_ADDRESS.items()
                     if name in default})
        return _create_or_modify(state, BPSUPPLIER, body)
    changed_bp = [f for f in _BP_OWN_FIELDS if f in header
                  and header[f] != str(existing.get(_BPS_HEADER[f]) or "")]
    if changed_bp:
        raise X3Error(400, f"Supplier {code}: {', '.join(changed_bp)} belong to the business "
                           "partner; import them with the BPR template")
    for address in addresses:
        body.update({column: address[name] for name, column in _BPS_ADDRESS.items()
                     if name in address})
    return _create_or_modify(state, BPSUPPLIER, body)


def _create_or_modify(state: X3State, cls: X3Class, body: dict) -> tuple[str, str]:
    key = X3State.key_of(cls, body)
    existing = state.find(cls, key)
    if existing is None:
        state.create(cls, body)
        return key, "created"
    before = _copy_json(existing)
    state.update(cls, key, body)
    return key, "updated" if existing != before else "unchanged"


class X3Administration:
    """ASGI wrapper serving `/_sandbox/x3/*` (never part of X3's APIs, not in the call log):

    - `POST /_sandbox/x3/import?template=CODE&file=NAME`, body = the file's bytes: imports it
      like X3's Imports function; answers the import log (200 even when records failed).
    - `GET/POST /_sandbox/x3/settings` `{"writable_classes": [...], "api_operations": [...]}`:
      what this customer's X3 has been set up with (none, as standard X3).
    """

    PREFIX = "/_sandbox/x3/"

    def __init__(self, app, state: X3State) -> None:
        self.app = app
        self.state = state
        self.state_obj = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.PREFIX):
            return await self.app(scope, receive, send)
        request = Request(scope, receive)
        try:
            response = await self._handle(request)
        except X3Error as exc:
            response = JSONResponse({"error": exc.message}, status_code=exc.status)
        await response(scope, receive, send)

    async def _handle(self, request: Request) -> Response:
        path, method = request.url.path, request.method
        if path == self.PREFIX + "import" and method == "POST":
            log = import_file(self.state, request.query_params.get("template", ""),
                              await request.body(), request.query_params.get("file", ""))
            return JSONResponse(log)
        if path == self.PREFIX + "settings" and method in ("GET", "POST"):
            if method == "POST":
                self._configure(await RestApi._json_body(request))
            return JSONResponse({"writable_classes": sorted(self.state.writable_classes),
                                 "api_operations": sorted(self.state.api_operations),
                                 "import_templates": sorted(self.state.import_templates)})
        return JSONResponse({"error": f"no sandbox control {method} {path}"}, status_code=404)

    def _configure(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise X3Error(400, "settings must be a JSON object")
        allowed = {"writable_classes": set(WEB_API_READ_ONLY),
                   "api_operations": set(_MUTATION_NODES)}
        for name, value in body.items():
            if name not in allowed or not isinstance(value, list) \
                    or not set(value) <= allowed[name]:
                raise X3Error(400, f"{name}: a list drawn from {sorted(allowed.get(name, []))}")
        with self.state.lock:
            for name, value in body.items():
                setattr(self.state, name, set(value))


# ======================================================================================
# App
# ======================================================================================


async def _not_found_handler(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    return _diagnoses(status, f"{request.method} {request.url.path}: "
                              f"{'no such resource' if status == 404 else 'method not allowed'}")


def build_app(seed_data: SeedData, controls: SandboxControls):
    """The Sage X3 sandbox as an ASGI app, wrapped in the `/_sandbox/` controls."""
    state = X3State(seed_data, controls)
    rest = RestApi(state)
    graphql_api = GraphQLApi(state)
    app = Starlette(
        routes=[
            Route("/api1/x3/erp/{endpoint}/{rest:path}", rest.dispatch,
                  methods=["GET", "POST", "PUT", "DELETE"]),
            Route("/xtrem/api", graphql_api.handle, methods=["POST"]),
        ],
        exception_handlers={404: _not_found_handler, 405: _not_found_handler},
    )
    return X3Administration(ControlsMiddleware(app, controls, "sage_x3"), state)
