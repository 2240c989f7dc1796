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
The end-to-end tests add the runtime side: every write in the sandboxes' call logs is one of
the expected endpoints.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import mlc_dagster
from mlc_dagster.ledger.store import Change, Ledger
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

ROOT = Path(mlc_dagster.__file__).parent
X3_CLIENT = ROOT / "resources" / "sage_x3_client.py"
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
    assert {"invoices/writer.py", "suppliers/writer.py", "dimensions/assets.py",
            "procore/commitment_sync.py", "resources/procore_client.py"} <= modules
    assert not any(m.startswith("sandbox/") for m in modules)


def test_x3_is_written_only_through_the_guarded_supplier_and_dimension_methods():
    outside = []
    for path in connector_modules():
        if path == X3_CLIENT:
            continue
        for call, _fn in calls(ast.parse(path.read_text())):
            name = call.func.attr if isinstance(call.func, ast.Attribute) else None
            if name in X3_INTERNALS:
                outside.append(f"{path.relative_to(ROOT)}:{call.lineno} calls {name}")
    assert outside == [], "X3 internals used outside the X3 client"

    tree = ast.parse(X3_CLIENT.read_text())
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
    # cli.py: `mlc-dagster demo` copies dagster.yaml into its DAGSTER_HOME (no X3 data).
    assert writers == {"x3_import/files.py", "cli.py"}


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
