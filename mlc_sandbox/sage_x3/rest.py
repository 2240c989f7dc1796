"""The Syracuse REST web API (`/api1/x3/erp/{ENDPOINT}/...`): auth, facets, `$query` paging."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mlc_sandbox.sage_x3 import where
from mlc_sandbox.sage_x3.classes import (
    CLASSES,
    WEB_API_READ_ONLY,
    Field,
    X3Class,
    read_only_message,
)
from mlc_sandbox.sage_x3.errors import X3Error
from mlc_sandbox.sage_x3.state import X3State, stable_uuid
from mlc_sandbox.sage_x3.where import (
    InvalidValueError,
    QueryError,
    UnknownPropertyError,
    WhereSyntaxError,
)
from mlc_sandbox.seed import SANDBOX_CREDENTIALS

log = logging.getLogger(__name__)

REST_PAGE_DEFAULT = 20
REST_PAGE_CAP = 200


def diagnoses(status: int, message: str, sdata_code: str | None = None,
              headers: dict | None = None) -> JSONResponse:
    diagnosis = {"$severity": "error", "$message": message}
    if sdata_code:
        diagnosis["$sdataCode"] = sdata_code
    return JSONResponse({"$diagnoses": [diagnosis]}, status_code=status, headers=headers)


def rest_row(cls: X3Class, rec: dict, with_lines: bool, query: bool = False) -> dict:
    """A record as the web API serves it: `$query` rows carry only the facet's properties;
    `$details` rows carry every property, the lines and the per-line child members."""
    key = X3State.key_of(cls, rec)
    row: dict[str, Any] = {"$uuid": stable_uuid(f"{cls.name}:{key}"), "$key": key,
                           "$etag": rec.get("UPDDATTIM")}
    for name in (cls.query_facet if query else cls.fields):
        if name in rec:
            row[name] = rec[name]
    if with_lines and cls.lines_member:
        lines = rec.get("lines", [])
        row[cls.lines_member] = [
            {"$uuid": stable_uuid(f"{cls.name}:{key}:{line.get(cls.line_key)}"),
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


async def read_json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError:
        raise X3Error(400, "The request body is not valid JSON") from None


class RestApi:
    """Routing, auth and envelopes of the Syracuse `api1` web API."""

    def __init__(self, state: X3State) -> None:
        self.state = state
        self.endpoint = SANDBOX_CREDENTIALS["x3_endpoint"]

    async def dispatch(self, request: Request) -> Response:
        if not _check_basic(request.headers.get("authorization")):
            return diagnoses(401, "Authentication required: invalid or missing credentials",
                             headers={"WWW-Authenticate": 'Basic realm="Syracuse"'})
        if request.path_params["endpoint"] != self.endpoint:
            return diagnoses(404, f"Endpoint {request.path_params['endpoint']} does not exist")
        target = _parse_target(request.path_params["rest"])
        if target is None:
            return diagnoses(400, f"Invalid resource path {request.path_params['rest']!r}",
                             "BadUrlSyntax")
        class_name, key, sub = target
        cls = CLASSES.get(class_name)
        if cls is None:
            return diagnoses(404, f"Class {class_name} does not exist")
        try:
            body = None
            if request.method in ("POST", "PUT"):
                body = await read_json_body(request)
            with self.state.lock:
                return self._route(request, cls, key, sub, body)
        except X3Error as exc:
            return diagnoses(exc.status, exc.message, exc.sdata_code)
        except UnknownPropertyError as exc:
            # Documented X3 behaviour: an unknown property in `where` is a server error.
            return diagnoses(500, str(exc))
        except WhereSyntaxError as exc:
            return diagnoses(400, f"BadWhereSyntax: {exc}", "BadWhereSyntax")
        except QueryError as exc:
            return diagnoses(400, str(exc), "BadQueryParameter")
        except Exception:  # a sandbox bug must still answer like X3, not with a traceback
            log.exception("sage_x3 sandbox: unexpected error on %s %s", request.method,
                          request.url.path)
            return diagnoses(500, "Internal server error")

    def _route(self, request: Request, cls: X3Class, key: str | None, sub: str | None,
               body: Any) -> Response:
        method = request.method
        if sub is not None:
            if method == "GET" and sub == f"$prototypes('{cls.name}.$create')":
                return JSONResponse(_prototype(cls))
            if method == "GET" and sub == "$template":
                self._facet(request, cls, "$create")
                return JSONResponse(self._template(cls))
            return diagnoses(404, f"Unknown resource {cls.name}/{sub}")
        if method != "GET":
            X3State.require_writable(cls)
        if method != "GET" and cls.name in WEB_API_READ_ONLY \
                and cls.name not in self.state.writable_classes:
            raise X3Error(405, read_only_message(cls.name))
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
                return JSONResponse(rest_row(cls, rec, True), status_code=201,
                                   headers={"Location": location})
            raise X3Error(405, f"{method} is not allowed on the {cls.name} collection")
        if method == "GET":
            if not cls.details:
                self._facet(request, cls, "$query")
                raise X3Error(400, f"{cls.name} has only a $query facet", "BadQueryParameter")
            self._facet(request, cls, "$details", "$edit")
            return JSONResponse(rest_row(cls, self.state.get(cls, key), True))
        if method == "PUT":
            self._facet(request, cls, "$edit")
            return JSONResponse(rest_row(cls, self.state.update(cls, key, body), True))
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
        where_clause = params.get("where")
        predicate = (where.compile_where(where_clause, kinds)
                     if where_clause and where_clause.strip() else None)
        order = _parse_order_by(params.get("orderBy"), cls)
        descending = tuple(desc for _name, desc in order)

        rows = [rec for rec in self.state.records(cls) if predicate is None or predicate(rec)]
        keyed = [(_sort_tuple(rec, order, kinds), rec) for rec in rows]
        where.sort_keyed(keyed, descending)

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
                c = where.compare_keys(_sort_tuple(rec, class_key, kinds), values,
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
            "$resources": [rest_row(cls, rec, False, query=True) for _k, rec in page],
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
    return tuple(where.stored_value(kinds[name], rec.get(name)) for name, _desc in order)


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
            values.append(where.coerce_literal(cls.kinds[name], text, name)
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
