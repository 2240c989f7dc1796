"""The X3 GraphQL API (`POST /xtrem/api`), authenticated by a bearer token.

Queries are built from the configured names (`X3Names`): a node's selection set from its
field paths, pages followed by `endCursor`, documents read by id in chunks. Mutations are
built in `_mutate` alone, which refuses any node outside the allow-list.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from mlc_dagster.resources.sage_x3_client.auth import JwtBearerAuth, ProvidedTokenAuth, X3Auth
from mlc_dagster.resources.sage_x3_client.base import SageX3Client
from mlc_dagster.resources.sage_x3_client.errors import (
    SageX3Error,
    diagnosis_messages,
    json_or_none,
)
from mlc_dagster.resources.sage_x3_client.literals import (
    filter_literal,
    graphql_literal,
    since_filter,
)
from mlc_dagster.resources.sage_x3_client.names import EntityNames
from mlc_dagster.resources.sage_x3_client.records import (
    CANONICAL_KEYS,
    canonical_stamp,
    canonical_text,
    dig,
)
from mlc_dagster.resources.sage_x3_client.writable import (
    WRITABLE_GRAPHQL_NODES,
    refuse_unless_writable,
)


class SageX3GraphQLClient(SageX3Client):
    """The X3 GraphQL API (`POST /xtrem/api`).

    On-premise, a connected application signs its own HS256 JWT (`iss` = client id,
    `sub` = X3 user); behind Sage's cloud gateway pass `bearer_token_provider`, a callable
    returning a current OAuth2 access token.
    """

    def __init__(
        self,
        base_url: str,
        endpoint: str,
        *,
        jwt_client_id: str | None = None,
        jwt_secret: str | None = None,
        jwt_user: str | None = None,
        token_lifetime: int = 300,
        jwt_audience: str | None = None,
        bearer_token_provider: Callable[[], str] | None = None,
        api_path: str = "/xtrem/api",
        **options: Any,
    ) -> None:
        auth: X3Auth
        if bearer_token_provider is not None:
            auth = ProvidedTokenAuth(bearer_token_provider)
        elif jwt_client_id and jwt_secret and jwt_user:
            auth = JwtBearerAuth(jwt_client_id, jwt_secret, jwt_user, lifetime=token_lifetime,
                                 audience=jwt_audience, clock=options.get("clock", time.time))
        else:
            raise ValueError("give jwt_client_id, jwt_secret and jwt_user, "
                             "or a bearer_token_provider")
        super().__init__(base_url, endpoint, auth=auth, **options)
        self.api_url = self.base_url + api_path

    # reads ---------------------------------------------------------------------------

    def changed(self, entity: str, since_stamp: str | None, *, page_size: int = 200
                ) -> Iterator[list[dict]]:
        return self._pages(entity, since_filter(since_stamp), "{_updateStamp:1,_id:1}",
                           page_size)

    def read_all(self, entity: str, *, page_size: int = 200) -> Iterator[list[dict]]:
        return self._pages(entity, None, "{_id:1}", page_size)

    def changed_line_documents(self, entity: str, since_stamp: str | None, *,
                               page_size: int = 200) -> Iterator[list[dict]]:
        names = self.names.entity(entity)
        if not (names.graphql_line_node and names.graphql_line_document):
            return iter(())
        where = since_filter(since_stamp)
        key = CANONICAL_KEYS[entity][0]
        document = names.graphql_line_document
        selection = _selection([document, "_updateStamp"])

        def pages() -> Iterator[list[dict]]:
            for nodes in self._node_pages(self.names.graphql_package(entity),
                                          names.graphql_line_node, selection, where,
                                          "{_updateStamp:1,_id:1}", page_size):
                rows = [{key: canonical_text(dig(n, document)),
                         "update_stamp": canonical_stamp(n.get("_updateStamp"))} for n in nodes]
                if rows:
                    yield rows
        return pages()

    def read_purchase_orders(self, numbers: Iterable[str], *, max_concurrency: int = 4
                             ) -> list[dict]:
        return self._read_by_ids("purchase_order", numbers)

    def read_purchase_invoices(self, numbers: Iterable[str], *, max_concurrency: int = 4
                               ) -> list[dict]:
        return self._read_by_ids("purchase_invoice", numbers)

    def _read_by_ids(self, entity: str, ids: Iterable[str], chunk: int = 100) -> list[dict]:
        """One filtered query per chunk (`{_id:{_in:[...]}}`), results in the order asked."""
        ids = list(dict.fromkeys(ids))
        found: dict[str, dict] = {}
        key = CANONICAL_KEYS[entity][0]
        for start in range(0, len(ids), chunk):
            where = f"{{_id:{{_in:{filter_literal(ids[start:start + chunk])}}}}}"
            for page in self._pages(entity, where, "{_id:1}", chunk):
                found.update({record[key]: record for record in page})
        return [found[i] for i in ids if i in found]

    def _pages(self, entity: str, where: str | None, order_by: str, page_size: int
               ) -> Iterator[list[dict]]:
        names = self.names.entity(entity)
        for nodes in self._node_pages(self.names.graphql_package(entity), names.graphql_node,
                                      self._node_selection(entity), where, order_by, page_size):
            records = [self._from_node(entity, node) for node in nodes]
            if entity == "purchase_order" and self.names.mapping_key.kind == "dimension":
                self._attach_line_dimensions(records)
            records = [self._finish(entity, record) for record in records]
            if records:
                yield records

    def _node_pages(self, package: str, node: str, selection: str, where: str | None,
                    order_by: str | None, page_size: int) -> Iterator[list[dict]]:
        """Raw node pages of `<package> { <node> { query(...) } }`, following endCursor."""
        query = (
            "query($filter: String, $orderBy: String, $first: Int, $after: String) { "
            f"{package} {{ {node} {{ "
            "query(filter: $filter, orderBy: $orderBy, first: $first, after: $after) { "
            f"edges {{ cursor node {{ {selection} }} }} pageInfo {{ endCursor hasNextPage }} "
            "} } } }"
        )
        after = None
        while True:
            data = self._execute(query, {"filter": where, "orderBy": order_by,
                                         "first": page_size, "after": after})
            connection = dig(data, f"{package}.{node}.query") or {}
            yield [edge["node"] for edge in connection.get("edges") or []
                   if isinstance(edge, dict) and isinstance(edge.get("node"), dict)]
            info = connection.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                return
            if not info.get("endCursor") or info["endCursor"] == after:
                raise SageX3Error(200, "POST", urlsplit(self.api_url).path,
                                  f"{node}: hasNextPage without a new endCursor")
            after = info["endCursor"]

    # Properties of the line-dimension node, as on purchaseRequestLineDimensionDimensions
    # (developer.sage.com/x3/graphql/reference/x3Purchasing/...): the order number and line
    # number as plain values, the dimension type and dimension value as references.
    DIMENSION_DOCUMENT, DIMENSION_LINE = "purchaseOrder", "purchaseOrderLine"
    DIMENSION_TYPE, DIMENSION_VALUE = "dimensionType._id", "dimension.dimension"

    def _attach_line_dimensions(self, records: list[dict]) -> None:
        """Set each PO line's `mapping_key` to its value of the configured dimension type,
        read from the line-dimension node for the whole page of POs at once."""
        numbers = [r["po_number"] for r in records if r.get("po_number")]
        if not numbers:
            return
        wanted = self.names.mapping_key.dimension_type
        selection = _selection([self.DIMENSION_DOCUMENT, self.DIMENSION_LINE,
                                self.DIMENSION_TYPE, self.DIMENSION_VALUE])
        where = f"{{{self.DIMENSION_DOCUMENT}:{{_in:{filter_literal(numbers)}}}}}"
        values: dict[tuple[str, str], str | None] = {}
        for nodes in self._node_pages(self.names.graphql_package("purchase_order"),
                                      self.names.graphql_line_dimensions, selection, where,
                                      "{_id:1}", 500):
            for node in nodes:
                if canonical_text(dig(node, self.DIMENSION_TYPE)) == wanted:
                    values[(str(node.get(self.DIMENSION_DOCUMENT)),
                            str(node.get(self.DIMENSION_LINE)))] = canonical_text(
                        dig(node, self.DIMENSION_VALUE))
        for record in records:
            for line in record.get("lines") or []:
                line["mapping_key"] = values.get((str(record["po_number"]),
                                                  str(line.get("line_number"))))

    def _node_selection(self, entity: str) -> str:
        """The node selection of an entity, built from the configured paths."""
        names = self.names.entity(entity)
        node = _selection(["_id", *names.graphql_fields.values()])
        if names.graphql_lines:
            lines = _selection(names.graphql_line_fields.values())
            node += f" {names.graphql_lines} {{ query {{ edges {{ node {{ {lines} }} }} }} }}"
        return node

    def _field_maps(self, names: EntityNames) -> tuple[dict[str, str], dict[str, str]]:
        return names.graphql_fields, names.graphql_line_fields

    def _final_values(self) -> tuple[str, ...]:
        return self.names.invoice_final_graphql

    def _from_node(self, entity: str, node: dict) -> dict:
        names = self.names.entity(entity)
        header, line = self._converters(entity)
        canonical = header(node)
        if names.graphql_lines:
            edges = dig(node, f"{names.graphql_lines}.query.edges")
            canonical["lines"] = [line(edge["node"])
                                  for edge in (edges if isinstance(edges, list) else [])
                                  if isinstance(edge, dict) and isinstance(edge.get("node"), dict)]
        return canonical

    # writes --------------------------------------------------------------------------

    def create_supplier(self, record: dict) -> str:
        created = self._mutate("supplier", "create", record)
        return canonical_text(created.get("_id")) or record["supplier_code"]

    def update_supplier(self, code: str, fields: dict) -> None:
        self._mutate("supplier", "update", {**fields, "supplier_code": code})

    def upsert_dimension(self, dimension_type: str, code: str, description: str, active: bool,
                         short_description: str | None = None) -> str:
        record = {"dimension_type": dimension_type, "code": code, "description": description,
                  "active": active}
        if short_description is not None:
            record["short_description"] = short_description
        where = (f"{{dimensionType:{{code:{filter_literal(dimension_type)}}},"
                 f"dimension:{filter_literal(code)}}}")
        exists = any(self._pages("dimension", where, "{_id:1}", 1))
        self._mutate("dimension", "update" if exists else "create", record)
        return "updated" if exists else "created"

    def _mutate(self, entity: str, operation: str, record: dict) -> dict:
        """The only GraphQL write path; it refuses nodes outside the allow-list."""
        names = self.names.entity(entity)
        _guard_graphql_node(names.graphql_node)
        data = {names.graphql_inputs[name]: value for name, value in record.items()
                if name in names.graphql_inputs}
        package = self.names.graphql_package(entity)
        mutation = (f"mutation {{ {package} {{ {names.graphql_node} {{ "
                    f"{operation}(data: {graphql_literal(data)}) {{ _id }} }} }} }}")
        result = self._execute(mutation, {}, idempotent=False)
        return dig(result, f"{package}.{names.graphql_node}.{operation}") or {}

    # transport -----------------------------------------------------------------------

    def _execute(self, query: str, variables: dict, *, idempotent: bool = True) -> dict:
        """One GraphQL document; `self.auth` signs it and renews a refused token once."""
        path = urlsplit(self.api_url).path
        response = self._send(lambda: self._http.build_request(
            "POST", self.api_url, json={"query": query, "variables": variables},
            headers={"x-xtrem-endpoint": self.endpoint}), "POST", path, idempotent=idempotent)
        if response.status_code == 401:
            reason = "; ".join(diagnosis_messages(json_or_none(response)))
            raise self._rejected("POST", path, self.api_url, reason)
        if response.is_error:
            raise self._error(response, "POST", path)
        body = json_or_none(response)
        messages = diagnosis_messages(body)
        if messages or not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise self._error(response, "POST", path, messages or ["response has no data"])
        return body["data"]


def _selection(paths: Iterable[str]) -> str:
    """`["a", "b.c", "b.d"]` -> `a b { c d }`."""
    tree: dict[str, dict] = {}
    for path in paths:
        node = tree
        for part in path.split("."):
            node = node.setdefault(part, {})

    def render(node: dict) -> str:
        return " ".join(f"{name} {{ {render(sub)} }}" if sub else name
                        for name, sub in node.items())

    return render(tree)


def _guard_graphql_node(node: str) -> None:
    refuse_unless_writable("node", node, WRITABLE_GRAPHQL_NODES)
