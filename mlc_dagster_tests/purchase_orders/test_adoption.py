"""Adoption of hand-made Procore commitments: matching rules and line pairing (pure)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mlc_dagster.common.payload import line_origin_id
from mlc_dagster.defs.purchase_orders.adoption import (
    HOLD_PREFIX,
    AdoptionRules,
    amounts_equal,
    line_differences,
    match_twins,
    normalise_number,
    pair_lines,
    plan_adoption,
)
from mlc_dagster.defs.purchase_orders.desired import DesiredCommitment

VENDOR = 501


def desired(po: str, amounts=("100.00", "250.50"), vendor: int = VENDOR,
            day: str = "2026-03-10") -> DesiredCommitment:
    lines = [{"origin_id": line_origin_id(po, (n + 1) * 1000), "description": f"X3 line {n}",
              "quantity": "1", "unit_cost": a, "amount": a, "uom": "EA",
              "cost_code_id": 70 + n} for n, a in enumerate(amounts)]
    header = {"origin_id": f"X3:PO:{po}", "origin_code": po, "number": po, "title": po,
              "vendor_id": vendor, "contract_date": day}
    return DesiredCommitment(po, 9, "P1001", "2026-03-10T10:00:00Z", 0, False, header, lines)


def contract(cid: int, number: str, *, vendor: int = VENDOR, day: str = "2026-03-10",
             total: str = "350.50", origin_id: str | None = None, status: str = "Draft") -> dict:
    return {"id": cid, "number": number, "vendor": {"id": vendor, "company": "Acme"},
            "contract_date": day, "grand_total": total, "origin_id": origin_id,
            "status": status}


RULES = AdoptionRules()


@pytest.mark.parametrize("typed, expected", [
    ("PO26000005", "26000005"), ("po-26000005", "26000005"), ("PO 0026000005", "26000005"),
    ("0026000005", "26000005"), ("26000005", "26000005"), ("HT-0417", "HT0417"), ("PO", "PO"),
    ("000", "0"),
])
def test_numbers_normalise_case_punctuation_prefix_and_leading_zeros(typed, expected):
    assert normalise_number(typed, ("PO",)) == expected


def test_no_prefix_configured_keeps_letters():
    assert normalise_number("po-26000005", ()) == "PO26000005"


def test_exact_number_wins_over_everything():
    match = match_twins([desired("PO26000005")],
                        [contract(1, "26000005"), contract(2, "PO26000005")], RULES)
    assert match["PO26000005"].outcome == "adopt"
    assert match["PO26000005"].rule == "number"
    assert match["PO26000005"].contract["id"] == 2


def test_normalised_number_adopts_when_unique():
    match = match_twins([desired("PO26000005")], [contract(1, "po-0026000005")], RULES)
    assert (match["PO26000005"].outcome, match["PO26000005"].rule) == ("adopt",
                                                                        "normalised_number")


def test_two_commitments_with_the_same_normalised_number_are_ambiguous():
    match = match_twins([desired("PO26000005")],
                        [contract(1, "po-26000005"), contract(2, "0026000005")], RULES)
    twin = match["PO26000005"]
    assert twin.outcome == "ambiguous"
    reason = twin.hold_reason()
    assert reason.startswith(HOLD_PREFIX)
    assert "#po-26000005 (id 1" in reason and "#0026000005 (id 2" in reason


def test_vendor_date_total_finds_a_twin_with_another_number():
    match = match_twins([desired("PO26000005")],
                        [contract(1, "HT-0417", day="2026-03-12", total="350.00")], RULES)
    assert (match["PO26000005"].outcome, match["PO26000005"].rule) == ("adopt",
                                                                        "vendor_date_total")


@pytest.mark.parametrize("change", [{"vendor": 999}, {"day": "2026-03-20"}, {"total": "352.00"}])
def test_vendor_date_total_needs_all_three(change):
    assert match_twins([desired("PO26000005")], [contract(1, "HT-0417", **change)], RULES) == {}


def test_tolerance_and_days_are_configurable():
    rules = AdoptionRules(date_days=20, total_tolerance=Decimal("5"))
    found = match_twins([desired("PO26000005")],
                        [contract(1, "HT-1", day="2026-03-25", total="354.00")], rules)
    assert found["PO26000005"].outcome == "adopt"


def test_two_fuzzy_candidates_hold_the_po_listing_both():
    match = match_twins([desired("PO26000005")],
                        [contract(1, "HT-1001"), contract(2, "HT-1002")], RULES)
    assert match["PO26000005"].outcome == "ambiguous"
    assert [c["id"] for c in match["PO26000005"].candidates] == [1, 2]


def test_a_commitment_carrying_another_x3_number_is_not_a_fuzzy_twin():
    match = match_twins([desired("PO26000005"), desired("PO26000006", amounts=("9.00",))],
                        [contract(1, "PO26000006")], RULES)
    assert "PO26000005" not in match
    assert match["PO26000006"].rule == "number"


def test_one_twin_claimed_by_two_pos_is_held_for_both():
    match = match_twins([desired("PO26000005"), desired("PO26000007")],
                        [contract(1, "HT-9")], RULES)
    assert {m.outcome for m in match.values()} == {"ambiguous"}
    assert "PO26000005, PO26000007" in match["PO26000005"].hold_reason()


def test_another_integrations_record_is_never_adopted():
    match = match_twins([desired("PO26000005")],
                        [contract(1, "PO26000005", origin_id="ACME-ERP:PO:4711")], RULES)
    twin = match["PO26000005"]
    assert twin.outcome == "foreign"
    assert "another integration" in twin.hold_reason()
    assert "ACME-ERP:PO:4711" in twin.hold_reason()


def test_our_own_origin_id_resumes_an_interrupted_adoption():
    match = match_twins([desired("PO26000005")],
                        [contract(1, "PO26000005", origin_id="X3:PO:PO26000005")], RULES)
    assert (match["PO26000005"].outcome, match["PO26000005"].rule) == ("adopt", "origin_id")


def test_commitments_of_other_x3_pos_are_never_candidates():
    assert match_twins([desired("PO26000005")],
                       [contract(1, "HT-1", origin_id="X3:PO:PO26000099")], RULES) == {}


def test_adoption_off_matches_nothing():
    assert match_twins([desired("PO26000005")], [contract(1, "PO26000005")],
                       AdoptionRules(enabled=False)) == {}


def item(iid: int, code: int, amount: str, *, origin_id=None, position=None, qty="1",
         description="typed") -> dict:
    return {"id": iid, "cost_code": {"id": code}, "amount": amount, "quantity": qty,
            "unit_cost": amount, "uom": "EA", "description": description,
            "origin_id": origin_id, "position": position or iid}


def test_lines_pair_by_cost_code_and_amount_then_by_cost_code():
    po = desired("PO1", amounts=("100.00", "250.50", "75.00"))
    po.lines[2]["cost_code_id"] = 70  # two X3 lines on cost code 70
    procore = [item(11, 70, "75.00"), item(12, 71, "250.00"), item(13, 70, "100.00"),
               item(14, 99, "5.00")]
    pairing = pair_lines(po.lines, procore)
    assert pairing.line_ids == {"X3:PO:PO1:1000": 13, "X3:PO:PO1:3000": 11, "X3:PO:PO1:2000": 12}
    assert [i["id"] for i in pairing.extra] == [14]
    assert pairing.new == []
    diffs = line_differences(po.lines, pairing)
    assert "line 2000: amount 250.00 -> 250.50" in diffs
    assert any(d.startswith("hand-typed line item 14 removed") for d in diffs)
    assert not amounts_equal(po.lines, pairing)


def test_lines_already_carrying_our_origin_are_kept_and_others_never_paired():
    po = desired("PO1")
    procore = [item(11, 70, "100.00", origin_id="X3:PO:PO1:1000"),
               item(12, 71, "250.50", origin_id="OTHER:1")]
    pairing = pair_lines(po.lines, procore)
    assert pairing.line_ids == {"X3:PO:PO1:1000": 11}
    assert pairing.unlabelled == {}
    assert pairing.new == ["X3:PO:PO1:2000"]
    assert "line 2000 added (X3 line 1, 250.50)" in line_differences(po.lines, pairing)


def test_equal_amounts_on_a_locked_twin_need_no_line_write():
    po = desired("PO1")
    twin = contract(5, "PO1", status="Approved")
    from mlc_dagster.defs.purchase_orders.adoption import TwinMatch
    adoption = plan_adoption(po, TwinMatch("PO1", "adopt", "number", twin, [twin]),
                             [item(11, 70, "100.00"), item(12, 71, "250.50")])
    assert adoption.locked
    assert amounts_equal(po.lines, adoption.pairing)
    assert adoption.pairing.unlabelled == {"X3:PO:PO1:1000": 11, "X3:PO:PO1:2000": 12}
    assert adoption.before()["lines"][0]["description"] == "typed"


@pytest.mark.parametrize("env, message", [
    ({"MLC_ADOPT": "maybe"}, "MLC_ADOPT must be on or off"),
    ({"MLC_ADOPT_DATE_DAYS": "seven"}, "MLC_ADOPT_DATE_DAYS must be a number"),
    ({"MLC_ADOPT_TOTAL_TOLERANCE": "-1"}, "MLC_ADOPT_TOTAL_TOLERANCE must not be negative"),
])
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(ValueError, match=message):
        AdoptionRules.from_env(env)


def test_settings_from_env():
    rules = AdoptionRules.from_env({"MLC_ADOPT_NUMBER_PREFIXES": "PO, BC", "MLC_ADOPT": "off",
                                    "MLC_ADOPT_DATE_DAYS": "3",
                                    "MLC_ADOPT_TOTAL_TOLERANCE": "0.5"})
    assert rules == AdoptionRules(False, ("PO", "BC"), 3, Decimal("0.5"))
    assert AdoptionRules.from_env({}) == AdoptionRules()
    assert AdoptionRules.from_env({"MLC_ADOPT_NUMBER_PREFIXES": ""}).number_prefixes == ()
