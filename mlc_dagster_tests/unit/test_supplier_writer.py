"""SupplierWriter against fake X3 and Procore clients: order, crash safety, per-item errors."""

from __future__ import annotations

import pytest

from mlc_dagster.ledger.store import Change, Ledger
from mlc_dagster.resources.procore_client import SyncResult
from mlc_dagster.resources.sage_x3_client import SageX3Error
from mlc_dagster.suppliers.plan import SupplierRules, plan_supplier_sync, supplier_code_for
from mlc_dagster.suppliers.staging import stage_suppliers
from mlc_dagster.suppliers.writer import SupplierWriter

from .test_supplier_plan import supplier, vendor


class FakeX3:
    def __init__(self, exists=()):
        self.exists = set(exists)
        self.calls = []

    def create_supplier(self, record):
        self.calls.append(("create", record["supplier_code"]))
        if record["supplier_code"] in self.exists:
            raise SageX3Error(400, "POST", "/BPSUPPLIER", "Record already exists (BPSUPPLIER X)")
        return record["supplier_code"]

    def update_supplier(self, code, fields):
        self.calls.append(("update", code, fields))


class FakeProcore:
    def __init__(self, reject=()):
        self.reject = set(reject)
        self.batches = []

    def sync_vendors(self, items):
        self.batches.append(items)
        result = SyncResult(calls=1)
        for item in items:
            if item["origin_id"] in self.reject:
                result.errors.append({**item, "errors": {"country_code": ["is invalid"]}})
            else:
                result.entities.append({"id": item.get("id", 4242), "is_active": True, **item})
        return result


@pytest.fixture
def ledger(tmp_path):
    store = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield store
    store.dispose()


def run(ledger, suppliers, vendors, x3=None, procore=None):
    staged = stage_suppliers(suppliers)
    plan = plan_supplier_sync(staged.suppliers, staged.reasons(), vendors,
                              ledger.states("supplier"), ledger.states("vendor"), SupplierRules())
    x3, procore = x3 or FakeX3(), procore or FakeProcore()
    return SupplierWriter(procore, x3, ledger, "run-1").run(plan), x3, procore


def test_x3_first_then_one_vendor_batch_with_creates_links_and_link_backs(ledger):
    outcomes, x3, procore = run(ledger, [supplier("NEW", name="Nova", tax_id="", postcode="")],
                                [vendor(77, name="Harbor Crane Services", zip="")])
    code = supplier_code_for(77, "PC")
    assert x3.calls == [("create", code)]
    (batch,) = procore.batches  # one vendors/sync call for everything
    assert {i["origin_id"] for i in batch} == {"NEW", code}
    states = ledger.states("supplier")
    assert states["NEW"].status == states[code].status == "synced"
    assert ledger.states("vendor")["77"].summary == {"supplier_code": code}
    assert {(o.entity, o.action, o.status) for o in outcomes} == {
        ("supplier", "create", "synced"), ("supplier", "link", "synced"),
        ("vendor", "create", "synced")}


def test_supplier_already_created_by_a_crashed_run_is_only_linked(ledger):
    code = supplier_code_for(77, "PC")
    outcomes, x3, procore = run(ledger, [], [vendor(77, name="Harbor")], x3=FakeX3(exists={code}))
    assert ledger.states("vendor")["77"].status == "synced"
    assert procore.batches[0] == [{"id": 77, "origin_id": code, "origin_code": code}]


def test_a_vendor_procore_rejects_fails_alone_with_procores_reason(ledger):
    outcomes, _x3, _procore = run(ledger, [supplier("A", tax_id="", postcode=""),
                                           supplier("B", tax_id="", postcode="", name="Other")],
                                  [], procore=FakeProcore(reject={"B"}))
    states = ledger.states("supplier")
    assert states["A"].status == "synced"
    assert states["B"].status == "failed"
    assert "Procore rejected the vendor: country_code: is invalid" in states["B"].reason


def test_resolving_an_ambiguity_links_the_vendor_and_clears_its_hold(ledger):
    ledger.apply([Change(entity="vendor", key="7", status="held", action="hold",
                         reason="ambiguous match")], "run-0")
    run(ledger, [supplier("SUP900")], [vendor(7)])  # the duplicate vendor is gone now
    assert ledger.states("vendor")["7"].status == "synced"
    assert ledger.states("supplier")["SUP900"].procore_id == 7


def test_x3_update_failure_keeps_the_pair_out_of_the_vendor_batch(ledger):
    class BrokenX3(FakeX3):
        def update_supplier(self, code, fields):
            raise SageX3Error(400, "PUT", "/BPSUPPLIER", "TEL : Too long")

    staged = stage_suppliers([supplier("SUP900")])
    # Procore owns the phone and changed it; the pair's only write would go to X3.
    plan = plan_supplier_sync(staged.suppliers, {}, [vendor(1, origin_id="SUP900",
                                                            business_phone="+1 555")],
                              {}, {}, SupplierRules(contact_owner="procore"))
    procore = FakeProcore()
    SupplierWriter(procore, BrokenX3(), ledger, "r").run(plan)
    state = ledger.states("supplier")["SUP900"]
    assert state.status == "failed" and "TEL : Too long" in state.reason
    assert procore.batches == []
