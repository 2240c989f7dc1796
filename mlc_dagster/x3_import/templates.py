"""X3 import-template layouts and the text of an import file for them (pure).

The file format follows what Sage documents for delimited templates:
- GESAOE (online-help.sagex3.com/erp/12/en-us/Content/FCT/GESAOE.htm): a flat file with
  separators between fields and records; an object that updates several tables gets several
  blocks per instance (a header block, then one block per line).
- The SEED templates on developer.sage.com/x3/import-export-guide/examples/customer-bpc-template
  (and product-itm-template, sales-order-soh-template): records separated by CR + LF, fields
  delimited by `;`, multi-level templates start every record with a one-character record
  type ("B" for the business partner, "E"/"L" for an order header/line), codes in key format.

A value that contains the field or record separator cannot be carried by such a file, so it
is refused here (the caller holds the record) rather than silently cut or escaped in a way
Sage does not document. The X3 administrator creates the templates below in GESAOE from the
layouts printed by `describe()` (README "Sage X3 import files").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TemplateField:
    table: str  # X3 table the field belongs to (for the GESAOE set-up)
    name: str  # X3 field name, `NAME(0)` for the first index of an array field
    length: int | None = None  # X3 field length; a longer value is refused, never cut
    note: str = ""


@dataclass(frozen=True)
class RecordLayout:
    indicator: str | None  # record type written first on each line; None = single-level
    fields: tuple[TemplateField, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class ImportTemplate:
    code: str  # GESAOE template code (configurable; X3 specific codes start with X, Y or Z)
    object: str  # X3 object the template updates (GESAOE "Object")
    description: str
    records: tuple[RecordLayout, ...]  # the first layout starts a new instance
    field_separator: str = ";"
    record_separator: str = "\r\n"
    encoding: str = "utf-8"  # GESAOE character set: set the template to UTF8

    def layout(self, indicator: str | None) -> RecordLayout:
        for layout in self.records:
            if layout.indicator == indicator:
                return layout
        raise KeyError(f"template {self.code} has no record type {indicator!r}")


Record = tuple[str | None, dict]  # (record type, {field name: value})


class ImportFileError(ValueError):
    """A record cannot be written in this template's format."""


def _fields(table: str) -> tuple[TemplateField, ...]:
    """Fields from a `table | field | length | note` text table, one field a line, in file
    order: the layout as the GESAOE set-up lists it."""
    rows = [[cell.strip() for cell in line.split("|", 3)]
            for line in table.strip().splitlines()]
    return tuple(TemplateField(table_name, name, int(length) if length else None, note)
                 for table_name, name, length, note in rows)


def supplier_template(code: str = "YMLCBPS") -> ImportTemplate:
    """New suppliers (object BPS). Creating a supplier also creates its business partner
    and address; the creation-mandatory fields are the ones Sage lists for the BPS template
    (online-help.sagex3.com/erp/11/en-US/OBJ/AOE_BPS.htm: language, statistical group,
    account code, tax rule, payment condition, at least one address code), plus the
    category, which sets the other defaults."""
    return ImportTemplate(code, "BPS", "ml-connector: suppliers created from Procore vendors", (
        RecordLayout("B", _fields("""
            BPSUPPLIER | BPSNUM       | 15 | supplier code
            BPARTNER   | BPRNAM       | 35 | company name
            BPARTNER   | BPRSHO       | 10 | short name
            BPSUPPLIER | BSGCOD       |  5 | category (MLC_X3_NEW_SUPPLIER_DEFAULTS)
            BPSUPPLIER | ENAFLG       |  1 | active: 2 = yes, 1 = no (local menu 1)
            BPARTNER   | LAN          |  3 | language (defaults)
            BPSUPPLIER | TSSCOD(0)    | 20 | statistical group 1 (defaults)
            BPSUPPLIER | ACCCOD       | 10 | accounting code (defaults)
            BPSUPPLIER | VACBPR       |  5 | tax rule (defaults)
            BPSUPPLIER | PTE          | 15 | payment condition (defaults)
            BPSUPPLIER | BPAADD       |  5 | default address code (defaults)
        """)),
        RecordLayout("A", _fields("""
            BPADDRESS  | BPAADD       |  5 | address code, same as the B record's
            BPADDRESS  | BPAADDLIG(0) | 50 | address line 1
            BPADDRESS  | POSCOD       | 10 | postal code
            BPADDRESS  | CTY          | 40 | city
            BPADDRESS  | CRY          |  3 | country
            BPADDRESS  | TEL(0)       | 40 | phone
            BPADDRESS  | WEB(0)       | 80 | e-mail
        """)),
    ))


def supplier_update_template(code: str = "YMLCBPSU") -> ImportTemplate:
    """Existing suppliers (object BPS, modification): only what the connector may change in
    X3. Company name and other business-partner fields are X3's own (and Sage says they are
    changed through the BP template, not the supplier one: AOE_BPS)."""
    return ImportTemplate(code, "BPS", "ml-connector: supplier active flag", (
        RecordLayout("B", _fields("""
            BPSUPPLIER | BPSNUM | 15 | supplier code (must exist)
            BPSUPPLIER | ENAFLG |  1 | active: 2 = yes, 1 = no (local menu 1)
        """)),
    ))


def dimension_template(code: str = "YMLCCCE") -> ImportTemplate:
    """Analytical dimension values (object CCE, function GESCCE; table CACCE keyed by
    dimension type + dimension): created, or updated in modification mode."""
    return ImportTemplate(code, "CCE", "ml-connector: dimension values from Procore", (
        RecordLayout(None, _fields("""
            CACCE | DIE    | 10 | dimension type
            CACCE | CCE    | 15 | dimension
            CACCE | DES    | 30 | description
            CACCE | ENAFLG |  1 | active: 2 = yes, 1 = no (local menu 1)
        """)),
    ))


def yes_no(flag: bool) -> int:
    """X3 local menu 1 (No/Yes) as its rank: 1 = No, 2 = Yes."""
    return 2 if flag else 1


def problems(template: ImportTemplate, records: list[Record]) -> list[str]:
    """Why these records cannot go into a file of this template (empty = they can)."""
    out = []
    if not records or records[0][0] != template.records[0].indicator:
        out.append(f"an instance must start with record type {template.records[0].indicator!r}")
    for indicator, values in records:
        try:
            layout = template.layout(indicator)
        except KeyError as exc:
            out.append(str(exc.args[0]))
            continue
        unknown = set(values) - set(layout.names)
        if unknown:
            out.append(f"fields {', '.join(sorted(unknown))} are not in template {template.code}")
        for spec in layout.fields:
            text = _text(values.get(spec.name))
            if any(s in text for s in (template.field_separator, "\r", "\n")):
                out.append(f"{spec.name} {text!r} contains the file's separator "
                           f"({template.field_separator!r} or a line break)")
            if spec.length is not None and len(text) > spec.length:
                out.append(f"{spec.name} is {len(text)} characters, X3 allows {spec.length}")
            try:
                text.encode(template.encoding)
            except UnicodeEncodeError:
                out.append(f"{spec.name} {text!r} cannot be written in {template.encoding}")
    return out


def render(template: ImportTemplate, instances: list[list[Record]]) -> str:
    """The file text: every record on its own line, fields in template order."""
    lines = []
    for records in instances:
        found = problems(template, records)
        if found:
            raise ImportFileError(f"template {template.code}: " + "; ".join(found))
        for indicator, values in records:
            cells = [_text(values.get(name)) for name in template.layout(indicator).names]
            lines.append(template.field_separator.join(
                ([indicator] if indicator is not None else []) + cells))
    return "".join(line + template.record_separator for line in lines)


def describe(template: ImportTemplate) -> str:
    """The GESAOE set-up of a template, as a markdown table (README, asset metadata)."""
    rows = [f"Template `{template.code}` — object `{template.object}`, delimited, field "
            f"separator `{template.field_separator}`, record separator CR+LF, character set "
            f"{template.encoding.upper()}", "",
            "| Record type | # | Table | Field | Length | Note |", "|---|---|---|---|---|---|"]
    for layout in template.records:
        for number, spec in enumerate(layout.fields, start=1 + (layout.indicator is not None)):
            rows.append(f"| {layout.indicator or '-'} | {number} | {spec.table} | {spec.name} | "
                        f"{spec.length or ''} | {spec.note} |")
    return "\n".join(rows)


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # a bare bool is a bug: X3 wants the local-menu rank
        raise ImportFileError("booleans must be written as X3 local-menu values (yes_no)")
    return str(value)
