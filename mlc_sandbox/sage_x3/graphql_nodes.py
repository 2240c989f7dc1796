"""GraphQL nodes over X3 records: each node's fields computed from X3 columns on demand."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mlc_sandbox.sage_x3 import where
from mlc_sandbox.sage_x3.classes import INVOICE_POSTED
from mlc_sandbox.sage_x3.state import X3State

if TYPE_CHECKING:
    from mlc_sandbox.sage_x3.graphql_api import GraphQLApi


def _dt(raw: Any) -> datetime | None:
    return where.stored_value("datetime", raw)


def _day(raw: Any) -> date | None:
    return where.stored_value("date", raw)


def _dec(raw: Any) -> Decimal | None:
    return where.stored_value("dec", raw)


def _ref(code: Any) -> dict | None:
    """A reference to a node we only know by code (site, currency, project, unit ...)."""
    if code in (None, ""):
        return None
    return {"_id": str(code), "code": str(code)}


def _yes_no(flag: Any) -> str | None:
    return None if flag in (None, "") else ("yes" if int(flag) == 2 else "no")


class Node(Mapping):
    """A GraphQL node over one X3 record whose fields are computed on first access.

    graphql-core's default resolver reads Mappings with `.get`, and so do the filter and
    orderBy evaluators; a query over 20,000 POs therefore only computes the one or two
    fields it filters and sorts on, plus the selected fields of the rows it returns.
    """

    __slots__ = ("_rec", "_fields", "_cache")

    def __init__(self, rec: dict, fields: dict[str, Callable[[dict], Any]]) -> None:
        self._rec = rec
        self._fields = fields
        self._cache: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        cache = self._cache
        if key in cache:
            return cache[key]
        value = cache[key] = self._fields[key](self._rec)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """Hot path of every filter, sort and resolver: skip Mapping.get's KeyError dance."""
        return self[key] if key in self._fields else default

    def __iter__(self):
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


class GraphQLNodes:
    """X3 record -> GraphQL node mapping for one request (lookups cached per request).

    Nodes carry typed values (datetime, date, Decimal) so that filters compare by type;
    the custom scalars serialise them. A collection is `{"query": fn}`: graphql-core's
    default resolver calls it with the field arguments.
    """

    def __init__(self, api: GraphQLApi) -> None:
        self.api = api
        self.state = api.state
        self._index: dict[str, dict[Any, dict]] = {}
        self.purchase_order_fields = {
            "_id": lambda r: r["POHNUM"], "id": lambda r: r["POHNUM"],
            "_updateStamp": lambda r: _dt(r.get("UPDDATTIM")),
            "_createStamp": lambda r: _dt(r.get("CREDATTIM")),
            "revisionNumber": lambda r: r.get("REVNUM"),
            "orderDate": lambda r: _day(r.get("ORDDAT")),
            "isClosed": lambda r: _yes_no(r.get("CLEFLG")),
            "orderFromSupplier": lambda r: self.supplier_by_code(r.get("BPSNUM")),
            "project": lambda r: _ref(r.get("PJTH")),
            "purchaseSite": lambda r: _ref(r.get("POHFCY")),
            "currency": lambda r: _ref(r.get("CUR")),
            "internalOrderReference": lambda r: r.get("ORDREF"),
            "totalAmountExcludingTax": lambda r: _dec(r.get("TOTORD")),
            "purchaseOrderLines": lambda r: self._lines(r, "PurchaseOrderLine",
                                                        self.purchase_order_line_fields),
        }
        self.purchase_order_line_fields = {
            "_id": lambda ln: f"{ln.get('POHNUM')}~{ln.get('POPLIN')}",
            "_updateStamp": lambda ln: _dt(ln.get("UPDDATTIM")),
            "purchaseOrder": lambda ln: self.order_by_number(ln.get("POHNUM")),
            "lineNumber": lambda ln: ln.get("POPLIN"),
            "sequenceNumber": lambda ln: ln.get("POQSEQ"),
            "product": _product, "productDescriptionInUserLanguage": lambda ln: ln.get("ITMDES"),
            "account": lambda ln: self.account_by_code(_first(ln.get("LINACC"))),
            "project": lambda ln: _ref(ln.get("PJT")),
            "quantityInOrderUnitOrdered": lambda ln: _dec(ln.get("QTYUOM")),
            "orderUnit": lambda ln: _ref(ln.get("UOM")),
            "netPrice": lambda ln: _dec(ln.get("NETPRI")),
            "lineAmountExcludingTax": lambda ln: _dec(ln.get("LINAMT")),
            "isClosed": lambda ln: _yes_no(ln.get("LINCLEFLG")),
        }
        self.purchase_invoice_fields = {
            "_id": lambda r: r["NUM"], "id": lambda r: r["NUM"],
            "_updateStamp": lambda r: _dt(r.get("UPDDATTIM")),
            "_createStamp": lambda r: _dt(r.get("CREDATTIM")),
            "category": lambda r: "creditMemo" if r.get("PIHTYP") in (3, 4) else "invoice",
            "billBySupplier": lambda r: self.supplier_by_code(r.get("BPSNUM")),
            "sourceDocument": lambda r: r.get("BPSINV"),
            "sourceDocumentDate": lambda r: _day(r.get("INVDAT")),
            "accountingDate": lambda r: _day(r.get("ACCDAT")),
            "currency": lambda r: _ref(r.get("CUR")),
            "amountOfLinesExcludingTax": lambda r: _dec(r.get("AMTNOT")),
            "status": lambda r: "posted" if r.get("STA") == INVOICE_POSTED else "notPosted",
            "purchaseInvoiceLines": lambda r: self._lines(r, "PurchaseInvoiceLine",
                                                          self.purchase_invoice_line_fields),
        }
        self.purchase_invoice_line_fields = {
            "_id": lambda ln: f"{ln.get('NUM')}~{ln.get('PIDLIN')}",
            "_updateStamp": lambda ln: _dt(ln.get("UPDDATTIM")),
            "lineNumber": lambda ln: ln.get("PIDLIN"),
            "sourceDocument": lambda ln: ln.get("POHNUM"),
            "sourceDocumentLineNumber": lambda ln: ln.get("POPLIN"),
            "product": _product, "productDescriptionInUserLanguage": lambda ln: ln.get("ITMDES"),
            "quantityInPurchaseUnitInvoiced": lambda ln: _dec(ln.get("QTYUOM")),
            "purchaseUnit": lambda ln: _ref(ln.get("UOM")),
            "netPrice": lambda ln: _dec(ln.get("NETPRI")),
            "lineAmountExcludingTax": lambda ln: _dec(ln.get("AMTNOTLIN")),
        }
        self.supplier_fields = {
            "_id": lambda r: r["BPSNUM"],
            "_updateStamp": lambda r: _dt(r.get("UPDDATTIM")),
            "_createStamp": lambda r: _dt(r.get("CREDATTIM")),
            "code": lambda r: {"_id": r["BPSNUM"], "code": r["BPSNUM"],
                               "vatNumber": r.get("EECNUM")},
            "companyName1": lambda r: r.get("BPSNAM"),
            "shortCompanyName": lambda r: r.get("BPSSHO"),
            "isActive": lambda r: r.get("ENAFLG") == 2,
            "currency": lambda r: _ref(r.get("CUR")),
            "addressByDefault": lambda r: {
                "country": _ref(r.get("CRY")), "city": r.get("CTY"),
                "zipCode": r.get("POSCOD"), "addressLine1": r.get("ADDLIG"),
                "phone": r.get("TEL"), "email": r.get("WEB"),
            },
        }
        self.account_fields = {
            "_id": lambda r: f"{r['COA']}~{r['ACC']}",
            "_updateStamp": lambda r: _dt(r.get("UPDDATTIM")),
            "chartOfAccounts": lambda r: _ref(r.get("COA")), "code": lambda r: r["ACC"],
            "localizedDescription": lambda r: r.get("DES"),
        }
        self.dimension_fields = {
            "_id": lambda r: f"{r['DIE']}~{r['CCE']}",
            "_updateStamp": lambda r: _dt(r.get("UPDDATTIM")),
            "_createStamp": lambda r: _dt(r.get("CREDATTIM")),
            "dimensionType": lambda r: _ref(r.get("DIE")), "dimension": lambda r: r["CCE"],
            "localizedDescription": lambda r: r.get("DES"),
            "localizedShortDescription": lambda r: r.get("DESSHO"),
            "isActive": lambda r: r.get("ENAFLG") == 2,
        }

        self.line_dimension_fields = {
            "_id": lambda d: f"{d['POHNUM']}~{d['POPLIN']}~{d['index']}",
            "_updateStamp": lambda d: _dt(d.get("UPDDATTIM")),
            "_createStamp": lambda d: _dt(d.get("UPDDATTIM")),
            "denormalizedIndex": lambda d: d["index"] + 1,
            "purchaseOrder": lambda d: d["POHNUM"], "purchaseOrderLine": lambda d: d["POPLIN"],
            "dimensionType": lambda d: _ref(d["DIE"]),
            "dimension": lambda d: self.dimension_by_key(d["DIE"], d["CCE"]),
        }
        self.fields = {  # by GraphQL node name
            "purchaseOrder": self.purchase_order_fields,
            "purchaseOrderLine": self.purchase_order_line_fields,
            "purchaseOrderLineDimensionDimensions": self.line_dimension_fields,
            "purchaseInvoice": self.purchase_invoice_fields, "supplier": self.supplier_fields,
            "account": self.account_fields, "dimension": self.dimension_fields,
        }

    # --- nodes ---------------------------------------------------------------------------

    def node(self, name: str, rec: dict) -> Node:
        """The GraphQL node `name` (purchaseOrder, supplier, ...) over one record."""
        return Node(rec, self.fields[name])

    def _lines(self, rec: dict, type_name: str, fields: dict) -> dict:
        def query(_info=None, first=None, after=None, filter=None, orderBy=None):  # noqa: A002
            nodes = [Node(line, fields) for line in rec.get("lines", [])]
            return self.api.connection(nodes, type_name, filter=filter, order_by=orderBy,
                                       first=first, after=after, default_first=None,
                                       default_order=("lineNumber", "_id"))
        return {"query": query}

    # --- references (a full node when the target exists, else just its key) -------------

    def _lookup(self, name: str, records: list[dict], key: str | tuple[str, ...]
                ) -> dict[Any, dict]:
        """Records by `key` (a column, or a tuple of columns for a composite key)."""
        if name not in self._index:
            index: dict[Any, dict] = {}
            for rec in records:
                value = tuple(rec.get(k) for k in key) if isinstance(key, tuple) else rec.get(key)
                index.setdefault(value, rec)
            self._index[name] = index
        return self._index[name]

    def forget_lookups(self) -> None:
        self._index.clear()

    def supplier_by_code(self, code: Any) -> Node | dict | None:
        if code in (None, ""):
            return None
        rec = self._lookup("supplier", self.state.x3_suppliers, "BPSNUM").get(code)
        if not rec:
            return {"_id": code, "code": {"_id": code, "code": code}}
        return self.node("supplier", rec)

    def account_by_code(self, acc: Any) -> Node | dict | None:
        if acc in (None, ""):
            return None
        rec = self._lookup("account", self.state.x3_gl_accounts, "ACC").get(acc)
        return self.node("account", rec) if rec else {"_id": acc, "code": acc}

    def dimension_by_key(self, dimension_type: Any, code: Any) -> Node | dict | None:
        if code in (None, ""):
            return None
        rec = self._lookup("dimension", self.state.x3_dimensions, ("DIE", "CCE")).get(
            (dimension_type, code))
        return self.node("dimension", rec) if rec else {"_id": f"{dimension_type}~{code}",
                                                        "dimensionType": _ref(dimension_type),
                                                        "dimension": code}

    def order_by_number(self, number: Any) -> Node | dict | None:
        if number in (None, ""):
            return None
        rec = self._lookup("order", self.state.x3_purchase_orders, "POHNUM").get(number)
        return self.node("purchaseOrder", rec) if rec else {"_id": number, "id": number}


def _first(values: Any) -> Any:
    return values[0] if isinstance(values, list) and values else None


def line_dimension_rows(state: X3State) -> list[dict]:
    """One row per PO line and dimension type (the line's DIE/CCE arrays, flattened)."""
    rows = []
    for line in state.x3_purchase_order_lines:
        for index, (die, cce) in enumerate(zip(line.get("DIE") or [], line.get("CCE") or [],
                                               strict=False)):
            if die and cce:
                rows.append({"POHNUM": line.get("POHNUM"), "POPLIN": line.get("POPLIN"),
                             "index": index, "DIE": die, "CCE": cce,
                             "UPDDATTIM": line.get("UPDDATTIM")})
    return rows


def _product(line: dict) -> dict:
    return {"_id": line.get("ITMREF", ""), "code": line.get("ITMREF", ""),
            "description1": line.get("ITMDES")}
