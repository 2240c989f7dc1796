"""The code location as Dagster loads it: every definition found under defs/, each job's assets
named (not selected by group), and a product that runs without the simulators or a web server."""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import dagster as dg
import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mlc_dagster"
PYPROJECT = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())

PO_SYNC = {"procore_projects", "procore_vendors", "procore_cost_codes", "procore_line_item_types",
           "x3_purchase_orders", "gl_cost_code_mapping", "mapped_commitments",
           "procore_commitments", "x3_purchase_invoices", "mapped_requisitions",
           "procore_requisitions"}
JOB_ASSETS = {
    "sync_sage_x3_to_procore": PO_SYNC,
    "replay_failed_transactions": PO_SYNC,
    "reconcile": PO_SYNC | {"reconciliation_report"},
    "sync_reference_data": {
        "procore_projects", "procore_cost_codes", "procore_line_item_types", "x3_suppliers",
        "procore_vendor_directory", "supplier_vendor_sync", "x3_supplier_import_file",
        "procore_standard_cost_codes", "procore_sub_jobs", "desired_dimension_values",
        "x3_dimension_values", "x3_dimension_import_file"},
}


@pytest.fixture(scope="module")
def defs():
    """The definitions, imported the way every other test first imports them: with the
    sandboxes' environment set. They bind which optional X3 credentials exist when they load
    (the process keeps that module), so loading them here in a bare environment would strip
    the X3 credentials from every job run later in the same test session."""
    from mlc_sandbox.server import sandbox_env

    with pytest.MonkeyPatch.context() as env:
        for key, value in sandbox_env("http://127.0.0.1:9", "http://127.0.0.1:9").items():
            env.setenv(key, value)
        from mlc_dagster.definitions import defs
    return defs


def job_assets(defs, name: str) -> set[str]:
    job = defs.resolve_job_def(name)
    return {key.to_user_string() for key in job.asset_layer.executable_asset_keys}


def test_definitions_load_from_the_defs_folder(defs):
    dg.Definitions.validate_loadable(defs)
    assert {s.name for s in defs.sensors} == {
        "x3_purchase_order_changes", "x3_purchase_invoice_changes",
        "procore_rate_limit_continuation"}
    assert {s.name for s in defs.schedules} == {
        "sync_sage_x3_to_procore_fallback", "reconcile_nightly", "sync_reference_data_schedule"}
    checks = {key.name for spec in defs.asset_checks for key in spec.check_keys}
    assert {"gl_mapping_valid", "requisition_totals_match_x3"} <= checks


def test_each_job_runs_exactly_the_assets_it_names(defs):
    for name, expected in JOB_ASSETS.items():
        assert job_assets(defs, name) == expected, name


def test_every_asset_belongs_to_a_job_and_its_flow_group(defs):
    """An asset no job runs would never materialise; its group is the flow folder it lives in."""
    in_jobs = set().union(*JOB_ASSETS.values()) | job_assets(defs, "preview_sync")
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} <= in_jobs
    grouped = 0
    for flow in sorted(p.name for p in (PACKAGE / "defs").iterdir() if (p / "assets.py").exists()):
        module = importlib.import_module(f"mlc_dagster.defs.{flow}.assets")
        for assets_def in dg.load_assets_from_modules([module]):
            for key in assets_def.keys:
                assert graph.get(key).group_name == flow, (key, flow)
                grouped += 1
    assert grouped == len(in_jobs)


def _imports(path: Path) -> set[str]:
    """Top-level modules a file imports at module level or inside functions."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_product_needs_no_simulator_or_web_server():
    """`pip install .` pulls neither; only the CLI's sandbox commands import them, lazily."""
    server_side = {"uvicorn", "starlette", "graphql", "multipart", "dagster_webserver",
                   "dagster_graphql", "mlc_sandbox", "tenacity"}
    for path in PACKAGE.rglob("*.py"):
        used = _imports(path) & server_side
        if path.name == "cli.py":
            assert used <= {"mlc_sandbox"}, used
        else:
            assert not used, (path, used)
    base = " ".join(PYPROJECT["project"]["dependencies"])
    for name in ("uvicorn", "starlette", "graphql-core", "python-multipart", "dagster-webserver",
                 "dagster-graphql", "tenacity"):
        assert name not in base, name
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert any("uvicorn" in d for d in extras["sandbox"])
    assert any("dagster-webserver" in d for d in extras["ui"])


def test_the_resources_http_core_imports_no_dagster():
    """The HTTP clients stay usable (and testable) without Dagster; resources wrap them."""
    clients = [PACKAGE / "resources" / "http_core.py", PACKAGE / "resources" / "procore_client.py"]
    clients += list((PACKAGE / "resources").glob("sage_x3_client*.py"))
    clients += list((PACKAGE / "resources" / "sage_x3_client").glob("*.py"))
    assert clients
    for path in clients:
        assert "dagster" not in _imports(path), path
