"""The GraphQL API's schema (SDL), its scalars, and the mutations an X3 may have set up."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from graphql import build_schema

from mlc_sandbox.sage_x3 import where

SDL = """
scalar Datetime
scalar Date
scalar Decimal

enum YesNo { no yes }
enum InvoiceCategory { invoice creditMemo }
# ASSUMPTION: purchase invoice status property and values (no reference page found).
enum PurchaseInvoiceStatus { notPosted posted }

type PageInfo {
  startCursor: String
  endCursor: String
  hasPreviousPage: Boolean!
  hasNextPage: Boolean!
}

type Site { _id: String! code: String! }
type Currency { _id: String! code: String! }
type ProjectLink { _id: String! code: String! }
type UnitOfMeasure { _id: String! code: String! }
type Country { _id: String! code: String! }
type ChartOfAccounts { _id: String! code: String! }
type DimensionType { _id: String! code: String! }
type Product { _id: String! code: String! description1: String }
type BusinessPartner { _id: String! code: String! vatNumber: String }

type SupplierAddress {
  country: Country
  city: String
  zipCode: String
  addressLine1: String
  phone: String
  email: String
}

type Supplier {
  _id: String!
  _updateStamp: Datetime
  _createStamp: Datetime
  code: BusinessPartner!
  companyName1: String
  shortCompanyName: String
  isActive: Boolean
  currency: Currency
  addressByDefault: SupplierAddress
}

type Account {
  _id: String!
  _updateStamp: Datetime
  chartOfAccounts: ChartOfAccounts
  code: String!
  localizedDescription: String
}

type Dimension {
  _id: String!
  _updateStamp: Datetime
  _createStamp: Datetime
  dimensionType: DimensionType!
  dimension: String!
  localizedDescription: String
  localizedShortDescription: String
  isActive: Boolean
}

# Names from developer.sage.com/x3/graphql/reference/x3Purchasing/purchaseOrderLine
# (_id, purchaseOrder, lineNumber, sequenceNumber, product,
# productDescriptionInUserLanguage) and examples/purchasing (quantityInOrderUnitOrdered,
# orderUnit). ASSUMPTION (not on the part of the reference read): _updateStamp, account,
# project, netPrice, lineAmountExcludingTax, isClosed.
type PurchaseOrderLine {
  _id: String!
  _updateStamp: Datetime
  purchaseOrder: PurchaseOrder
  lineNumber: Int!
  sequenceNumber: Int
  product: Product
  productDescriptionInUserLanguage: String
  account: Account
  project: ProjectLink
  quantityInOrderUnitOrdered: Decimal
  orderUnit: UnitOfMeasure
  netPrice: Decimal
  lineAmountExcludingTax: Decimal
  isClosed: YesNo
}

# Node purchaseOrderLineDimensionDimensions is listed in the x3Purchasing package
# (developer.sage.com/x3/graphql/reference/x3Purchasing); its properties as on
# .../x3Purchasing/purchaseRequestLineDimensionDimensions and
# .../x3Sales/salesOrderLineDimensionDimensions: one row per line and dimension type.
type PurchaseOrderLineDimensionDimensions {
  _id: String!
  _updateStamp: Datetime
  _createStamp: Datetime
  denormalizedIndex: Int
  purchaseOrder: String
  purchaseOrderLine: Int
  dimensionType: DimensionType
  dimension: Dimension
}

# developer.sage.com/x3/graphql/reference/x3Purchasing/purchaseOrder (_id, id,
# revisionNumber, orderDate, internalOrderReference, project, orderFromSupplier,
# purchaseSite), examples/purchasing (isClosed, purchaseOrderLines), Sage sample
# PurchaseOrder_read.graphql (_createStamp, _updateStamp). ASSUMPTION: currency,
# totalAmountExcludingTax.
type PurchaseOrder {
  _id: String!
  id: String!
  _updateStamp: Datetime
  _createStamp: Datetime
  revisionNumber: Int
  orderDate: Date
  isClosed: YesNo
  orderFromSupplier: Supplier
  project: ProjectLink
  purchaseSite: Site
  currency: Currency
  internalOrderReference: String
  totalAmountExcludingTax: Decimal
  purchaseOrderLines: PurchaseOrderLineCollection
}

# developer.sage.com/x3/graphql/reference/x3Purchasing/purchaseInvoiceLine (_id, lineNumber,
# sourceDocument, sourceDocumentLineNumber, product, productDescriptionInUserLanguage,
# purchaseUnit, quantityInPurchaseUnitInvoiced). ASSUMPTION: _updateStamp, netPrice,
# lineAmountExcludingTax; sourceDocument is the PO when the line comes from an order.
type PurchaseInvoiceLine {
  _id: String!
  _updateStamp: Datetime
  lineNumber: Int!
  sourceDocument: String
  sourceDocumentLineNumber: Int
  product: Product
  productDescriptionInUserLanguage: String
  quantityInPurchaseUnitInvoiced: Decimal
  purchaseUnit: UnitOfMeasure
  netPrice: Decimal
  lineAmountExcludingTax: Decimal
}

# developer.sage.com/x3/graphql/reference/x3Purchasing/purchaseInvoice (_id, id, category,
# billBySupplier, currency, amountOfLinesExcludingTax, accountingDate, purchaseInvoiceLines)
# and .../xtremX3Purchasing/purchaseInvoice (sourceDocument, sourceDocumentDate).
# ASSUMPTION: _createStamp/_updateStamp (system properties of X3 nodes), status.
type PurchaseInvoice {
  _id: String!
  id: String!
  _updateStamp: Datetime
  _createStamp: Datetime
  category: InvoiceCategory
  billBySupplier: Supplier
  sourceDocument: String
  sourceDocumentDate: Date
  accountingDate: Date
  currency: Currency
  amountOfLinesExcludingTax: Decimal
  status: PurchaseInvoiceStatus
  purchaseInvoiceLines: PurchaseInvoiceLineCollection
}

""" + "".join(
    f"""
type {name}Edge {{ cursor: String! node: {name}! }}
type {name}Connection {{ edges: [{name}Edge!]! pageInfo: PageInfo! totalCount: Int! }}
"""
    for name in ("PurchaseOrder", "PurchaseOrderLine", "PurchaseInvoice", "PurchaseInvoiceLine",
                 "Supplier", "Account", "Dimension", "PurchaseOrderLineDimensionDimensions")
) + "".join(
    f"""
type {name}Collection {{
  query(first: Int, after: String, filter: String, orderBy: String): {name}Connection
}}
"""
    for name in ("PurchaseOrderLine", "PurchaseInvoiceLine")
) + "".join(
    f"""
type {name}Operations {{
  query(filter: String, orderBy: String, first: Int, after: String): {name}Connection
  read(_id: String!): {name}
}}
"""
    for name in ("PurchaseOrder", "PurchaseInvoice", "Supplier", "Account", "Dimension",
                 "PurchaseOrderLine", "PurchaseOrderLineDimensionDimensions")
) + """
type X3Purchasing {
  purchaseOrder: PurchaseOrderOperations!
  purchaseOrderLine: PurchaseOrderLineOperations!
  purchaseOrderLineDimensionDimensions: PurchaseOrderLineDimensionDimensionsOperations!
  purchaseInvoice: PurchaseInvoiceOperations!
}
type X3MasterData { supplier: SupplierOperations! }
type X3FinanceData { account: AccountOperations! dimension: DimensionOperations! }

type Query {
  x3Purchasing: X3Purchasing!
  x3MasterData: X3MasterData!
  x3FinanceData: X3FinanceData!
  xtremX3Purchasing: X3Purchasing!
  xtremX3MasterData: X3MasterData!
  xtremX3FinanceData: X3FinanceData!
}

"""


def _format_datetime(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


# Mutations. Standard X3 nodes are read-only: the reference pages show every property of
# x3FinanceData.dimension and x3MasterData.supplier as `isWritable: no` and no mutation
# (developer.sage.com/x3/graphql/reference/...); "Active operations are exposed as GraphQL
# mutations" (online-help.sagex3.com/erp/12/en-us/Content/FCT/GESAPIOPE.htm), one create
# and one update per node (developer.sage.com/x3/x3-builder/.../operations/mutations). So
# the schema has a mutation for a node only when the sandbox setting `api_operations` says
# the customer set one up; otherwise a mutation fails GraphQL validation like any unknown
# field. There is never a mutation for GL accounts or any journal / GL entry.
MUTATION_NODES = {  # node -> (package, GraphQL type, input fields)
    "dimension": ("FinanceData", "Dimension", """
  dimensionType: String!
  dimension: String!
  localizedDescription: String
  localizedShortDescription: String
  isActive: Boolean"""),
    "supplier": ("MasterData", "Supplier", """
  code: String!
  companyName1: String
  shortCompanyName: String
  isActive: Boolean
  vatNumber: String
  currency: String
  country: String
  city: String
  zipCode: String
  addressLine1: String
  phone: String
  email: String"""),
}


def _mutation_sdl(operations: frozenset[str]) -> str:
    packages: dict[str, list[str]] = {}
    parts = []
    for node in sorted(operations & set(MUTATION_NODES)):
        package, type_name, inputs = MUTATION_NODES[node]
        parts.append(f"input {type_name}_Input {{{inputs}\n}}\n"
                     f"type {type_name}Mutations {{\n  create(data: {type_name}_Input!): "
                     f"{type_name}\n  update(data: {type_name}_Input!): {type_name}\n}}")
        packages.setdefault(package, []).append(f"{node}: {type_name}Mutations!")
    if not packages:
        return ""
    for package, fields in sorted(packages.items()):
        parts.append(f"type X3{package}Mutations {{ {' '.join(fields)} }}")
    roots = [f"{prefix}{package}: X3{package}Mutations!"
             for package in sorted(packages) for prefix in ("x3", "xtremX3")]
    parts.append("type Mutation {\n  " + "\n  ".join(roots) + "\n}")
    return "\n".join(parts) + "\n"


@functools.cache
def build_graphql_schema(operations: frozenset[str] = frozenset()):
    """Built once per process and set of API operations: immutable, ~0.1 s to build."""
    schema = build_schema(SDL + _mutation_sdl(operations))
    datetime_type = schema.type_map["Datetime"]
    datetime_type.serialize = _format_datetime
    datetime_type.parse_value = lambda value: where.parse_datetime(str(value))
    date_type = schema.type_map["Date"]
    date_type.serialize = lambda value: value.isoformat() if isinstance(value, date) else str(value)
    date_type.parse_value = lambda value: date.fromisoformat(str(value))
    decimal_type = schema.type_map["Decimal"]
    decimal_type.serialize = lambda value: format(value, "f") if isinstance(value, Decimal) \
        else str(value)
    decimal_type.parse_value = lambda value: Decimal(str(value))
    return schema
