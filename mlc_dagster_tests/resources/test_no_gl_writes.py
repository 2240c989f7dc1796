"""No code path can write a GL / journal class in Sage X3 or a Procore accounting endpoint.

Proof by reading the connector's own source (everything under mlc_dagster/ except the
sandboxes), so a new module cannot slip past it:

- Sage X3: outside the X3 client, connector code may call only the three high-level write
  methods (create_supplier, update_supplier, upsert_dimension). Inside the client, the only
  REST request that is not a GET is built in `_write` and the only GraphQL mutation text in
  `_mutate`; both run the class/node guard first. The guard's allow-list is exactly the
  supplier and dimension classes (the guard itself is exercised in test_sage_x3_client).
- X3 import files: the only connector module that writes a file is x3_import/files.py, and
  it refuses any template whose X3 object is not suppliers (BPS) or dimensions (CCE); every
  template the connector defines is for one of those two objects.
- Procore: every path handed to the client is a literal (or f-string) in the source, except
  the client's own generic helpers passing their `path` parameter along, and no literal names
  an accounting-entry endpoint (ERP job costs, direct costs, payments, journals, GL...).
- Procore, one write method: every Procore request goes through `ProcoreClient.request`,
  which refuses a write not in `PROCORE_WRITES` before sending it (and a hook on the client's
  httpx connection refuses it again). The allow-list is exactly what the client's domain
  methods write. A scan of the source finds every place that can put a request on the wire
  (httpx.post/put/patch/delete/request/stream, Client.post/..., .request/.build_request with
  a write method, .send, .handle_request, other HTTP libraries) and proves they are only the
  known ones: the one method, the token POST, the X3 client's own paths, the shared sender.
- Procore, at run time: every job runs against the sandboxes while a recording transport
  notes every request; every Procore write the sandbox saw is on the allow-list, and the
  sandbox saw exactly the writes the transport sent.
Each check is also run once broken on purpose, to show it can fail.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import re
import threading
import urllib.error
import urllib.request
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import dagster as dg
import httpx
import pytest

import mlc_dagster
from mlc_dagster.ledger.store import Change, Ledger
from mlc_dagster.resources.procore_client import PROCORE_WRITES, ProcoreClient
from mlc_dagster.resources.sage_x3_client import (
    WRITABLE_GRAPHQL_NODES,
    WRITABLE_REST_CLASSES,
    X3Names,
)
from mlc_dagster.x3_import import templates
from mlc_dagster.x3_import.files import (
    WRITABLE_IMPORT_OBJECTS,
    ExportBatch,
    ExportItem,
    ImportObjectForbidden,
    write_batches,
)
from mlc_dagster_tests.conftest import sandbox_calls
from mlc_dagster_tests.e2e.flow_helpers import (
    JobRunner,
    ProcoreApi,
    X3Records,
    clear_calls,
    history_seed,
)
from mlc_dagster_tests.sandbox_clients import WRITE_METHODS
from mlc_sandbox.server import running_sandboxes

ROOT = Path(mlc_dagster.__file__).parent
X3_CLIENT = ROOT / "resources" / "sage_x3_client"  # a package
PROCORE_CLIENT = ROOT / "resources" / "procore_client.py"
X3_WRITE_METHODS = {"create_supplier", "update_supplier", "upsert_dimension"}
X3_INTERNALS = {"_write", "_mutate", "_execute", "_send", "_http"}
IMPORT_FILES = ROOT / "x3_import" / "files.py"
FILE_WRITERS = {"replace", "rename", "link", "symlink", "copyfile", "copy", "copy2", "move"}
PATH_METHODS = {"request": 1, "sync": 0, "list_all": 0, "iter_pages": 0, "get_json": 0}
ACCOUNTING = re.compile(
    r"erp|journal|ledger|(^|[/_])gl([/_]|$)|accounting|payment|direct_cost|job_cost|"
    r"cost_transaction|general_ledger|tax_code|owner_invoice|prime_contract", re.IGNORECASE)


def connector_modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "sandbox" not in p.relative_to(ROOT).parts)


def calls(tree: ast.AST):
    """(call node, outermost enclosing function or method, or None) for every call."""
    stack: list[tuple[ast.AST, ast.AST | None]] = [(tree, None)]
    while stack:
        node, function = stack.pop()
        if function is None and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node
        if isinstance(node, ast.Call):
            yield node, function
        stack.extend((child, function) for child in ast.iter_child_nodes(node))


def literal_path(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def test_the_scan_sees_the_whole_connector():
    modules = {p.relative_to(ROOT).as_posix() for p in connector_modules()}
    assert {"defs/invoices/writer.py", "defs/suppliers/writer.py", "defs/dimensions/assets.py",
            "defs/purchase_orders/writer.py", "resources/procore_client.py"} <= modules
    assert not any(m.startswith("sandbox/") for m in modules)


def test_x3_is_written_only_through_the_guarded_supplier_and_dimension_methods():
    outside = []
    for path in connector_modules():
        if X3_CLIENT in path.parents:
            continue
        for call, _fn in calls(ast.parse(path.read_text())):
            name = call.func.attr if isinstance(call.func, ast.Attribute) else None
            if name in X3_INTERNALS:
                outside.append(f"{path.relative_to(ROOT)}:{call.lineno} calls {name}")
    assert outside == [], "X3 internals used outside the X3 client"

    tree = ast.parse("\n".join(p.read_text() for p in sorted(X3_CLIENT.glob("*.py"))))
    writers = set()
    for call, fn in calls(tree):
        if isinstance(call.func, ast.Attribute) and call.func.attr == "build_request":
            method = literal_path(call.args[0]) if call.args else None
            if method != "GET" and fn is not None and fn.name not in ("_execute",):
                writers.add(fn.name)
    assert writers == {"_write"}, "a non-GET REST request is built outside the guarded _write"
    methods = [fn for cls in tree.body if isinstance(cls, ast.ClassDef)
               for fn in cls.body if isinstance(fn, ast.FunctionDef)]
    mutation_texts = {fn.name for fn in methods for node in ast.walk(fn)
                      if isinstance(node, ast.Constant) and isinstance(node.value, str)
                      and node.value.lstrip().startswith("mutation")}
    assert mutation_texts == {"_mutate"}
    guarded = {fn.name: {c.func.id for c, _ in calls(fn) if isinstance(c.func, ast.Name)}
               for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef)
               and fn.name in ("_write", "_mutate")}
    assert "_guard_rest_class" in guarded["_write"]
    assert "_guard_graphql_node" in guarded["_mutate"]


def test_the_x3_allow_list_is_only_suppliers_and_dimensions():
    names = X3Names()
    assert WRITABLE_REST_CLASSES == {names.supplier.rest_class, names.dimension.rest_class}
    assert WRITABLE_GRAPHQL_NODES == {names.supplier.graphql_node, names.dimension.graphql_node}
    assert names.gl_account.rest_class not in WRITABLE_REST_CLASSES


def writes_a_file(call: ast.Call) -> bool:
    """open(..., "w"/"a"/"x"/"+"), Path.write_text/bytes, os/shutil renames and copies."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name in ("write_text", "write_bytes", "symlink_to", "hardlink_to"):
        return True
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
            and func.value.id in ("os", "shutil") and name in FILE_WRITERS:
        return True
    if name == "open":
        args = call.args[1:] if isinstance(func, ast.Name) else call.args
        mode = args[0] if args else next((k.value for k in call.keywords if k.arg == "mode"),
                                         None)
        return not (isinstance(mode, ast.Constant) and set(mode.value) <= set("rbt")) \
            if mode is not None else False
    return False


def test_files_are_written_only_by_the_import_file_writer():
    writers = {path.relative_to(ROOT).as_posix() for path in connector_modules()
               for call, _fn in calls(ast.parse(path.read_text())) if writes_a_file(call)}
    # cli.py: `mlc-dagster demo` copies dagster.yaml into its DAGSTER_HOME (no X3 data);
    # ledger/lock.py: os.open(O_CREAT) of the empty SQLite company-lock file it flocks.
    assert writers == {"x3_import/files.py", "cli.py", "ledger/lock.py"}


@pytest.mark.parametrize("source", [
    "open(p, 'wb')", "open(p, mode='a')", "Path(p).open('w')", "p.write_text('x')",
    "os.replace(a, b)", "shutil.copy(a, b)"])
def test_the_file_write_scan_sees_every_way_of_writing(source):
    assert writes_a_file(ast.parse(source).body[0].value)


@pytest.mark.parametrize("source", ["open(p)", "open(p, 'rb')", "replace(state, status='x')",
                                    "text.replace('a', 'b')"])
def test_the_file_write_scan_ignores_reads_and_other_replaces(source):
    assert not writes_a_file(ast.parse(source).body[0].value)


def test_import_templates_load_only_suppliers_and_dimensions(tmp_path):
    assert WRITABLE_IMPORT_OBJECTS == {"BPS", "CCE"}
    built = [getattr(templates, name)() for name in dir(templates) if name.endswith("_template")]
    assert {t.object for t in built} == {"BPS", "CCE"}
    journal = templates.ImportTemplate("GAS", "GAS", "journal entries", (
        templates.RecordLayout(None, (templates.TemplateField("GACCENTRY", "NUM"),)),))
    item = ExportItem("journal", "1", [(None, {"NUM": "1"})],
                      Change(entity="journal", key="1", status="synced", action="create"))
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    with pytest.raises(ImportObjectForbidden, match="object 'GAS'"):
        write_batches([ExportBatch(journal, [item])], tmp_path / "out", "r", ledger)
    assert not (tmp_path / "out").exists() and ledger.states("journal") == {}
    ledger.dispose()


def procore_paths() -> tuple[set[str], list[str]]:
    paths, unknown = set(), []
    for path in connector_modules():
        for call, fn in calls(ast.parse(path.read_text())):
            if not isinstance(call.func, ast.Attribute) or call.func.attr not in PATH_METHODS:
                continue
            index = PATH_METHODS[call.func.attr]
            arg = call.args[index] if len(call.args) > index else None
            text = literal_path(arg) if arg is not None else None
            if text is not None:
                paths.add(text)
            elif not (path == PROCORE_CLIENT and isinstance(arg, ast.Name)
                      and fn is not None and arg.id in {a.arg for a in fn.args.args}):
                unknown.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    return {p for p in paths if p.startswith(("/rest/", "/oauth/"))}, unknown


def test_every_procore_path_is_a_literal_and_none_is_an_accounting_endpoint():
    paths, unknown = procore_paths()
    assert unknown == [], "Procore paths built from variables cannot be checked"
    assert {"/rest/v1.0/vendors/sync", "/rest/v1.1/requisitions",
            "/rest/v1.0/projects/{}/billing_periods"} <= paths  # the scan does see our calls
    assert [p for p in paths if ACCOUNTING.search(p)] == []


@pytest.mark.parametrize("endpoint", [
    "/rest/v1.0/erp_job_costs/sync", "/rest/v1.0/contract_payments",
    "/rest/v1.0/projects/{}/direct_costs", "/rest/v1.0/companies/{}/journal_entries",
    "/rest/v1.0/gl_accounts", "/rest/v1.0/projects/{}/requisitions/{}/payments",
])
def test_the_accounting_pattern_catches_accounting_endpoints(endpoint):
    assert ACCOUNTING.search(endpoint)


# --- Procore: one write method, and nothing else that sends ----------------------------------

# What the allow-list must be: every write the client's domain methods make, nothing more.
EXPECTED_PROCORE_WRITES = {
    "PATCH /rest/v1.0/vendors/sync",
    "PATCH /rest/v1.0/purchase_order_contracts/sync",
    "PATCH /rest/v1.0/purchase_order_contracts/{id}",
    "PATCH /rest/v1.0/purchase_order_contracts/{id}/line_items/sync",
    "PATCH /rest/v1.0/purchase_order_contracts/{id}/line_items/{id}",
    "DELETE /rest/v1.0/purchase_order_contracts/{id}/line_items/{id}",
    "POST /rest/v1.0/projects/{id}/billing_periods",
    "POST /rest/v1.1/requisitions",
    "POST /rest/v1.0/change_order_packages",
    "PATCH /rest/v1.0/potential_change_orders/{id}/line_items/sync",
}
TOKEN_POST = "POST /oauth/token"
HTTP_VERBS = {"post", "put", "patch", "delete"}
READS = {"GET", "HEAD"}
# Calls that take a method: a write unless the method is a literal GET/HEAD.
METHOD_CALLS = {"request", "stream", "build_request"}
# Calls that put an already-built request on the wire, whatever its method.
WIRE_CALLS = {"send", "handle_request"}
HTTP_LIBRARIES = ("requests", "urllib.request", "urllib3", "http.client", "aiohttp", "pycurl",
                  "httpcore")
RAW_SOCKETS = {"socket.socket", "socket.create_connection"}
# Every place in the connector that can send a write, and why it may. Anything else is a defect.
SENDERS = {
    ("resources/procore_client.py", "ProcoreClient.request"):
        "the one Procore method: PROCORE_WRITES checked before a token or a request is made",
    ("resources/procore_client.py", "ProcoreClient._fetch_token"):
        "the OAuth client-credentials POST to token_url (allowed by the same guard)",
    ("resources/http_core.py", "RetrySender._attempt"):
        "where both clients' requests leave, after their guards (and Procore's httpx hook)",
    ("resources/sage_x3_client/base.py", "SageX3Client._send"):
        "the X3 client's sender: its REST and GraphQL requests",
    ("resources/sage_x3_client/rest.py", "SageX3RestClient._write"):
        "the X3 REST write path, class-guarded (test above)",
    ("resources/sage_x3_client/graphql.py", "SageX3GraphQLClient._execute"):
        "X3 GraphQL POSTs; mutations only from the node-guarded _mutate (test above)",
    ("preflight/procore.py", "RateLimitWatch.handle_request"):
        "the preflight ProcoreClient's transport: forwards what that client's hook let through",
}


@dataclass(frozen=True)
class SendSite:
    module: str
    where: str  # Class.method, function, or <module>
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} {self.where}: {self.what}"


def _method_arg(call: ast.Call) -> ast.AST | None:
    if call.args:
        return call.args[0]
    return next((k.value for k in call.keywords if k.arg == "method"), None)


def _is_read(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and str(node.value).upper() in READS


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "…"


def _site_of(call: ast.Call, cls: str | None, httpx_names: set[str]) -> str | None:
    """What a call sends, or None when it cannot send a write."""
    func = call.func
    if isinstance(func, ast.Name):
        if func.id in httpx_names:  # `from httpx import post`
            return f"httpx.{func.id}"
        if func.id == "getattr" and len(call.args) > 1 and isinstance(call.args[1], ast.Constant) \
                and str(call.args[1].value) in HTTP_VERBS | METHOD_CALLS | WIRE_CALLS:
            return f"getattr(..., {call.args[1].value!r})"
        return None
    if not isinstance(func, ast.Attribute):
        return None
    name, receiver = func.attr, _dotted(func.value)
    if f"{receiver}.{name}" in RAW_SOCKETS:
        return f"{receiver}.{name}"
    # httpx's verbs all take a URL; `table.delete()` (SQLAlchemy) takes none.
    if name in HTTP_VERBS and (call.args or any(k.arg == "url" for k in call.keywords)):
        return f"{receiver}.{name}"
    if name in WIRE_CALLS:
        return f"{receiver}.{name}"
    if name in METHOD_CALLS and not _is_read(_method_arg(call)):
        if name == "request" and cls == "ProcoreClient" and receiver == "self":
            return None  # a domain method calling the one method
        return f"{receiver}.{name}"
    return None


def send_sites(sources: dict[str, str]) -> list[SendSite]:
    """Every call in `sources` (module path -> text) that can put a write on the wire, and
    every import of another HTTP library."""
    sites = [site for module, text in sources.items() for site in module_send_sites(module, text)]
    return sorted(sites, key=lambda site: (site.module, site.line))


@functools.lru_cache(maxsize=512)
def module_send_sites(module: str, text: str) -> tuple[SendSite, ...]:
    """One module's send sites (cached by its text: the break tests change one module)."""
    sites: list[SendSite] = []
    tree = ast.parse(text)
    httpx_names = {alias.asname or alias.name for node in ast.walk(tree)
                   if isinstance(node, ast.ImportFrom) and node.module == "httpx"
                   for alias in node.names
                   if alias.name in HTTP_VERBS | {"request", "stream"}}
    stack: list[tuple[ast.AST, str | None, str | None]] = [(tree, None, None)]
    while stack:
        node, cls, fn = stack.pop()
        where = f"{cls}.{fn}" if cls and fn else (fn or "<module>")
        if isinstance(node, ast.ClassDef) and fn is None:
            cls = node.name
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and fn is None:
            fn = node.name
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = ([node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                     if isinstance(node, ast.ImportFrom) else [a.name for a in node.names])
            for name in names:
                if name in HTTP_LIBRARIES or name.startswith(tuple(f"{lib}." for lib in
                                                                   HTTP_LIBRARIES)):
                    sites.append(SendSite(module, where, node.lineno, f"import {name}"))
            if isinstance(node, ast.ImportFrom) and node.module == "httpx":
                sites += [SendSite(module, where, node.lineno, f"from httpx import {a.name}")
                          for a in node.names if a.name in HTTP_VERBS | {"request", "stream"}]
        elif isinstance(node, ast.Call):
            what = _site_of(node, cls, httpx_names)
            if what is not None:
                sites.append(SendSite(module, where, node.lineno, what))
        stack.extend((child, cls, fn) for child in ast.iter_child_nodes(node))
    return tuple(sites)


def connector_sources() -> dict[str, str]:
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in connector_modules()}


def unexpected_senders(sites: list[SendSite]) -> list[str]:
    return [str(site) for site in sites if (site.module, site.where) not in SENDERS]


def test_only_the_known_senders_can_put_a_write_on_the_wire():
    sites = send_sites(connector_sources())
    assert unexpected_senders(sites) == [], "a write can leave outside the one Procore method"
    # Every listed sender is still there: the scan does see them (and the list has no stale entry).
    assert {(site.module, site.where) for site in sites} == set(SENDERS)


def test_the_sandbox_imports_no_http_client():
    """The scan leaves out mlc_sandbox/ (simulated servers): they import no HTTP
    client, so they cannot send to Procore either."""
    simulators = ROOT.parent / "mlc_sandbox"
    sandbox = {p.relative_to(simulators.parent).as_posix(): p.read_text()
               for p in simulators.rglob("*.py")}
    assert len(sandbox) > 20  # the scan reads the simulators (it once read a moved folder)
    assert [str(s) for s in send_sites(sandbox)
            if s.what.startswith(("import", "from httpx"))] == []


BYPASSES = {
    "httpx.post": "httpx.post(url, json={})",
    "httpx.request": "httpx.request('PATCH', url, json={})",
    "Client.patch": "httpx.Client().patch(url, json={})",
    "the client's connection": "client._http.post(url, json={})",
    "request from outside": "client.request('DELETE', url)",
    "request with a variable method": "client.request(verb, url)",
    "build_request": "client._http.build_request('PUT', url)",
    "send": "client._http.send(httpx.Request('POST', url))",
    "stream": "client._http.stream('POST', url)",
    "getattr": "getattr(client._http, 'post')(url)",
    "from httpx import post": "from httpx import post\npost(url)",
    "urllib": "import urllib.request\nurllib.request.urlopen(url, data=b'{}')",
    "from urllib import request": "from urllib import request\nrequest.urlopen(url, data=b'')",
    "requests": "import requests\nrequests.post(url)",
    "a raw socket": "socket.create_connection(('127.0.0.1', 443)).sendall(b'POST / HTTP/1.1')",
}


def with_function(source: str, body: str, *, in_class: str | None = None) -> str:
    """`source` with one more function (or method of `in_class`) whose body is `body`."""
    tree = ast.parse(source)
    params = "self, client, url, verb" if in_class else "client, url, verb"
    function = ast.parse(f"def sneak({params}):\n" + "\n".join(
        f"    {line}" for line in body.splitlines())).body[0]
    target = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == in_class) \
        if in_class else tree
    target.body.append(function)
    return ast.unparse(tree)


@pytest.mark.parametrize("module", ["defs/suppliers/writer.py", "defs/purchase_orders/writer.py"])
@pytest.mark.parametrize("bypass", sorted(BYPASSES))
def test_the_scan_finds_a_module_that_writes_around_the_one_method(bypass, module):
    sources = connector_sources()
    sources[module] = with_function(sources[module], BYPASSES[bypass])
    found = unexpected_senders(send_sites(sources))
    assert found and all(f.startswith(f"{module}:") and " sneak: " in f for f in found), found


@pytest.mark.parametrize("body", [
    "return self._sender.send(lambda: self._http.build_request('POST', url))",
    "return self._http.patch(url)",
    "return self._http.request('DELETE', url)",
])
def test_the_scan_finds_a_second_sending_method_inside_the_procore_client(body):
    sources = connector_sources()
    module = "resources/procore_client.py"
    sources[module] = with_function(sources[module], body, in_class="ProcoreClient")
    assert unexpected_senders(send_sites(sources)) != []


@pytest.mark.parametrize("body", [
    "return client.request('GET', url)", "return client.get_json(url)",
    "return client._http.build_request('GET', url)", "return httpx.get(url)",
    "return client.sync_vendors([])", "return self.request('POST', url)",
])
def test_reads_and_the_one_method_are_not_reported(body):
    sources = connector_sources()
    module = "resources/procore_client.py"
    sources[module] = with_function(sources[module], body, in_class="ProcoreClient")
    assert unexpected_senders(send_sites(sources)) == []


def one_method_problems(source: str) -> list[str]:
    """What is missing from the one method: the allow-list before the first send, the httpx
    hook on the client's connection, and a token POST that goes only to token_url."""
    tree = ast.parse(source)
    client = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ProcoreClient")
    methods = {f.name: f for f in client.body if isinstance(f, ast.FunctionDef)}
    problems = []

    def first_line(fn: ast.FunctionDef, attr: str) -> int | None:
        lines = [c.lineno for c in ast.walk(fn) if isinstance(c, ast.Call)
                 and isinstance(c.func, ast.Attribute) and c.func.attr == attr]
        return min(lines) if lines else None

    check, send = (first_line(methods["request"], "_refuse_unlisted_write"),
                   first_line(methods["request"], "send"))
    if check is None or send is None or check > send:
        problems.append("request() does not check PROCORE_WRITES before sending")
    hooks = [k for c in ast.walk(methods["__init__"]) if isinstance(c, ast.Call)
             and _dotted(c.func) == "httpx.Client" for k in c.keywords if k.arg == "event_hooks"]
    if not hooks or "_refuse_unlisted_write" not in ast.unparse(hooks[0]):
        problems.append("the httpx connection has no allow-list hook")
    token = methods["_fetch_token"]
    built = [c for c in ast.walk(token) if isinstance(c, ast.Call)
             and isinstance(c.func, ast.Attribute) and c.func.attr == "build_request"]
    assigned = {t.id: ast.unparse(a.value) for a in ast.walk(token) if isinstance(a, ast.Assign)
                for t in a.targets if isinstance(t, ast.Name)}
    if [(ast.unparse(c.args[0]), assigned.get(ast.unparse(c.args[1]))) for c in built] != \
            [("'POST'", "self.token_url")]:
        problems.append("_fetch_token sends something else than the token POST")
    return problems


def test_the_one_method_checks_the_allow_list_first_and_hooks_the_connection():
    assert one_method_problems(PROCORE_CLIENT.read_text()) == []


@pytest.mark.parametrize("old, new, problem", [
    ("self._refuse_unlisted_write(httpx.Request(method, url))", "pass",
     "request() does not check PROCORE_WRITES"),
    ('event_hooks={"request": [self._refuse_unlisted_write]}', "event_hooks={}",
     "the httpx connection has no allow-list hook"),
    ('build_request("POST", url, data=form)', 'build_request("DELETE", url, data=form)',
     "_fetch_token sends something else"),
])
def test_the_one_method_check_fails_when_it_is_broken(old, new, problem):
    source = PROCORE_CLIENT.read_text()
    assert old in source
    [found] = one_method_problems(source.replace(old, new))
    assert found.startswith(problem)


def domain_writes(source: str) -> dict[str, set[str]]:
    """ProcoreClient method -> the writes it makes, read from the source: `self.request` with a
    write method and a literal path, or `self.sync` (a PATCH) with one."""
    tree = ast.parse(source)
    client = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ProcoreClient")
    found: dict[str, set[str]] = {}
    for fn in client.body:
        if not isinstance(fn, ast.FunctionDef) or fn.name in ("request", "sync"):
            continue
        for call in ast.walk(fn):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and _dotted(call.func.value) == "self"):
                continue
            if call.func.attr == "request" and not _is_read(call.args[0]):
                method, path = call.args[0].value, literal_path(call.args[1])
            elif call.func.attr == "sync":
                method, path = "PATCH", literal_path(call.args[0])
            else:
                continue
            found.setdefault(fn.name, set()).add(f"{method} {path.replace('{}', '{id}')}")
    return found


def allow_list_problems(writes: list[str], domain: dict[str, set[str]]) -> list[str]:
    """Entries no domain method writes, and domain writes missing from the list."""
    made = set().union(*domain.values())
    return ([f"{w} is allowed but no domain method writes it" for w in writes if w not in made]
            + [f"{w} is written but not allowed" for w in sorted(made - set(writes))]
            + [f"{w} names an accounting endpoint" for w in writes if ACCOUNTING.search(w)])


def test_the_allow_list_is_exactly_what_the_domain_methods_write():
    writes = [str(e) for e in PROCORE_WRITES]
    assert len(writes) == len(set(writes)) and set(writes) == EXPECTED_PROCORE_WRITES
    domain = domain_writes(PROCORE_CLIENT.read_text())
    assert allow_list_problems(writes, domain) == []
    from mlc_dagster_tests.resources.test_procore_client import DOMAIN_WRITES
    assert set(domain) == set(DOMAIN_WRITES)  # the runtime test calls every writing method


def test_the_allow_list_check_fails_when_the_list_is_widened_or_a_write_is_unlisted():
    writes = [str(e) for e in PROCORE_WRITES]
    domain = domain_writes(PROCORE_CLIENT.read_text())
    assert allow_list_problems([*writes, "POST /rest/v1.0/companies/{id}/journal_entries"],
                               domain) == [
        "POST /rest/v1.0/companies/{id}/journal_entries is allowed but no domain method writes it",
        "POST /rest/v1.0/companies/{id}/journal_entries names an accounting endpoint"]
    assert allow_list_problems([w for w in writes if "billing" not in w], domain) == [
        "POST /rest/v1.0/projects/{id}/billing_periods is written but not allowed"]


# --- Procore at run time: every job, every write on the wire ---------------------------------

def unlisted_procore_writes(calls: list[tuple[str, str]]) -> list[str]:
    """(method, path) pairs that are writes but neither the token POST nor allow-listed; the
    `{id}` substitution here is the test's own."""
    listed = EXPECTED_PROCORE_WRITES | {TOKEN_POST}
    return [f"{m} {p}" for m, p in calls
            if m in WRITE_METHODS and f"{m} {re.sub(r'/[0-9]+(?=/|$)', '/{id}', p)}" not in listed]


class WireRecorder:
    """Every request any httpx client of this process hands to the network, while `on`."""

    def __init__(self, monkeypatch) -> None:
        self.requests: list[tuple[str, httpx.URL]] = []
        self._on = False
        self._lock = threading.Lock()
        original = httpx.HTTPTransport.handle_request

        def recording(transport, request):
            if self._on:
                with self._lock:
                    self.requests.append((request.method, request.url))
            return original(transport, request)

        monkeypatch.setattr(httpx.HTTPTransport, "handle_request", recording)

    @contextmanager
    def on(self):
        self._on = True
        try:
            yield
        finally:
            self._on = False

    def writes_to(self, base_url: str) -> list[tuple[str, str]]:
        base = httpx.URL(base_url)
        return [(m, u.path) for m, u in self.requests if m in WRITE_METHODS
                and (u.scheme, u.host, u.port) == (base.scheme, base.host, base.port)]


class ProcoreWire:
    """Runs jobs; keeps every call the Procore sandbox saw during them (not the test's own)."""

    def __init__(self, sandboxes, instance, monkeypatch) -> None:
        self.procore = sandboxes["procore"]
        self.run = JobRunner(instance)
        self.wire = WireRecorder(monkeypatch)
        self.calls: list[dict] = []

    def job(self, name: str) -> None:
        clear_calls(self.procore)
        with self.wire.on():
            self.run(name)
        self.calls += sandbox_calls(self.procore)

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [(c["method"], c["path"]) for c in self.calls if c["method"] in WRITE_METHODS]


@pytest.fixture(name="history")
def history_fixture():
    """The compact universe with the hand-entered Procore history (adoption writes too)."""
    return history_seed()


@pytest.fixture(name="sandboxes")
def history_sandboxes_fixture(history):
    with running_sandboxes(seed_data=history) as handles:
        yield handles


def a_day_of_changes(sandboxes, history) -> None:
    """What users do between runs: in X3 a PO loses a line, another is amended after its
    commitment was Approved in Procore (a change order), and an invoice arrives for a project
    whose open billing period a project manager has just closed (a new period is created)."""
    x3, pm = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    adopted = {c["po_number"] for c in history.history_cases}
    ours = sorted((c for c in pm.contracts() if str(c.get("origin_id")).startswith("X3:PO:")
                   and c["origin_code"] not in adopted and c["status"] == "Draft"),
                  key=lambda c: c["origin_code"])
    single_tier = [c for c in ours if not {"potential_change_orders", "change_order_requests"}
                   & set(pm.http.get(f"/rest/v1.0/purchase_order_contracts/{c['id']}",
                                     params={"project_id": c["project_id"]}).json())]
    shrunk = next(c for c in single_tier if len(x3.get("PORDER", c["origin_code"])["PORDERQ"]) > 1)
    approved = next(c for c in reversed(single_tier) if c is not shrunk)
    invoiced = next(c for c in ours if c is not shrunk and c is not approved)

    po = x3.get("PORDER", shrunk["origin_code"])
    x3.edit("PORDER", po["POHNUM"], {"REVNUM": po["REVNUM"] + 1, "PORDERQ": [
        {"POPLIN": po["PORDERQ"][-1]["POPLIN"], "$delete": True}]})

    r = pm.http.patch(f"/rest/v1.0/purchase_order_contracts/{approved['id']}", json={
        "project_id": approved["project_id"], "purchase_order_contract": {"status": "Approved"}})
    assert r.status_code == 200, r.text
    po = x3.get("PORDER", approved["origin_code"])
    line = po["PORDERQ"][0]
    quantity = Decimal(str(line["QTYUOM"])) + 1
    x3.edit("PORDER", po["POHNUM"], {"REVNUM": po["REVNUM"] + 1, "PORDERQ": [{
        "POPLIN": line["POPLIN"], "QTYUOM": str(quantity),
        "LINAMT": str((quantity * Decimal(str(line["NETPRI"]))).quantize(Decimal("0.01")))}]})

    periods = f"/rest/v1.0/projects/{invoiced['project_id']}/billing_periods"
    opened = next(p for p in pm.http.get(periods).json() if p["status"] == "open")
    r = pm.http.patch(f"{periods}/{opened['id']}", json={"billing_period": {"status": "closed"}})
    assert r.status_code == 200, r.text
    po = x3.get("PORDER", invoiced["origin_code"])
    x3.create("PINVOICE", {
        "NUM": "PI29990001", "PIHTYP": 1, "BPSNUM": po["BPSNUM"], "BPSINV": "INV-PI29990001",
        "INVDAT": "2027-02-03", "PJT": po["PJTH"], "STA": 2, "PINVOICED": [{
            "PIDLIN": 1000, "POHNUM": po["POHNUM"], "POPLIN": po["PORDERQ"][0]["POPLIN"],
            "QTYUOM": "1", "NETPRI": po["PORDERQ"][0]["NETPRI"]}]})


EVERY_JOB = ("sync_reference_data", "sync_sage_x3_to_procore", "replay_failed_transactions",
             "reconcile", "preview_sync")


def test_every_job_writes_to_procore_only_through_the_allow_list(sandboxes, history, sync_env,
                                                                 monkeypatch):
    from mlc_dagster.definitions import defs

    assert set(EVERY_JOB) == {job.name for job in defs.resolve_all_job_defs()
                              if not job.name.startswith("__")}  # a new job joins this test
    monkeypatch.setenv("MLC_CREATE_BILLING_PERIODS", "1")
    with dg.instance_for_test() as instance:
        runs = ProcoreWire(sandboxes, instance, monkeypatch)
        runs.job("sync_reference_data")
        runs.job("sync_sage_x3_to_procore")
        a_day_of_changes(sandboxes, history)
        for name in EVERY_JOB:
            runs.job(name)
    writes = runs.writes
    assert unlisted_procore_writes(writes) == []
    # The sandbox saw exactly the writes the process put on the wire: none came another way.
    assert Counter(runs.wire.writes_to(runs.procore.url)) == Counter(writes)
    exercised = {f"{m} {re.sub(r'/[0-9]+(?=/|$)', '/{id}', p)}" for m, p in writes} - {TOKEN_POST}
    assert exercised == EXPECTED_PROCORE_WRITES, sorted(EXPECTED_PROCORE_WRITES - exercised)
    api_writes = [w for w in writes if w != ("POST", "/oauth/token")]
    print(f"\n{len(EVERY_JOB) + 2} job runs: {len(runs.calls)} Procore calls, {len(api_writes)} "
          f"API writes (+{len(writes) - len(api_writes)} token POSTs), {len(exercised)} of "
          f"{len(EXPECTED_PROCORE_WRITES)} allow-listed endpoints exercised, 0 off the list")


def test_the_job_checks_find_writes_sent_around_the_client(sandboxes, sync_env, monkeypatch):
    """Broken on purpose: the step reading Procore projects also posts a journal entry with
    httpx directly, and a budget line with urllib. The client's guard sees neither; the job
    check finds both in Procore, and the wire check finds the one that did not use httpx."""
    projects = ProcoreClient.projects

    def projects_and_two_sneaked_writes(self):
        httpx.post(f"{self.api_url}/rest/v1.0/journal_entries", json={"journal_entry": {}})
        budget = urllib.request.Request(f"{self.api_url}/rest/v1.0/budget_line_items",
                                        data=b"{}", method="POST")
        with contextlib.suppress(urllib.error.HTTPError):  # the sandbox has no such route
            urllib.request.urlopen(budget, timeout=5).close()
        return projects(self)

    monkeypatch.setattr(ProcoreClient, "projects", projects_and_two_sneaked_writes)
    with dg.instance_for_test() as instance:
        runs = ProcoreWire(sandboxes, instance, monkeypatch)
        runs.job("sync_reference_data")
    assert unlisted_procore_writes(runs.writes) == ["POST /rest/v1.0/journal_entries",
                                                    "POST /rest/v1.0/budget_line_items"]
    assert Counter(runs.writes) - Counter(runs.wire.writes_to(runs.procore.url)) == \
        Counter([("POST", "/rest/v1.0/budget_line_items")])
