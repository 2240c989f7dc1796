"""The pure parts of change orders on Approved commitments: tier, what Procore holds,
representability, deltas, the title key."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mlc_dagster.defs.purchase_orders.change_orders import (
    change_order_line_payloads,
    change_order_tier,
    delta_lines,
    delta_texts,
    held_lines,
    is_locked_status,
    line_origin_of,
    package_title,
    pco_package_id,
    target_key,
    title_key,
    total_amount,
    unrepresentable_changes,
)

PREFIX = "X3:PO:PO1:"


def line(n: int = 1000, **fields) -> dict:
    """A desired line as `mapping.commitments` builds it."""
    return {"origin_id": f"{PREFIX}{n}", "description": f"Item {n}", "quantity": "10",
            "unit_cost": "2.5", "amount": "25.00", "uom": "EA", "cost_code_id": 7,
            "line_item_type_id": 3, **fields}


def sov(n: int = 1000, **fields) -> dict:
    """A contract line item as Procore's GET returns it (nested references, numbers as text)."""
    item = {"id": n * 10, "origin_id": f"{PREFIX}{n}", "description": f"Item {n}",
            "quantity": "10.0", "unit_cost": "2.50", "amount": "25.00", "uom": "EA",
            "cost_code": {"id": 7, "code": "01-100"}, "line_item_type": {"id": 3}}
    item.update(fields)
    return item


def co(n: int, key: str, quantity: str, amount: str, **fields) -> dict:
    """A PCO line item of ours, as its GET returns it."""
    return {"id": int(key, 16) % 1000 + n, "origin_id": f"{PREFIX}{n}:CO:{key}",
            "quantity": quantity, "unit_cost": "2.5", "amount": amount, "uom": "EA",
            "description": f"Item {n}", "cost_code": {"id": 7}, "line_item_type": {"id": 3},
            **fields}


@pytest.mark.parametrize(("arrays", "tier"), [
    (["change_order_packages"], 1),
    (["change_order_packages", "potential_change_orders"], 2),
    (["change_order_packages", "potential_change_orders", "change_order_requests"], 3),
    ([], None),
])
def test_tier_is_read_from_the_arrays_the_show_response_carries(arrays, tier):
    assert change_order_tier({"id": 1, "status": "Approved", **{a: [] for a in arrays}}) == tier


def test_a_null_array_is_not_shown():
    assert change_order_tier({"change_order_packages": None}) is None


@pytest.mark.parametrize(("status", "locked"), [
    ("Approved", True), ("Complete", True), ("approved", True), ("Draft", False),
    ("Out For Signature", False), (None, False), ("", False)])
def test_locked_statuses(status, locked):
    assert is_locked_status(status) is locked


def test_titles_carry_a_key_that_only_our_po_reads_back():
    title = package_title("PO1", 3, "0a1b2c3d")
    assert title == "Sage X3 PO PO1 rev 3 [0a1b2c3d]"
    assert title_key({"title": title}, "PO1") == "0a1b2c3d"
    assert title_key({"title": title}, "PO10") is None
    assert title_key({"title": "Extra concrete"}, "PO1") is None
    assert title_key({"title": title + " (edited)"}, "PO1") is None
    assert title_key({}, "PO1") is None


def test_line_origin_of_a_change_order_line():
    assert line_origin_of(f"{PREFIX}1000:CO:0a1b2c3d") == f"{PREFIX}1000"
    assert line_origin_of(f"{PREFIX}1000") is None and line_origin_of(None) is None


def test_held_lines_add_change_order_lines_to_the_sov_line():
    held = held_lines(PREFIX, [sov(1000), sov(2000), {"id": 1, "origin_id": "X3:PO:PO9:1000"},
                               {"id": 2, "origin_id": None, "amount": "99"}],
                      [co(1000, "aaaaaaaa", "2", "5.00"), co(1000, "bbbbbbbb", "1", "2.50"),
                       co(3000, "aaaaaaaa", "4", "10.00"),
                       {"id": 3, "origin_id": "X3:PO:PO9:1000:CO:aaaaaaaa", "amount": "1"},
                       {"id": 4, "origin_id": None, "amount": "7"}])
    assert sorted(held) == [f"{PREFIX}1000", f"{PREFIX}2000", f"{PREFIX}3000"]
    first = held[f"{PREFIX}1000"]
    assert (first.quantity, first.amount, first.unit_cost) == (
        Decimal("13.0"), Decimal("32.50"), Decimal("2.50"))
    assert (first.cost_code_id, first.line_item_type_id, first.description) == (7, 3, "Item 1000")
    assert held[f"{PREFIX}3000"].quantity == 4  # a line that exists only on a change order


def test_a_line_removed_and_added_back_takes_the_fields_it_was_added_back_with():
    held = held_lines(PREFIX, [sov(1000)], [
        co(1000, "aaaaaaaa", "-10", "-25.00"),
        co(1000, "bbbbbbbb", "5", "15.00", unit_cost="3", cost_code={"id": 8})])
    back = held[f"{PREFIX}1000"]
    assert (back.quantity, back.amount, back.unit_cost, back.cost_code_id) == (
        Decimal("5.0"), Decimal("15.00"), Decimal("3"), 8)


def test_quantity_change_at_the_same_unit_cost_is_representable():
    held = held_lines(PREFIX, [sov(1000)], [])
    desired = [line(quantity="12", amount="30.00")]
    assert unrepresentable_changes(desired, held) == []
    assert delta_lines(desired, held) == [{
        "line_origin": f"{PREFIX}1000", "quantity": "2", "unit_cost": "2.5", "amount": "5.00",
        "uom": "EA", "description": "Item 1000", "cost_code_id": 7, "line_item_type_id": 3}]


def test_amounts_rounded_by_x3_still_match_the_quantity_change():
    held = held_lines(PREFIX, [sov(1000, quantity="3", unit_cost="33.333", amount="100.00")], [])
    desired = [line(quantity="4", unit_cost="33.333", amount="133.33")]
    assert unrepresentable_changes(desired, held) == []
    assert delta_lines(desired, held)[0]["amount"] == "33.33"


@pytest.mark.parametrize(("fields", "problems"), [
    ({"unit_cost": "3", "amount": "30.00"}, ["line 1000: unit cost 2.5 -> 3"]),
    ({"quantity": "40", "unit_cost": "0.625"}, ["line 1000: unit cost 2.5 -> 0.625"]),
    ({"quantity": "40"}, ["line 1000: quantity 10 -> 40 and amount 25.00 -> 25.00 do not "
                          "agree at unit cost 2.5"]),
    ({"amount": "26.00"}, ["line 1000: quantity 10 -> 10 and amount 25.00 -> 26.00 do not "
                           "agree at unit cost 2.5"]),
    ({"cost_code_id": 8}, ["line 1000: cost code 7 -> 8"]),
    ({"line_item_type_id": None}, ["line 1000: cost type 3 -> None"]),
    ({"uom": "M"}, ["line 1000: unit of measure EA -> M"]),
    ({"description": "New text", "quantity": "12", "amount": "30.00"},
     ["line 1000: description Item 1000 -> New text"]),
])
def test_changes_a_change_order_cannot_carry_are_named(fields, problems):
    held = held_lines(PREFIX, [sov(1000), sov(2000)], [])
    desired = [line(1000, **fields), line(2000, description="Item 2000")]
    assert unrepresentable_changes(desired, held) == problems


def test_a_missing_unit_cost_in_procore_is_not_guessed():
    held = held_lines(PREFIX, [sov(1000, unit_cost=None)], [])
    assert unrepresentable_changes([line(quantity="12", amount="30.00")], held) == [
        "line 1000: unit cost none -> 2.5"]


def test_new_removed_and_unchanged_lines():
    held = held_lines(PREFIX, [sov(1000), sov(2000)], [])
    desired = [line(1000, description="Item 1000"), line(3000, quantity="4", amount="10.00")]
    assert unrepresentable_changes(desired, held) == []
    deltas = delta_lines(desired, held)
    assert [(d["line_origin"], d["quantity"], d["amount"], d["description"]) for d in deltas] == [
        (f"{PREFIX}3000", "4", "10.00", "Item 3000"),
        (f"{PREFIX}2000", "-10", "-25.00", "Removed: Item 2000")]
    assert total_amount(deltas) == Decimal("-15.00")
    assert delta_texts(deltas) == ["line 3000: quantity +4 at 2.5 = +10.00",
                                   "line 2000: quantity -10 at 2.5 = -25.00"]


def test_what_procore_already_holds_leaves_no_delta():
    held = held_lines(PREFIX, [sov(1000)], [co(1000, "aaaaaaaa", "2", "5.00")])
    desired = [line(quantity="12", amount="30.00")]
    assert delta_lines(desired, held) == []
    assert delta_lines([], held_lines(PREFIX, [sov(1000)], [co(1000, "a" * 8, "-10", "-25.00")])
                       ) == []  # removed already


def test_change_order_payloads_are_keyed_by_their_own_origin_id():
    held = held_lines(PREFIX, [], [])
    deltas = delta_lines([line(line_item_type_id=None)], held)
    assert change_order_line_payloads(deltas, "0a1b2c3d") == [{
        "origin_id": f"{PREFIX}1000:CO:0a1b2c3d", "quantity": "10", "unit_cost": "2.5",
        "amount": "25.00", "uom": "EA", "description": "Item 1000", "cost_code_id": 7}]


def test_target_key_names_the_version_on_top_of_what_procore_held():
    base = held_lines(PREFIX, [sov(1000)], [])
    after_first = held_lines(PREFIX, [sov(1000)], [co(1000, "aaaaaaaa", "2", "5.00")])
    desired = [line(1000, quantity="12", amount="30.00"), line(2000)]
    key = target_key(desired, base)
    assert len(key) == 8 and int(key, 16) >= 0
    assert target_key(list(reversed(desired)), base) == key  # order does not matter
    assert target_key(desired, after_first) != key  # same target, other base: a new package
    assert target_key([line(1000, quantity="13", amount="32.50"), line(2000)], base) != key
    # formatting of Procore's numbers does not move the key
    assert target_key(desired, held_lines(PREFIX, [sov(1000, quantity="10.000")], [])) == key


def test_the_package_of_a_pco_in_either_shape():
    assert pco_package_id({"id": 1, "change_order_package_id": 5}) == 5
    assert pco_package_id({"id": 1, "change_order_package": {"id": "6"}}) == 6
    assert pco_package_id({"id": 1, "change_order_package_id": None}) is None
