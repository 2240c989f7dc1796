"""What the Sage X3 client tests share: one PO as each API returns it, and clients built
against httpx.MockTransport (a fake clock) or the sandbox."""

from __future__ import annotations

import httpx
import pytest

from mlc_dagster.resources.http_core import RetryPolicy
from mlc_dagster.resources.sage_x3_client import SageX3Client, SageX3GraphQLClient, SageX3RestClient
from mlc_dagster_tests.resources.test_http_core import FakeClock
from mlc_sandbox.seed import SANDBOX_CREDENTIALS

BASE = "https://x3.example.com"
PASSWORD = "x3-password-never-shown-31"
JWT_SECRET = "x3-jwt-secret-never-shown-0123456789abcdef"
FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)

# One purchase order as each API returns it (the same data).
PORDER_ROW = {
    "$uuid": "u1", "POHNUM": "PO1", "POHTYP": 1, "POHFCY": "GB011", "ORDDAT": "2026-02-03",
    "BPSNUM": "SUP001", "PJTH": "P1001", "CUR": "GBP", "REVNUM": 2, "CLEFLG": 1,
    "ORDREF": "Ref 1", "TOTORD": "150.50", "UPDDATTIM": "2026-01-05T08:00:07Z",
}

PORDERQ_LINE = {"POPLIN": 1000, "ITMREF": "CONC", "ITMDES": "Concrete",
                "PJT": "P1001", "QTYUOM": "10.000", "UOM": "M3", "NETPRI": "15.05",
                "LINAMT": "150.50", "LINCLEFLG": 2, "UPDDATTIM": "2026-01-05T08:00:07Z"}

# The line's accounts (PORDERC.LINACC by chart) and dimensions (CPTANALIN.CCE by type).
PORDER_DETAILS = {**PORDER_ROW, "PORDERQ": [PORDERQ_LINE],
                  "PORDERC": [{"POPLIN": 1000, "COA": ["SEED"], "LINACC": ["602300"]}],
                  "CPTANALIN": [{"VCRLIN": 1000, "DIE": ["PRJ", "CST"], "CCE": ["P1001", "C602300"]}]}

PO_NODE = {
    "_id": "PO1", "_updateStamp": "2026-01-05T08:00:07Z", "revisionNumber": 2,
    "orderDate": "2026-02-03", "isClosed": "no",
    "orderFromSupplier": {"code": {"code": "SUP001"}}, "project": {"code": "P1001"},
    "purchaseSite": {"code": "GB011"}, "currency": {"code": "GBP"},
    "internalOrderReference": "Ref 1", "totalAmountExcludingTax": "150.5",
    "purchaseOrderLines": {"query": {"edges": [{"node": {
        "lineNumber": 1000, "product": {"code": "CONC"},
        "productDescriptionInUserLanguage": "Concrete", "_updateStamp": "2026-01-05T08:00:07Z",
        "account": {"code": "602300"}, "project": {"code": "P1001"},
        "quantityInOrderUnitOrdered": "10", "orderUnit": {"code": "M3"}, "netPrice": 15.05,
        "lineAmountExcludingTax": "150.50", "isClosed": "yes"}}]}},
}

MISSING = {"$diagnoses": [{"$severity": "error", "$message": "721 : Record does not exist"}]}


def rest_client(handler, clock: FakeClock | None = None, **options) -> SageX3RestClient:
    clock = clock or FakeClock()
    options.setdefault("retry", FAST)
    return SageX3RestClient(BASE, "SEED", "MLCAPI", PASSWORD, transport=httpx.MockTransport(handler),
                            sleep=clock.sleep, clock=clock, **options)


def graphql_client(handler, clock: FakeClock | None = None, **options) -> SageX3GraphQLClient:
    clock = clock or FakeClock()
    options.setdefault("retry", FAST)
    if "bearer_token_provider" not in options:
        options.update(jwt_client_id="app-1", jwt_secret=JWT_SECRET, jwt_user="MLCAPI")
    return SageX3GraphQLClient(BASE, "SEED", transport=httpx.MockTransport(handler),
                               sleep=clock.sleep, clock=clock, **options)


def connection(nodes: list[dict], has_next: bool = False, end: str | None = "c1") -> dict:
    return {"edges": [{"cursor": f"c{i}", "node": n} for i, n in enumerate(nodes)],
            "pageInfo": {"endCursor": end, "hasNextPage": has_next}}


# The sandbox's demo JWT secret is shorter than PyJWT's recommended 32 bytes.
short_demo_jwt_secret = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")


def sandbox_rest(handle, **options) -> SageX3RestClient:
    creds = SANDBOX_CREDENTIALS
    return SageX3RestClient(handle.url, creds["x3_endpoint"], creds["x3_user"], creds["x3_password"],
                            **options)


def sandbox_graphql(handle, **options) -> SageX3GraphQLClient:
    creds = SANDBOX_CREDENTIALS
    return SageX3GraphQLClient(handle.url, creds["x3_endpoint"], jwt_client_id=creds["x3_jwt_client_id"],
                               jwt_secret=creds["x3_jwt_secret"], jwt_user=creds["x3_jwt_user"], **options)


def both_apis(handle, **options) -> list[SageX3Client]:
    return [sandbox_rest(handle, **options), sandbox_graphql(handle, **options)]


def without_po_type(records: list[dict]) -> list[dict]:
    """The GraphQL sandbox node has no `orderType`, so po_type is None there."""
    return [{k: v for k, v in r.items() if k != "po_type"} for r in records]
