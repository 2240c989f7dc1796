"""End to end: amendments to Approved commitments, against the Procore sandbox's documented
change-order model (package + potential change order on single-tier projects, the Approved
lock as a company setting, tiers read from the contract's show response).

Procore's state is read the way a user sees it: packages and their titles per contract, the
PCO line items, the commitment's line items and its change-order sums. Never by origin_id.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from mlc_dagster.ledger.store import Ledger
from mlc_dagster_tests.conftest import sandbox_calls
from mlc_dagster_tests.e2e.flow_helpers import (
    ProcoreApi,
    X3Records,
    api_writes,
    clear_calls,
    compact_sandboxes_fixture,  # noqa: F401 - `sandboxes`: the compact universe
    job_runner_fixture,  # noqa: F401 - `run`: jobs on one instance
)

PCO_LINE_SYNC = r"PATCH /rest/v1.0/potential_change_orders/\d+/line_items/sync"
CHANGE_ORDER_WRITES = ("/rest/v1.0/change_order_packages", "/rest/v1.0/potential_change_orders",
                       "commitment_change_orders")


@pytest.fixture
def env(sync_env, monkeypatch):
    monkeypatch.setenv("MLC_PROCORE_MAX_ATTEMPTS", "2")  # a fault outlasts the retries quickly
    return sync_env


class Procore(ProcoreApi):
    """What a project manager sees of one commitment, through Procore's GET endpoints."""

    def contract(self, po: str) -> dict:
        return next(c for c in self.contracts() if c["origin_code"] == po)

    def show(self, contract: dict) -> dict:
        r = self.http.get(f"/rest/v1.0/purchase_order_contracts/{contract['id']}",
                          params={"project_id": contract["project_id"]})
        assert r.status_code == 200, r.text
        return r.json()

    def tier(self, contract: dict) -> int:
        shown = self.show(contract)
        return (3 if "change_order_requests" in shown else
                2 if "potential_change_orders" in shown else 1)

    def set_status(self, contract: dict, status: str) -> None:
        r = self.http.patch(f"/rest/v1.0/purchase_order_contracts/{contract['id']}", json={
            "project_id": contract["project_id"], "purchase_order_contract": {"status": status}})
        assert r.status_code == 200, r.text

    def packages(self, contract: dict) -> list[dict]:
        r = self.http.get("/rest/v1.0/change_order_packages", params={
            "project_id": contract["project_id"], "contract_id": contract["id"], "per_page": 100})
        assert r.status_code == 200, r.text
        return r.json()

    def pco_lines(self, contract: dict, package: dict) -> list[dict]:
        pcos = self.http.get("/rest/v1.0/potential_change_orders", params={
            "project_id": contract["project_id"], "filters[contract_id]": contract["id"],
            "per_page": 100}).json()
        [pco] = [p for p in pcos if p["change_order_package_id"] == package["id"]]
        return self.http.get(f"/rest/v1.0/potential_change_orders/{pco['id']}/line_items",
                             params={"project_id": contract["project_id"], "per_page": 100}).json()

    def sov(self, contract: dict) -> dict[int, dict]:
        """The commitment's line items (its schedule of values), by X3 line number."""
        return {int(str(i["origin_id"]).rsplit(":", 1)[-1]): i for i in self.line_items(contract)}


def dec(value) -> Decimal:
    return Decimal(str(value))


def money(value) -> Decimal:
    return dec(value).quantize(Decimal("0.01"))


def set_sandbox(handle, **config) -> None:
    httpx.post(f"{handle.url}/_sandbox/config", json=config).raise_for_status()


def fault(handle, **spec) -> None:
    httpx.post(f"{handle.url}/_sandbox/faults", json=spec).raise_for_status()


def amend_line(x3: X3Records, po: str, line_no: int, *, revision: int, quantity=None,
               price=None) -> dict:
    """Amend one X3 PO line (quantity and/or net price) as a buyer would; X3's new line back."""
    line = next(li for li in x3.get("PORDER", po)["PORDERQ"] if li["POPLIN"] == line_no)
    quantity = dec(quantity if quantity is not None else line["QTYUOM"])
    price = dec(price if price is not None else line["NETPRI"])
    amount = (quantity * price).quantize(Decimal("0.01"))
    x3.edit("PORDER", po, {"REVNUM": revision, "PORDERQ": [{
        "POPLIN": line_no, "QTYUOM": str(quantity), "NETPRI": str(price), "LINAMT": str(amount)}]})
    return next(li for li in x3.get("PORDER", po)["PORDERQ"] if li["POPLIN"] == line_no)


def single_tier_po(procore: Procore, tier: int = 1) -> str:
    """A synced PO whose project uses the given change-order tier."""
    for contract in sorted(procore.contracts(), key=lambda c: c["origin_code"]):
        if procore.tier(contract) == tier:
            return contract["origin_code"]
    pytest.fail(f"the seed has no project with {tier}-tier change orders")


def approve_and_amend(procore: Procore, x3: X3Records, *, tier: int = 1,
                      more: int = 1) -> tuple[str, dict, int, Decimal]:
    """A synced PO of a `tier` project Approved in Procore, then its first line's quantity
    raised by `more` in X3 (revision 1): the PO, its contract, the line and its new quantity."""
    po = single_tier_po(procore, tier)
    contract = procore.contract(po)
    procore.set_status(contract, "Approved")
    sov = procore.sov(contract)
    line_no = min(sov)
    quantity = dec(sov[line_no]["quantity"]) + more
    amend_line(x3, po, line_no, revision=1, quantity=quantity)
    return po, contract, line_no, quantity


def ledger_of(env) -> Ledger:
    return Ledger(env["ledger_url"])


def ledger_path(env) -> Path:
    return Path(env["ledger_url"].removeprefix("sqlite:///"))


def copy_ledger(env, target: Path) -> None:
    with sqlite3.connect(ledger_path(env)) as source, sqlite3.connect(target) as copy:
        source.backup(copy)


def restore_ledger(env, copy: Path) -> None:
    """The ledger as it was: everything recorded since is lost."""
    with sqlite3.connect(copy) as source, sqlite3.connect(ledger_path(env)) as ledger:
        source.backup(ledger)


def delete_ledger(env) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ledger_path(env)}{suffix}").unlink(missing_ok=True)


def change_order_writes(handle) -> list[tuple[str, str]]:
    return [w for w in api_writes(handle) if any(p in w[1] for p in CHANGE_ORDER_WRITES)]


def test_a_quantity_amendment_becomes_one_package_with_the_delta(sandboxes, run, env):
    procore, x3 = Procore(sandboxes["procore"].url), X3Records(sandboxes["sage_x3"].url)
    run()
    po = single_tier_po(procore)
    contract = procore.contract(po)
    procore.set_status(contract, "Approved")
    before = procore.sov(contract)
    line_no = min(before)
    old = before[line_no]
    new = amend_line(x3, po, line_no, revision=1, quantity=dec(old["quantity"]) + 10)
    delta = money(new["LINAMT"]) - money(old["amount"])
    clear_calls(sandboxes["procore"])
    run()

    [package] = procore.packages(contract)
    assert package["title"].startswith(f"Sage X3 PO {po} rev 1 [")
    assert package["origin_code"] == f"{po} rev 1" and package["status"] == "draft"
    [line] = procore.pco_lines(contract, package)
    assert dec(line["quantity"]) == 10 and dec(line["unit_cost"]) == dec(old["unit_cost"])
    assert money(line["amount"]) == delta and line["cost_code"]["id"] == old["cost_code"]["id"]
    assert procore.sov(contract)[line_no]["quantity"] == old["quantity"]  # SOV locked, untouched
    shown = procore.show(contract)
    assert shown["status"] == "Approved"
    assert money(shown["draft_change_orders_amount"]) == delta and money(package["grand_total"]) == delta
    assert not [c for c in sandbox_calls(sandboxes["procore"])
                if "commitment_change_orders" in c["path"]]

    ledger = ledger_of(env)
    assert ledger.states("purchase_order", [po])[po].status == "synced"
    event = ledger.events("purchase_order", po)[-1]
    assert (event["action"], event["status"]) == ("change_order", "synced")
    assert event["changes"]["change_order"]["title"] == package["title"]
    assert event["changes"]["change_order"]["package_number"] == package["number"]
    assert dec(event["changes"]["change_order"]["total"]) == delta
    assert event["changes"]["change_order"]["lines"] == [
        f"line {line_no}: quantity +10 at {line['unit_cost']} = {delta:+.2f}"]

    clear_calls(sandboxes["procore"])
    run()  # nothing changed: nothing written
    assert api_writes(sandboxes["procore"]) == []


def test_changes_a_change_order_cannot_carry_are_held_never_synced(sandboxes, run, env):
    procore, x3 = Procore(sandboxes["procore"].url), X3Records(sandboxes["sage_x3"].url)
    run()
    single = [c for c in sorted(procore.contracts(), key=lambda c: c["origin_code"])
              if procore.tier(c) == 1][:2]
    price_po, same_amount_po = (c["origin_code"] for c in single)
    for contract in single:
        procore.set_status(contract, "Approved")
    sov_before = {c["origin_code"]: procore.sov(c) for c in single}
    # a unit cost change; and issue 13's 6b: quantity x4 at a quarter of the price, same amount
    price_line = min(sov_before[price_po])
    amend_line(x3, price_po, price_line, revision=1,
               price=dec(sov_before[price_po][price_line]["unit_cost"]) + 1)
    qty_line = min(sov_before[same_amount_po])
    old = sov_before[same_amount_po][qty_line]
    amend_line(x3, same_amount_po, qty_line, revision=1, quantity=dec(old["quantity"]) * 4,
               price=dec(old["unit_cost"]) / 4)
    run()

    states = ledger_of(env).states("purchase_order", [price_po, same_amount_po])
    for po, line_no in ((price_po, price_line), (same_amount_po, qty_line)):
        state = states[po]
        assert state.status == "held", (po, state.reason)
        assert f"line {line_no}: unit cost " in state.reason
        assert "a change order cannot carry these changes faithfully" in state.reason
        contract = procore.contract(po)
        assert procore.packages(contract) == []
        assert procore.sov(contract) == sov_before[po]  # Procore still shows the old figures
        assert ledger_of(env).events("purchase_order", po)[-1]["action"] == "hold"
    events = len(ledger_of(env).events("purchase_order", price_po))
    clear_calls(sandboxes["procore"])
    run()  # retried, still held, recorded once
    assert len(ledger_of(env).events("purchase_order", price_po)) == events
    assert change_order_writes(sandboxes["procore"]) == []


@pytest.mark.parametrize("tier", [2, 3])
def test_a_multi_tier_project_holds_the_po_naming_the_tier(sandboxes, run, env, tier):
    procore, x3 = Procore(sandboxes["procore"].url), X3Records(sandboxes["sage_x3"].url)
    run()
    po, contract, _, _ = approve_and_amend(procore, x3, tier=tier)
    run()
    state = ledger_of(env).states("purchase_order", [po])[po]
    assert state.status == "held"
    assert f"uses {tier}-tier change orders" in state.reason
    assert "MLC_APPROVED_POLICY=hold" in state.reason
    assert procore.packages(contract) == []


def test_hold_policy_holds_the_amendment(sandboxes, run, env, monkeypatch):
    monkeypatch.setenv("MLC_APPROVED_POLICY", "hold")
    procore, x3 = Procore(sandboxes["procore"].url), X3Records(sandboxes["sage_x3"].url)
    run()
    po, contract, _, _ = approve_and_amend(procore, x3)
    run()
    state = ledger_of(env).states("purchase_order", [po])[po]
    assert state.status == "held"
    assert state.reason.startswith("approved commitment locked: the commitment is Approved in "
                                   "Procore, which locks its schedule of values")
    assert procore.packages(contract) == []


def test_with_the_company_lock_off_approved_lines_are_simply_updated(sandboxes, run, env):
    procore, x3 = Procore(sandboxes["procore"].url), X3Records(sandboxes["sage_x3"].url)
    set_sandbox(sandboxes["procore"], approved_lock=False)
    run()
    po, contract, line_no, quantity = approve_and_amend(procore, x3, more=3)
    run()
    assert dec(procore.sov(contract)[line_no]["quantity"]) == quantity
    assert procore.packages(contract) == []
    assert procore.show(contract)["status"] == "Approved"
    event = ledger_of(env).events("purchase_order", po)[-1]
    assert (event["action"], event["status"]) == ("update", "synced")


def test_a_ledger_lost_mid_run_leaves_exactly_one_package_with_the_right_amount(
        sandboxes, run, env, tmp_path):
    handle = sandboxes["procore"]
    procore, x3 = Procore(handle.url), X3Records(sandboxes["sage_x3"].url)
    run()
    po = single_tier_po(procore)
    contract = procore.contract(po)
    procore.set_status(contract, "Approved")
    old = procore.sov(contract)
    line_no = min(old)
    new = amend_line(x3, po, line_no, revision=1, quantity=dec(old[line_no]["quantity"]) + 7)
    delta = money(new["LINAMT"]) - money(old[line_no]["amount"])

    # 1. the run dies between the package POST and the line sync, and its ledger records
    #    are lost (the ledger is back to how it was before the run)
    saved = tmp_path / "before.sqlite"
    copy_ledger(env, saved)
    fault(handle, route=PCO_LINE_SYNC, status=500, count=2)
    run()
    [package] = procore.packages(contract)
    assert procore.pco_lines(contract, package) == []
    restore_ledger(env, saved)
    httpx.delete(f"{handle.url}/_sandbox/faults")
    run()
    packages = procore.packages(contract)
    assert [p["title"] for p in packages] == [package["title"]]  # reused, not created twice
    [line] = procore.pco_lines(contract, packages[0])
    assert money(line["amount"]) == delta and dec(line["quantity"]) == 7
    assert money(procore.show(contract)["draft_change_orders_amount"]) == delta

    # 2. lines written, then the whole ledger is lost: the re-run finds nothing to send
    delete_ledger(env)
    clear_calls(handle)
    run()
    assert change_order_writes(handle) == []
    assert [p["title"] for p in procore.packages(contract)] == [package["title"]]
    shown = procore.show(contract)
    assert shown["status"] == "Approved"  # a lost ledger does not undo the approval
    assert money(shown["draft_change_orders_amount"]) == delta
    assert procore.sov(contract)[line_no]["quantity"] == old[line_no]["quantity"]
    assert ledger_of(env).states("purchase_order", [po])[po].status == "synced"

    # 3. un-approved by a project manager, then the ledger is lost again: the SOV is not set
    #    to X3's quantity (the change order already carries the +7)
    procore.set_status(contract, "Draft")
    delete_ledger(env)
    clear_calls(handle)
    run()
    assert change_order_writes(handle) == []
    assert procore.sov(contract)[line_no]["quantity"] == old[line_no]["quantity"]
    assert money(procore.show(contract)["draft_change_orders_amount"]) == delta
