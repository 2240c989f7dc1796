"""Desired Procore commitments built from staged X3 POs, the GL mapping and Procore frames."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from decimal import Decimal

import pandas as pd
import pytest

from mlc_dagster.common.payload import (
    DESCRIPTION_LIMIT,
    clean_text,
    content_hash,
    contract_origin_id,
    line_origin_id,
)
from mlc_dagster.defs.purchase_orders.desired import (
    CommitmentRules,
    DesiredCommitments,
    build_desired_commitments,
)
from mlc_dagster.defs.purchase_orders.gl_map import parse_gl_mapping
from mlc_dagster.defs.purchase_orders.staging import stage_purchase_orders
from mlc_dagster_tests.records import simple_po
from mlc_sandbox.seed import GL_ACCOUNTS, UNMAPPED_GL_ACCOUNTS


def build(records, mapping, frames, rules=None) -> DesiredCommitments:
    return build_desired_commitments(stage_purchase_orders(records), mapping, *frames.args(),
                                     rules)


def by_po(desired: DesiredCommitments) -> dict:
    return {c.po_number: c for c in desired.commitments}


def project_ids(seed) -> dict[str, int]:
    return {p["project_number"]: p["id"] for p in seed.projects}


def pos_with_supplier(seed, codes) -> set[str]:
    return {po["POHNUM"] for po in seed.x3_purchase_orders if po["BPSNUM"] in codes}


# --- the seeded universe ---------------------------------------------------------------------

def test_every_po_is_either_desired_or_held(seed, seed_desired):
    desired = {c.po_number for c in seed_desired.commitments}
    held = set(seed_desired.held_reasons())
    assert not desired & held
    assert desired | held == {po["POHNUM"] for po in seed.x3_purchase_orders}
    assert len(desired) > 250  # the seed is mostly clean
    assert list(seed_desired.holds.columns) == ["po_number", "reason", "x3_stamp"]


def test_unmapped_gl_accounts_hold_their_pos_naming_line_and_account(seed, seed_desired):
    assert set(UNMAPPED_GL_ACCOUNTS) == {"619900", "621000", "628800"}
    expected = defaultdict(list)
    for po in seed.x3_purchase_orders:
        for line in po["lines"]:
            if line["ACC"] in UNMAPPED_GL_ACCOUNTS:
                expected[po["POHNUM"]].append(
                    f"line {line['POPLIN']}: GL account {line['ACC']} has no cost code mapping")
    assert expected, "the seed should use unmapped accounts"
    held = seed_desired.held_reasons()
    for po, reasons in expected.items():
        for reason in reasons:
            assert reason in held[po].split("; ")
    pairs = set(zip(seed_desired.unmapped["gl_account"], seed_desired.unmapped["po_number"],
                    strict=True))
    assert pairs == {(line.split("GL account ")[1].split(" ")[0], po)
                     for po, reasons in expected.items() for line in reasons}
    assert set(seed_desired.unmapped["gl_account"]) == set(UNMAPPED_GL_ACCOUNTS)


def test_suppliers_without_vendor_hold_their_pos(seed, seed_desired):
    vendorless = {"SUP039", "SUP040"}
    assert not vendorless & {v["origin_id"] for v in seed.vendors}
    pos = pos_with_supplier(seed, vendorless)
    assert pos, "the seed should have POs from X3-only suppliers"
    held = seed_desired.held_reasons()
    for po in pos:
        supplier = next(p["BPSNUM"] for p in seed.x3_purchase_orders if p["POHNUM"] == po)
        assert (f"supplier {supplier} is not an active Procore vendor "
                f"(no vendor with origin_id {supplier})") in held[po]


def test_seed_holds_are_exactly_the_designed_ones(seed, seed_desired):
    designed = pos_with_supplier(seed, {"SUP039", "SUP040"}) | {
        po["POHNUM"] for po in seed.x3_purchase_orders
        if any(line["ACC"] in UNMAPPED_GL_ACCOUNTS for line in po["lines"])}
    assert set(seed_desired.held_reasons()) == designed


def test_hold_stamps_are_the_x3_update_stamps(seed, seed_desired):
    stamps = {po["POHNUM"]: po["UPDDATTIM"] for po in seed.x3_purchase_orders}
    for po, stamp in zip(seed_desired.holds["po_number"], seed_desired.holds["x3_stamp"],
                         strict=True):
        assert stamp == stamps[po]


def test_inactive_vendor_holds_its_pos(seed, seed_records, seed_mapping, seed_frames):
    vendors = seed_frames.vendors
    vendors.loc[vendors["origin_id"] == "SUP001", "is_active"] = False
    desired = build(seed_records, seed_mapping, seed_frames)
    held = desired.held_reasons()
    pos = pos_with_supplier(seed, {"SUP001"})
    assert pos
    for po in pos:
        assert "supplier SUP001 is not an active Procore vendor" in held[po]


def test_unknown_project_holds_the_po(seed_records, seed_mapping, seed_frames):
    victim = seed_records[5]
    victim["project_code"] = "P9999"
    desired = build(seed_records, seed_mapping, seed_frames)
    assert desired.held_reasons()[victim["po_number"]] == (
        "project P9999 has no Procore project (match rule: project_number)")


def test_project_table_rule(seed, seed_mapping, seed_frames):
    ids = project_ids(seed)
    records = [simple_po("PO1", project_code="LEGACY-7"), simple_po("PO2", project_code="P1001")]
    rules = CommitmentRules(project_rule="table", project_table={"LEGACY-7": str(ids["P1002"])})
    desired = build(records, seed_mapping, seed_frames, rules)
    assert by_po(desired)["PO1"].project_id == ids["P1002"]
    assert desired.held_reasons()["PO2"] == (
        "project P1001 has no Procore project (match rule: table)")


def test_cost_code_missing_in_project_holds_only_that_projects_pos(seed, seed_records,
                                                                   seed_mapping, seed_frames):
    ids = project_ids(seed)
    codes = seed_frames.cost_codes
    seed_frames.cost_codes = codes[~((codes["project_id"] == ids["P1001"])
                                     & (codes["code"] == "01-100"))]
    desired = build(seed_records, seed_mapping, seed_frames)
    held = desired.held_reasons()
    gl_to_code = {acc: code for acc, _d, code, _t in GL_ACCOUNTS}
    affected = set()
    for po in seed_records:
        for line in po["lines"]:
            if gl_to_code.get(line["gl_account"]) == "01-100":
                if po["project_code"] == "P1001":
                    affected.add(po["po_number"])
                    assert (f"line {line['line_number']}: cost code 01-100 "
                            f"(GL {line['gl_account']}) does not exist in Procore project P1001"
                            ) in held[po["po_number"]]
    assert affected
    held_before = set(build(seed_records, seed_mapping,
                            _frames_like(seed_frames, codes)).held_reasons())
    assert set(held) - held_before == affected - held_before  # no other project is touched


def _frames_like(frames, cost_codes):
    copy = frames.copy()
    copy.cost_codes = cost_codes
    return copy


def test_unknown_cost_type_holds_the_po(seed_records, seed_mapping, seed_frames):
    types = seed_frames.line_item_types
    seed_frames.line_item_types = types[types["code"] != "O"]
    desired = build(seed_records, seed_mapping, seed_frames)
    held = desired.held_reasons()
    victims = {po["po_number"] for po in seed_records
               if any(line["gl_account"] == "601100" for line in po["lines"])}
    assert victims
    for po in seed_records:
        for line in po["lines"]:
            if line["gl_account"] == "601100":
                assert f"line {line['line_number']}: cost type O does not exist in Procore" in \
                    held[po["po_number"]]


def test_quarantined_po_is_held_with_its_first_quarantine_reason(seed_records, seed_mapping,
                                                                 seed_frames):
    victim = seed_records[2]
    victim["lines"][0]["quantity"] = "-3"
    victim["currency"] = "pounds"
    desired = build(seed_records, seed_mapping, seed_frames)
    reason = desired.held_reasons()[victim["po_number"]]
    assert reason.startswith(f"PO {victim['po_number']}")
    assert "; " not in reason  # one reason per quarantined PO
    row = desired.holds[desired.holds["po_number"] == victim["po_number"]].iloc[0]
    assert pd.isna(row["x3_stamp"])  # not staged, so no trusted stamp
    assert victim["po_number"] not in by_po(desired)


def test_all_reasons_of_a_po_are_joined_once(seed_mapping, seed_frames):
    record = simple_po("PO1", supplier_code="SUP040", lines=3)
    for line in record["lines"]:
        line["gl_account"] = "619900"
    desired = build([record], seed_mapping, seed_frames)
    assert desired.held_reasons() == {"PO1": "; ".join([
        "supplier SUP040 is not an active Procore vendor (no vendor with origin_id SUP040)",
        "line 1000: GL account 619900 has no cost code mapping",
        "line 2000: GL account 619900 has no cost code mapping",
        "line 3000: GL account 619900 has no cost code mapping",
    ])}
    assert len(desired.unmapped) == 1  # one (gl_account, po) pair


# --- payloads ---------------------------------------------------------------------------------

def test_totals_per_cost_code_equal_x3_line_amounts_to_the_cent(seed, seed_desired, seed_frames):
    gl_to_code = {acc: code for acc, _d, code, _t in GL_ACCOUNTS}
    ids = project_ids(seed)
    code_ids = {(int(p), c): int(i) for p, c, i in zip(
        seed_frames.cost_codes["project_id"], seed_frames.cost_codes["code"],
        seed_frames.cost_codes["id"], strict=True)}
    desired_pos = {c.po_number for c in seed_desired.commitments}
    expected: Counter = Counter()
    for po in seed.x3_purchase_orders:
        if po["POHNUM"] in desired_pos:
            for line in po["lines"]:
                key = (ids[po["PJTH"]], code_ids[(ids[po["PJTH"]], gl_to_code[line["ACC"]])])
                expected[key] += Decimal(line["LINAMT"])
    actual: Counter = Counter()
    for c in seed_desired.commitments:
        for line in c.lines:
            actual[(c.project_id, line["cost_code_id"])] += Decimal(line["amount"])
    assert actual == expected
    assert sum(actual.values()) > Decimal("1000000")


def test_po_totals_equal_x3_totord(seed, seed_desired):
    totord = {po["POHNUM"]: Decimal(po["TOTORD"]) for po in seed.x3_purchase_orders}
    for c in seed_desired.commitments:
        assert sum(Decimal(line["amount"]) for line in c.lines) == totord[c.po_number]


def test_line_payload_matches_x3_line(seed, seed_desired):
    po = next(p for p in seed.x3_purchase_orders if p["POHNUM"] == "PO26000001")
    commitment = by_po(seed_desired)["PO26000001"]
    assert len(commitment.lines) == len(po["lines"])
    for x3, line in zip(po["lines"], commitment.lines, strict=True):
        assert line["origin_id"] == f"X3:PO:PO26000001:{x3['POPLIN']}"
        assert Decimal(line["quantity"]) == Decimal(x3["QTYUOM"])
        assert Decimal(line["unit_cost"]) == Decimal(x3["NETPRI"])
        assert line["amount"] == x3["LINAMT"]  # always two decimals
        assert line["uom"] == x3["UOM"]
        assert line["description"] == x3["ITMDES"]
        assert line["quantity"] == x3["QTYUOM"]  # no float noise such as '53.0'


def test_header_payload(seed, seed_desired):
    po = seed.x3_purchase_orders[0]
    c = by_po(seed_desired)[po["POHNUM"]]
    vendor = next(v for v in seed.vendors if v["origin_id"] == po["BPSNUM"])
    assert c.project_id == project_ids(seed)[po["PJTH"]]
    assert c.project_id > 2 ** 32 and isinstance(c.project_id, int)
    assert c.header == {
        "origin_id": f"X3:PO:{po['POHNUM']}", "origin_code": po["POHNUM"],
        "number": po["POHNUM"], "title": po["ORDREF"], "vendor_id": vendor["id"],
        "accounting_method": "unit", "contract_date": po["ORDDAT"],
        "origin_data": json.dumps({"revision": 0, "site": po["POHFCY"]}),
    }
    assert c.x3_stamp == po["UPDDATTIM"] and c.revision == 0 and c.project_code == po["PJTH"]


def test_ids_above_2_pow_32_survive_exactly(seed, seed_desired):
    cost_code_ids = {cc["id"] for codes in seed.project_cost_codes.values() for cc in codes}
    type_ids = {t["id"] for t in seed.line_item_types}
    for c in seed_desired.commitments:
        assert c.header["vendor_id"] in {v["id"] for v in seed.vendors}
        for line in c.lines:
            assert type(line["cost_code_id"]) is int and line["cost_code_id"] in cost_code_ids
            assert type(line["line_item_type_id"]) is int and line["line_item_type_id"] in type_ids


def test_accounting_method_comes_from_rules(seed_mapping, seed_frames):
    desired = build([simple_po("PO1")], seed_mapping, seed_frames,
                    CommitmentRules(accounting_method="amount"))
    assert desired.commitments[0].header["accounting_method"] == "amount"


def test_cost_type_blank_means_no_line_item_type(seed_frames):
    mapping = parse_gl_mapping("gl_account,cost_code\n601100,01-100\n")
    desired = build([simple_po("PO1")], mapping, seed_frames)
    assert desired.holds.empty
    assert all("line_item_type_id" not in line for line in desired.commitments[0].lines)


def test_project_override_picks_the_project_cost_code(seed, seed_frames):
    mapping = parse_gl_mapping("gl_account,cost_code,cost_type,project\n601100,01-100,O,\n"
                               "601100,09-900,L,P1001\n")
    desired = by_po(build([simple_po("A", project_code="P1001"),
                           simple_po("B", project_code="P1002")], mapping, seed_frames))
    codes = seed_frames.cost_codes
    ids = project_ids(seed)

    def code_id(project, code):
        row = codes[(codes["project_id"] == ids[project]) & (codes["code"] == code)]
        return int(row["id"].iloc[0])

    types = dict(zip(seed_frames.line_item_types["code"], seed_frames.line_item_types["id"],
                     strict=True))
    assert {line["cost_code_id"] for line in desired["A"].lines} == {code_id("P1001", "09-900")}
    assert {line["line_item_type_id"] for line in desired["A"].lines} == {types["L"]}
    assert {line["cost_code_id"] for line in desired["B"].lines} == {code_id("P1002", "01-100")}
    assert {line["line_item_type_id"] for line in desired["B"].lines} == {types["O"]}


def test_override_only_account_is_unmapped_elsewhere(seed_frames):
    mapping = parse_gl_mapping("gl_account,cost_code,cost_type,project\n601100,09-900,L,P1001\n")
    desired = build([simple_po("A", project_code="P1001"), simple_po("B", project_code="P1002")],
                    mapping, seed_frames)
    assert [c.po_number for c in desired.commitments] == ["A"]
    assert "GL account 601100 has no cost code mapping" in desired.held_reasons()["B"]


def test_origin_ids_are_unique(seed_desired):
    headers = [c.header["origin_id"] for c in seed_desired.commitments]
    lines = [line["origin_id"] for c in seed_desired.commitments for line in c.lines]
    assert len(set(headers)) == len(headers)
    assert len(set(lines)) == len(lines)
    for c in seed_desired.commitments:
        assert c.header["origin_id"] == contract_origin_id(c.po_number)
        assert all(line["origin_id"].startswith(c.header["origin_id"] + ":") for line in c.lines)
    assert line_origin_id("PO1", 1000) == "X3:PO:PO1:1000"


def test_lines_are_sorted_by_line_number(seed_mapping, seed_frames):
    record = simple_po("PO1", lines=3)
    record["lines"].reverse()
    record["lines"][0]["line_number"] = 10  # 10 < 1000 < 2000
    desired = build([record], seed_mapping, seed_frames)
    assert [line["origin_id"] for line in desired.commitments[0].lines] == [
        "X3:PO:PO1:10", "X3:PO:PO1:1000", "X3:PO:PO1:2000"]


# --- closing ----------------------------------------------------------------------------------

def test_closed_header_closes_the_commitment(seed, seed_desired):
    closed = {po["POHNUM"] for po in seed.x3_purchase_orders if po["CLEFLG"] == 2}
    assert {c.po_number for c in seed_desired.commitments if c.closed} == \
        closed & {c.po_number for c in seed_desired.commitments}


@pytest.mark.parametrize("line_flags, expected", [
    ((True, True), True), ((True, False), False), ((False, False), False)])
def test_all_lines_closed_closes_the_commitment(seed_mapping, seed_frames, line_flags, expected):
    record = simple_po("PO1", lines=2)
    for line, flag in zip(record["lines"], line_flags, strict=True):
        line["closed"] = flag
    assert build([record], seed_mapping, seed_frames).commitments[0].closed is expected


# --- hashes -----------------------------------------------------------------------------------

def test_hashes_are_stable_across_runs_and_input_order(seed_records, seed_mapping, seed_frames,
                                                       seed_desired):
    first = {c.po_number: (c.hash, c.header_hash, c.line_hashes) for c in seed_desired.commitments}
    shuffled = list(seed_records)
    random.Random(7).shuffle(shuffled)
    for record in shuffled:
        random.Random(record["po_number"]).shuffle(record["lines"])
    second = {c.po_number: (c.hash, c.header_hash, c.line_hashes)
              for c in build(shuffled, seed_mapping, seed_frames.copy()).commitments}
    assert first == second


def test_hash_is_a_sha256_of_sorted_json():
    assert content_hash({"b": 1, "a": [1, 2]}) == content_hash({"a": [1, 2], "b": 1})
    assert len(content_hash({})) == 64


def test_quantity_change_changes_only_that_line_and_po_hash(seed_records, seed_mapping,
                                                            seed_frames, seed_desired):
    before = by_po(seed_desired)
    victim = next(r for r in seed_records if r["po_number"] in before and len(r["lines"]) > 2)
    line = victim["lines"][1]
    qty = Decimal(line["quantity"]) + 1
    line["quantity"] = str(qty)
    line["amount"] = str((qty * Decimal(line["unit_price"])).quantize(Decimal("0.01")))
    after = by_po(build(seed_records, seed_mapping, seed_frames))
    po = victim["po_number"]
    assert after[po].hash != before[po].hash
    assert after[po].header_hash == before[po].header_hash
    changed = {o for o, h in after[po].line_hashes.items() if before[po].line_hashes[o] != h}
    assert changed == {line_origin_id(po, line["line_number"])}
    assert all(after[p].hash == before[p].hash for p in after if p != po)


@pytest.mark.parametrize("change", ["revision", "closed", "reference", "order_date", "uom",
                                    "description", "gl_account"])
def test_hash_changes_with_anything_sent_to_procore(seed_mapping, seed_frames, change):
    base = build([simple_po("PO1")], seed_mapping, seed_frames).commitments[0]
    record = simple_po("PO1")
    if change == "revision":
        record["revision"] = 1
    elif change == "closed":
        record["closed"] = True
    elif change == "reference":
        record["reference"] = "Renamed"
    elif change == "order_date":
        record["order_date"] = "2026-02-02"
    elif change == "uom":
        record["lines"][0]["uom"] = "M"
    elif change == "description":
        record["lines"][0]["description"] = "Other"
    else:
        record["lines"][0]["gl_account"] = "602100"  # another cost code
    assert build([record], seed_mapping, seed_frames).commitments[0].hash != base.hash


def test_hash_ignores_the_x3_update_stamp(seed_mapping, seed_frames):
    a = build([simple_po("PO1")], seed_mapping, seed_frames).commitments[0]
    b = build([simple_po("PO1", update_stamp="2027-01-01T00:00:00Z")], seed_mapping,
              seed_frames).commitments[0]
    assert a.hash == b.hash and a.x3_stamp != b.x3_stamp


# --- free text ----------------------------------------------------------------------------------

def test_control_characters_are_stripped_and_descriptions_truncated(seed_mapping, seed_frames):
    record = simple_po("PO1", lines=3, reference="Ref\x00 with \x1bcontrols " + "r" * 300)
    record["lines"][0]["description"] = "Beton\x00C30\x07/37\x7f \u00e9t\u00e9 🚧"
    record["lines"][1]["description"] = "y" * 1000
    record["lines"][2]["description"] = ""  # falls back to the item code
    desired = build([record], seed_mapping, seed_frames)
    assert desired.holds.empty
    c = desired.commitments[0]
    assert c.lines[0]["description"] == "Beton C30 /37  \u00e9t\u00e9 🚧"
    assert len(c.lines[1]["description"]) == DESCRIPTION_LIMIT == 255
    assert c.lines[1]["description"] == "y" * 254 + "…"
    assert c.lines[2]["description"] == "ITEM-3"
    assert len(c.header["title"]) == 200 and c.header["title"].endswith("…")
    assert not any(ch in c.header["title"] for ch in "\x00\x1b")


@pytest.mark.parametrize("text, expected", [
    ("plain", "plain"),
    ("  padded\x00 ", "padded"),
    ("a\x01b\x08c\x0bd\x0ce\x0ef\x1fg\x7fh", "a b c d e f g h"),
    ("keeps\ttab\nand newline", "keeps\ttab\nand newline"),
    ("", ""),
    (None, ""),
    ("x" * 255, "x" * 255),
    ("x" * 256, "x" * 254 + "…"),
])
def test_clean_text(text, expected):
    assert clean_text(text) == expected


def test_empty_inputs_give_empty_results(seed_mapping, seed_frames):
    desired = build([], seed_mapping, seed_frames)
    assert desired.commitments == [] and desired.holds.empty and desired.unmapped.empty
    assert desired.held_reasons() == {}


# --- known bugs ------------------------------------------------------------------------------------

def test_duplicate_procore_cost_code_does_not_duplicate_lines(seed_mapping, seed_frames):
    codes = seed_frames.cost_codes
    first = codes[(codes["code"] == "01-100")].iloc[:1].assign(id=codes["id"].max() + 1)
    seed_frames.cost_codes = pd.concat([codes, first], ignore_index=True)
    desired = build([simple_po("PO1", project_code="P1001")], seed_mapping, seed_frames)
    origin_ids = [line["origin_id"] for c in desired.commitments for line in c.lines]
    assert len(origin_ids) == len(set(origin_ids)) == 2


# --- Procore reference frames (defs/reference/frames.py) --------------------------------------------

BIG_PROJECT = 562949953500001


def test_frame_keeps_known_columns_in_order_and_fills_missing():
    from mlc_dagster.defs.reference.frames import VENDOR_COLUMNS, frame

    df = frame([{"name": "Atlas", "id": 2 ** 40 + 1, "extra": "dropped", "is_active": False}],
               VENDOR_COLUMNS, origin_code="n/a")
    assert list(df.columns) == VENDOR_COLUMNS
    assert df.iloc[0].to_dict() == {"id": 2 ** 40 + 1, "name": "Atlas", "origin_id": None,
                                    "origin_code": "n/a", "is_active": False}
    empty = frame([], VENDOR_COLUMNS)
    assert list(empty.columns) == VENDOR_COLUMNS and empty.empty


def test_cost_codes_frame_prefers_full_code_and_tags_the_project():
    from mlc_dagster.defs.reference.frames import COST_CODE_COLUMNS, cost_codes_frame

    df = cost_codes_frame({
        BIG_PROJECT: [{"id": 1, "code": "100", "full_code": "01-100", "name": "General"},
                      {"id": 2, "code": "200", "full_code": None, "name": "Site"}],
        BIG_PROJECT + 1: [{"id": 3, "code": "300", "name": "No full code key"}],
    })
    assert list(df.columns) == COST_CODE_COLUMNS
    assert df[["project_id", "id", "code"]].values.tolist() == [
        [BIG_PROJECT, 1, "01-100"], [BIG_PROJECT, 2, "200"], [BIG_PROJECT + 1, 3, "300"]]
    assert list(cost_codes_frame({}).columns) == COST_CODE_COLUMNS



def test_seed_reference_frames(seed, seed_frames):
    assert len(seed_frames.projects) == len(seed.projects) == 20
    assert len(seed_frames.cost_codes) == 20 * 25
    assert seed_frames.cost_codes["project_id"].isin(seed_frames.projects["id"]).all()
    assert set(seed_frames.line_item_types["code"]) == {"M", "L", "E", "S", "O"}
    linked = seed_frames.vendors["origin_id"].dropna()
    assert set(linked) == {f"SUP{n:03d}" for n in range(1, 39)}
