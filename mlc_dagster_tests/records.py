"""Shared builders for the unit tests: seeded X3 records in canonical shape, Procore frames."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pandas as pd

from mlc_dagster.defs.reference.frames import (
    LINE_ITEM_TYPE_COLUMNS,
    PROJECT_COLUMNS,
    VENDOR_COLUMNS,
    cost_codes_frame,
    frame,
)
from mlc_sandbox.seed import SeedData


def canonical_line(line: dict) -> dict:
    """An X3 PORDERQ-like line in the canonical shape the X3 client produces."""
    return {
        "line_number": line["POPLIN"],
        "item_code": line["ITMREF"],
        "description": line["ITMDES"],
        "gl_account": line["ACC"],
        "project_code": line["PJT"],
        "quantity": line["QTYUOM"],
        "uom": line["UOM"],
        "unit_price": line["NETPRI"],
        "amount": line["LINAMT"],
        "closed": line["LINCLEFLG"] == 2,
    }


def canonical_po(po: dict) -> dict:
    """An X3 PORDER record (with lines) in the canonical shape the X3 client produces."""
    return {
        "po_number": po["POHNUM"],
        "po_type": po["POHTYP"],
        "site": po["POHFCY"],
        "supplier_code": po["BPSNUM"],
        "project_code": po["PJTH"],
        "order_date": po["ORDDAT"],
        "currency": po["CUR"],
        "revision": po["REVNUM"],
        "closed": po["CLEFLG"] == 2,
        "reference": po["ORDREF"],
        "total_amount": po["TOTORD"],
        "update_stamp": po["UPDDATTIM"],
        "lines": [canonical_line(line) for line in po["lines"]],
    }


@dataclass
class ProcoreFrames:
    projects: pd.DataFrame
    vendors: pd.DataFrame
    cost_codes: pd.DataFrame
    line_item_types: pd.DataFrame

    def copy(self) -> ProcoreFrames:
        return ProcoreFrames(self.projects.copy(), self.vendors.copy(), self.cost_codes.copy(),
                             self.line_item_types.copy())

    def args(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        return self.projects, self.vendors, self.cost_codes, self.line_item_types


def procore_frames(seed: SeedData) -> ProcoreFrames:
    return ProcoreFrames(
        projects=frame(copy.deepcopy(seed.projects), PROJECT_COLUMNS),
        vendors=frame(copy.deepcopy(seed.vendors), VENDOR_COLUMNS),
        cost_codes=cost_codes_frame(copy.deepcopy(seed.project_cost_codes)),
        line_item_types=frame(copy.deepcopy(seed.line_item_types), LINE_ITEM_TYPE_COLUMNS),
    )


def simple_po(po_number: str = "PO1", *, lines: int = 2, **header) -> dict:
    """A small valid canonical PO that maps cleanly against the seed (project P1001, SUP001)."""
    record = {
        "po_number": po_number, "po_type": 1, "site": "GB011", "supplier_code": "SUP001",
        "project_code": "P1001", "order_date": "2026-02-01", "currency": "GBP", "revision": 0,
        "closed": False, "reference": f"Order {po_number}", "total_amount": "0",
        "update_stamp": "2026-02-01T10:00:00Z",
        "lines": [
            {"line_number": (n + 1) * 1000, "item_code": f"ITEM-{n + 1}",
             "description": f"Item {n + 1}", "gl_account": "601100", "project_code": "P1001",
             "quantity": "10", "uom": "EA", "unit_price": "2.50", "amount": "25.00",
             "closed": False}
            for n in range(lines)
        ],
    }
    record.update(header)
    return record
