"""Supplier records for X3 import files (MLC_X3_SUPPLIER_WRITE=import_file).

Two templates (layouts in x3_import.templates): new suppliers with their business partner
and default address, and the active flag of existing suppliers, the only field the
connector changes in an existing X3 supplier in this mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlc_dagster.ledger.store import Change
from mlc_dagster.x3_import.files import ExportBatch, ExportItem
from mlc_dagster.x3_import.templates import ImportTemplate, Record, problems, yes_no

UPDATABLE_BY_FILE = {"active"}  # canonical X3 fields the update template carries


def create_records(record: dict, defaults: dict[str, str]) -> list[Record]:
    """A canonical new supplier (see plan._create_supplier) + creation defaults."""
    address = defaults.get("BPAADD", "")
    return [
        ("B", {"BPSNUM": record["supplier_code"], "BPRNAM": record.get("name"),
               "BPRSHO": record.get("short_name"), "BSGCOD": defaults.get("BSGCOD"),
               "ENAFLG": yes_no(record.get("active", True)), "LAN": defaults.get("LAN"),
               "TSSCOD(0)": defaults.get("TSSCOD(0)"), "ACCCOD": defaults.get("ACCCOD"),
               "VACBPR": defaults.get("VACBPR"), "PTE": defaults.get("PTE"), "BPAADD": address}),
        ("A", {"BPAADD": address, "BPAADDLIG(0)": record.get("address"),
               "POSCOD": record.get("postcode"), "CTY": record.get("city"),
               "CRY": record.get("country"), "TEL(0)": record.get("phone"),
               "WEB(0)": record.get("email")}),
    ]


def update_records(code: str, x3_after: dict) -> list[Record]:
    """The X3 side after the change (plan view, Procore field names): all template fields."""
    return [("B", {"BPSNUM": code, "ENAFLG": yes_no(x3_after["is_active"])})]


@dataclass
class SupplierExports:
    """Collects the run's supplier records for the two files."""

    create_template: ImportTemplate
    update_template: ImportTemplate
    defaults: dict[str, str]
    creates: list[ExportItem] = field(default_factory=list)
    updates: list[ExportItem] = field(default_factory=list)

    def add_create(self, entity: str, key: str, record: dict, change: Change) -> list[str]:
        """Queue a new supplier; returns why it cannot be written (then nothing is queued)."""
        records = create_records(record, self.defaults)
        found = problems(self.create_template, records)
        if not found:
            self.creates.append(ExportItem(entity, key, records, change))
        return found

    def add_update(self, code: str, x3_fields: dict, x3_after: dict, change: Change) -> list[str]:
        extra = set(x3_fields) - UPDATABLE_BY_FILE
        if extra:
            return [f"X3 field(s) {', '.join(sorted(extra))} cannot be changed by the supplier "
                    f"import file (template {self.update_template.code})"]
        records = update_records(code, x3_after)
        found = problems(self.update_template, records)
        if not found:
            self.updates.append(ExportItem(change.entity, code, records, change))
        return found

    def batches(self) -> list[ExportBatch]:
        return [ExportBatch(self.create_template, self.creates),
                ExportBatch(self.update_template, self.updates)]
