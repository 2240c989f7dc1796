"""End to end against the stricter X3 sandbox (issue 13, points 7, 10, 11, 12).

Compact seeded sandboxes over HTTP, the real Dagster job and sensor. X3 data is changed
only through the X3 REST API, Procore state read only through Procore's GET endpoints.
"""

from __future__ import annotations

from decimal import Decimal

import dagster as dg
import pytest

from mlc_dagster.ledger.store import Ledger
from mlc_dagster_tests.e2e.flow_helpers import compact_sandboxes_fixture  # noqa: F401
from mlc_dagster_tests.sandbox_clients import ProcoreReader, X3Driver, run_sync
from mlc_sandbox.seed import dimension_mapping_csv


def _synced_po(procore: ProcoreReader, x3: X3Driver) -> tuple[dict, dict]:
    """A PO synced to Procore with at least two lines: (X3 $details, Procore contract)."""
    for contract in sorted(procore.contracts(), key=lambda c: c["origin_code"]):
        po = x3.po(contract["origin_code"])
        if len(po["PORDERQ"]) >= 2 and contract["status"] == "Draft":
            return po, contract
    raise AssertionError("no multi-line draft commitment in the compact seed")


@pytest.mark.parametrize("api", ["rest", "graphql"])
def test_line_only_amendment_reaches_procore_with_the_header_stamp_unchanged(
        sandboxes, sync_env, monkeypatch, api):
    monkeypatch.setenv("SAGE_X3_API", api)
    run_sync()
    procore, x3 = ProcoreReader(sandboxes["procore"].url), X3Driver(sandboxes["sage_x3"].url)
    po, contract = _synced_po(procore, x3)
    line = po["PORDERQ"][1]
    new_qty = Decimal(line["QTYUOM"]) + 5

    edited = x3.edit_po(po["POHNUM"], {"PORDERQ": [{"POPLIN": line["POPLIN"],
                                                    "QTYUOM": str(new_qty)}]})
    # The header stamp did not move: only the line's own stamp did.
    assert edited["UPDDATTIM"] == po["UPDDATTIM"]
    after = next(ln for ln in edited["PORDERQ"] if ln["POPLIN"] == line["POPLIN"])
    assert after["UPDDATTIM"] > line["UPDDATTIM"]
    assert Decimal(after["LINAMT"]) == (new_qty * Decimal(line["NETPRI"])).quantize(
        Decimal("0.01"))

    run_sync()
    items = {i["origin_id"]: i for i in procore.line_items(contract)}
    item = items[f"X3:PO:{po['POHNUM']}:{line['POPLIN']}"]
    assert Decimal(str(item["quantity"])) == new_qty
    assert Decimal(str(item["amount"])) == Decimal(after["LINAMT"])
    assert x3.po(po["POHNUM"])["UPDDATTIM"] == po["UPDDATTIM"]
    events = Ledger(sync_env["ledger_url"]).events("purchase_order", po["POHNUM"])
    assert [e["action"] for e in events] == ["create", "update"]



def test_a_line_only_change_is_read_once_not_on_every_run(sandboxes, sync_env):
    """REST lists headers without lines, so the listing carries only the header stamp while
    the snapshot holds the newest of header and line stamps. A PO whose line changed after
    its header, with its header inside the overlap window, must not count as changed (and
    have its details re-read) on every later run: an idle run is one header page and one
    line-stamp page."""
    from mlc_dagster.definitions import build_resources
    from mlc_dagster.x3_reads.snapshot import refresh_snapshot
    from mlc_dagster_tests.conftest import sandbox_calls

    ledger, x3 = Ledger(sync_env["ledger_url"]), X3Driver(sandboxes["sage_x3"].url)
    with dg.build_resources({"sage_x3": build_resources()["sage_x3"]}) as resources:
        client = resources.sage_x3.get_client()

        def refresh() -> tuple[dict, list[str]]:
            before = len(sandbox_calls(sandboxes["sage_x3"]))
            counts = refresh_snapshot(client, ledger, "purchase_order", overlap_seconds=120,
                                      read_details=client.read_purchase_orders, poll_lines=True)
            calls = sandbox_calls(sandboxes["sage_x3"])[before:]
            return counts, [c["path"].rsplit("/", 1)[-1] for c in calls]

        refresh()
        newest = max((r for page in client.changed("purchase_order", None) for r in page),
                     key=lambda r: r["update_stamp"])  # its header is inside the overlap window
        line = x3.po(newest["po_number"])["PORDERQ"][0]
        x3.edit_po(newest["po_number"], {"PORDERQ": [{"POPLIN": line["POPLIN"], "QTYUOM": "77"}]})

        counts, _ = refresh()
        assert (counts["changed"], counts["line_changes"]) == (1, 1)
        for _ in range(2):
            counts, paths = refresh()
            assert counts["changed"] == 0
            assert sorted(paths) == ["PORDER", "PORDERQ"]

def test_sensor_requests_a_run_for_a_line_only_change(sandboxes, sync_env):
    from mlc_dagster.definitions import build_resources
    from mlc_dagster.defs.purchase_orders.sensors import x3_purchase_order_changes

    resources = {name: build_resources()[name] for name in ("sage_x3", "ledger")}
    x3 = X3Driver(sandboxes["sage_x3"].url)
    with dg.instance_for_test() as instance:
        def tick(cursor):
            with dg.build_sensor_context(instance=instance, cursor=cursor,
                                         resources=resources) as context:
                return x3_purchase_order_changes(context)

        result = tick(None)
        while result.run_requests:  # drain the seed, one bounded page per tick
            result = tick(result.cursor)
        idle = result
        assert not tick(idle.cursor).run_requests

        po = x3.po("PO26000002")
        line = po["PORDERQ"][0]
        x3.edit_po(po["POHNUM"], {"PORDERQ": [{"POPLIN": line["POPLIN"], "QTYUOM": "123"}]})
        assert x3.po(po["POHNUM"])["UPDDATTIM"] == po["UPDDATTIM"]

        changed = tick(idle.cursor)
        assert len(changed.run_requests) == 1
        assert changed.run_requests[0].tags["mlc/changed_pos"] == "1"
        assert not tick(changed.cursor).run_requests


def test_a_dimension_mapping_key_gives_the_same_procore_state(sandboxes, sync_env,
                                                              monkeypatch):
    """MLC_MAPPING_KEY=dimension:CST with a `dimension,cost_code,cost_type` table maps the
    seed's lines exactly as the GL account table does (one CST value per account)."""
    sync_env["mapping"].write_text(dimension_mapping_csv())
    monkeypatch.setenv("MLC_MAPPING_KEY", "dimension:CST")
    run_sync()
    procore, x3 = ProcoreReader(sandboxes["procore"].url), X3Driver(sandboxes["sage_x3"].url)
    contracts = procore.contracts()
    assert contracts
    codes = {row.split(",")[0]: row.split(",")[1]
             for row in dimension_mapping_csv().splitlines()[1:]}
    for contract in contracts[:10]:
        po = x3.po(contract["origin_code"])
        dims = {e["VCRLIN"]: dict(zip(e["DIE"], e["CCE"], strict=True)) for e in po["CPTANALIN"]}
        for item in procore.line_items(contract):
            line_no = int(item["origin_id"].rsplit(":", 1)[1])
            assert item["cost_code"]["code"] == codes[dims[line_no]["CST"]]


def test_a_gl_keyed_table_with_a_dimension_key_fails_naming_the_setting(sandboxes, sync_env,
                                                                        monkeypatch):
    from mlc_dagster.definitions import defs

    monkeypatch.setenv("MLC_MAPPING_KEY", "dimension:CST")  # the CSV is still GL-keyed
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("sync_sage_x3_to_procore").execute_in_process(
            instance=instance, raise_on_error=False)
    assert not result.success
    messages = " ".join(str(e.message) + str(getattr(e.event_specific_data, "error", ""))
                        for e in result.all_events if e.is_failure)
    assert "MLC_MAPPING_KEY" in messages


# --- ping: the configured X3 fields exist on the customer's X3 --------------------------------

def _x3_ping(sandbox_settings, api: str, **overrides) -> dict:
    from mlc_dagster.ping import ping_x3

    env = {**sandbox_settings, "SAGE_X3_API": api, **overrides}
    return {row.check: row for row in ping_x3(env)}


@pytest.mark.parametrize("api", ["rest", "graphql"])
def test_ping_checks_the_configured_x3_fields(sandbox_settings, api):
    rows = _x3_ping(sandbox_settings, api)
    assert all(row.ok for row in rows.values()), [r for r in rows.values() if not r.ok]
    assert f"sage x3 {api} purchase_order fields" in rows
    assert f"sage x3 {api} purchase_invoice fields" in rows
    rows = _x3_ping(sandbox_settings, api, MLC_MAPPING_KEY="dimension:CST")
    assert rows[f"sage x3 {api} purchase_order fields"].ok


@pytest.mark.parametrize("api, overrides, check, fix", [
    ("rest", {"MLC_MAPPING_KEY": "dimension:NOPE"}, "purchase_order",
     "MLC_MAPPING_KEY=dimension:"),
    ("rest", {"MLC_X3_REST_LINE_ACCOUNT": "ACC"}, "purchase_order", "MLC_X3_REST_LINE_ACCOUNT"),
    ("rest", {"MLC_X3_CHART": "IFRS"}, "purchase_order", "MLC_X3_CHART"),
    ("rest", {"MLC_X3_INVOICE_STATUS_FIELD": "ZSTATUS"}, "purchase_invoice",
     "MLC_X3_INVOICE_STATUS_FIELD"),
    ("graphql", {"MLC_X3_GRAPHQL_INVOICE_STATUS_FIELD": "postingStatus"}, "purchase_invoice",
     "MLC_X3_GRAPHQL_INVOICE_STATUS_FIELD"),
    ("graphql", {"MLC_X3_GRAPHQL_LINE_ACCOUNT": "purchaseAccount.code"}, "purchase_order",
     "MLC_X3_GRAPHQL_LINE_ACCOUNT"),
    ("graphql", {"MLC_MAPPING_KEY": "dimension:CST",
                 "MLC_X3_GRAPHQL_LINE_DIMENSIONS": "purchaseOrderLineAnalytics"},
     "purchase_order", "MLC_X3_GRAPHQL_LINE_DIMENSIONS"),
])
def test_ping_names_the_setting_to_change_when_a_field_is_missing(sandbox_settings, api,
                                                                   overrides, check, fix):
    rows = _x3_ping(sandbox_settings, api, **overrides)
    # GraphQL validates every configured name in the entity's query itself.
    row = rows.get(f"sage x3 {api} {check} fields") or rows[f"sage x3 {api} {check}"]
    assert not row.ok and fix in row.fix, row


def test_ping_reports_a_bad_name_setting(sandbox_settings):
    rows = _x3_ping(sandbox_settings, "rest", MLC_MAPPING_KEY="dimension")
    assert not rows["sage x3 name settings"].ok
    assert "MLC_MAPPING_KEY" in rows["sage x3 name settings"].detail
