"""The opt-in hand-entered Procore history of the seed (seed_history.py) and how the Procore
sandbox serves it: the ground truth the adoption, invoice, preview and preflight tests use.

Expectations are checked against independent sources (the shipped mapping CSV, the X3 POs,
the billing periods), not against the helpers that built the history.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import json
from collections import Counter
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from mlc_dagster.cli import _sandbox_args
from mlc_dagster_tests.sandbox_clients import ProcoreReader
from mlc_sandbox.seed import COMPANY_ID, _Ids, build_seed
from mlc_sandbox.seed_history import add_history
from mlc_sandbox.server import running_sandboxes

COMPACT = {"projects": 4, "pos_per_project": 6}
NEW_FIELDS = ("procore_commitments", "history_cases")
# sha256 of every SeedData field that existed before the history option, computed on the code
# before it was added: history off must leave the seed byte-identical.
DIGESTS_BEFORE_HISTORY = {
    "compact": "729991efc62b506196a8ebd1c630cf5aafd0e08829cac4821a496ae9f757477e",
    "small": "13840afde71c1c6cfcd9b0561366a421c5b9bd47371b6a98a51acd1810232c2f",
}
SIZES = {"compact": COMPACT, "small": {}}
CASE_COUNTS = {"exact": 2, "exact_typo": 1, "normalised": 2, "fuzzy": 1, "ambiguous": 1,
               "foreign": 1, "approved_equal": 1, "approved_diff": 1, "invoiced": 1,
               "procore_only": 2, "foreign_vendor": 1}
EXPECT = {"exact": ("adopt", "number"), "exact_typo": ("adopt", "number"),
          "normalised": ("adopt", "normalised_number"), "fuzzy": ("adopt", "vendor_date_total"),
          "ambiguous": ("hold", None), "foreign": ("hold", None),
          "approved_equal": ("adopt", "number"), "approved_diff": ("adopt", "number"),
          "invoiced": ("adopt", "number"), "procore_only": ("untouched", None),
          "foreign_vendor": ("hold", None)}


def old_fields(seed) -> dict:
    return {f.name: getattr(seed, f.name) for f in dataclasses.fields(seed)
            if f.name not in NEW_FIELDS}


def digest(seed) -> str:
    return hashlib.sha256(json.dumps(old_fields(seed), sort_keys=True,
                                     default=str).encode()).hexdigest()


def cents(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def mapping(seed) -> dict[str, tuple[str, str]]:
    """GL account -> (cost code, cost type) from the shipped mapping CSV text."""
    return {row["gl_account"]: (row["cost_code"], row["cost_type"])
            for row in csv.DictReader(io.StringIO(seed.mapping_csv))}


def is_eligible(seed, po: dict) -> bool:
    vendors = {v["origin_id"] for v in seed.vendors if v["is_active"]}
    mapped = mapping(seed)
    return (po["BPSNUM"] in vendors and po["CLEFLG"] == 1
            and po["POHNUM"] not in seed.requisitions_disabled_pos and len(po["lines"]) >= 2
            and all(line["ACC"] in mapped for line in po["lines"]))


class View:
    """A history seed read the way a test author would: POs, projects, commitments by number."""

    def __init__(self, seed) -> None:
        self.seed = seed
        self.pos = {po["POHNUM"]: po for po in seed.x3_purchase_orders}
        self.project = {p["project_number"]: p["id"] for p in seed.projects}
        self.vendor = {v["id"]: v for v in seed.vendors}
        self.code = {c["id"]: c["code"] for codes in seed.project_cost_codes.values()
                     for c in codes}
        self.lit = {t["id"]: t["code"] for t in seed.line_item_types}
        self.commitments = {(c["project_id"], c["number"]): c for c in seed.procore_commitments}

    def cases(self, name: str) -> list[dict]:
        return [c for c in self.seed.history_cases if c["case"] == name]

    def twins(self, case: dict) -> list[dict]:
        return [self.commitments[(case["project_id"], n)] for n in case["procore_numbers"]]

    def assert_line_copies(self, twin: dict, po_lines: list[dict]) -> None:
        """Hand lines equal the X3 lines in order, except a hand-typed description."""
        gl = mapping(self.seed)
        assert len(twin["lines"]) == len(po_lines)
        for hand, x3 in zip(twin["lines"], po_lines, strict=True):
            assert (hand["quantity"], hand["unit_cost"], hand["amount"], hand["uom"]) == (
                x3["QTYUOM"], x3["NETPRI"], x3["LINAMT"], x3["UOM"])
            self.assert_line_codes(twin, hand, *gl[x3["ACC"]])
            assert hand["description"] and hand["description"] != x3["ITMDES"]
            assert "origin_id" not in hand

    def assert_line_codes(self, twin: dict, hand: dict, code: str, ctype: str) -> None:
        assert self.code[hand["cost_code_id"]] == code
        assert hand["cost_code_id"] in {c["id"] for c in
                                        self.seed.project_cost_codes[twin["project_id"]]}
        assert self.lit.get(hand["line_item_type_id"]) == (ctype or None)

    def assert_twin_header(self, twin: dict, po: dict, status: str = "Draft") -> None:
        assert self.vendor[twin["vendor_id"]]["origin_id"] == po["BPSNUM"]
        assert twin["project_id"] == self.project[po["PJTH"]]
        assert twin["status"] == status
        assert twin["title"]


@pytest.fixture(scope="module", name="compact")
def compact_history():
    return build_seed(42, "small", **COMPACT, history=True)


# --- the seed -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_history_off_leaves_the_seed_byte_identical(size):
    seed = build_seed(42, "small", **SIZES[size])
    assert digest(seed) == DIGESTS_BEFORE_HISTORY[size]
    assert seed.procore_commitments == [] and seed.history_cases == []


@pytest.mark.parametrize("size", SIZES)
def test_history_only_adds_to_the_seed(size):
    """The X3 data and every Procore record are the same; one vendor is appended."""
    without = old_fields(build_seed(42, "small", **SIZES[size]))
    seed = build_seed(42, "small", **SIZES[size], history=True)
    with_history = old_fields(seed)
    assert with_history["vendors"][:-1] == without["vendors"]
    assert with_history["vendors"][-1]["origin_id"] == "ACME-ERP:V:88"
    assert with_history["ids"]["next"] > without["ids"]["next"]
    # Both sizes have an eligible PO with a final invoice: no invoice is added.
    assert "added" not in View(seed).cases("invoiced")[0]["note"]
    for name in set(without) - {"vendors", "ids"}:
        assert with_history[name] == without[name], name


@pytest.mark.parametrize("size", SIZES)
def test_every_case_is_present_on_an_eligible_po(size):
    seed = build_seed(42, "small", **SIZES[size], history=True)
    view = View(seed)
    assert Counter(c["case"] for c in seed.history_cases) == CASE_COUNTS
    for case in seed.history_cases:
        assert (case["expect"], case["rule"]) == EXPECT[case["case"]], case
        if case["po_number"] is not None:
            assert is_eligible(seed, view.pos[case["po_number"]]), case
            assert case["project_id"] == view.project[view.pos[case["po_number"]]["PJTH"]]
    used = [c["po_number"] for c in seed.history_cases if c["po_number"]]
    assert len(used) == len(set(used)) == 11
    # Every hand commitment belongs to exactly one case; numbers are unique per project.
    listed = [(c["project_id"], n) for c in seed.history_cases for n in c["procore_numbers"]]
    assert sorted(listed) == sorted(view.commitments) and len(view.commitments) == len(
        seed.procore_commitments) == 14
    (diff,) = view.cases("approved_diff")
    assert seed.change_order_tiers.get(diff["project_id"], 1) == 1


def test_compact_history_spreads_over_the_tiered_projects(compact):
    projects = {c["project_id"] for c in compact.history_cases if c["po_number"]}
    assert set(compact.change_order_tiers) <= projects


def test_history_is_deterministic():
    first = build_seed(42, "small", **COMPACT, history=True)
    second = build_seed(42, "small", **COMPACT, history=True)
    assert json.dumps(dataclasses.asdict(first), default=str) == json.dumps(
        dataclasses.asdict(second), default=str)


def test_ids_are_unique_and_come_from_the_seed_allocator(compact):
    ids = [c["id"] for c in compact.procore_commitments]
    ids += [line["id"] for c in compact.procore_commitments for line in c["lines"]]
    ids += [r["id"] for c in compact.procore_commitments for r in c["requisitions"]]
    existing = {p["id"] for p in compact.projects} | {v["id"] for v in compact.vendors[:-1]}
    assert len(ids) == len(set(ids)) and not set(ids) & existing
    assert max(ids + [compact.vendors[-1]["id"]]) == compact.ids["next"]


def test_exact_twins_copy_x3(compact):
    view = View(compact)
    for case in view.cases("exact") + view.cases("approved_equal") + view.cases("foreign"):
        po = view.pos[case["po_number"]]
        (twin,) = view.twins(case)
        assert twin["number"] == po["POHNUM"] and twin["contract_date"] == po["ORDDAT"]
        view.assert_twin_header(twin, po, "Approved" if case["case"] == "approved_equal"
                                else "Draft")
        view.assert_line_copies(twin, po["lines"])
        origin = ("ACME-ERP:PO:4711", "4711") if case["case"] == "foreign" else (None, None)
        assert (twin["origin_id"], twin["origin_code"]) == origin


def test_exact_typo_has_a_wrong_unit_cost_and_misses_the_last_line(compact):
    view = View(compact)
    (case,) = view.cases("exact_typo")
    po = view.pos[case["po_number"]]
    (twin,) = view.twins(case)
    view.assert_twin_header(twin, po)
    first, x3_first = twin["lines"][0], po["lines"][0]
    assert Decimal(first["unit_cost"]) == Decimal(cents(Decimal(x3_first["NETPRI"]) * Decimal("1.1")))
    assert first["amount"] == cents(Decimal(first["quantity"]) * Decimal(first["unit_cost"]))
    assert first["amount"] != x3_first["LINAMT"]
    view.assert_line_copies({**twin, "lines": twin["lines"][1:]}, po["lines"][1:-1])


def test_normalised_numbers(compact):
    view = View(compact)
    numbers = {}
    for case in view.cases("normalised"):
        po = view.pos[case["po_number"]]
        (twin,) = view.twins(case)
        view.assert_twin_header(twin, po)
        view.assert_line_copies(twin, po["lines"])
        numbers[po["POHNUM"]] = twin["number"]
    first, second = numbers.items()
    assert first[1] == "po-" + first[0][2:] and second[1] == "00" + second[0][2:]


def test_fuzzy_and_ambiguous_match_by_vendor_date_and_total_only(compact):
    view = View(compact)
    (fuzzy,) = view.cases("fuzzy")
    (ambiguous,) = view.cases("ambiguous")
    assert fuzzy["procore_numbers"] == ["HT-0417"]
    assert ambiguous["procore_numbers"] == ["HT-1001", "HT-1002"]
    for case, days in ((fuzzy, 2), (ambiguous, 0)):
        po = view.pos[case["po_number"]]
        for twin in view.twins(case):
            view.assert_twin_header(twin, po)
            view.assert_line_copies(twin, po["lines"])
            assert twin["contract_date"] == (date.fromisoformat(po["ORDDAT"])
                                             + timedelta(days=days)).isoformat()
            assert sum(Decimal(line["amount"]) for line in twin["lines"]) == Decimal(po["TOTORD"])


def test_approved_diff_misses_the_last_line(compact):
    view = View(compact)
    (case,) = view.cases("approved_diff")
    po = view.pos[case["po_number"]]
    (twin,) = view.twins(case)
    view.assert_twin_header(twin, po, "Approved")
    assert twin["number"] == po["POHNUM"]
    view.assert_line_copies(twin, po["lines"][:-1])


def test_invoiced_twin_carries_the_x3_invoice_and_a_hand_only_one(compact):
    view = View(compact)
    (case,) = view.cases("invoiced")
    po = view.pos[case["po_number"]]
    (twin,) = view.twins(case)
    view.assert_twin_header(twin, po)
    view.assert_line_copies(twin, po["lines"])
    number = case["note"].split(";")[0].removeprefix("x3_invoice=")
    invoice = next(i for i in compact.x3_purchase_invoices if i["NUM"] == number)
    assert invoice["STA"] == 2 and {line["POHNUM"] for line in invoice["lines"]} == {po["POHNUM"]}
    twin_invoice, hand_only = twin["requisitions"]
    poplin = [line["POPLIN"] for line in po["lines"]]
    assert twin_invoice["items"] == {poplin.index(line["POPLIN"]): line["AMTNOTLIN"]
                                     for line in invoice["lines"]}
    assert (twin_invoice["invoice_number"], twin_invoice["billing_date"]) == (
        invoice["BPSINV"], invoice["INVDAT"])
    assert (hand_only["invoice_number"], hand_only["items"]) == ("HAND-INV-0001", {0: "100.00"})
    assert hand_only["billing_date"] > twin_invoice["billing_date"]
    periods = {p["id"]: p for p in compact.billing_periods[twin["project_id"]]}
    for requisition in twin["requisitions"]:
        period = periods[requisition["period_id"]]
        assert period["start_date"] <= requisition["billing_date"] <= period["end_date"]
        assert requisition["status"] == "approved"
    billed = Decimal(twin_invoice["items"].get(0, "0")) + Decimal("100.00")
    assert billed <= Decimal(twin["lines"][0]["amount"])


def test_procore_only_commitments_and_the_foreign_vendor(compact):
    view = View(compact)
    for case, number in zip(view.cases("procore_only"), ("HT-2001", "HT-2002"), strict=True):
        (twin,) = view.twins(case)
        assert twin["number"] == number and case["po_number"] is None
        assert view.vendor[twin["vendor_id"]]["origin_id"] is None
        assert 1 <= len(twin["lines"]) <= 2
        for line in twin["lines"]:
            assert line["amount"] == cents(Decimal(line["quantity"]) * Decimal(line["unit_cost"]))
    (case,) = view.cases("foreign_vendor")
    supplier = compact.x3_suppliers[-1]
    vendor = view.vendor[case["vendor_id"]]
    assert case["supplier"] == supplier["BPSNUM"] == "SUP040"
    assert (vendor["origin_id"], vendor["origin_code"]) == ("ACME-ERP:V:88", "88")
    assert (vendor["name"], vendor["tax_id"]) == (supplier["BPSNAM"], supplier["EECNUM"])
    assert [v for v in compact.vendors if v["origin_id"] == "SUP040"] == []


def test_a_missing_final_invoice_is_added_for_the_invoiced_case():
    seed = build_seed(42, "small", **COMPACT)
    seed.x3_purchase_invoices = []
    add_history(seed, _Ids(seed.ids["next"]))
    (case,) = View(seed).cases("invoiced")
    (invoice,) = seed.x3_purchase_invoices
    assert "added" in case["note"] and f"x3_invoice={invoice['NUM']}" in case["note"]
    assert invoice["STA"] == 2 and invoice["lines"][0]["POHNUM"] == case["po_number"]
    assert invoice["AMTNOT"] == cents(sum(Decimal(line["AMTNOTLIN"]) for line in invoice["lines"]))


def test_too_few_eligible_pos_name_the_case():
    with pytest.raises(ValueError, match=r"history case '\w+': no eligible X3 PO left"):
        build_seed(42, "small", projects=2, pos_per_project=3, history=True)


# --- served by the Procore sandbox --------------------------------------------------------------


class HistoryReader(ProcoreReader):
    def vendors(self) -> list[dict]:
        return self.http.get("/rest/v1.0/vendors", params={"company_id": COMPANY_ID,
                                                           "per_page": 1000}).json()


@pytest.fixture(scope="module", name="served")
def served_history(compact):
    with running_sandboxes(seed_data=compact) as handles:
        reader = HistoryReader(handles["procore"].url)
        yield reader, handles["procore"].state
        reader.http.close()


def api_made(reader: HistoryReader, project_id: int, period_id: int) -> tuple[dict, dict]:
    """A commitment, one line and an invoice created through the API, to compare shapes."""
    http = reader.http
    vendor = next(v for v in reader.vendors() if v["origin_id"] is None)
    created = http.post("/rest/v1.0/purchase_order_contracts", json={
        "project_id": project_id, "purchase_order_contract": {
            "number": "API-0001", "title": "made through the API", "vendor_id": vendor["id"],
            "contract_date": "2026-12-01"}})
    assert created.status_code == 201, created.text
    contract = created.json()
    code = http.get("/rest/v1.0/cost_codes", params={"project_id": project_id}).json()[0]
    synced = http.patch(f"/rest/v1.0/purchase_order_contracts/{contract['id']}/line_items/sync",
                        params={"project_id": project_id}, json={"updates": [{
                            "description": "api line", "quantity": "2", "unit_cost": "10.00",
                            "amount": "20.00", "uom": "EA", "cost_code_id": code["id"]}]})
    assert synced.status_code == 200 and not synced.json()["errors"], synced.text
    line = synced.json()["entities"][0]
    invoice = http.post("/rest/v1.1/requisitions", json={
        "project_id": project_id, "commitment_id": contract["id"], "requisition": {
            "period_id": period_id, "invoice_number": "API-INV", "items": [{
                "item_type": "contract_item", "line_item_id": line["id"],
                "work_completed_this_period": "5.00"}]}})
    assert invoice.status_code == 201, invoice.text
    return contract, invoice.json()


def test_hand_commitments_read_back_like_api_created_ones(compact, served):
    reader, _state = served
    project_id = compact.projects[0]["id"]
    period = next(p for p in compact.billing_periods[project_id] if p["status"] == "open")
    made, made_invoice = api_made(reader, project_id, period["id"])
    listed = {c["id"]: c for c in reader.contracts()}
    made_line = reader.line_items(listed[made["id"]])[0]
    for hand in compact.procore_commitments:
        out = listed[hand["id"]]
        assert set(out) == set(listed[made["id"]])
        assert {k: out[k] for k in ("number", "title", "status", "contract_date", "origin_id",
                                    "origin_code", "project_id")} == {
            k: hand[k] for k in ("number", "title", "status", "contract_date", "origin_id",
                                 "origin_code", "project_id")}
        assert out["vendor"]["id"] == hand["vendor_id"]
        assert (out["executed"], out["private"], out["accounting_method"],
                out["requisitions_are_enabled"], out["deleted_at"]) == (
            False, False, "amount", True, None)
        assert Decimal(out["grand_total"]) == sum(Decimal(line["amount"])
                                                  for line in hand["lines"])
        lines = reader.line_items(out)
        assert [line["id"] for line in lines] == [line["id"] for line in hand["lines"]]
        for position, (served_line, seeded) in enumerate(zip(lines, hand["lines"], strict=True), 1):
            assert set(served_line) == set(made_line)
            assert served_line["origin_id"] is None and served_line["position"] == position
            assert served_line["extended_type"] == "manual"
            assert served_line["cost_code"]["id"] == seeded["cost_code_id"]
            assert (served_line["line_item_type"] or {}).get("id") == seeded["line_item_type_id"]
            for key in ("quantity", "unit_cost", "amount"):
                assert Decimal(served_line[key]) == Decimal(seeded[key]), key
            assert served_line["description"] == seeded["description"]
    hand_invoice = next(r for c in compact.procore_commitments for r in c["requisitions"])
    hand_project = next(c["project_id"] for c in compact.procore_commitments
                        if hand_invoice in c["requisitions"])
    shown = reader.http.get(f"/rest/v1.1/requisitions/{hand_invoice['id']}",
                            params={"project_id": hand_project}).json()
    assert set(shown) == set(made_invoice)
    assert set(shown["summary"]) == set(made_invoice["summary"])
    assert {frozenset(i) for i in shown["items"]} == {frozenset(made_invoice["items"][0])}


def test_hand_requisitions_read_back_with_their_claims(compact, served):
    reader, _state = served
    (case,) = View(compact).cases("invoiced")
    (twin,) = View(compact).twins(case)
    listed = reader.http.get("/rest/v1.1/requisitions", params={
        "project_id": twin["project_id"], "view": "extended", "per_page": 1000}).json()
    ours = sorted((r for r in listed if r["commitment_id"] == twin["id"]),
                  key=lambda r: r["number"])
    periods = {p["id"]: p for p in compact.billing_periods[twin["project_id"]]}
    assert [r["id"] for r in ours] == [r["id"] for r in twin["requisitions"]]
    for number, (served_req, seeded) in enumerate(zip(ours, twin["requisitions"], strict=True), 1):
        period = periods[seeded["period_id"]]
        assert (served_req["number"], served_req["invoice_number"], served_req["status"],
                served_req["billing_date"], served_req["period_id"], served_req["origin_id"],
                served_req["final"]) == (number, seeded["invoice_number"], "approved",
                                         seeded["billing_date"], period["id"], None, False)
        assert (served_req["requisition_start"], served_req["requisition_end"]) == (
            period["start_date"], period["end_date"])
        items = served_req["items"]
        assert [i["line_item_id"] for i in items] == [line["id"] for line in twin["lines"]]
        claimed = {twin["lines"].index(next(line for line in twin["lines"]
                                            if line["id"] == i["line_item_id"])):
                   i["work_completed_this_period"] for i in items
                   if Decimal(i["work_completed_this_period"])}
        assert {k: Decimal(v) for k, v in claimed.items()} == {
            k: Decimal(v) for k, v in seeded["items"].items()}
        assert Decimal(served_req["total_claimed_amount"]) == sum(
            Decimal(v) for v in seeded["items"].values())
        shown = reader.http.get(f"/rest/v1.0/requisitions/{served_req['id']}",
                                params={"project_id": twin["project_id"]})
        assert shown.status_code == 200 and shown.json()["invoice_number"] == seeded[
            "invoice_number"]
    contract_items = reader.http.get(f"/rest/v1.0/requisitions/{ours[1]['id']}/contract_items",
                                     params={"project_id": twin["project_id"]}).json()
    first = next(i for i in contract_items if i["line_item_id"] == twin["lines"][0]["id"])
    assert Decimal(first["work_completed_from_previous_application"]) == Decimal(
        twin["requisitions"][0]["items"].get(0, "0"))


def test_the_foreign_vendor_is_listed(compact, served):
    reader, _state = served
    (foreign,) = [v for v in reader.vendors() if v["origin_id"] == "ACME-ERP:V:88"]
    supplier = compact.x3_suppliers[-1]
    assert (foreign["name"], foreign["tax_id"], foreign["origin_code"], foreign["is_active"]) == (
        supplier["BPSNAM"], supplier["EECNUM"], "88", True)


def test_a_sync_cannot_reuse_a_hand_number(compact, served):
    reader, state = served
    view = View(compact)
    (exact, _second) = view.cases("exact")
    (ambiguous,) = view.cases("ambiguous")
    twin = view.twins(exact)[0]
    assert state.contracts.find_number(twin["project_id"], twin["number"])["id"] == twin["id"]
    vendor_id = twin["vendor_id"]
    response = reader.http.patch("/rest/v1.0/purchase_order_contracts/sync", json={
        "project_id": twin["project_id"], "updates": [
            {"origin_id": f"X3:PO:{twin['number']}", "number": twin["number"],
             "vendor_id": vendor_id, "title": "from the connector"}]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["entities"] == []
    assert body["errors"][0]["errors"]["number"] == ["has already been taken"]
    created = reader.http.post("/rest/v1.0/purchase_order_contracts", json={
        "project_id": ambiguous["project_id"], "purchase_order_contract": {
            "number": "HT-1001", "vendor_id": vendor_id, "title": "again"}})
    assert created.status_code == 422, created.text
    assert "has already been taken" in created.text


def test_the_cli_seeds_the_history_by_default():
    parser = argparse.ArgumentParser()
    _sandbox_args(parser)
    assert parser.parse_args([]).history is True
    assert parser.parse_args(["--no-history"]).history is False


def test_running_sandboxes_builds_the_history_when_asked():
    with running_sandboxes(history=True, seed=42, scale="small") as handles:
        state = handles["procore"].state
        assert len(state.contracts.all()) == 14
        reader = ProcoreReader(handles["procore"].url)
        numbers = {c["number"] for c in reader.contracts()}
        assert {"HT-1001", "HT-1002", "HT-0417", "HT-2001", "HT-2002"} <= numbers
    with running_sandboxes(seed=42, scale="small") as handles:
        assert handles["procore"].state.contracts.all() == []
