"""Sage X3 sandbox: the Syracuse REST web API (`/api1/...`) and the GraphQL API (`/xtrem/api`).

The connector is developed and tested without any real X3, so this simulator has to be
strict where the real system is strict (auth, representations, where syntax, key-cursor
paging, JWT claims, validation) and realistic where the real system is awkward (UPDDATTIM
with one-second resolution that several changes can share, an unknown property in `where`
answering HTTP 500, lines that move the header stamp). The contract it follows is
`reference/sage_x3_api.md`; the choices the reference leaves open are fixed here and noted
in the docstrings.

Both APIs read and write one in-memory `X3State` (a deep copy of the seed), exposed as
`build_app(...).state_obj` so tests can inspect it or age stamps directly.

REST classes (field names = X3 columns): PORDER (key POHNUM, lines PORDERQ by POPLIN),
PINVOICE (key NUM, lines PINVOICED by PIDLIN), BPSUPPLIER (BPSNUM), GACCOUNT (COA~ACC,
read-only), CACCE (DIE~CCE). Internally, as in the seed, lines live under "lines".
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

from mlc_dagster.sandbox import x3_where
from mlc_dagster.sandbox.controls import ControlsMiddleware, SandboxControls
from mlc_dagster.sandbox.seed import SANDBOX_CREDENTIALS, SeedData, money, stamp
from mlc_dagster.sandbox.x3_where import (
    InvalidValueError,
    QueryError,
    UnknownPropertyError,
    WhereSyntaxError,
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

    @property
    def kinds(self) -> dict[str, str]:
        return {name: f.kind for name, f in self.fields.items()}


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
        "ITMREF": _s(20), "ITMDES": _s(30), "ACC": _s(15), "PJT": _s(24), "QTYUOM": _DEC,
        "UOM": _s(3), "NETPRI": _DEC, "LINAMT": Field("dec", default="0.00"),
        "LINCLEFLG": _i(1, _YES_NO), "LINSTA": _i(1, (1, 2, 3)), "LINREVNUM": _i(0),
        "UPDDATTIM": _STAMP,
    },
    line_amount="LINAMT", total_field="TOTORD",
)

PINVOICE = X3Class(
    name="PINVOICE", seed_attr="x3_purchase_invoices", keys=("NUM",),
    fields={
        "NUM": _s(20), "PIHTYP": _i(1, (1, 2, 3, 4)), "BPSNUM": _s(15), "BPSINV": _s(30),
        "INVDAT": Field("date"), "ACCDAT": Field("date"), "CUR": _s(3), "PJT": _s(24),
        "AMTNOT": _COMPUTED_DEC, "CREDATTIM": _STAMP, "UPDDATTIM": _STAMP,
    },
    mandatory=("NUM", "BPSNUM"),
    lines_member="PINVOICED", line_key="PIDLIN",
    line_fields={
        "NUM": Field("str", 20, read_only=True), "PIDLIN": _i(0), "POHNUM": _s(20),
        "POPLIN": _i(0), "POQSEQ": _i(0), "ITMREF": _s(20), "ITMDES": _s(30), "ACC": _s(15),
        "QTYUOM": _DEC, "UOM": _s(3), "NETPRI": _DEC, "AMTNOTLIN": Field("dec", default="0.00"),
        "UPDDATTIM": _STAMP,
    },
    line_amount="AMTNOTLIN", total_field="AMTNOT",
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

CLASSES: dict[str, X3Class] = {c.name: c for c in (PORDER, PINVOICE, BPSUPPLIER, GACCOUNT, CACCE)}


class X3Error(Exception):
    """A business/validation error, rendered as $diagnoses (REST) or a GraphQL error."""

    def __init__(self, status: int, message: str, sdata_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.sdata_code = sdata_code


def _not_found() -> X3Error:
    return X3Error(404, "721 : Record does not exist")


# ======================================================================================
# State: the one copy of the data both APIs read and write
# ======================================================================================


class X3State:
    """In-memory X3 folder. The record lists are the seed's own lists (deep-copied), so a
    test can append, remove or age records directly; every API call scans them under
    `lock` (a few thousand records: indexes would only add stale-index bugs)."""

    X3_ATTRS = ("x3_purchase_orders", "x3_purchase_invoices", "x3_suppliers",
                "x3_gl_accounts", "x3_dimensions")

    def __init__(self, seed: SeedData) -> None:
        self.lock = threading.RLock()
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

    def records(self, cls: X3Class) -> list[dict]:
        return getattr(self.data, cls.seed_attr)

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
            raise _not_found()
        return rec

    # --- writes ------------------------------------------------------------------------

    def create(self, cls: X3Class, body: dict) -> dict:
        """Insert a record (and its lines) after validating everything; all or nothing."""
        self._require_writable(cls)
        header, lines_body = self._split_body(cls, body)
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
            self._recompute_total(cls, rec)
        self.records(cls).append(rec)
        return rec

    def update(self, cls: X3Class, key: str, body: dict) -> dict:
        """Partial update: only given fields change; given lines are upserted by line
        number (or `$uuid`), `"$delete": true` removes one. The header UPDDATTIM moves
        whenever the header or any line actually changed."""
        self._require_writable(cls)
        rec = self.get(cls, key)
        header, lines_body = self._split_body(cls, body)
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
        if lines_body is not None:
            changed = self._apply_lines(cls, work, lines_body, now) or changed
        if changed:
            if cls.total_field:
                self._recompute_total(cls, work)
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
    def _split_body(cls: X3Class, body: Any) -> tuple[dict, Any]:
        if not isinstance(body, dict):
            raise X3Error(400, "The request body must be a JSON object")
        header = dict(body)
        lines = header.pop(cls.lines_member, None) if cls.lines_member else None
        if lines is not None and not isinstance(lines, list):
            raise X3Error(400, f"{cls.lines_member} must be an array of lines")
        return header, lines

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
                if cls.line_amount not in values:
                    line[cls.line_amount] = _line_amount(line)
                line["UPDDATTIM"] = now
                lines.append(line)
                changed = True
            else:
                if existing[key_name] in seen:
                    raise X3Error(400, f"{where}: duplicate line number {existing[key_name]}")
                diff = {k: v for k, v in values.items() if existing.get(k) != v}
                if diff:
                    existing.update(diff)
                    if cls.line_amount not in values and {"QTYUOM", "NETPRI"} & diff.keys():
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


def _rest_row(cls: X3Class, rec: dict, with_lines: bool) -> dict:
    key = X3State.key_of(cls, rec)
    row: dict[str, Any] = {"$uuid": _uuid(f"{cls.name}:{key}"), "$key": key,
                           "$etag": rec.get("UPDDATTIM")}
    for name in cls.fields:
        if name in rec:
            row[name] = rec[name]
    if with_lines and cls.lines_member:
        row[cls.lines_member] = [
            {"$uuid": _uuid(f"{cls.name}:{key}:{line.get(cls.line_key)}"),
             **{name: line[name] for name in cls.line_fields if name in line}}
            for line in rec.get("lines", [])
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

        start, stop = 0, len(keyed)
        key_param = params.get("key")
        if key_param:
            op, values = _parse_key(key_param, order, kinds)
            cmp = [x3_where.compare_keys(k, values, descending) for k, _rec in keyed]
            if op in ("gt", "ge"):
                start = next((i for i, c in enumerate(cmp) if c > 0 or (op == "ge" and c == 0)),
                             len(keyed))
            else:  # lt / le: the page just before the key
                stop = next((i for i, c in enumerate(cmp) if c > 0 or (op == "lt" and c == 0)),
                            len(keyed))
                start = max(0, stop - page_size)
        page = keyed[start:min(stop, start + page_size)]
        links: dict[str, Any] = {}
        if page and start + len(page) < len(keyed):
            links["$next"] = self._link(request, cls, page[-1][1], order, "gt")
        if page and start > 0:
            links["$previous"] = self._link(request, cls, page[0][1], order, "lt")
        return JSONResponse({
            "$itemsPerPage": page_size,
            "$resources": [_rest_row(cls, rec, False) for _k, rec in page],
            "$links": links,
        })

    @staticmethod
    def _link(request: Request, cls: X3Class, rec: dict, order: list, op: str) -> dict:
        """Absolute next/previous URL: same where/orderBy/count plus a key cursor made of
        the row's sort values (orderBy fields, then any key field not already in it)."""
        params = request.query_params
        query = [("representation", f"{cls.name}.$query")]
        for name in ("where", "orderBy", "count"):
            if params.get(name) is not None:
                query.append((name, params[name]))
        values = "~".join("" if rec.get(name) is None else str(rec.get(name))
                          for name, _desc in order)
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
            if any(existing == name for existing, _d in order):
                raise X3Error(400, f"orderBy: {name} given twice", "BadQueryParameter")
            order.append((name, direction == "desc"))
    for name in cls.keys:
        if not any(existing == name for existing, _d in order):
            order.append((name, False))
    return order


def _sort_tuple(rec: dict, order: list[tuple[str, bool]], kinds: dict[str, str]) -> tuple:
    return tuple(x3_where.stored_value(kinds[name], rec.get(name)) for name, _desc in order)


def _parse_key(raw: str, order: list[tuple[str, bool]], kinds: dict[str, str]) -> tuple[str, tuple]:
    """`gt.2026-01-05T08:00:07Z~PO26000001` -> ("gt", typed values). Fewer values than
    sort fields compare on the prefix (a client may page on the orderBy fields only)."""
    op, dot, rest = raw.partition(".")
    if not dot or op not in ("gt", "ge", "lt", "le"):
        raise X3Error(400, f"Invalid key parameter {raw!r} (expected gt./ge./lt./le.<values>)",
                      "BadQueryParameter")
    parts = rest.split("~")
    if len(parts) > len(order):
        raise X3Error(400, f"Invalid key parameter {raw!r}: {len(parts)} values for "
                           f"{len(order)} sort fields", "BadQueryParameter")
    values = []
    for (name, _desc), text in zip(order, parts, strict=False):
        try:
            values.append(x3_where.coerce_literal(kinds[name], text, name)
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

type PurchaseOrderLine {
  _id: String!
  _updateStamp: Datetime
  lineNumber: Int!
  product: Product
  account: Account
  project: ProjectLink
  quantityInOrderUnitOrdered: Decimal
  orderUnit: UnitOfMeasure
  netPrice: Decimal
  lineAmountExcludingTax: Decimal
  isClosed: YesNo
}

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

type PurchaseInvoiceLine {
  _id: String!
  _updateStamp: Datetime
  lineNumber: Int!
  purchaseOrder: PurchaseOrder
  purchaseOrderLine: Int
  product: Product
  account: Account
  quantityInPurchaseUnit: Decimal
  purchaseUnit: UnitOfMeasure
  netPrice: Decimal
  lineAmountExcludingTax: Decimal
}

type PurchaseInvoice {
  _id: String!
  id: String!
  _updateStamp: Datetime
  _createStamp: Datetime
  category: InvoiceCategory
  billBySupplier: Supplier
  supplierDocumentNumber: String
  documentDate: Date
  accountingDate: Date
  currency: Currency
  project: ProjectLink
  amountOfLinesExcludingTax: Decimal
  purchaseInvoiceLines: PurchaseInvoiceLineCollection
}

""" + "".join(
    f"""
type {name}Edge {{ cursor: String! node: {name}! }}
type {name}Connection {{ edges: [{name}Edge!]! pageInfo: PageInfo! totalCount: Int! }}
"""
    for name in ("PurchaseOrder", "PurchaseOrderLine", "PurchaseInvoice", "PurchaseInvoiceLine",
                 "Supplier", "Account", "Dimension")
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
    for name in ("PurchaseOrder", "PurchaseInvoice", "Supplier", "Account", "Dimension")
) + """
type X3Purchasing {
  purchaseOrder: PurchaseOrderOperations!
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

# Not standard X3: these are the "configured API operations" (GESAPIOPE) a customer sets
# up so cost codes can be written back and Procore-only vendors created. There is
# deliberately no mutation for GL accounts or any journal / GL entry.
input Dimension_Input {
  dimensionType: String!
  dimension: String!
  localizedDescription: String
  localizedShortDescription: String
  isActive: Boolean
}
input Supplier_Input {
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
  email: String
}
type DimensionMutations {
  create(data: Dimension_Input!): Dimension
  update(data: Dimension_Input!): Dimension
}
type SupplierMutations {
  create(data: Supplier_Input!): Supplier
  update(data: Supplier_Input!): Supplier
}
type X3FinanceDataMutations { dimension: DimensionMutations! }
type X3MasterDataMutations { supplier: SupplierMutations! }

type Mutation {
  x3FinanceData: X3FinanceDataMutations!
  x3MasterData: X3MasterDataMutations!
  xtremX3FinanceData: X3FinanceDataMutations!
  xtremX3MasterData: X3MasterDataMutations!
}
"""


def _format_datetime(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


@functools.cache
def _build_graphql_schema():
    """Built once per process: the schema is immutable and takes ~0.1 s to build."""
    schema = build_schema(SDL)
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
        self._index: dict[str, dict[str, dict]] = {}
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
            "lineNumber": lambda ln: ln.get("POPLIN"),
            "product": _product, "account": lambda ln: self.account_by_code(ln.get("ACC")),
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
            "supplierDocumentNumber": lambda r: r.get("BPSINV"),
            "documentDate": lambda r: _day(r.get("INVDAT")),
            "accountingDate": lambda r: _day(r.get("ACCDAT")),
            "currency": lambda r: _ref(r.get("CUR")), "project": lambda r: _ref(r.get("PJT")),
            "amountOfLinesExcludingTax": lambda r: _dec(r.get("AMTNOT")),
            "purchaseInvoiceLines": lambda r: self._lines(r, "PurchaseInvoiceLine",
                                                          self.purchase_invoice_line_fields),
        }
        self.purchase_invoice_line_fields = {
            "_id": lambda ln: f"{ln.get('NUM')}~{ln.get('PIDLIN')}",
            "_updateStamp": lambda ln: _dt(ln.get("UPDDATTIM")),
            "lineNumber": lambda ln: ln.get("PIDLIN"),
            "purchaseOrder": lambda ln: self.order_by_number(ln.get("POHNUM")),
            "purchaseOrderLine": lambda ln: ln.get("POPLIN"),
            "product": _product, "account": lambda ln: self.account_by_code(ln.get("ACC")),
            "quantityInPurchaseUnit": lambda ln: _dec(ln.get("QTYUOM")),
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

    # --- nodes ---------------------------------------------------------------------------

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

    def _lookup(self, name: str, records: list[dict], key: str) -> dict[str, dict]:
        if name not in self._index:
            index: dict[str, dict] = {}
            for rec in records:
                index.setdefault(rec.get(key), rec)
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

    def order_by_number(self, number: Any) -> Node | dict | None:
        if number in (None, ""):
            return None
        rec = self._lookup("order", self.state.x3_purchase_orders, "POHNUM").get(number)
        return self.purchase_order(rec) if rec else {"_id": number, "id": number}


def _product(line: dict) -> dict:
    return {"_id": line.get("ITMREF", ""), "code": line.get("ITMREF", ""),
            "description1": line.get("ITMDES")}


# GraphQL node -> (X3 class, GraphQL type, builder name)
_NODES = {
    "purchaseOrder": (PORDER, "PurchaseOrder", "purchase_order"),
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
        self.schema = _build_graphql_schema()
        self.endpoint = SANDBOX_CREDENTIALS["x3_endpoint"]

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
        errors = validate(self.schema, document)
        if errors:
            return JSONResponse({"errors": [e.formatted for e in errors]}, status_code=400)
        with self.state.lock:
            result = execute(self.schema, document, root_value=self._root(),
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
                      "purchaseInvoice": ops["purchaseInvoice"]}
        master = {"supplier": ops["supplier"]}
        finance = {"account": ops["account"], "dimension": ops["dimension"]}
        return {"x3Purchasing": purchasing, "x3MasterData": master, "x3FinanceData": finance,
                "xtremX3Purchasing": purchasing, "xtremX3MasterData": master,
                "xtremX3FinanceData": finance}

    def _operations(self, nodes: GraphQLNodes, name: str) -> dict:
        cls, type_name, builder = _NODES[name]
        build = getattr(nodes, builder)

        def query(_info=None, filter=None, orderBy=None, first=None, after=None):  # noqa: A002
            return self.connection([build(rec) for rec in self.state.records(cls)], type_name,
                                   filter=filter, order_by=orderBy, first=first, after=after)

        def read(_info=None, _id=None):
            rec = self.state.find(cls, str(_id))
            return build(rec) if rec is not None else None

        return {"query": query, "read": read}

    def _mutation(self, nodes: GraphQLNodes, cls: X3Class, mapping: dict[str, str], create: bool):
        build = nodes.dimension if cls is CACCE else nodes.supplier

        def run(_info=None, data=None):
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
# App
# ======================================================================================


async def _not_found_handler(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    return _diagnoses(status, f"{request.method} {request.url.path}: "
                              f"{'no such resource' if status == 404 else 'method not allowed'}")


def build_app(seed_data: SeedData, controls: SandboxControls):
    """The Sage X3 sandbox as an ASGI app, wrapped in the `/_sandbox/` controls."""
    state = X3State(seed_data)
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
    wrapped = ControlsMiddleware(app, controls, "sage_x3")
    wrapped.state_obj = state
    return wrapped
