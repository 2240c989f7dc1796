"""The preview's sign-off tables: totals per project and action, markdown for the UI, CSV."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from mlc_dagster.defs.preview.report import (
    COLUMNS,
    COMPANY_WIDE,
    action_counts,
    markdown,
    plain_table,
    preview_frame,
    to_csv,
    totals_by_action,
    totals_by_project,
)

PROJECTS = {101: "Harbour Tower", 102: "Depot"}


def rows() -> list[dict]:
    return [
        {"flow": "purchase_invoice", "key": "INV9", "project_id": 101, "action": "create",
         "detail": "2 lines", "amount": Decimal("50")},
        {"flow": "purchase_order", "key": "PO2", "project_id": 101, "action": "adopt",
         "detail": "adopted #po-2 | rule number", "amount": Decimal("200.005")},
        {"flow": "purchase_order", "key": "PO1", "project_id": 101, "action": "create",
         "detail": "created with 2 line(s)", "amount": Decimal("1000.10")},
        {"flow": "purchase_order", "key": "PO3", "project_id": 102, "action": "create",
         "detail": "", "amount": Decimal("5")},
        {"flow": "purchase_order", "key": "PO4", "project_id": 102, "action": "hold",
         "detail": "two twins", "amount": None},
        {"flow": "purchase_order", "key": "PO5", "project_id": 102, "action": "update",
         "detail": "line 1: quantity 1 -> 2", "amount": Decimal("7.50")},
        {"flow": "supplier", "key": "SUP001", "project_id": None, "action": "update",
         "detail": "name 'A' -> 'B'", "amount": None},
        {"flow": "dimension", "key": "CCT~01-100", "project_id": None, "action": "export",
         "detail": "=HYPERLINK(\"x\")", "amount": None},
    ]


def test_rows_are_ordered_by_flow_project_and_key_with_project_names():
    df = preview_frame(rows(), PROJECTS)
    assert list(df.columns) == COLUMNS
    assert list(df["key"]) == ["PO1", "PO2", "PO3", "PO4", "PO5", "INV9", "SUP001", "CCT~01-100"]
    assert df.loc[0, "project"] == "Harbour Tower" and df.loc[6, "project"] == ""
    assert df.loc[1, "amount"] == Decimal("200.01")  # to the cent
    assert df.loc[3, "amount"] is None


def test_counts_always_name_the_standard_actions():
    counts = action_counts(preview_frame(rows(), PROJECTS))
    assert counts == {"create": 3, "adopt": 1, "update": 2, "inactivate": 0, "hold": 1,
                      "export": 1}
    assert action_counts(preview_frame([], PROJECTS))["create"] == 0


def test_totals_per_project_count_every_flow_and_sum_po_amounts_by_action():
    by_project = totals_by_project(preview_frame(rows(), PROJECTS)).set_index("project")
    tower, depot, company = (by_project.loc[name] for name in
                             ("Harbour Tower", "Depot", COMPANY_WIDE))
    assert (tower["create"], tower["adopt"], tower["hold"]) == (2, 1, 0)  # PO1 + invoice INV9
    assert tower["committed_created"] == Decimal("1000.10")  # the invoice is not committed cost
    assert tower["committed_adopted"] == Decimal("200.01")
    assert (depot["create"], depot["hold"], depot["update"]) == (1, 1, 1)
    assert depot["committed_created"] == Decimal("5.00")
    assert depot["committed_updated"] == Decimal("7.50")
    assert (company["update"], company["export"], company["project_id"]) == (1, 1, "")


def test_totals_per_action_split_by_flow():
    table = totals_by_action(preview_frame(rows(), PROJECTS))
    po_create = table[(table["flow"] == "purchase_order") & (table["action"] == "create")].iloc[0]
    assert (po_create["records"], po_create["amount"]) == (2, Decimal("1005.10"))
    assert len(table) == 7


def test_markdown_escapes_pipes_cuts_long_details_and_says_what_was_left_out():
    many = [dict(rows()[1], key=f"PO{i:03}", detail="x" * 1000) for i in range(5)]
    text = markdown(preview_frame(rows() + many, PROJECTS), limit=3,
                    columns=["flow", "key", "project", "action", "detail"])
    assert "adopted #po-2 \\| rule number" not in text  # PO2 is not in the first 3 rows
    assert text.count("\n") == 1 + 3 + 2  # header, separator, 3 rows, blank, note
    assert "10 more rows not shown: see the CSV" in text
    first = markdown(preview_frame(rows(), PROJECTS), limit=2)
    assert "adopted #po-2 \\| rule number" in first and "x" * 300 not in text
    assert markdown(preview_frame([], PROJECTS)) == "_none_"


def test_csv_has_every_row_and_neutralises_spreadsheet_formulas():
    df = preview_frame(rows(), PROJECTS)
    parsed = list(csv.DictReader(io.StringIO(to_csv(df))))
    assert len(parsed) == len(rows())
    assert list(parsed[0]) == COLUMNS
    assert parsed[0] == {"flow": "purchase_order", "project_id": "101",
                         "project": "Harbour Tower", "key": "PO1", "action": "create",
                         "amount": "1000.10", "detail": "created with 2 line(s)"}
    assert parsed[3]["amount"] == "" and parsed[6]["project_id"] == ""
    assert parsed[-1]["detail"] == "'=HYPERLINK(\"x\")"


def test_amounts_print_as_written_in_the_ui_and_terminal_tables():
    big = [dict(rows()[2], amount=Decimal("7818000"))]
    totals = totals_by_project(preview_frame(big, PROJECTS))
    for text in (markdown(totals), plain_table(totals)):
        assert "7818000.00" in text and "e+06" not in text
