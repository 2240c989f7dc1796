"""Suppliers <-> vendors: staging, matching, field ownership and no ping-pong (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from mlc_dagster.defs.suppliers.plan import (
    SupplierRules,
    create_hash,
    match_unlinked,
    norm_name,
    our_supplier_codes,
    pair_hash,
    plan_supplier_sync,
    procore_view,
    supplier_code_for,
    supplier_preview_rows,
    x3_view,
)
from mlc_dagster.defs.suppliers.staging import stage_suppliers
from mlc_dagster.ledger.store import RecordState
from mlc_dagster_tests.x3_records import canonical_supplier


def supplier(code="SUP900", **fields) -> dict:
    record = {"supplier_code": code, "name": "Granite Aggregates Ltd", "short_name": "Granite Ag",
              "active": True, "currency": "GBP", "country": "GB", "city": "Leeds",
              "postcode": "LS1 4AP", "address": "1 Quarry Road", "phone": "+44 113 000",
              "email": "sales@granite.example", "tax_id": "GB123456789",
              "update_stamp": "2026-03-01T10:00:00Z"}
    record.update(fields)
    return record


def vendor(vid=1, **fields) -> dict:
    record = {"id": vid, "name": "Granite Aggregates Ltd", "abbreviated_name": "Granite Ag",
              "address": "1 Quarry Road", "city": "Leeds", "zip": "LS1 4AP", "country_code": "GB",
              "business_phone": "+44 113 000", "email_address": "sales@granite.example",
              "is_active": True, "origin_id": None, "origin_code": None, "tax_id": None}
    record.update(fields)
    return record


def staged(*records):
    return stage_suppliers(list(records))


def plan(suppliers, vendors, states=None, vendor_states=None, rules=SupplierRules()):
    s = staged(*suppliers)
    return plan_supplier_sync(s.suppliers, s.reasons(), vendors, states or {},
                              vendor_states or {}, rules, s.stamps)


def synced_state(code, x3_after, procore_after) -> RecordState:
    return RecordState("supplier", code, "synced", procore_id=1,
                       content_hash=pair_hash(x3_after, procore_after),
                       summary={"x3": x3_after, "procore": procore_after})


# --- staging ---------------------------------------------------------------------------------


def test_seeded_suppliers_stage_fully(seed):
    result = stage_suppliers([canonical_supplier(s) for s in seed.x3_suppliers])
    assert result.quarantine.empty and len(result.suppliers) == 40


@pytest.mark.parametrize("fields, field, words", [
    ({"country": "GBR"}, "country", "not an ISO 3166 two-letter country code"),
    ({"name": ""}, "name", "blank or too long"),
    ({"name": "N" * 36}, "name", "blank or too long"),
    ({"email": "not an email"}, "email", "is not an e-mail address"),
    ({"active": None}, "active", "active flag is missing or not yes/no"),
    ({"active": "maybe"}, "active", "active flag is missing or not yes/no"),
])
def test_malformed_supplier_is_quarantined_and_the_others_carry_on(fields, field, words):
    result = staged(supplier("BAD", **fields), supplier("GOOD"))
    assert list(result.suppliers["supplier_code"]) == ["GOOD"]
    reason = result.reasons()["BAD"]
    assert reason.startswith("supplier BAD: ") and words in reason
    assert field in set(result.quarantine["field"])


def test_unicode_supplier_name_is_kept_as_is():
    result = staged(supplier("UNI", name="Société Générale Bâtiment — Łódź"))
    assert result.quarantine.empty
    assert x3_view(result.suppliers.iloc[0].to_dict())["name"] == "Société Générale Bâtiment — Łódź"


# --- matching ----------------------------------------------------------------------------------


def test_names_normalise_case_accents_punctuation_and_legal_suffix():
    assert norm_name("  GRANITE  Aggregates, Ltd.") == norm_name("granite aggregates")
    assert norm_name("Société Générale") == "societe generale"


def test_match_by_tax_id_or_name_and_postcode_and_ambiguity_is_never_merged():
    s = [supplier("A", tax_id="GB 123-456-789", name="Alpha", postcode="X1"),
         supplier("B", tax_id="", name="Beta Works Ltd", postcode="M1 1AE"),
         supplier("C", tax_id="", name="Gamma", postcode="G1 1XQ")]
    v = [vendor(1, tax_id="GB123456789", name="Totally different", zip=""),
         vendor(2, name="BETA WORKS", zip="m11ae"),
         vendor(3, name="Gamma", zip="G1 1XQ"), vendor(4, name="Gamma Ltd", zip="g1 1xq")]
    links, ambiguous = match_unlinked(s, v)
    assert {c: v["id"] for c, v in links.items()} == {"A": 1, "B": 2}
    assert [(codes, [x["id"] for x in group]) for codes, group in ambiguous] == [(["C"], [3, 4])]


def test_x3_supplier_without_vendor_creates_one_and_pre_existing_lookalike_is_linked():
    result = plan([supplier("NEW", name="Nova Ltd", tax_id="", postcode="B1 1BB"),
                   supplier("OLD")], [vendor(7, email_address="")])
    by_code = {p.code: p for p in result.pairs}
    assert by_code["NEW"].action == "create" and by_code["NEW"].vendor_item["origin_id"] == "NEW"
    assert by_code["NEW"].vendor_item["name"] == "Nova Ltd"
    link = by_code["OLD"]
    assert link.action == "link" and link.vendor_item["id"] == 7
    assert link.vendor_item["origin_id"] == link.vendor_item["origin_code"] == "OLD"
    # first link fills the blank Procore e-mail from X3 instead of wiping either side
    assert link.vendor_item["email_address"] == "sales@granite.example"
    assert result.creates == []  # the look-alike vendor is linked, not copied into X3


def test_ambiguous_match_is_reported_and_neither_side_is_created_or_linked():
    result = plan([supplier("AMB", tax_id="")],
                  [vendor(1), vendor(2, name="Granite Aggregates Limited")])
    assert result.pairs == [] and result.creates == []
    assert len(result.ambiguous) == 1 and "AMB" in result.ambiguous.iloc[0]["x3_suppliers"]
    held = {(c.entity, c.key): c.reason for c in result.holds}
    assert set(held) == {("supplier", "AMB"), ("vendor", "1"), ("vendor", "2")}
    assert all("ambiguous match" in r for r in held.values())


# --- Procore-only vendors ----------------------------------------------------------------------------


def test_procore_only_vendor_becomes_an_x3_supplier_with_a_stable_code():
    result = plan([], [vendor(562949953500238, name="Harbor Crane Services", zip="EC1A 1BB")])
    (create,) = result.creates
    assert create.code == supplier_code_for(562949953500238, "PC") == "PC5JJRMZDKJY"
    assert len(create.code) <= 15
    assert create.record["name"] == "Harbor Crane Services"
    assert create.record["short_name"] == "Granite Ag"  # the vendor's abbreviated name
    assert create.pair.vendor_item == {"id": 562949953500238, "origin_id": create.code,
                                       "origin_code": create.code}


def test_over_long_or_inactive_procore_only_vendor_is_not_created():
    result = plan([], [vendor(1, name="A" * 48), vendor(2, is_active=False)])
    assert result.creates == []
    (hold,) = result.holds
    assert hold.key == "1" and "name is 48 characters, Sage X3 allows 35" in hold.reason


def test_supplier_created_by_an_interrupted_run_is_linked_not_duplicated():
    code = supplier_code_for(1, "PC")
    result = plan([supplier(code, name="Harbor Crane Services", postcode="", tax_id="")],
                  [vendor(1, name="Harbor Crane Services", zip="")])
    assert result.creates == []
    (pair,) = result.pairs
    assert pair.action == "link" and pair.vendor_item["origin_id"] == code


# --- ownership and no ping-pong ---------------------------------------------------------------


def test_x3_owns_identity_fields_and_overwrites_a_procore_edit():
    x3 = x3_view(supplier())
    state = synced_state("SUP900", x3, procore_view(vendor(origin_id="SUP900")))
    renamed = vendor(origin_id="SUP900", name="Granite (renamed in Procore)")
    (pair,) = plan([supplier()], [renamed], {"SUP900": state}).pairs
    assert pair.vendor_item == {"id": 1, "name": "Granite Aggregates Ltd"}
    assert pair.x3_fields == {}


@pytest.mark.parametrize("owner, vendor_item, x3_fields", [
    ("x3", {"id": 1, "business_phone": "+44 113 000"}, {}),
    ("procore", None, {"phone": "+44 999"}),
])
def test_contact_fields_follow_the_configured_owner(owner, vendor_item, x3_fields):
    x3 = x3_view(supplier())
    state = synced_state("SUP900", x3, procore_view(vendor(origin_id="SUP900")))
    edited = vendor(origin_id="SUP900", business_phone="+44 999")
    (pair,) = plan([supplier()], [edited], {"SUP900": state},
                   rules=SupplierRules(contact_owner=owner)).pairs
    assert pair.vendor_item == vendor_item and pair.x3_fields == x3_fields


def test_inactive_flag_travels_both_ways_and_x3_wins_a_tie():
    x3, pc = x3_view(supplier()), procore_view(vendor(origin_id="SUP900"))
    state = {"SUP900": synced_state("SUP900", x3, pc)}
    (pair,) = plan([supplier(active=False)], [vendor(origin_id="SUP900")], state).pairs
    assert pair.vendor_item == {"id": 1, "is_active": False}
    (pair,) = plan([supplier()], [vendor(origin_id="SUP900", is_active=False)], state).pairs
    assert pair.x3_fields == {"active": False} and pair.vendor_item is None
    (pair,) = plan([supplier(active=False)], [vendor(origin_id="SUP900", name="X",
                                                     is_active=True)], state).pairs
    assert pair.vendor_item["is_active"] is False


def test_a_change_we_wrote_does_not_echo_back():
    x3 = x3_view(supplier(active=False))
    pc = procore_view(vendor(origin_id="SUP900", is_active=False))
    state = {"SUP900": synced_state("SUP900", x3, pc)}
    # X3 stamped the supplier again (our write) and Procore shows what we sent: nothing to do
    result = plan([supplier(active=False, update_stamp="2026-03-02T00:00:00Z")],
                  [vendor(origin_id="SUP900", is_active=False)], state)
    assert result.pairs == [] and result.unchanged == ["SUP900"]


def test_procore_value_too_long_for_x3_holds_the_pair():
    x3 = x3_view(supplier())
    state = synced_state("SUP900", x3, procore_view(vendor(origin_id="SUP900")))
    long_mail = vendor(origin_id="SUP900", email_address="a" * 80 + "@x.example")
    result = plan([supplier()], [long_mail], {"SUP900": state},
                  rules=SupplierRules(contact_owner="procore"))
    assert result.pairs == []
    assert "email is 90 characters, Sage X3 allows 80" in result.holds[0].reason


def test_quarantined_supplier_is_held_with_its_reason():
    result = plan([supplier("BAD", country="GBR")], [vendor(origin_id="BAD")])
    assert result.pairs == []
    assert "country" in result.holds[0].reason


def test_unknown_contact_owner_is_refused():
    with pytest.raises(ValueError, match="MLC_VENDOR_CONTACT_OWNER"):
        SupplierRules(contact_owner="nobody")


def test_empty_inputs_plan_nothing():
    result = plan_supplier_sync(pd.DataFrame(columns=["supplier_code", "active"]), {}, [], {}, {},
                                SupplierRules())
    assert (result.pairs, result.creates, result.holds) == ([], [], [])


# --- X3 by import file: exported changes are pending until X3 shows them ------------------------

FILE_RULES = SupplierRules(x3_contact_writable=False)
EXPORTED_AT = "2026-03-01T10:00:00Z"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def file_plan(suppliers, vendors, states=None, vendor_states=None, rules=FILE_RULES, now=NOW):
    s = staged(*suppliers)
    return plan_supplier_sync(s.suppliers, s.reasons(), vendors, states or {},
                              vendor_states or {}, rules, s.stamps, now=now)


def exported_state(code, x3_after, procore_after) -> RecordState:
    """What the import-file asset records: the X3 side as it will be once X3 imports it."""
    return RecordState("supplier", code, "exported", procore_id=1,
                       content_hash=pair_hash(x3_after, procore_after),
                       summary={"x3": x3_after, "procore": procore_after},
                       payload={"file": "YMLCBPSU_1.txt", "at": EXPORTED_AT})


def deactivated_in_procore():
    """Procore deactivated the vendor; ENAFLG=1 went to an import file X3 has not run yet."""
    x3_before = x3_view(supplier(update_stamp="2026-03-01T09:00:00Z"))
    pc = procore_view(vendor(origin_id="SUP900", is_active=False))
    return {"SUP900": exported_state("SUP900", dict(x3_before, is_active=False), pc)}


def test_contact_fields_are_not_written_into_x3_suppliers_by_import_file():
    x3 = x3_view(supplier())
    state = {"SUP900": synced_state("SUP900", x3, procore_view(vendor(origin_id="SUP900")))}
    edited = vendor(origin_id="SUP900", business_phone="+44 999")
    result = file_plan([supplier()], [edited], state,
                       rules=SupplierRules(contact_owner="procore", x3_contact_writable=False))
    (pair,) = result.pairs
    assert pair.x3_fields == {} and pair.vendor_item is None and pair.action == "baseline"


def test_a_pending_export_is_neither_exported_again_nor_taken_for_an_x3_edit():
    # X3 still shows the supplier active (not imported yet, stamp older than the export):
    # nothing goes back to Procore and nothing is exported twice.
    result = file_plan([supplier(update_stamp="2026-03-01T09:00:00Z")],
                       [vendor(origin_id="SUP900", is_active=False)], deactivated_in_procore())
    assert result.pairs == [] and result.confirms == []
    assert result.pending == ["SUP900"] and result.unchanged == []


def test_the_export_is_confirmed_when_x3_shows_it():
    result = file_plan([supplier(active=False, update_stamp="2026-03-01T11:00:00Z")],
                       [vendor(origin_id="SUP900", is_active=False)], deactivated_in_procore())
    (confirm,) = result.confirms
    assert (confirm.key, confirm.status, confirm.action) == ("SUP900", "synced", "confirm")
    assert "after the import of YMLCBPSU_1.txt" in confirm.reason
    assert result.pairs == [] and result.pending == []


def test_procore_changes_while_pending_are_written_and_the_export_still_stands():
    result = file_plan([supplier(update_stamp="2026-03-01T09:00:00Z")],
                       [vendor(origin_id="SUP900", is_active=False, name="Renamed")],
                       deactivated_in_procore())
    (pair,) = result.pairs
    assert pair.vendor_item == {"id": 1, "name": "Granite Aggregates Ltd"}  # X3 owns the name
    assert pair.x3_fields == {} and pair.pending_export["file"] == "YMLCBPSU_1.txt"


def test_x3_changing_the_supplier_after_the_export_without_our_values_wins():
    result = file_plan([supplier(update_stamp="2026-03-01T11:00:00Z", name="New Name")],
                       [vendor(origin_id="SUP900", is_active=False)], deactivated_in_procore())
    (pair,) = result.pairs
    assert pair.vendor_item == {"id": 1, "name": "New Name", "is_active": True}
    assert pair.changes[0].startswith("X3 changed the supplier after YMLCBPSU_1.txt")


def test_an_export_x3_never_shows_is_exported_again_after_the_pending_window():
    later = datetime(2026, 3, 2, 10, 1, tzinfo=UTC)
    result = file_plan([supplier(update_stamp="2026-03-01T09:00:00Z")],
                       [vendor(origin_id="SUP900", is_active=False)], deactivated_in_procore(),
                       now=later)
    (pair,) = result.pairs
    assert pair.x3_fields == {"active": False} and pair.vendor_item is None
    assert pair.changes[0].startswith("exported again: X3 has not shown what YMLCBPSU_1.txt")


def test_a_supplier_already_exported_for_a_procore_only_vendor_is_not_exported_twice():
    first = file_plan([], [vendor(77, name="Harbor Crane")])
    (create,) = first.creates
    state = RecordState("vendor", "77", "exported", content_hash=create_hash(create),
                        summary={"supplier_code": create.code},
                        payload={"file": "YMLCBPS_1.txt", "at": EXPORTED_AT})
    again = file_plan([], [vendor(77, name="Harbor Crane")], vendor_states={"77": state})
    assert again.creates == [] and again.pending == ["vendor 77"]
    renamed = file_plan([], [vendor(77, name="Harbor Cranes")], vendor_states={"77": state})
    assert [c.record["name"] for c in renamed.creates] == ["Harbor Cranes"]


def test_procore_only_vendors_are_held_while_x3_cannot_take_new_suppliers():
    result = file_plan([], [vendor(77)], rules=SupplierRules(x3_create_problem="set DEFAULTS"))
    assert result.creates == []
    (hold,) = result.holds
    assert hold.key == "77" and hold.reason.endswith("cannot become an X3 supplier yet: set "
                                                     "DEFAULTS")


# --- vendors owned by another integration -------------------------------------------------------

FOREIGN = "ACME-ERP:V:88"


def foreign_reason(vid, name, by):
    return (f"Procore vendor {vid} ({name}) matches by {by} but belongs to another integration "
            f"(origin_id {FOREIGN}); the connector does not overwrite or duplicate it: link it "
            "by hand or clear its origin_id in the other system")


@pytest.mark.parametrize("vendor_fields, by", [
    ({"tax_id": "GB 123 456 789", "name": "Granite Holdings", "zip": ""}, "tax id"),
    ({"tax_id": None, "name": "GRANITE AGGREGATES", "zip": "ls14ap"}, "name+postcode"),
    ({"tax_id": "GB123456789", "is_active": False}, "tax id"),  # inactive: still theirs
])
def test_a_supplier_matching_another_integrations_vendor_is_held_not_duplicated(vendor_fields, by):
    theirs = vendor(88, origin_id=FOREIGN, origin_code="88", **vendor_fields)
    result = plan([supplier("SUP040")], [theirs])
    assert result.pairs == [] and result.creates == []  # no second vendor, no write to theirs
    (hold,) = result.holds
    assert (hold.entity, hold.key) == ("supplier", "SUP040")
    assert hold.reason == foreign_reason(88, theirs["name"], by)

    state = RecordState("supplier", "SUP040", "held", reason=hold.reason)
    again = plan([supplier("SUP040")], [theirs], states={"SUP040": state})
    assert again.holds == [] and again.pairs == []  # held once, not on every poll

    cleared = plan([supplier("SUP040")], [dict(theirs, origin_id=None, origin_code=None,
                                               is_active=True)], states={"SUP040": state})
    (link,) = cleared.pairs  # origin_id cleared in the other system: linked on the next run
    assert link.action == "link" and link.vendor_item["id"] == 88


def test_another_integrations_vendor_matching_nothing_is_left_alone():
    theirs = vendor(88, origin_id=FOREIGN, name="Elsewhere Ltd", zip="Z9 9ZZ", tax_id="X1")
    result = plan([supplier("SUP900")], [theirs])
    assert [p.action for p in result.pairs] == ["create"] and result.holds == []
    assert all(p.vendor_item.get("id") != 88 for p in result.pairs)
    assert result.creates == []  # not a Procore-only vendor either: it is someone else's


def test_vendors_carrying_our_codes_are_not_foreign():
    """Quarantined suppliers, suppliers the ledger knows (deleted in X3 since) and suppliers
    created from Procore vendors are ours: their vendors are not another integration's."""
    records = [supplier("SUP001")]
    codes = our_supplier_codes(
        records, {"SUP002": "country"}, {"SUP003": RecordState("supplier", "SUP003", "synced")},
        {"77": RecordState("vendor", "77", "synced", summary={"supplier_code": "PC25"})})
    assert codes == {"SUP001", "SUP002", "SUP003", "PC25"}
    quarantined_twin = vendor(5, origin_id="SUP002", tax_id="GB123456789")
    result = plan([supplier("SUP900"), supplier("SUP002", country="GBR")], [quarantined_twin])
    assert [(p.code, p.action) for p in result.pairs] == [("SUP900", "create")]
    assert {h.key for h in result.holds} == {"SUP002"}  # its quarantine, nothing else


def test_a_supplier_matching_an_unlinked_vendor_and_a_foreign_one_is_ambiguous():
    theirs = vendor(88, origin_id=FOREIGN, name="Granite Aggregates", zip="LS1 4AP")
    result = plan([supplier("SUP900")], [vendor(7), theirs])
    assert result.pairs == [] and result.creates == []
    held = {(h.entity, h.key): h.reason for h in result.holds}
    assert set(held) == {("supplier", "SUP900"), ("vendor", "7")}  # none on theirs
    assert f"origin_id {FOREIGN} of another integration" in held[("supplier", "SUP900")]


# --- preview rows ------------------------------------------------------------------------------------


def test_supplier_preview_rows_name_the_ledger_action_and_field_changes():
    x3 = x3_view(supplier("SUP901"))
    renamed = vendor(3, origin_id="SUP901", name="Granite Old Name")
    state = synced_state("SUP901", x3, procore_view(vendor(3, origin_id="SUP901")))
    result = plan([supplier("SUP900", name="Nova Ltd", tax_id="", postcode="B1 1BB"),
                   supplier("SUP901"), supplier("SUP902", tax_id="GB999")],
                  [renamed, vendor(77, name="Harbor Crane", zip="L3 4AA", tax_id=None),
                   vendor(9, name="X", origin_id=FOREIGN, tax_id="GB999")],
                  states={"SUP901": state})
    rows = {(r["flow"], r["key"]): r for r in supplier_preview_rows(result, x3_by_file=False)}
    code = supplier_code_for(77, "PC")
    assert {k: r["action"] for k, r in rows.items()} == {
        ("supplier", "SUP900"): "create", ("supplier", "SUP901"): "update",
        ("supplier", "SUP902"): "hold", ("vendor", "77"): "create", ("supplier", code): "link"}
    assert "Procore name: 'Granite Old Name' -> 'Granite Aggregates Ltd'" in \
        rows[("supplier", "SUP901")]["detail"]
    assert all(r["amount"] is None and r["project_id"] is None for r in rows.values())
    by_file = {(r["flow"], r["key"]): r["action"] for r in supplier_preview_rows(result)}
    assert by_file[("vendor", "77")] == "export" and ("supplier", code) not in by_file


@pytest.mark.parametrize("by_file", [False, True])
def test_supplier_preview_rows_are_the_events_the_writer_then_records(tmp_path, by_file):
    from mlc_dagster.defs.suppliers.exports import SupplierExports
    from mlc_dagster.defs.suppliers.writer import SupplierWriter
    from mlc_dagster.ledger.store import Change, Ledger
    from mlc_dagster.x3_import.files import write_batches
    from mlc_dagster.x3_import.templates import supplier_template, supplier_update_template
    from mlc_dagster_tests.suppliers.test_writer import DEFAULTS, FakeProcore, FakeX3

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    try:
        x3_901 = x3_view(supplier("SUP901"))
        ledger.apply([Change(entity="supplier", key="SUP901", status="synced", action="link",
                             procore_id=3, content_hash=pair_hash(x3_901, procore_view(
                                 vendor(3, origin_id="SUP901"))),
                             summary={"x3": x3_901,
                                      "procore": procore_view(vendor(3, origin_id="SUP901"))})],
                     "run-0")
        suppliers = [supplier("SUP900", name="Nova Ltd", tax_id="", postcode="B1 1BB"),
                     supplier("SUP901"), supplier("SUP902", tax_id="GB999"),
                     supplier("SUP903", name="Keystone", tax_id="", postcode="M1 1AE"),
                     supplier("SUP904", country="GBR")]
        vendors = [vendor(3, origin_id="SUP901", is_active=False),  # deactivated in Procore
                   vendor(77, name="Harbor Crane", zip="L3 4AA", tax_id=None),
                   vendor(9, name="X", origin_id=FOREIGN, tax_id="GB999"),
                   vendor(12, name="KEYSTONE", zip="m1 1ae")]
        rules = SupplierRules(x3_contact_writable=not by_file)
        s = staged(*suppliers)
        result = plan_supplier_sync(s.suppliers, s.reasons(), vendors, ledger.states("supplier"),
                                    ledger.states("vendor"), rules, s.stamps)
        rows = supplier_preview_rows(result, x3_by_file=by_file)

        exports = (SupplierExports(supplier_template(), supplier_update_template(), DEFAULTS)
                   if by_file else None)
        SupplierWriter(FakeProcore(), FakeX3(), ledger, "live", exports=exports).run(result)
        if by_file:
            write_batches(exports.batches(), tmp_path, "live", ledger)
        events = {(e["entity"], e["key"], e["action"]) for e in ledger.events_for_run("live")}
        assert {(r["flow"], r["key"], r["action"]) for r in rows} == events
        assert len(rows) == len(events) >= 7  # create, update|export, holds, links
    finally:
        ledger.dispose()
