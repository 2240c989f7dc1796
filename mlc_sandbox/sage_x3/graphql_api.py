"""The GraphQL API (`POST /xtrem/api`): connected-app JWT, execution, relay connections."""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import jwt
from graphql import GraphQLError, execute, parse, validate
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mlc_sandbox.sage_x3 import where
from mlc_sandbox.sage_x3.classes import (
    BPSUPPLIER,
    CACCE,
    GACCOUNT,
    PINVOICE,
    PORDER,
    PORDERQ,
    X3Class,
)
from mlc_sandbox.sage_x3.errors import X3Error
from mlc_sandbox.sage_x3.graphql_nodes import GraphQLNodes, line_dimension_rows
from mlc_sandbox.sage_x3.graphql_schema import build_graphql_schema
from mlc_sandbox.sage_x3.state import X3State
from mlc_sandbox.sage_x3.where import QueryError
from mlc_sandbox.seed import SANDBOX_CREDENTIALS

log = logging.getLogger(__name__)

GRAPHQL_FIRST_DEFAULT = 20
GRAPHQL_FIRST_MAX = 500
# Tolerated clock skew for `iat`: beyond this the token is "issued in the future".
JWT_IAT_SKEW_SECONDS = 30


# GraphQL node -> (X3 class, GraphQL type); the line dimension rows are no X3 class
_NODES = {
    "purchaseOrder": (PORDER, "PurchaseOrder"),
    "purchaseOrderLine": (PORDERQ, "PurchaseOrderLine"),
    "purchaseOrderLineDimensionDimensions": (None, "PurchaseOrderLineDimensionDimensions"),
    "purchaseInvoice": (PINVOICE, "PurchaseInvoice"),
    "supplier": (BPSUPPLIER, "Supplier"),
    "account": (GACCOUNT, "Account"),
    "dimension": (CACCE, "Dimension"),
}

_DIMENSION_INPUT = {"dimensionType": "DIE", "dimension": "CCE", "localizedDescription": "DES",
                    "localizedShortDescription": "DESSHO", "isActive": "ENAFLG"}
_SUPPLIER_INPUT = {"code": "BPSNUM", "companyName1": "BPSNAM", "shortCompanyName": "BPSSHO",
                   "isActive": "ENAFLG", "vatNumber": "EECNUM", "currency": "CUR",
                   "country": "CRY", "city": "CTY", "zipCode": "POSCOD",
                   "addressLine1": "ADDLIG", "phone": "TEL", "email": "WEB"}


class GraphQLApi:
    """`POST /xtrem/api`: connected-app JWT, x-xtrem-endpoint, graphql-core execution."""

    def __init__(self, state: X3State) -> None:
        self.state = state
        self.endpoint = SANDBOX_CREDENTIALS["x3_endpoint"]

    @property
    def schema(self):
        """Queries, plus mutations for the API operations this X3 has (sandbox setting)."""
        return build_graphql_schema(frozenset(self.state.api_operations))

    # --- HTTP --------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        problem = self._check_token(request.headers.get("authorization"))
        if problem:
            return _gql_error(401, problem)
        endpoint = request.headers.get("x-xtrem-endpoint")
        if not endpoint:
            return _gql_error(400, "Missing x-xtrem-endpoint header")
        if endpoint != self.endpoint:
            return _gql_error(404, f"Unknown endpoint {endpoint!r}")
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return _gql_error(400, "Request body must be JSON")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return _gql_error(400, "Request body must be an object with a 'query' string")
        variables = payload.get("variables")
        if variables is not None and not isinstance(variables, dict):
            return _gql_error(400, "'variables' must be an object")
        try:
            document = parse(payload["query"])
        except GraphQLError as exc:
            return JSONResponse({"errors": [exc.formatted]}, status_code=400)
        schema = self.schema  # one schema for the request, even if the settings change
        errors = validate(schema, document)
        if errors:
            return JSONResponse({"errors": [e.formatted for e in errors]}, status_code=400)
        with self.state.lock:
            result = execute(schema, document, root_value=self._root(),
                             variable_values=variables,
                             operation_name=payload.get("operationName"))
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [e.formatted for e in result.errors]
            for error in result.errors:
                if error.original_error is not None and not isinstance(
                        error.original_error, QueryError | X3Error | GraphQLError):
                    log.error("sage_x3 sandbox: GraphQL resolver failed", exc_info=error)
        body["extensions"] = {"diagnoses": []}
        return JSONResponse(body)

    def _check_token(self, header: str | None) -> str | None:
        """Connected-application JWT rules; returns the reason a token is refused."""
        if not header or not header.startswith("Bearer "):
            return "Missing bearer token (Authorization: Bearer <JWT>)"
        token = header[7:].strip()
        creds = SANDBOX_CREDENTIALS
        try:
            # exp/iat are checked below so that each refusal gets X3's own reason.
            claims = jwt.decode(
                token, creds["x3_jwt_secret"], algorithms=["HS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                         "verify_aud": False, "require": ["iss", "sub", "iat", "exp"]},
            )
        except jwt.InvalidSignatureError:
            return "Invalid token: signature verification failed"
        except jwt.MissingRequiredClaimError as exc:
            return f"Invalid token: {exc}"
        except jwt.PyJWTError as exc:
            return f"Invalid token: {exc}"
        if claims.get("iss") != creds["x3_jwt_client_id"]:
            return "Invalid token: unknown connected application (iss)"
        if claims.get("sub") != creds["x3_jwt_user"]:
            return "Invalid token: user (sub) is not allowed for this connected application"
        iat, exp = claims.get("iat"), claims.get("exp")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (iat, exp)):
            return "Invalid token: iat and exp must be numeric dates"
        now = self.state.clock().timestamp()
        if iat > now + JWT_IAT_SKEW_SECONDS:
            return "Invalid token: token issued in the future (check the client clock)"
        if exp <= now:
            return "Invalid token: token expired"
        if exp - iat > self.state.token_validity_seconds:
            return ("Invalid token: lifetime longer than the connected application's token "
                    f"validity ({self.state.token_validity_seconds} s)")
        return None

    # --- execution ---------------------------------------------------------------------

    def _root(self) -> dict:
        nodes = GraphQLNodes(self)
        ops = {name: self._operations(nodes, name) for name in _NODES}
        ops["dimension"].update(create=self._mutation(nodes, CACCE, _DIMENSION_INPUT, True),
                                update=self._mutation(nodes, CACCE, _DIMENSION_INPUT, False))
        ops["supplier"].update(create=self._mutation(nodes, BPSUPPLIER, _SUPPLIER_INPUT, True),
                               update=self._mutation(nodes, BPSUPPLIER, _SUPPLIER_INPUT, False))
        purchasing = {"purchaseOrder": ops["purchaseOrder"],
                      "purchaseOrderLine": ops["purchaseOrderLine"],
                      "purchaseOrderLineDimensionDimensions":
                          ops["purchaseOrderLineDimensionDimensions"],
                      "purchaseInvoice": ops["purchaseInvoice"]}
        master = {"supplier": ops["supplier"]}
        finance = {"account": ops["account"], "dimension": ops["dimension"]}
        return {"x3Purchasing": purchasing, "x3MasterData": master, "x3FinanceData": finance,
                "xtremX3Purchasing": purchasing, "xtremX3MasterData": master,
                "xtremX3FinanceData": finance}

    def _operations(self, nodes: GraphQLNodes, name: str) -> dict:
        cls, type_name = _NODES[name]
        build = functools.partial(nodes.node, name)

        def records() -> list[dict]:
            return line_dimension_rows(self.state) if cls is None else self.state.records(cls)

        def query(_info=None, filter=None, orderBy=None, first=None, after=None):  # noqa: A002
            return self.connection([build(rec) for rec in records()], type_name,
                                   filter=filter, order_by=orderBy, first=first, after=after)

        def read(_info=None, _id=None):
            if cls is None or cls is PORDERQ:  # line nodes: their _id is not the class key
                return next((n for n in map(build, records()) if str(n["_id"]) == str(_id)),
                            None)
            rec = self.state.find(cls, str(_id))
            return build(rec) if rec is not None else None

        return {"query": query, "read": read}

    def _mutation(self, nodes: GraphQLNodes, cls: X3Class, mapping: dict[str, str], create: bool):
        node = "dimension" if cls is CACCE else "supplier"
        build = functools.partial(nodes.node, node)

        def run(_info=None, data=None):
            if node not in self.state.api_operations:  # the schema already lacks it
                raise GraphQLError(f"No API operation is set up for node {node} (GESAPIOPE)")
            body = {}
            for gql_name, value in (data or {}).items():
                column = mapping[gql_name]
                if column == "ENAFLG":
                    value = None if value is None else (2 if value else 1)
                body[column] = value
            try:
                if create:
                    rec = self.state.create(cls, body)
                else:
                    key = "~".join(str(body.pop(k)) for k in cls.keys)
                    rec = self.state.update(cls, key, body)
            except X3Error as exc:
                raise GraphQLError(exc.message) from None
            nodes.forget_lookups()  # later fields of this request must see the write
            return build(rec)

        return run

    def connection(self, nodes: list[dict], type_name: str, *, filter: str | None,  # noqa: A002
                   order_by: str | None, first: int | None, after: str | None,
                   default_first: int | None = GRAPHQL_FIRST_DEFAULT,
                   default_order: tuple[str, ...] = ("_id",)) -> dict:
        """Relay connection over `nodes`: filter, order (with `_id` tiebreaker), then
        resume strictly after the `after` cursor's sort tuple."""
        node_type = self.schema.type_map[type_name]
        predicate = where.compile_filter(filter, node_type)
        order = where.compile_order_by(order_by, node_type, default_order)
        descending = tuple(f.descending for f in order)
        rows = [(where.sort_values(n, order), n) for n in nodes if predicate(n)]
        where.sort_keyed(rows, descending)
        start = 0
        if after:
            cursor = where.decode_cursor(after, order)
            start = next((i for i, (k, _n) in enumerate(rows)
                          if where.compare_keys(k, cursor, descending) > 0), len(rows))
        if first is None:
            first = default_first
        if first is not None:
            if first < 0:
                raise QueryError("first must not be negative")
            first = min(first, GRAPHQL_FIRST_MAX)
        remaining = rows[start:]
        page = remaining if first is None else remaining[:first]
        edges = [{"cursor": where.encode_cursor(k), "node": n} for k, n in page]
        return {
            "edges": edges,
            "pageInfo": {
                "startCursor": edges[0]["cursor"] if edges else None,
                "endCursor": edges[-1]["cursor"] if edges else None,
                "hasPreviousPage": start > 0,
                "hasNextPage": len(page) < len(remaining),
            },
            "totalCount": len(rows),
        }


def _gql_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message}]}, status_code=status)
