"""The class dictionary: the X3 classes both APIs serve, their columns, and write validation.

REST classes (field names = X3 columns): PORDER (key POHNUM, lines PORDERQ by POPLIN, line
accounts in member PORDERC, line dimensions in member CPTANALIN), PINVOICE (key NUM, lines
PINVOICED by PIDLIN, status STA), BPSUPPLIER (BPSNUM), GACCOUNT (COA~ACC, read-only), CACCE
(DIE~CCE), PORDERQ (POHNUM~POPLIN~POQSEQ, list-only: line stamps). Internally, as in the
seed, lines live under "lines".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from mlc_sandbox.sage_x3.errors import X3Error


@dataclass(frozen=True)
class Field:
    """One X3 column: kind ("str", "int", "dec", "date", "datetime"), max length, default,
    allowed local-menu values, and whether the server computes it (read-only)."""

    kind: str
    max_len: int | None = None
    default: Any = None
    choices: tuple[int, ...] | None = None
    read_only: bool = False


def _s(max_len: int, default: str = "") -> Field:
    return Field("str", max_len, default)


def _i(default: int = 0, choices: tuple[int, ...] | None = None) -> Field:
    return Field("int", None, default, choices)


_DEC = Field("dec", default="0")
_COMPUTED_DEC = Field("dec", read_only=True)
_STAMP = Field("datetime", read_only=True)
_YES_NO = (1, 2)  # local menu 1: 1 = No, 2 = Yes


@dataclass(frozen=True)
class LineMember:
    """A per-line child array of a document's `$details`, kept on the line internally.

    X3 keeps neither GL accounts nor analytical dimensions on the PO quantity/price lines
    (V11 table dictionary: PORDERQ and PORDERP have no ACC / CCE column). The line accounts
    are the LINACC(10) array of PORDERC ("Cumulative POs", key POHNUM+POPLIN), indexed like
    its COA(10) chart array (dictionary link `COA(indice);LINACC(indice)`); the line
    dimensions are the CCE array of CPTANALIN (key VCRNUM+VCRLIN, community SQL), indexed
    like DIE (`DIE(indice);CCE(indice)`). The sandbox serves each as its own member of the
    `$details`, one entry per line: `{"POPLIN": 1000, "COA": ["SEED"], "LINACC": ["601100"]}`.
    ASSUMPTION: the member names and the JSON shape of X3 array columns (a JSON list).
    `arrays` maps served array columns to the internal line keys holding them.
    """

    name: str
    line_key: str
    arrays: dict[str, str]


@dataclass(frozen=True)
class X3Class:
    name: str
    seed_attr: str  # list attribute on SeedData / X3State
    keys: tuple[str, ...]
    fields: dict[str, Field]
    mandatory: tuple[str, ...]
    writable: bool = True
    lines_member: str | None = None  # REST member name of the embedded lines
    line_key: str | None = None
    line_fields: dict[str, Field] = field(default_factory=dict)
    line_amount: str | None = None  # line amount computed from QTYUOM * NETPRI
    total_field: str | None = None  # header total = sum of line amounts
    line_members: tuple[LineMember, ...] = ()
    query_fields: tuple[str, ...] | None = None  # the $query facet; None = every field
    details: bool = True  # False: only the $query facet exists (a list-only class)

    @property
    def kinds(self) -> dict[str, str]:
        return {name: f.kind for name, f in self.fields.items()}

    @property
    def query_facet(self) -> tuple[str, ...]:
        return self.query_fields if self.query_fields is not None else tuple(self.fields)


# X3 computes a PO line's amount (LINAMT, "Line amount - tax") from the ordered quantity and
# the net price, and the header totals from the lines: they are read-only to a client.
# ASSUMPTION (no Sage page found stating the formula): LINAMT = QTYUOM x NETPRI rounded to
# 2 decimals (NETPRI is already net of the line's discounts/charges); TOTORD = sum(LINAMT).
_COMPUTED_LINE_AMOUNT = Field("dec", default="0.00", read_only=True)

PORDER = X3Class(
    name="PORDER", seed_attr="x3_purchase_orders", keys=("POHNUM",),
    fields={
        "POHNUM": _s(20), "POHTYP": _i(1, (1, 2)), "POHFCY": _s(5), "ORDDAT": Field("date"),
        "BPSNUM": _s(15), "PJTH": _s(24), "CUR": _s(3), "REVNUM": _i(0),
        "CLEFLG": _i(1, _YES_NO), "APPFLG": _i(1, (1, 2, 3, 4, 5)), "ORDREF": _s(20),
        "TOTORD": _COMPUTED_DEC, "CREDATTIM": _STAMP, "UPDDATTIM": _STAMP,
    },
    mandatory=("POHNUM", "BPSNUM"),
    lines_member="PORDERQ", line_key="POPLIN",
    line_fields={
        "POHNUM": Field("str", 20, read_only=True), "POPLIN": _i(0), "POQSEQ": _i(1),
        "ITMREF": _s(20), "ITMDES": _s(30), "PJT": _s(24), "QTYUOM": _DEC,
        "UOM": _s(3), "NETPRI": _DEC, "LINAMT": _COMPUTED_LINE_AMOUNT,
        "LINCLEFLG": _i(1, _YES_NO), "LINSTA": _i(1, (1, 2, 3)), "LINREVNUM": _i(0),
        "UPDDATTIM": _STAMP,
    },
    line_amount="LINAMT", total_field="TOTORD",
    line_members=(
        LineMember("PORDERC", "POPLIN", {"COA": "COA", "LINACC": "LINACC"}),
        LineMember("CPTANALIN", "VCRLIN", {"DIE": "DIE", "CCE": "CCE"}),
    ),
    # ASSUMPTION: the representation's $query facet lists these header properties (not
    # APPFLG nor CREDATTIM); which properties a facet has is the representation's choice.
    query_fields=("POHNUM", "POHTYP", "POHFCY", "ORDDAT", "BPSNUM", "PJTH", "CUR", "REVNUM",
                  "CLEFLG", "ORDREF", "TOTORD", "UPDDATTIM"),
)

# PINVOICE.STA, the invoice status: ASSUMPTION (no Sage page found naming the column and
# its local menu): 1 = not posted, 2 = posted. The connector reads it through the
# configurable MLC_X3_INVOICE_STATUS_FIELD / MLC_X3_INVOICE_FINAL_VALUES.
INVOICE_NOT_POSTED, INVOICE_POSTED = 1, 2

PINVOICE = X3Class(
    name="PINVOICE", seed_attr="x3_purchase_invoices", keys=("NUM",),
    fields={
        "NUM": _s(20), "PIHTYP": _i(1, (1, 2, 3, 4)), "BPSNUM": _s(15), "BPSINV": _s(30),
        "INVDAT": Field("date"), "ACCDAT": Field("date"), "CUR": _s(3), "PJT": _s(24),
        "STA": _i(INVOICE_NOT_POSTED, (INVOICE_NOT_POSTED, INVOICE_POSTED)),
        "AMTNOT": _COMPUTED_DEC, "CREDATTIM": _STAMP, "UPDDATTIM": _STAMP,
    },
    mandatory=("NUM", "BPSNUM"),
    lines_member="PINVOICED", line_key="PIDLIN",
    # V11 dictionary: PINVOICED has no account or dimension column either.
    line_fields={
        "NUM": Field("str", 20, read_only=True), "PIDLIN": _i(0), "POHNUM": _s(20),
        "POPLIN": _i(0), "POQSEQ": _i(0), "ITMREF": _s(20), "ITMDES": _s(30),
        "QTYUOM": _DEC, "UOM": _s(3), "NETPRI": _DEC, "AMTNOTLIN": _COMPUTED_LINE_AMOUNT,
        "UPDDATTIM": _STAMP,
    },
    line_amount="AMTNOTLIN", total_field="AMTNOT",
    query_fields=("NUM", "PIHTYP", "BPSNUM", "BPSINV", "INVDAT", "ACCDAT", "CUR", "PJT", "STA",
                  "AMTNOT", "UPDDATTIM"),
)

# The PO quantity lines as a class of their own, list-only, so lines can be polled by their
# own UPDDATTIM (technical column of every table, developer-guide technical-columns).
# ASSUMPTION: a PORDERQ class/representation with a $query facet exists on the customer's X3
# (MLC_X3_POLL_LINE_STAMPS=0 turns line polling off where it does not).
PORDERQ = X3Class(
    name="PORDERQ", seed_attr="x3_purchase_order_lines", keys=("POHNUM", "POPLIN", "POQSEQ"),
    fields={"POHNUM": _s(20), "POPLIN": _i(0), "POQSEQ": _i(1), "ITMREF": _s(20),
            "QTYUOM": _DEC, "LINAMT": _COMPUTED_LINE_AMOUNT, "UPDDATTIM": _STAMP},
    mandatory=(), writable=False, details=False,
)

BPSUPPLIER = X3Class(
    name="BPSUPPLIER", seed_attr="x3_suppliers", keys=("BPSNUM",),
    fields={
        "BPSNUM": _s(15), "BPSNAM": _s(35), "BPSSHO": _s(10), "BPSTYP": _i(1, (1, 2, 3)),
        "ENAFLG": _i(2, _YES_NO), "CUR": _s(3), "CRY": _s(3), "CTY": _s(40), "POSCOD": _s(10),
        "ADDLIG": _s(50), "TEL": _s(40), "WEB": _s(80), "EECNUM": _s(20),
        "CREDATTIM": _STAMP, "UPDDATTIM": _STAMP,
    },
    mandatory=("BPSNUM", "BPSNAM"),
)

GACCOUNT = X3Class(
    name="GACCOUNT", seed_attr="x3_gl_accounts", keys=("COA", "ACC"),
    fields={"COA": _s(10), "ACC": _s(15), "DES": _s(60), "UPDDATTIM": _STAMP},
    mandatory=("COA", "ACC"), writable=False,
)

CACCE = X3Class(
    name="CACCE", seed_attr="x3_dimensions", keys=("DIE", "CCE"),
    fields={
        "DIE": _s(10), "CCE": _s(15), "DES": _s(30), "DESSHO": _s(10),
        "ENAFLG": _i(2, _YES_NO), "CREDATTIM": _STAMP, "UPDDATTIM": _STAMP,
    },
    mandatory=("DIE", "CCE", "DES"),
)

# Classic objects whose standard representation is read-only through the web API (class
# -> the classic function that maintains it). Sources: "SOAP web services are connected to
# classic code (V6 style objects and sub-programs) ... REST web services are connected to
# classes and representations (V7 style programming)" (online-help V7DEV
# integration-guide_index); "When a Sage X3 function is available in read mode only, the
# representation and the class have been described only for query and detail facets ... an
# automatic switch is done to the corresponding Classic page when an edit activity is
# requested" (V7DEV workbench-reference_launching-url). Suppliers (FCT/GESBPS, classic
# masks BPS0..BPS4) and dimensions (FCT/GESCCE) are classic functions; that their standard
# representations have no $create/$edit facet is the stricter reading (ASSUMPTION, see
# docs/api-assumptions.md). The sandbox setting `writable_classes` stands for a customer
# who built a writable class/representation ("a custom class that you have implemented",
# integration-guide_ws-update).
WEB_API_READ_ONLY = {"BPSUPPLIER": "GESBPS", "CACCE": "GESCCE"}


def read_only_message(class_name: str) -> str:
    return (f"{class_name}: the $create and $edit facets are not available; the standard "
            f"{class_name} representation is read-only (query and details only: "
            f"{WEB_API_READ_ONLY[class_name]} is a classic function). Write it with an import "
            "template (GESAOE) or a class/representation built for updates.")


CLASSES: dict[str, X3Class] = {c.name: c for c in (PORDER, PINVOICE, BPSUPPLIER, GACCOUNT, CACCE,
                                                    PORDERQ)}


def clean_body(fields: dict[str, Field], body: dict, where: str) -> dict:
    """Validate and normalise a (partial) write body against the class dictionary.

    `$`-prefixed members ($uuid, $etag, $delete ...) and `<FIELD>_REF` companions are
    metadata and ignored, as are server-computed columns (UPDDATTIM, TOTORD ...). Unknown
    properties are refused rather than silently dropped, so a client typo is visible.
    """
    values: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("$") or (name.endswith("_REF") and name[:-4] in fields):
            continue
        spec = fields.get(name)
        if spec is None:
            raise X3Error(400, f"{where}: unknown property {name}")
        if spec.read_only:
            continue
        values[name] = _convert(spec, value, name)
    return values


def _convert(spec: Field, value: Any, name: str) -> Any:
    if value is None:
        return spec.default
    if spec.kind == "str":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise X3Error(400, f"{name} : Invalid value (text expected)")
        text = str(value)
        if spec.max_len is not None and len(text) > spec.max_len:
            raise X3Error(400, f"{name} : Too long ({len(text)} characters, maximum "
                               f"{spec.max_len})")
        return text
    if spec.kind == "int":
        number = _parsed(value, int, name, "integer")
        if spec.choices and number not in spec.choices:
            raise X3Error(400, f"{name} : Invalid value {number} (allowed: "
                               f"{', '.join(map(str, spec.choices))})")
        return number
    if spec.kind == "dec":
        return format(_parsed(value, _x3_decimal, name, "number"), "f")
    if spec.kind == "date":
        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise X3Error(400, f"{name} : Invalid date {value!r} (YYYY-MM-DD expected)") from None
    raise X3Error(400, f"{name} : cannot be written")  # pragma: no cover


def _parsed(value: Any, parse: Callable[[str], Any], name: str, expected: str) -> Any:
    """`parse` applied to the text of a JSON scalar; a boolean or an unparsable value is an
    X3 error naming the `expected` kind."""
    try:
        if isinstance(value, bool):
            raise ValueError
        return parse(str(value).strip())
    except (ValueError, ArithmeticError):  # decimal.InvalidOperation is an ArithmeticError
        raise X3Error(400, f"{name} : Invalid value {value!r} ({expected} expected)") from None


def _x3_decimal(text: str) -> Decimal:
    number = Decimal(text)
    # X3 decimals are at most 15 integer digits and 9 decimals; refusing more
    # also keeps "1e999999999" from being formatted into a gigabyte string.
    if not number.is_finite() or number.adjusted() > 15 or number.as_tuple().exponent < -9:
        raise InvalidOperation
    return number
