"""No code path can write a GL / journal class in Sage X3 or a Procore accounting endpoint.

Proof by reading the connector's own source (everything under mlc_dagster/ except the
sandboxes), so a new module cannot slip past it:

- Sage X3: outside the X3 client, connector code may call only the three high-level write
  methods (create_supplier, update_supplier, upsert_dimension). Inside the client, the only
  REST request that is not a GET is built in `_write` and the only GraphQL mutation text in
  `_mutate`; both run the class/node guard first. The guard's allow-list is exactly the
  supplier and dimension classes (the guard itself is exercised in test_sage_x3_client).
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
from mlc_dagster.resources.sage_x3_client import (
    WRITABLE_GRAPHQL_NODES,
    WRITABLE_REST_CLASSES,
    X3Names,
)

ROOT = Path(mlc_dagster.__file__).parent
X3_CLIENT = ROOT / "resources" / "sage_x3_client.py"
PROCORE_CLIENT = ROOT / "resources" / "procore_client.py"
X3_WRITE_METHODS = {"create_supplier", "update_supplier", "upsert_dimension"}
X3_INTERNALS = {"_write", "_mutate", "_execute", "_send", "_http"}
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
