"""End to end: a sync run stages only the records whose plan can have changed (issue #15).

Real sandboxes over HTTP and the real job on one Dagster instance per test (as a
deployment's runs share one). What is staged is read from the steps' metadata; what was
written is read back through the Procore and X3 APIs, never from the connector's word.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import httpx
import pytest

from mlc_dagster.defs.purchase_orders.writer import CommitmentWriter
from mlc_dagster.ledger.store import Ledger
from mlc_dagster.x3_reads.scope import PO, read_planned
from mlc_dagster_tests.e2e.flow_helpers import (
    ProcoreApi,
    X3Records,
    api_writes,
    clear_calls,
    compact_sandboxes_fixture,  # noqa: F401 - `sandboxes`: the compact universe
    compact_seed,
    job_runner_fixture,  # noqa: F401 - `run`: jobs on one instance
    materialization,
)

SEED = compact_seed()
POS = {po["POHNUM"]: po for po in SEED.x3_purchase_orders}
BILLED = {line["POHNUM"] for inv in SEED.x3_purchase_invoices for line in inv["lines"]}
HELD_PO = "PO26000010"  # one line on GL 619900, which the shipped mapping lacks
UNBILLED_PO = "PO26000015"  # synced, and no seeded invoice bills it
BILLED_PO = "PO26000001"  # synced, billed by seeded invoice PI26000001
LINE_SYNC = r"PATCH /rest/v1.0/purchase_order_contracts/\d+/line_items/sync"
CREDIT_MEMO = 3  # PINVOICE.PIHTYP in the X3 sandbox


def staged(result, asset: str) -> tuple[int, str]:
    meta = materialization(result, asset)
    key = "staged_pos" if asset in ("x3_purchase_orders", "mapped_commitments") \
        else "staged_invoices"
    return meta[key], meta["staging_scope"]


def unsettled(ledger: Ledger, entity: str) -> set[str]:
    return {k for k, s in ledger.states(entity).items() if s.status != "synced"}


def contract(procore: ProcoreApi, po: str) -> dict | None:
    return next((c for c in procore.contracts() if c["origin_id"] == f"X3:PO:{po}"), None)


def items_by_origin(procore: ProcoreApi, po: str) -> dict[str, dict]:
    return {i["origin_id"]: i for i in procore.line_items(contract(procore, po))}


def sent(procore: ProcoreApi) -> dict[str, tuple]:
    """What each requisition holds (Procore's derived figures, e.g. the commitment's
    remaining amount, follow the commitment and are left out)."""
    return {origin: (r["id"], r["invoice_number"], r["billing_date"], r["period_id"])
            for origin, r in procore.all_requisitions().items()}


def amend_first_line(x3: X3Records, po: str, add: int = 2) -> tuple[str, Decimal]:
    """A quantity change on the PO's first line through the X3 REST API ($edit)."""
    line = x3.get("PORDER", po)["PORDERQ"][0]
    quantity = Decimal(line["QTYUOM"]) + add
    x3.edit("PORDER", po, {"PORDERQ": [{"POPLIN": line["POPLIN"], "QTYUOM": str(quantity)}]})
    return f"X3:PO:{po}:{line['POPLIN']}", quantity


def credit_memo(number: str, po: str) -> dict:
    line = POS[po]["lines"][0]
    return {"NUM": number, "PIHTYP": CREDIT_MEMO, "BPSNUM": POS[po]["BPSNUM"],
            "BPSINV": f"CN-{number}", "INVDAT": "2026-03-20", "PJT": POS[po]["PJTH"], "STA": 2,
            "PINVOICED": [{"PIDLIN": 1000, "POHNUM": po, "POPLIN": line["POPLIN"],
                           "QTYUOM": "1", "NETPRI": "10.00"}]}


def rewrite_mapping(path, change) -> None:
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(change(rows))
    path.write_text(out.getvalue(), encoding="utf-8")


def test_a_run_with_nothing_changed_stages_only_held_records_and_writes_nothing(
        sandboxes, run, sync_env):
    x3, procore = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    x3.create("PINVOICE", credit_memo("PI29000070", UNBILLED_PO))  # held by design, forever
    first = run()
    assert staged(first, "x3_purchase_orders") == (len(POS), "all: no completed plan yet")
    assert staged(first, "x3_purchase_invoices")[1] == "all: no completed plan yet"
    ledger = Ledger(sync_env["ledger_url"])
    held_pos, held_invoices = unsettled(ledger, "purchase_order"), unsettled(
        ledger, "purchase_invoice")
    assert held_pos == {HELD_PO} and held_invoices == {"PI29000070"}
    assert read_planned(ledger, PO) is not None  # the write step marked its plan complete
    before = {c["origin_id"]: procore.line_items(c) for c in procore.contracts()}

    clear_calls(sandboxes["procore"], sandboxes["sage_x3"])
    second = run()
    for asset in ("x3_purchase_orders", "mapped_commitments"):
        assert staged(second, asset) == (1, "changed only: 0 changed in X3, "
                                            "1 held/failed/deferred"), asset
    for asset in ("x3_purchase_invoices", "mapped_requisitions"):
        assert staged(second, asset) == (1, "changed only: 0 changed in X3, "
                                            "1 held/failed/deferred"), asset
    commitments = materialization(second, "procore_commitments")
    assert (commitments["unchanged"], commitments["created"], commitments["updated"]) == (0, 0, 0)
    assert materialization(second, "procore_requisitions")["created"] == 0
    assert api_writes(sandboxes["procore"]) == [] and api_writes(sandboxes["sage_x3"]) == []
    assert {c["origin_id"]: procore.line_items(c) for c in procore.contracts()} == before
    assert unsettled(ledger, "purchase_order") == held_pos  # the held ones stay held
    assert unsettled(ledger, "purchase_invoice") == held_invoices


def test_an_x3_amendment_stages_that_po_and_its_invoices_and_updates_procore(
        sandboxes, run, sync_env):
    x3, procore = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    run()
    origin, quantity = amend_first_line(x3, BILLED_PO)
    requisitions = sent(procore)

    clear_calls(sandboxes["procore"])
    result = run()
    assert staged(result, "x3_purchase_orders") == (
        2, "changed only: 1 changed in X3, 1 held/failed/deferred")
    assert materialization(result, "procore_commitments")["updated"] == 1
    assert Decimal(str(items_by_origin(procore, BILLED_PO)[origin]["quantity"])) == quantity
    # Its invoice is staged again (a PO's supplier and lines decide its holds), unchanged.
    billing = {inv["NUM"] for inv in SEED.x3_purchase_invoices
               if any(line["POHNUM"] == BILLED_PO for line in inv["lines"])}
    count, scope = staged(result, "x3_purchase_invoices")
    assert count == len(billing) and f"{len(billing)} billing a changed PO" in scope
    assert materialization(result, "procore_requisitions")["unchanged"] == len(billing)
    assert [w for w in api_writes(sandboxes["procore"]) if "requisition" in w[1]] == []
    assert sent(procore) == requisitions
    touched = {w[1].split("/")[4] for w in api_writes(sandboxes["procore"])}
    assert touched == {str(contract(procore, BILLED_PO)["id"])}


def test_a_mapping_change_restages_everything_so_synced_and_held_pos_follow_it(
        sandboxes, run, sync_env):
    procore = ProcoreApi(sandboxes["procore"].url)
    run()
    assert contract(procore, HELD_PO) is None
    line = POS[UNBILLED_PO]["lines"][0]
    origin = f"X3:PO:{UNBILLED_PO}:{line['POPLIN']}"
    old_code = items_by_origin(procore, UNBILLED_PO)[origin]["cost_code"]["code"]
    # The accountants move the synced PO's account to another cost code and map 619900.
    codes = {row[1]: row[2] for row in csv.reader(io.StringIO(SEED.mapping_csv))}
    new_code = next(code for code in sorted(codes) if code not in (old_code, "cost_code"))
    rewrite_mapping(sync_env["mapping"], lambda rows: [
        [row[0], new_code, codes[new_code]] if row[0] == line["ACC"] else row for row in rows
    ] + [["619900", "01-100", "O"]])

    result = run()
    assert items_by_origin(procore, UNBILLED_PO)[origin]["cost_code"]["code"] == new_code
    assert Ledger(sync_env["ledger_url"]).states("purchase_order", [HELD_PO])[
        HELD_PO].status == "synced"
    assert contract(procore, HELD_PO) is not None
    assert staged(result, "x3_purchase_orders")[1].startswith("changed only: 0 changed in X3")
    assert staged(result, "mapped_commitments") == (
        len(POS), "all: mapping changed since the last plan")

    again = run()  # the new mapping is now the planned one
    assert staged(again, "mapped_commitments") == (0, "changed only: 0 changed in X3, "
                                                      "0 held/failed/deferred")


def test_procore_reference_data_changes_restage_everything(sandboxes, run, sync_env,
                                                           monkeypatch):
    monkeypatch.setenv("MLC_REFERENCE_MAX_AGE_SECONDS", "0")  # read Procore on every run
    procore = ProcoreApi(sandboxes["procore"].url)
    vendors = {v["origin_id"]: v for v in procore.vendors() if v.get("origin_id")}
    supplier = POS[UNBILLED_PO]["BPSNUM"]
    procore.update_vendor(vendors[supplier]["id"], origin_id=None, origin_code=None)
    run()
    ledger = Ledger(sync_env["ledger_url"])
    waiting = {po for po, p in POS.items() if p["BPSNUM"] == supplier}
    states = ledger.states("purchase_order", waiting)
    assert all(s.status == "held" and "is not an active Procore vendor" in s.reason
               for s in states.values()) and len(states) == len(waiting)

    procore.create_vendor(name="Newly linked supplier", origin_id=supplier, origin_code=supplier)
    linked = run()
    assert {s.status for s in ledger.states("purchase_order", waiting).values()} == {"synced"}
    assert all(contract(procore, po) is not None for po in waiting)

    # A synced PO's plan depends on reference data too: its vendor deactivated holds it.
    other = POS[BILLED_PO]["BPSNUM"]
    procore.update_vendor(vendors[other]["id"], is_active=False)
    deactivated = run()
    state = ledger.states("purchase_order", [BILLED_PO])[BILLED_PO]
    assert state.status == "held" and f"supplier {other} is not an active" in state.reason
    for result in (linked, deactivated):
        assert staged(result, "mapped_commitments") == (
            len(POS), "all: Procore reference data changed since the last plan")


def test_a_po_that_failed_is_staged_and_written_by_the_next_run_without_an_x3_change(
        sandboxes, run, sync_env, monkeypatch):
    monkeypatch.setenv("MLC_PROCORE_MAX_ATTEMPTS", "2")
    procore_handle = sandboxes["procore"]
    httpx.post(f"{procore_handle.url}/_sandbox/faults",
               json={"route": LINE_SYNC, "status": 500, "count": 2}).raise_for_status()
    run()
    ledger = Ledger(sync_env["ledger_url"])
    (failed,) = ledger.keys_with_status("purchase_order", ["failed"])
    procore = ProcoreApi(procore_handle.url)
    assert not procore.line_items(contract(procore, failed))

    result = run()
    assert {i["origin_id"] for i in procore.line_items(contract(procore, failed))} == {
        f"X3:PO:{failed}:{line['POPLIN']}" for line in POS[failed]["lines"]}
    assert ledger.states("purchase_order", [failed])[failed].status == "synced"
    assert staged(result, "x3_purchase_orders") == (
        2, "changed only: 0 changed in X3, 2 held/failed/deferred")


def test_a_run_that_stops_after_staging_leaves_the_change_to_the_next_run(
        sandboxes, run, sync_env, monkeypatch):
    from mlc_dagster.definitions import defs

    x3, procore = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    run()
    ledger = Ledger(sync_env["ledger_url"])
    planned = read_planned(ledger, PO)
    origin, quantity = amend_first_line(x3, UNBILLED_PO, add=5)

    def crash(self, plan):
        raise SystemExit("simulated crash: staged and planned, nothing written")

    with monkeypatch.context() as patched, pytest.raises(SystemExit):
        patched.setattr(CommitmentWriter, "run", crash)
        defs.resolve_job_def("sync_sage_x3_to_procore").execute_in_process(
            instance=run.instance)
    # X3's change is in the snapshot now, and the next delta read will not bring it again
    line = ledger.snapshot_records(PO, [UNBILLED_PO])[0]["lines"][0]
    assert Decimal(str(line["quantity"])) == quantity
    assert read_planned(ledger, PO) == planned  # the mark did not move
    assert Decimal(str(items_by_origin(procore, UNBILLED_PO)[origin]["quantity"])) != quantity

    result = run()
    assert Decimal(str(items_by_origin(procore, UNBILLED_PO)[origin]["quantity"])) == quantity
    assert staged(result, "x3_purchase_orders") == (
        2, "changed only: 1 changed in X3, 1 held/failed/deferred")
    assert read_planned(ledger, PO).staged_at > planned.staged_at


def test_preview_plans_everything_and_leaves_the_mark_reconcile_plans_everything(sandboxes, run, sync_env):
    run()
    ledger = Ledger(sync_env["ledger_url"])
    planned = read_planned(ledger, PO)
    preview = run("preview_sync")
    assert staged(preview, "mapped_commitments") == (
        len(POS), "all: sync_preview reports on every record")
    assert staged(preview, "x3_purchase_invoices")[1] == "all: sync_preview reports on every record"
    assert read_planned(ledger, PO) == planned
    reconcile = run("reconcile")
    assert staged(reconcile, "x3_purchase_orders") == (len(POS), "all: full refresh")
    assert staged(reconcile, "x3_purchase_invoices")[1] == "all: full refresh"
    assert read_planned(ledger, PO).staged_at > planned.staged_at
    # the full read re-listed every PO and invoice but rewrote none of the unchanged rows
    after = run()
    assert staged(after, "x3_purchase_orders") == (1, "changed only: 0 changed in X3, "
                                                      "1 held/failed/deferred")
    assert staged(after, "x3_purchase_invoices") == (0, "changed only: 0 changed in X3, "
                                                        "0 held/failed/deferred")

