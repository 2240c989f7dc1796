"""Where each canonical entity lives in X3, for both APIs: configuration, not code.

Class, representation, node and field names differ between X3 versions and set-ups, so they
are data (`X3Names`, overridable with `dataclasses.replace`), read from the environment by
`names_from_env`. Every name is validated here, so configuration cannot inject into a query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mlc_dagster.resources.sage_x3_client.literals import X3_NAME, check_graphql_name
from mlc_dagster.resources.sage_x3_client.records import ENTITIES


@dataclass(frozen=True)
class EntityNames:
    """Where one canonical entity lives in X3, for both APIs.

    Field maps go canonical name -> REST column / GraphQL dotted path
    (`orderFromSupplier.code.code`). `graphql_inputs` maps canonical names to the flat
    argument names of the create/update mutations, for the writable entities.
    `rest_line_class` / `graphql_line_node` name where the document's *lines* can be
    queried by their own update stamp (None = lines are not polled separately);
    `*_line_document` names the column / path of a line that holds the document key.
    """

    rest_class: str
    rest_representation: str
    rest_key: tuple[str, ...]
    rest_fields: dict[str, str]
    graphql_package: str
    graphql_node: str
    graphql_fields: dict[str, str]
    rest_lines: str | None = None
    rest_line_fields: dict[str, str] = field(default_factory=dict)
    graphql_lines: str | None = None
    graphql_line_fields: dict[str, str] = field(default_factory=dict)
    graphql_inputs: dict[str, str] = field(default_factory=dict)
    rest_line_class: str | None = None
    rest_line_representation: str | None = None
    rest_line_document: str | None = None
    graphql_line_node: str | None = None
    graphql_line_document: str | None = None

    def __post_init__(self) -> None:
        for name in (self.rest_class, self.rest_representation, *self.rest_key,
                     *self.rest_fields.values(), *self.rest_line_fields.values(),
                     *filter(None, [self.rest_lines, self.rest_line_class,
                                    self.rest_line_representation, self.rest_line_document])):
            if not X3_NAME.match(name):
                raise ValueError(f"not an X3 class/column name: {name!r}")
        paths = [*self.graphql_fields.values(), *self.graphql_line_fields.values(),
                 *filter(None, [self.graphql_line_document])]
        for name in (self.graphql_package, self.graphql_node, *self.graphql_inputs.values(),
                     *filter(None, [self.graphql_lines, self.graphql_line_node]),
                     *(part for path in paths for part in path.split("."))):
            check_graphql_name(name)


@dataclass(frozen=True)
class LineValueSource:
    """Where one analytic value of a PO line is read on REST.

    `member` None: `values` is a column of the line itself. Otherwise `member` is an array
    of the PO `$details` with one entry per line, matched on `line_key` (the line number).
    `values` may be an X3 array column (JSON list); then `selectors` is the parallel array
    saying what each position holds (chart of accounts, dimension type), as in the X3 link
    expressions `COA(indice);LINACC(indice)` and `DIE(indice);CCE(indice)`.
    """

    member: str | None
    line_key: str | None
    values: str
    selectors: str | None = None

    def __post_init__(self) -> None:
        for name in filter(None, (self.member, self.line_key, self.values, self.selectors)):
            if not X3_NAME.match(name):
                raise ValueError(f"not an X3 column name: {name!r}")
        if (self.member is None) != (self.line_key is None):
            raise ValueError("a line value source needs both a member and its line key, or neither")

    @classmethod
    def parse(cls, text: str, setting: str) -> LineValueSource:
        """`COLUMN`, `COLUMN[SELECTORS]`, or `MEMBER:LINE_KEY:VALUES[:SELECTORS]`."""
        parts = [p.strip() for p in text.split(":")]
        try:
            if len(parts) == 1:
                values, _, rest = parts[0].partition("[")
                return cls(None, None, values, rest.rstrip("]") or None)
            if len(parts) in (3, 4):
                return cls(parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else None)
        except ValueError as exc:
            raise ValueError(f"{setting}: {exc}") from None
        raise ValueError(f"{setting} must be COLUMN, COLUMN[SELECTORS] or "
                         f"MEMBER:LINE_KEY:VALUES[:SELECTORS], got {text!r}")

    def describe(self) -> str:
        selector = f" chosen by {self.selectors}" if self.selectors else ""
        where = f"{self.member}[{self.line_key}]." if self.member else "line."
        return f"{where}{self.values}{selector}"


@dataclass(frozen=True)
class MappingKey:
    """What a PO line is mapped to a Procore cost code by (`MLC_MAPPING_KEY`).

    `gl_account`: the line's GL account (of chart `chart`, or of the first chart when
    None). `dimension:<TYPE>`: the line's analytical dimension value of that type, e.g.
    the dimension type whose values a contractor maps to cost codes.
    """

    kind: str = "gl_account"
    dimension_type: str | None = None
    chart: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("gl_account", "dimension"):
            raise ValueError(f"MLC_MAPPING_KEY must be gl_account or dimension:<TYPE>, "
                             f"got {self.kind!r}")
        if (self.kind == "dimension") != bool(self.dimension_type):
            raise ValueError("MLC_MAPPING_KEY=dimension needs a dimension type, "
                             "e.g. dimension:CCT")
        for name in filter(None, (self.dimension_type, self.chart)):
            if not X3_NAME.match(name):
                raise ValueError(f"not an X3 code: {name!r}")

    @classmethod
    def parse(cls, text: str | None, chart: str | None = None) -> MappingKey:
        text = (text or "gl_account").strip()
        kind, _, dimension_type = text.partition(":")
        return cls(kind.strip().lower(), dimension_type.strip() or None, chart or None)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MappingKey:
        """`MLC_MAPPING_KEY` and `MLC_X3_CHART`: the one reading of them, shared by the X3
        client's names and the mapping table's parser."""
        return cls.parse((env.get("MLC_MAPPING_KEY") or "").strip() or None,
                         (env.get("MLC_X3_CHART") or "").strip() or None)

    @property
    def label(self) -> str:
        return "GL account" if self.kind == "gl_account" else f"dimension {self.dimension_type}"

    @property
    def csv_column(self) -> str:
        """The key column of the mapping CSV for this key."""
        return "gl_account" if self.kind == "gl_account" else "dimension"


# Defaults with their sources (C = Sage page, D = V11 table dictionary, A = assumption;
# the full table is in docs/api-assumptions.md).
DEFAULT_LINE_ACCOUNT = LineValueSource("PORDERC", "POPLIN", "LINACC", "COA")  # D: PORDERC
DEFAULT_LINE_DIMENSION = LineValueSource("CPTANALIN", "VCRLIN", "CCE", "DIE")  # 3P+D
# X3 GraphQL: x3Purchasing lists node purchaseOrderLineDimensionDimensions (C: reference/
# x3Purchasing); its properties by analogy with purchaseRequestLineDimensionDimensions (C).
DEFAULT_GRAPHQL_LINE_DIMENSIONS = "purchaseOrderLineDimensionDimensions"


def _purchase_order() -> EntityNames:
    return EntityNames(
        rest_class="PORDER", rest_representation="PORDER", rest_key=("POHNUM",),
        rest_fields={
            "po_number": "POHNUM", "po_type": "POHTYP", "site": "POHFCY", "supplier_code": "BPSNUM",
            "project_code": "PJTH", "order_date": "ORDDAT", "currency": "CUR", "revision": "REVNUM",
            "closed": "CLEFLG", "reference": "ORDREF", "total_amount": "TOTORD",
            "update_stamp": "UPDDATTIM",
        },
        rest_lines="PORDERQ",
        rest_line_fields={
            "line_number": "POPLIN", "item_code": "ITMREF", "description": "ITMDES",
            "project_code": "PJT", "quantity": "QTYUOM", "uom": "UOM",
            "unit_price": "NETPRI", "amount": "LINAMT", "closed": "LINCLEFLG",
            "update_stamp": "UPDDATTIM",
        },
        rest_line_class="PORDERQ", rest_line_representation="PORDERQ",
        rest_line_document="POHNUM",
        graphql_package="Purchasing", graphql_node="purchaseOrder",
        graphql_fields={
            "po_number": "_id", "site": "purchaseSite.code",
            "supplier_code": "orderFromSupplier.code.code", "project_code": "project.code",
            "order_date": "orderDate", "currency": "currency.code", "revision": "revisionNumber",
            "closed": "isClosed", "reference": "internalOrderReference",
            "total_amount": "totalAmountExcludingTax", "update_stamp": "_updateStamp",
        },
        graphql_lines="purchaseOrderLines",
        graphql_line_fields={
            "line_number": "lineNumber", "item_code": "product.code",
            "description": "productDescriptionInUserLanguage", "gl_account": "account.code",
            "project_code": "project.code", "quantity": "quantityInOrderUnitOrdered",
            "uom": "orderUnit.code", "unit_price": "netPrice", "amount": "lineAmountExcludingTax",
            "closed": "isClosed", "update_stamp": "_updateStamp",
        },
        graphql_line_node="purchaseOrderLine", graphql_line_document="purchaseOrder._id",
    )


def _purchase_invoice() -> EntityNames:
    return EntityNames(
        rest_class="PINVOICE", rest_representation="PINVOICE", rest_key=("NUM",),
        rest_fields={
            "invoice_number": "NUM", "invoice_type": "PIHTYP", "supplier_code": "BPSNUM",
            "supplier_invoice_ref": "BPSINV", "invoice_date": "INVDAT", "accounting_date": "ACCDAT",
            "currency": "CUR", "project_code": "PJT", "total_amount": "AMTNOT", "status": "STA",
            "update_stamp": "UPDDATTIM",
        },
        rest_lines="PINVOICED",
        rest_line_fields={
            "line_number": "PIDLIN", "po_number": "POHNUM", "po_line": "POPLIN",
            "item_code": "ITMREF", "description": "ITMDES",
            "quantity": "QTYUOM", "uom": "UOM", "unit_price": "NETPRI", "amount": "AMTNOTLIN",
        },
        graphql_package="Purchasing", graphql_node="purchaseInvoice",
        graphql_fields={
            "invoice_number": "_id", "invoice_type": "category",
            "supplier_code": "billBySupplier.code.code", "supplier_invoice_ref": "sourceDocument",
            "invoice_date": "sourceDocumentDate", "accounting_date": "accountingDate",
            "currency": "currency.code", "total_amount": "amountOfLinesExcludingTax",
            "status": "status", "update_stamp": "_updateStamp",
        },
        graphql_lines="purchaseInvoiceLines",
        graphql_line_fields={
            "line_number": "lineNumber", "po_number": "sourceDocument",
            "po_line": "sourceDocumentLineNumber", "item_code": "product.code",
            "description": "productDescriptionInUserLanguage",
            "quantity": "quantityInPurchaseUnitInvoiced", "uom": "purchaseUnit.code",
            "unit_price": "netPrice", "amount": "lineAmountExcludingTax",
        },
    )


def _supplier() -> EntityNames:
    return EntityNames(
        rest_class="BPSUPPLIER", rest_representation="BPSUPPLIER", rest_key=("BPSNUM",),
        rest_fields={
            "supplier_code": "BPSNUM", "name": "BPSNAM", "short_name": "BPSSHO", "active": "ENAFLG",
            "currency": "CUR", "country": "CRY", "city": "CTY", "postcode": "POSCOD",
            "address": "ADDLIG", "phone": "TEL", "email": "WEB", "tax_id": "EECNUM",
            "update_stamp": "UPDDATTIM",
        },
        graphql_package="MasterData", graphql_node="supplier",
        graphql_fields={
            "supplier_code": "code.code", "name": "companyName1", "short_name": "shortCompanyName",
            "active": "isActive", "currency": "currency.code",
            "country": "addressByDefault.country.code", "city": "addressByDefault.city",
            "postcode": "addressByDefault.zipCode", "address": "addressByDefault.addressLine1",
            "phone": "addressByDefault.phone", "email": "addressByDefault.email",
            "tax_id": "code.vatNumber", "update_stamp": "_updateStamp",
        },
        graphql_inputs={
            "supplier_code": "code", "name": "companyName1", "short_name": "shortCompanyName",
            "active": "isActive", "tax_id": "vatNumber", "currency": "currency",
            "country": "country", "city": "city", "postcode": "zipCode", "address": "addressLine1",
            "phone": "phone", "email": "email",
        },
    )


def _gl_account() -> EntityNames:
    return EntityNames(
        rest_class="GACCOUNT", rest_representation="GACCOUNT", rest_key=("COA", "ACC"),
        rest_fields={"chart": "COA", "account": "ACC", "description": "DES",
                     "update_stamp": "UPDDATTIM"},
        graphql_package="FinanceData", graphql_node="account",
        graphql_fields={"chart": "chartOfAccounts.code", "account": "code",
                        "description": "localizedDescription", "update_stamp": "_updateStamp"},
    )


def _dimension() -> EntityNames:
    return EntityNames(
        rest_class="CACCE", rest_representation="CACCE", rest_key=("DIE", "CCE"),
        rest_fields={"dimension_type": "DIE", "code": "CCE", "description": "DES",
                     "short_description": "DESSHO", "active": "ENAFLG",
                     "update_stamp": "UPDDATTIM"},
        graphql_package="FinanceData", graphql_node="dimension",
        graphql_fields={"dimension_type": "dimensionType.code", "code": "dimension",
                        "description": "localizedDescription",
                        "short_description": "localizedShortDescription", "active": "isActive",
                        "update_stamp": "_updateStamp"},
        graphql_inputs={"dimension_type": "dimensionType", "code": "dimension",
                        "description": "localizedDescription",
                        "short_description": "localizedShortDescription", "active": "isActive"},
    )


@dataclass(frozen=True)
class X3Names:
    """All X3 names in one place; override any part with `dataclasses.replace`.

    `invoice_final_rest` / `invoice_final_graphql`: the values of the purchase invoice
    status field (canonical `status`) that mean the invoice is final (posted) in X3; every
    other value, and a missing field, reads as not final (`is_final` False).
    """

    graphql_root_prefix: str = "x3"
    purchase_order: EntityNames = field(default_factory=_purchase_order)
    purchase_invoice: EntityNames = field(default_factory=_purchase_invoice)
    supplier: EntityNames = field(default_factory=_supplier)
    gl_account: EntityNames = field(default_factory=_gl_account)
    dimension: EntityNames = field(default_factory=_dimension)
    mapping_key: MappingKey = field(default_factory=MappingKey)
    line_account: LineValueSource = DEFAULT_LINE_ACCOUNT
    line_dimension: LineValueSource = DEFAULT_LINE_DIMENSION
    graphql_line_dimensions: str = DEFAULT_GRAPHQL_LINE_DIMENSIONS
    invoice_final_rest: tuple[str, ...] = ("2",)
    invoice_final_graphql: tuple[str, ...] = ("posted",)

    def entity(self, name: str) -> EntityNames:
        if name not in ENTITIES:
            raise ValueError(f"unknown X3 entity {name!r}; choose one of {', '.join(ENTITIES)}")
        return getattr(self, name)

    def graphql_package(self, entity: str) -> str:
        return check_graphql_name(self.graphql_root_prefix + self.entity(entity).graphql_package)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def names_from_env(env: Mapping[str, str]) -> X3Names:
    """X3Names with the `MLC_X3_*` / `MLC_MAPPING_KEY` overrides of an environment.

    Pure (the environment is passed in), so the resource, `ping` and tests share it. Every
    bad value raises a ValueError naming its setting.
    """
    def get(name: str) -> str:
        return (env.get(name) or "").strip()

    names = X3Names()
    changes: dict[str, Any] = {"mapping_key": MappingKey.from_env(env)}
    if get("MLC_X3_GRAPHQL_ROOT_PREFIX"):
        changes["graphql_root_prefix"] = get("MLC_X3_GRAPHQL_ROOT_PREFIX")
    if get("MLC_X3_REST_LINE_ACCOUNT"):
        changes["line_account"] = LineValueSource.parse(get("MLC_X3_REST_LINE_ACCOUNT"),
                                                        "MLC_X3_REST_LINE_ACCOUNT")
    if get("MLC_X3_REST_LINE_DIMENSION"):
        changes["line_dimension"] = LineValueSource.parse(get("MLC_X3_REST_LINE_DIMENSION"),
                                                          "MLC_X3_REST_LINE_DIMENSION")
    if get("MLC_X3_GRAPHQL_LINE_DIMENSIONS"):
        changes["graphql_line_dimensions"] = check_graphql_name(
            get("MLC_X3_GRAPHQL_LINE_DIMENSIONS"))
    if get("MLC_X3_INVOICE_FINAL_VALUES"):
        changes["invoice_final_rest"] = _csv(get("MLC_X3_INVOICE_FINAL_VALUES"))
    if get("MLC_X3_GRAPHQL_INVOICE_FINAL_VALUES"):
        changes["invoice_final_graphql"] = _csv(get("MLC_X3_GRAPHQL_INVOICE_FINAL_VALUES"))

    order, invoice = names.purchase_order, names.purchase_invoice
    line_fields = dict(order.graphql_line_fields)
    if get("MLC_X3_GRAPHQL_LINE_ACCOUNT"):
        line_fields["gl_account"] = get("MLC_X3_GRAPHQL_LINE_ACCOUNT")
    order_changes: dict[str, Any] = {"graphql_line_fields": line_fields}
    if get("MLC_X3_POLL_LINE_STAMPS").lower() in ("0", "false", "no", "off"):
        order_changes.update(rest_line_class=None, rest_line_representation=None,
                             graphql_line_node=None)
    invoice_changes: dict[str, Any] = {}
    if get("MLC_X3_INVOICE_STATUS_FIELD"):
        invoice_changes["rest_fields"] = {**invoice.rest_fields,
                                          "status": get("MLC_X3_INVOICE_STATUS_FIELD")}
    if get("MLC_X3_GRAPHQL_INVOICE_STATUS_FIELD"):
        invoice_changes["graphql_fields"] = {**invoice.graphql_fields,
                                             "status": get("MLC_X3_GRAPHQL_INVOICE_STATUS_FIELD")}
    try:
        changes["purchase_order"] = replace(order, **order_changes)
        changes["purchase_invoice"] = replace(invoice, **invoice_changes)
    except ValueError as exc:
        raise ValueError(f"Sage X3 name settings: {exc}") from None
    return replace(names, **changes)
