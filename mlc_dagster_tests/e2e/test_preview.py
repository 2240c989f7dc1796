"""Go-live preview: `preview_sync` over the hand-entered history writes nothing, and its plan is
what the live runs then do; MLC_WRITE_MODE=preview stops every writer.

"Writes nothing" is read from the sandboxes' own call logs (every write method on an API
route) and from the ledger and the X3 import folder, never from the connector's word. "What
the live run does" is the ledger events the live runs record, compared record by record with
the preview's rows (entity, key, action).
"""

from __future__ import annotations

import csv
import inspect
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from mlc_dagster.common.write_mode import STEP_REFUSAL
from mlc_dagster.defs.preview.report import COLUMNS, NOT_WRITTEN
from mlc_dagster.defs.purchase_orders.adoption import SCAN_ENTITY
from mlc_dagster.ledger.store import Ledger
from mlc_dagster.resources.http_core import WriteRefused
from mlc_dagster.settings import load_settings
from mlc_dagster_tests.conftest import sandbox_calls
from mlc_dagster_tests.e2e.flow_helpers import (
    api_writes,
    clear_calls,
    history_seed,
    job_runner_fixture,  # noqa: F401 - the `run` fixture
    materialization,
)
from mlc_sandbox.server import running_sandboxes, sandbox_env

pytestmark = pytest.mark.e2e

SEED = history_seed()
# Ledger events that are bookkeeping, not a change to a record: the adoption's one read of a
# project's commitments before the first write into it (the preview reads it too, unrecorded).
BOOKKEEPING = {SCAN_ENTITY}
WRITE_JOBS = ("sync_sage_x3_to_procore", "sync_reference_data")


@pytest.fixture(name="sandboxes")
def history_sandboxes_fixture():
    with running_sandboxes(seed_data=SEED) as handles:
        yield handles


def case(name: str) -> dict:
    return next(c for c in SEED.history_cases if c["case"] == name)


def import_files() -> list[Path]:
    folder = load_settings().x3_writes.import_dir
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def writes(sandboxes) -> dict[str, list]:
    return {name: api_writes(sandboxes[name]) for name in ("procore", "sage_x3")}


def predicted(rows) -> Counter:
    return Counter((r.flow, r.key, r.action) for r in rows.itertuples() if r.action != NOT_WRITTEN)


def recorded(ledger: Ledger, *results) -> Counter:
    return Counter((e["entity"], e["key"], e["action"]) for result in results
                   for e in ledger.events_for_run(result.run_id)
                   if e["entity"] not in BOOKKEEPING)


def test_the_preview_job_is_the_plan_and_its_reads_and_every_other_step_refuses(monkeypatch):
    """No sandbox: the job's asset set is pinned, and each step of a writing job outside it
    starts with `ensure_live` (a new write step without it fails here)."""
    for name, value in sandbox_env("http://127.0.0.1:9", "http://127.0.0.1:9").items():
        monkeypatch.setenv(name, value)  # the definitions read which optional settings are set
    from mlc_dagster.definitions import defs

    def assets(job: str) -> set[str]:
        return {key.path[-1] for key in defs.resolve_job_def(job).asset_layer.executable_asset_keys}

    preview = assets("preview_sync")
    assert preview == {
        "sync_preview", "x3_purchase_orders", "x3_purchase_invoices", "x3_suppliers",
        "procore_projects", "procore_vendors", "procore_cost_codes", "procore_line_item_types",
        "procore_vendor_directory", "procore_standard_cost_codes", "procore_sub_jobs",
        "gl_cost_code_mapping", "mapped_commitments", "mapped_requisitions",
        "desired_dimension_values"}
    # reconciliation_report writes neither system (auto_heal only marks ledger records for the
    # next sync, whose write step refuses); it runs after procore_commitments, which refuses.
    others = set().union(*(assets(j.name) for j in defs.resolve_all_job_defs()
                           if j.name != "preview_sync" and not j.name.startswith("__")))
    write_steps = others - preview - {"reconciliation_report"}
    assert write_steps == {"procore_commitments", "procore_requisitions", "supplier_vendor_sync",
                           "x3_supplier_import_file", "x3_dimension_values",
                           "x3_dimension_import_file"}
    for name in sorted(write_steps):
        fn = defs.resolve_assets_def(name).op.compute_fn.decorated_fn
        body = inspect.getsource(fn)
        assert re.search(r'ensure_live\((name|"' + name + r'"), ', body), name


def test_preview_writes_nothing_and_the_live_runs_do_exactly_what_it_listed(
        sandboxes, run, sync_env, monkeypatch):
    ledger = Ledger(sync_env["ledger_url"])
    monkeypatch.setenv("MLC_WRITE_MODE", "preview")  # a go-live: preview first
    clear_calls(sandboxes["procore"], sandboxes["sage_x3"])

    preview = run("preview_sync")

    assert writes(sandboxes) == {"procore": [], "sage_x3": []}
    assert sandbox_calls(sandboxes["procore"], method="GET")  # it did read Procore
    assert import_files() == []
    assert ledger.events_for_run(preview.run_id) == []
    rows = preview.output_for_node("sync_preview")
    meta = materialization(preview, "sync_preview")
    flows = set(rows["flow"])
    assert {"purchase_order", "purchase_invoice", "supplier", "dimension"} <= flows, flows
    po = rows[rows["flow"] == "purchase_order"].set_index("key")
    adopted = [c for c in SEED.history_cases if c["expect"] == "adopt" and c["po_number"]]
    assert len(adopted) >= 9
    for c in adopted:
        assert po.loc[c["po_number"], "action"] == "adopt", (c["case"], po.loc[c["po_number"]])
    hand_invoice = case("invoiced")["note"].split("x3_invoice=")[1].split()[0].strip(";,")
    invoices = rows[rows["flow"] == "purchase_invoice"].set_index("key")
    assert invoices.loc[hand_invoice, "action"] == "adopt"  # typed by hand: linked, not doubled
    for name in ("ambiguous", "foreign"):
        detail = po.loc[case(name)["po_number"], "detail"]
        assert po.loc[case(name)["po_number"], "action"] == "hold"
        assert all(number in detail for number in case(name)["procore_numbers"]), detail
    assert meta["adopt"] == (rows["action"] == "adopt").sum() >= 10
    assert meta["create"] == (rows["action"] == "create").sum() > 0
    with open(meta["csv"], encoding="utf-8-sig", newline="") as handle:
        exported = list(csv.DictReader(handle))
    assert len(exported) == len(rows) == meta["rows"] and list(exported[0]) == COLUMNS
    projects = {p["id"]: p["name"] for p in SEED.projects}
    first = projects[int(po["project_id"].dropna().iloc[0])]
    assert first in meta["by_project"] and "committed_adopted" in meta["by_project"]

    monkeypatch.setenv("MLC_WRITE_MODE", "live")  # signed off
    live = [run(job) for job in WRITE_JOBS]

    plan, done = predicted(rows), recorded(ledger, *live)
    assert plan - done == Counter(), "listed by the preview, not done by the live runs"
    assert done - plan == Counter(), "done by the live runs, not listed by the preview"
    assert api_writes(sandboxes["procore"])  # the comparison is not over two empty sets


def test_preview_mode_launches_nothing_and_every_writer_refuses(sandboxes, run, sync_env,
                                                               monkeypatch):
    from mlc_dagster.definitions import build_resources, defs

    resources = build_resources()
    monkeypatch.setenv("MLC_WRITE_MODE", "preview")
    clear_calls(sandboxes["procore"], sandboxes["sage_x3"])
    for sensor in defs.sensors:
        with dg.build_sensor_context(instance=run.instance, cursor="untouched",
                                     resources={"sage_x3": resources["sage_x3"],
                                                "ledger": resources["ledger"]}) as context:
            tick = sensor.evaluate_tick(context)
        assert not tick.run_requests and tick.cursor in (None, "untouched"), sensor.name
        assert tick.skip_message.startswith("MLC_WRITE_MODE=preview: sensor"), tick.skip_message
    for schedule in defs.schedules:
        with dg.build_schedule_context(instance=run.instance,
                                       resources={"ledger": resources["ledger"]}) as context:
            tick = schedule.evaluate_tick(context)
        assert not tick.run_requests and "MLC_WRITE_MODE=preview" in tick.skip_message
    assert sandbox_calls(sandboxes["sage_x3"]) == []  # the sensors did not even read X3

    for job in WRITE_JOBS:  # launched by hand anyway
        result = defs.resolve_job_def(job).execute_in_process(instance=run.instance,
                                                               raise_on_error=False)
        assert not result.success
        failures = [e.step_failure_data.error.message for e in result.all_events
                    if e.is_step_failure]
        assert failures and all(STEP_REFUSAL in message for message in failures), failures
    invoices_alone = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=run.instance, raise_on_error=False,  # its input is stored by the run above
        asset_selection=[dg.AssetKey("procore_requisitions")])
    refused = [(e.step_key, STEP_REFUSAL in e.step_failure_data.error.message)
               for e in invoices_alone.all_events if e.is_step_failure]
    assert refused == [("procore_requisitions", True)]
    assert writes(sandboxes) == {"procore": [], "sage_x3": []}
    assert import_files() == []
    assert all(not Ledger(sync_env["ledger_url"]).events_for_run(r.dagster_run.run_id)
               for r in run.instance.get_run_records())

    with dg.build_resources(resources) as built:  # the clients the definitions build
        with pytest.raises(WriteRefused, match="MLC_WRITE_MODE=preview: refused Procore PATCH"):
            built.procore.get_client().sync_vendors([{"origin_id": "SUP001", "name": "Renamed"}])
        with pytest.raises(WriteRefused, match="MLC_WRITE_MODE=preview: refused Sage X3 POST"):
            built.sage_x3.get_client().create_supplier({"supplier_code": "PCTEST", "name": "New"})
    assert writes(sandboxes) == {"procore": [], "sage_x3": []}

    monkeypatch.setenv("MLC_WRITE_MODE", "live")  # the same ticks launch runs when live
    tick_schedule = defs.resolve_schedule_def("sync_sage_x3_to_procore_fallback")
    with dg.build_schedule_context(instance=run.instance,
                                   resources={"ledger": resources["ledger"]}) as context:
        assert len(tick_schedule.evaluate_tick(context).run_requests) == 1
    with dg.build_sensor_context(instance=run.instance, cursor=None,
                                 resources={"sage_x3": resources["sage_x3"],
                                                "ledger": resources["ledger"]}) as context:
        assert defs.resolve_sensor_def("x3_purchase_order_changes").evaluate_tick(
            context).run_requests


def test_preview_command_prints_totals_and_writes_the_csv(sandboxes, tmp_path):
    env = {**os.environ, **sandbox_env(sandboxes["procore"].url, sandboxes["sage_x3"].url,
                                       "graphql"),
           "DAGSTER_HOME": str(tmp_path), "MLC_WRITE_MODE": "preview",
           "MLC_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.sqlite'}"}
    env.pop("MLC_GL_MAPPING_CSV", None)
    clear_calls(sandboxes["procore"], sandboxes["sage_x3"])

    done = subprocess.run([sys.executable, "-m", "mlc_dagster.cli", "preview"], env=env,
                          capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "nothing was written to Procore or Sage X3" in out and "committed_created" in out
    path = Path(out.split("CSV for sign-off (every row): ")[1].strip())
    assert path.parent == (tmp_path / "previews").resolve() and path.name.startswith("preview-")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["action"] for r in rows} >= {"create", "adopt", "hold"}
    assert f"{len(rows)} record(s) would change" in out
    assert api_writes(sandboxes["procore"]) == []
    assert sandbox_calls(sandboxes["sage_x3"], method="POST")  # GraphQL queries went through

    wrong = dict(env, PROCORE_CLIENT_SECRET="not-the-secret", DAGSTER_HOME=str(tmp_path / "b"))
    failed = subprocess.run([sys.executable, "-m", "mlc_dagster.cli", "preview"], env=wrong,
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1
    assert "failed; nothing was written" in failed.stderr
    assert "Procore rejected the client id/secret" in failed.stderr
    assert "not-the-secret" not in failed.stderr + failed.stdout
