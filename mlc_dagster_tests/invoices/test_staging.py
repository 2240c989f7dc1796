"""Staging of X3 purchase invoices: validation, quarantine reasons, nothing else stopped."""

from __future__ import annotations

import copy

import pytest

from mlc_dagster.defs.invoices.staging import stage_purchase_invoices
from mlc_dagster_tests.x3_records import canonical_invoice, simple_invoice

KNOWN = {"PO26000001", "PO26000002"}


@pytest.fixture(scope="module")
def seed_invoices(seed):
    return [canonical_invoice(inv) for inv in seed.x3_purchase_invoices]


def test_seeded_invoices_stage_fully(seed, seed_invoices):
    known = {po["POHNUM"] for po in seed.x3_purchase_orders}
    staged = stage_purchase_invoices(copy.deepcopy(seed_invoices), known)
    assert staged.quarantine.empty
    assert len(staged.headers) == len(seed.x3_purchase_invoices) > 50
    assert len(staged.lines) == sum(len(i["lines"]) for i in seed.x3_purchase_invoices)
    assert set(staged.headers["invoice_type"]) == {"invoice"}
    assert staged.stamps["PI26000001"] == seed.x3_purchase_invoices[0]["UPDDATTIM"]


@pytest.mark.parametrize("record, field, words", [
    (simple_invoice("B1", invoice_date=None), "invoice_date", "missing or not a date"),
    (simple_invoice("B2", supplier_code=""), "supplier_code", "blank or too long"),
    (simple_invoice("B3", invoice_type="prepayment"), "invoice_type", "is not one of"),
    (simple_invoice("B4", supplier_invoice_ref="R" * 31), "supplier_invoice_ref",
     "longer than 30 characters"),
    (simple_invoice("B5", currency="pounds"), "currency", "3-letter currency"),
    (simple_invoice("B6", lines=()), "lines", "invoice has no lines"),
    (simple_invoice("B7", po="PO99999999"), "po_number", "PO PO99999999 is not a known Sage X3 PO"),
    (simple_invoice("B8", po=""), "po_number", "blank or too long"),
    (simple_invoice("B9", lines=((1000, "-5.00"),)), "amount", "must not be negative"),
    (simple_invoice("B10", lines=((1000, "1.005"),)), "amount", "more than two decimals"),
    (simple_invoice("B11", lines=((1000, "abc"),)), "amount", "missing or not a number"),
    (simple_invoice("B12", lines=((0, "5.00"),)), "po_line", "must be greater than 0"),
    (simple_invoice("B13", lines=((1000, "1e15"),)), "amount", "implausibly large"),
])
def test_each_malformed_invoice_is_quarantined_with_a_reason_naming_it(record, field, words):
    good = simple_invoice("GOOD")
    staged = stage_purchase_invoices([good, record], KNOWN)
    assert list(staged.headers["invoice_number"]) == ["GOOD"]  # the rest carries on
    rows = staged.quarantine[staged.quarantine["invoice_number"] == record["invoice_number"]]
    assert field in set(rows["field"]), rows.to_dict("records")
    reason = " ".join(rows["reason"])
    assert f"invoice {record['invoice_number']}" in reason and words in reason, reason
    if field not in ("invoice_date", "supplier_code", "invoice_type", "supplier_invoice_ref",
                     "currency", "lines"):
        assert "line 1000" in reason  # line-level problems name the line


def test_duplicate_line_numbers_and_missing_line_number_are_quarantined():
    dup = simple_invoice("D1", lines=((1000, "1.00"), (2000, "2.00")))
    dup["lines"][1]["line_number"] = 1000
    missing = simple_invoice("D2")
    missing["lines"][0]["line_number"] = None
    staged = stage_purchase_invoices([dup, missing], KNOWN)
    reasons = staged.reasons()
    assert "duplicate line number in this invoice" in reasons["D1"]
    assert "line_number is missing or not a whole number" in reasons["D2"]
    assert staged.headers.empty


def test_unicode_text_passes_and_an_unknown_po_heals_once_the_po_is_known():
    record = simple_invoice("U1", po="PO26000003", supplier_invoice_ref="Façade №7 — 東京",
                            lines=((1000, "10.00"),))
    record["lines"][0]["description"] = "Échafaudage\x07 ✓"
    assert stage_purchase_invoices([copy.deepcopy(record)], KNOWN).quarantined == {"U1"}
    staged = stage_purchase_invoices([record], KNOWN | {"PO26000003"})
    assert staged.quarantine.empty
    assert staged.headers.loc[0, "supplier_invoice_ref"] == "Façade №7 — 東京"


def test_final_flag_and_status_are_carried_never_quarantined_and_absent_means_unknown():
    """Whether an invoice is final is for planning to hold, not a validation problem; a
    record without the X3 client's `is_final` (older configuration) keeps None."""
    posted = simple_invoice("F1", status=2, is_final=True)
    draft = simple_invoice("F2", status=1, is_final=False)
    older = simple_invoice("F3")
    truthy = simple_invoice("F4", is_final="yes")  # only the boolean True means final
    staged = stage_purchase_invoices([posted, draft, older, truthy], KNOWN)
    assert staged.quarantine.empty
    rows = staged.headers.set_index("invoice_number")
    assert rows.loc["F1", "is_final"] is True and rows.loc["F1", "status"] == "2"
    assert rows.loc["F2", "is_final"] is False and rows.loc["F2", "status"] == "1"
    assert rows.loc["F3", "is_final"] is None and rows.loc["F3", "status"] == ""
    assert rows.loc["F4", "is_final"] is False
