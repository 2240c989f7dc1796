"""Seeded X3 invoices and suppliers in the canonical shape the X3 clients produce."""

from __future__ import annotations

_TYPES = {1: "invoice", 2: "invoice", 3: "credit_memo", 4: "credit_memo"}


def canonical_invoice(inv: dict) -> dict:
    return {
        "invoice_number": inv["NUM"], "invoice_type": _TYPES.get(inv["PIHTYP"]),
        "supplier_code": inv["BPSNUM"], "supplier_invoice_ref": inv["BPSINV"],
        "invoice_date": inv["INVDAT"], "accounting_date": inv["ACCDAT"],
        "currency": inv["CUR"], "project_code": inv["PJT"], "total_amount": inv["AMTNOT"],
        "update_stamp": inv["UPDDATTIM"],
        "lines": [{"line_number": ln["PIDLIN"], "po_number": ln["POHNUM"], "po_line": ln["POPLIN"],
                   "item_code": ln["ITMREF"], "description": ln["ITMDES"],
                   "gl_account": ln.get("ACC"),
                   "quantity": ln["QTYUOM"], "uom": ln["UOM"], "unit_price": ln["NETPRI"],
                   "amount": ln["AMTNOTLIN"]} for ln in inv["lines"]],
    }


def canonical_supplier(s: dict) -> dict:
    return {
        "supplier_code": s["BPSNUM"], "name": s["BPSNAM"], "short_name": s["BPSSHO"],
        "active": s["ENAFLG"] == 2, "currency": s["CUR"], "country": s["CRY"], "city": s["CTY"],
        "postcode": s["POSCOD"], "address": s["ADDLIG"], "phone": s["TEL"], "email": s["WEB"],
        "tax_id": s["EECNUM"], "update_stamp": s["UPDDATTIM"],
    }


def simple_invoice(number: str = "PI1", po: str = "PO26000001", *, lines=((1000, "100.00"),),
                   **header) -> dict:
    """A valid invoice billing PO lines [(po_line, amount)] of seeded PO26000001 (SUP supplier
    taken from the seed by the caller when it matters)."""
    record = {
        "invoice_number": number, "invoice_type": "invoice", "supplier_code": "SUP001",
        "supplier_invoice_ref": f"INV-{number}", "invoice_date": "2026-03-10",
        "accounting_date": "2026-03-10", "currency": "GBP", "project_code": "P1001",
        "total_amount": "0", "update_stamp": "2026-03-10T10:00:00Z",
        "lines": [{"line_number": (n + 1) * 1000, "po_number": po, "po_line": po_line,
                   "item_code": "X", "description": "Work", "gl_account": "601100",
                   "quantity": "1", "uom": "EA", "unit_price": amount, "amount": amount}
                  for n, (po_line, amount) in enumerate(lines)],
    }
    record.update(header)
    return record
