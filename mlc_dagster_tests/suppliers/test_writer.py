"""SupplierWriter against fake X3 and Procore clients: order, crash safety, per-item errors."""

from __future__ import annotations

import pytest

from mlc_dagster.defs.suppliers.exports import SupplierExports
from mlc_dagster.defs.suppliers.plan import (
    SupplierRules,
    pair_hash,
    plan_supplier_sync,
    procore_view,
    supplier_code_for,
    x3_view,
)
from mlc_dagster.defs.suppliers.staging import stage_suppliers
from mlc_dagster.defs.suppliers.writer import SupplierWriter
from mlc_dagster.ledger.store import Change, Ledger
from mlc_dagster.resources.procore_client import SyncResult
from mlc_dagster.resources.sage_x3_client import SageX3Error
from mlc_dagster.x3_import.files import write_batches
from mlc_dagster.x3_import.templates import supplier_template, supplier_update_template
from mlc_dagster_tests.suppliers.test_plan import supplier, vendor


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


# --- X3 by import file ---------------------------------------------------------------------------

DEFAULTS = {"BSGCOD": "SUP", "LAN": "ENG", "TSSCOD(0)": "CON", "ACCCOD": "STD", "VACBPR": "NOR",
            "PTE": "30NET", "BPAADD": "MAIN"}


def file_run(ledger, tmp_path, suppliers, vendors, procore=None, rules=None):
    """One run in import-file mode, including the file asset's write; returns outcomes,
    the fake X3 (which must see no call), Procore, and the files written."""
    staged = stage_suppliers(suppliers)
    plan = plan_supplier_sync(staged.suppliers, staged.reasons(), vendors,
                              ledger.states("supplier"), ledger.states("vendor"),
                              rules or SupplierRules(x3_contact_writable=False), staged.stamps)
    x3, procore = FakeX3(), procore or FakeProcore()
    exports = SupplierExports(supplier_template(), supplier_update_template(), DEFAULTS)
    outcomes = SupplierWriter(procore, x3, ledger, "run-1", exports=exports).run(plan)
    written = write_batches(exports.batches(), tmp_path, f"run{len(list(tmp_path.iterdir()))}",
                            ledger)
    return outcomes, x3, procore, written


def test_a_procore_only_vendor_is_exported_once_and_linked_back_only_when_x3_shows_it(
        ledger, tmp_path):
    harbor = vendor(77, name="Harbor Crane Services", zip="L3 4AA", city="Liverpool")
    code = supplier_code_for(77, "PC")
    _out, x3, procore, (file,) = file_run(ledger, tmp_path, [], [harbor])
    assert x3.calls == [] and procore.batches == []  # nothing to X3's API, no link-back yet
    assert open(file.path, "rb").read().decode().splitlines()[0] == (
        f"B;{code};Harbor Crane Services;Granite Ag;SUP;2;ENG;CON;STD;NOR;30NET;MAIN")
    state = ledger.states("vendor")["77"]
    assert state.status == "exported" and state.summary == {"supplier_code": code}
    assert ledger.events("vendor", "77")[-1]["action"] == "export"

    _out, _x3, procore, written = file_run(ledger, tmp_path, [], [harbor])  # X3 not imported
    assert written == [] and procore.batches == []

    imported = supplier(code, name="Harbor Crane Services", postcode="L3 4AA", tax_id="",
                        city="Liverpool")
    _out, _x3, procore, written = file_run(ledger, tmp_path, [imported], [harbor])
    assert written == []
    assert procore.batches == [[{"id": 77, "origin_id": code, "origin_code": code}]]
    assert ledger.states("vendor")["77"].status == "synced"
    assert ledger.states("supplier")[code].status == "synced"


def test_an_x3_side_change_is_exported_while_procore_is_written_now(ledger, tmp_path):
    x3 = x3_view(supplier())
    ledger.apply([Change(entity="supplier", key="SUP900", status="synced", action="link",
                         procore_id=1, content_hash=pair_hash(x3, procore_view(vendor(
                             origin_id="SUP900"))),
                         summary={"x3": x3, "procore": procore_view(vendor(origin_id="SUP900"))})],
                 "run-0")
    off = vendor(origin_id="SUP900", is_active=False)
    _out, x3_client, procore, (file,) = file_run(ledger, tmp_path, [supplier()], [off])
    assert x3_client.calls == [] and procore.batches == []
    assert open(file.path, "rb").read() == b"B;SUP900;1\r\n"
    state = ledger.states("supplier")["SUP900"]
    assert state.status == "exported" and state.payload["template"] == "YMLCBPSU"

    # Until X3 imports it: nothing is written anywhere, and Procore is not re-activated.
    _out, _x3, procore, written = file_run(ledger, tmp_path, [supplier()], [off])
    assert written == [] and procore.batches == []
    assert ledger.states("supplier")["SUP900"].status == "exported"

    _out, _x3, procore, written = file_run(
        ledger, tmp_path, [supplier(active=False, update_stamp="2099-01-01T00:00:00Z")], [off])
    assert written == [] and procore.batches == []
    assert ledger.states("supplier")["SUP900"].status == "synced"
    assert ledger.events("supplier", "SUP900")[-1]["action"] == "confirm"
