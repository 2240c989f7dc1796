"""Sandbox-only: what an X3 administrator does (import a file, set up writable objects).

Served under `/_sandbox/x3/`, never part of X3's APIs.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mlc_sandbox.sage_x3.classes import BPSUPPLIER, CACCE, WEB_API_READ_ONLY, X3Class
from mlc_sandbox.sage_x3.errors import X3Error
from mlc_sandbox.sage_x3.graphql_schema import MUTATION_NODES
from mlc_sandbox.sage_x3.rest import read_json_body
from mlc_sandbox.sage_x3.state import X3State, copy_json

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
    before = copy_json(existing)
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
                self._configure(await read_json_body(request))
            return JSONResponse({"writable_classes": sorted(self.state.writable_classes),
                                 "api_operations": sorted(self.state.api_operations),
                                 "import_templates": sorted(self.state.import_templates)})
        return JSONResponse({"error": f"no sandbox control {method} {path}"}, status_code=404)

    def _configure(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise X3Error(400, "settings must be a JSON object")
        allowed = {"writable_classes": set(WEB_API_READ_ONLY),
                   "api_operations": set(MUTATION_NODES)}
        for name, value in body.items():
            if name not in allowed or not isinstance(value, list) \
                    or not set(value) <= allowed[name]:
                raise X3Error(400, f"{name}: a list drawn from {sorted(allowed.get(name, []))}")
        with self.state.lock:
            for name, value in body.items():
                setattr(self.state, name, set(value))
