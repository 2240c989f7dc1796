"""End to end: seeded sandboxes over HTTP + the real Dagster job, sensor and ledger."""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal

import dagster as dg
import httpx
import pytest

from mlc_dagster.ledger.store import Ledger
from mlc_dagster_tests.conftest import sandbox_calls
from mlc_dagster_tests.sandbox_clients import WRITE_METHODS, X3Driver, run_sync
from mlc_dagster_tests.sandbox_clients import ProcoreReader as Procore
from mlc_sandbox.seed import UNMAPPED_GL_ACCOUNTS

X3 = X3Driver
def _expected_pos(seed_pos, vendors_with_origin):
    """POs the seed makes syncable: every line mapped, supplier has a vendor, data valid."""
    return {po["POHNUM"] for po in seed_pos
            if po["BPSNUM"] in vendors_with_origin
            and not any(line["ACC"] in UNMAPPED_GL_ACCOUNTS for line in po["lines"])}


def test_seeded_run_syncs_every_valid_po_and_second_run_writes_nothing(sandboxes, sync_env):
    from mlc_sandbox.seed import build_seed

    seed = build_seed(42, "small")
    expected = _expected_pos(seed.x3_purchase_orders, {v["origin_id"] for v in seed.vendors})
    run_sync()

    procore = Procore(sandboxes["procore"].url)
    contracts = procore.contracts()
    origins = Counter(c["origin_id"] for c in contracts)
    assert all(n == 1 for n in origins.values()), "duplicate contracts"
    assert {c["origin_code"] for c in contracts} == expected

    by_po = {po["POHNUM"]: po for po in seed.x3_purchase_orders}
    mapping = {row[0]: row[1] for row in
               (line.split(",") for line in seed.mapping_csv.splitlines()[1:])}
    for contract in contracts:
        po = by_po[contract["origin_code"]]
        items = procore.line_items(contract)
        assert len(items) == len(po["lines"])
        procore_totals, x3_totals = defaultdict(Decimal), defaultdict(Decimal)
        for item in items:
            procore_totals[item["cost_code"]["code"]] += Decimal(str(item["amount"]))
        for line in po["lines"]:
            x3_totals[mapping[line["ACC"]]] += Decimal(line["LINAMT"])
        assert procore_totals == x3_totals, po["POHNUM"]
        expected_status = "Closed" if po["CLEFLG"] == 2 else "Draft"
        assert contract["status"] == expected_status

    ledger = Ledger(sync_env["ledger_url"])
    held = ledger.keys_with_status("purchase_order", ["held"])
    assert set(held) == {po["POHNUM"] for po in seed.x3_purchase_orders} - expected
    reasons = {k: s.reason for k, s in ledger.states("purchase_order", held).items()}
    assert all(reasons.values())
    assert any("has no cost code mapping" in r for r in reasons.values())
    assert any("is not an active Procore vendor" in r for r in reasons.values())

    httpx.delete(f"{sandboxes['procore'].url}/_sandbox/calls")
    run_sync()
    writes = [c for c in sandbox_calls(sandboxes["procore"]) if c["method"] in WRITE_METHODS
              and c["path"].startswith("/rest/")]
    assert writes == []


def test_amend_and_close_update_exactly_those_commitments(sandboxes, sync_env):
    run_sync()
    procore, x3 = Procore(sandboxes["procore"].url), X3(sandboxes["sage_x3"].url)
    contracts = {c["origin_code"]: c for c in procore.contracts()}
    amended, closed = sorted(contracts)[0], sorted(contracts)[1]
    po = x3.po(amended)
    first, last = po["PORDERQ"][0], po["PORDERQ"][-1]
    new_qty = str(Decimal(first["QTYUOM"]) + 2)
    new_line = {k: v for k, v in first.items() if not k.startswith("$")}
    new_line.update({"POPLIN": 99000, "QTYUOM": "3", "NETPRI": "10.00", "LINAMT": "30.00"})
    removal = [] if len(po["PORDERQ"]) == 1 else [{"POPLIN": last["POPLIN"], "$delete": True}]
    # The new line's account and dimensions go where X3 keeps them (PORDERC, CPTANALIN).
    analytics = {member: [{**next(e for e in po[member] if e[key] == first["POPLIN"]), key: 99000}]
                 for member, key in (("PORDERC", "POPLIN"), ("CPTANALIN", "VCRLIN"))}
    x3.edit_po(amended, {"REVNUM": po["REVNUM"] + 1, "PORDERQ": [
        {"POPLIN": first["POPLIN"], "QTYUOM": new_qty},  # X3 recomputes LINAMT
        new_line, *removal], **analytics})
    x3.edit_po(closed, {"CLEFLG": 2})

    httpx.delete(f"{sandboxes['procore'].url}/_sandbox/calls")
    run_sync()
    writes = [c for c in sandbox_calls(sandboxes["procore"]) if c["method"] in WRITE_METHODS]
    touched_contract_ids = {c["path"].split("/")[4] for c in writes if "/line_items" in c["path"]}
    assert touched_contract_ids == {str(contracts[amended]["id"])}

    after = {c["origin_code"]: c for c in procore.contracts()}
    items = {i["origin_id"]: i for i in procore.line_items(after[amended])}
    assert Decimal(str(items[f"X3:PO:{amended}:{first['POPLIN']}"]["quantity"])) == Decimal(new_qty)
    assert f"X3:PO:{amended}:99000" in items
    if removal:
        assert f"X3:PO:{amended}:{last['POPLIN']}" not in items
    assert after[closed]["status"] == "Closed"
    events = Ledger(sync_env["ledger_url"]).events("purchase_order", amended)
    assert [e["action"] for e in events] == ["create", "update"]
    assert any("quantity" in s for s in events[-1]["changes"]["summary"])


def test_unmapped_gl_account_is_held_then_synced_once_mapping_added(sandboxes, sync_env):
    run_sync()
    ledger = Ledger(sync_env["ledger_url"])
    held = ledger.states("purchase_order", ledger.keys_with_status("purchase_order", ["held"]))
    unmapped_only = {k for k, s in held.items() if "mapping" in s.reason and "vendor" not in s.reason}
    assert unmapped_only
    with open(sync_env["mapping"], "a") as fh:
        for account in UNMAPPED_GL_ACCOUNTS:
            fh.write(f"{account},01-100,O\n")
    run_sync()
    states = ledger.states("purchase_order", unmapped_only)
    assert {s.status for s in states.values()} == {"synced"}
    synced_origins = {c["origin_code"] for c in Procore(sandboxes["procore"].url).contracts()}
    assert unmapped_only <= synced_origins


def test_crash_between_contract_write_and_ledger_update_leaves_no_duplicates(
        sandboxes, sync_env, monkeypatch):
    original = Ledger.apply
    calls = {"n": 0}

    def crash_on_first_sync_record(self, changes, run_id):
        changes = list(changes)
        if any(c.status == "synced" for c in changes) and calls["n"] == 0:
            calls["n"] += 1
            raise SystemExit("simulated crash after Procore writes, before the ledger update")
        return original(self, changes, run_id)

    monkeypatch.setattr(Ledger, "apply", crash_on_first_sync_record)
    from mlc_dagster.definitions import defs

    with dg.instance_for_test() as instance, pytest.raises(SystemExit):
        defs.resolve_job_def("sync_sage_x3_to_procore").execute_in_process(instance=instance)
    monkeypatch.setattr(Ledger, "apply", original)
    run_sync()

    procore = Procore(sandboxes["procore"].url)
    contracts = procore.contracts()
    assert max(Counter(c["origin_id"] for c in contracts).values()) == 1
    for contract in contracts[:40]:
        origins = Counter(i["origin_id"] for i in procore.line_items(contract))
        assert max(origins.values()) == 1


def test_sensor_requests_a_run_for_a_new_po_once(sandboxes, sync_env):
    from mlc_dagster.definitions import build_resources
    from mlc_dagster.defs.purchase_orders.sensors import x3_purchase_order_changes

    resources = {name: build_resources()[name] for name in ("sage_x3", "ledger")}
    with dg.instance_for_test() as instance:
        def tick(cursor):
            with dg.build_sensor_context(instance=instance, cursor=cursor,
                                         resources=resources) as context:
                return x3_purchase_order_changes(context)

        cursor = None
        first = tick(cursor)
        assert first.run_requests  # everything is new on the first tick
        while True:  # the seed spans several pages: one bounded page per tick
            idle = tick(first.cursor)
            if not idle.run_requests:
                break
            first = idle

        x3 = X3(sandboxes["sage_x3"].url)
        template = x3.po("PO26000001")
        body = {k: v for k, v in template.items() if not k.startswith("$") and k != "PORDERQ"}
        body.update({"POHNUM": "PO29990001", "REVNUM": 0, "CLEFLG": 1})
        body["PORDERQ"] = [{k: v for k, v in line.items() if not k.startswith("$")}
                           for line in template["PORDERQ"]]
        x3.create_po(body)

        changed = tick(idle.cursor)
        assert len(changed.run_requests) == 1
        assert changed.run_requests[0].tags["mlc/changed_pos"] == "1"
        assert not tick(changed.cursor).run_requests
        assert not tick(changed.cursor).run_requests  # same cursor again: nothing new


def test_graphql_api_gives_the_same_procore_state_as_rest(sandboxes, sync_env, monkeypatch,
                                                         tmp_path):
    """Both X3 transports feed the same canonical records into the same sync."""
    def state():
        procore = Procore(sandboxes["procore"].url)
        return {c["origin_id"]: sorted((i["origin_id"], str(i["amount"]), i["cost_code"]["code"])
                                       for i in procore.line_items(c))
                for c in procore.contracts()}

    monkeypatch.setenv("SAGE_X3_API", "graphql")
    run_sync()
    via_graphql = state()
    assert len(via_graphql) == 285

    # Same sandboxes, fresh ledger, REST this time: nothing to write, same end state.
    monkeypatch.setenv("SAGE_X3_API", "rest")
    monkeypatch.setenv("MLC_LEDGER_URL", f"sqlite:///{tmp_path / 'rest.sqlite'}")
    httpx.delete(f"{sandboxes['procore'].url}/_sandbox/calls")
    run_sync()
    assert state() == via_graphql
    writes = [c for c in sandbox_calls(sandboxes["procore"]) if c["method"] in WRITE_METHODS
              and c["path"].startswith("/rest/")]
    # A fresh ledger re-sends, but everything is matched by origin_id: updates, never creates.
    # The only POSTs are invoices on commitments with invoicing disabled, which a fresh ledger
    # does not know yet: Procore refuses them (nothing is created) and they are held again.
    accepted = [c for c in writes if c["status"] < 400]
    assert accepted and {c["method"] for c in accepted} == {"PATCH"}
    assert {(c["method"], c["path"], c["status"]) for c in writes if c["status"] >= 400} \
        <= {("POST", "/rest/v1.1/requisitions", 422)}
    assert max(Counter(c["origin_id"] for c in Procore(sandboxes["procore"].url).contracts()
                       ).values()) == 1


def test_mapping_to_unknown_cost_code_blocks_every_write(sandboxes, sync_env):
    with open(sync_env["mapping"], "a") as fh:
        fh.write("699999,99-999,M\n601100,01-100,O\n")  # unknown code, and a duplicate GL
    from mlc_dagster.definitions import defs

    httpx.delete(f"{sandboxes['procore'].url}/_sandbox/calls")
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("sync_sage_x3_to_procore").execute_in_process(
            instance=instance, raise_on_error=False)
    assert not result.success
    (check,) = [e for e in result.get_asset_check_evaluations()
                if e.check_name == "gl_mapping_valid"]
    assert not check.passed
    errors = check.metadata["errors"].value
    assert "99-999" in errors and "does not exist in Procore" in errors
    assert "duplicate GL account 601100" in errors and "line 29" in errors
    writes = [c for c in sandbox_calls(sandboxes["procore"]) if c["method"] in WRITE_METHODS
              and c["path"].startswith("/rest/")]
    assert writes == []
