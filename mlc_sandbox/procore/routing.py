"""Handlers and their registry: the `api` decorator, the per-request `Call`, JSON responses."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from mlc_sandbox.procore.errors import ApiError, missing_param
from mlc_sandbox.procore.spec import listed_filters
from mlc_sandbox.procore.tables import record_or_404
from mlc_sandbox.procore.values import integer
from mlc_sandbox.seed import COMPANY_ID

if TYPE_CHECKING:
    from mlc_sandbox.procore.state import ProcoreState

SYNC_LIMIT = 1000


def encode(data: Any) -> bytes:
    """JSON as Procore's v1 API sends it: Decimal money becomes a string like "1234.50"."""
    return json.dumps(data, default=str, ensure_ascii=False).encode()


def as_client_sees_it(data: Any) -> Any:
    return json.loads(encode(data))


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(encode(data), status_code=status, headers=headers,
                    media_type="application/json")


def no_content() -> Response:
    return Response(status_code=204)


def empty_ok() -> Response:
    """200 with an empty body: the DELETEs whose documented response is `200 OK`, "void (empty
    response body)" (procore_python_sdk docs, e.g. rest_v10_purchase_order_contracts_id_delete).
    """
    return Response(status_code=200)


def parse_id(value: Any, name: str) -> int:
    try:
        result = integer(value)
    except ValueError:
        result = 0
    if not 0 < result < 2**63:
        raise ApiError(400, {"errors": f"{name} must be a positive integer"})
    return result


class Call:
    """One API request: parameter access with Procore's 400s, plus common lookups."""

    def __init__(self, request: Request, state: ProcoreState, body: dict,
                 route: tuple[str, str] = ("", "")) -> None:
        self.request, self.state, self.body, self.route = request, state, body, route

    def param(self, name: str, where: str) -> Any:
        if where == "path":
            return self.request.path_params.get(name)
        if where == "query":
            return self.request.query_params.get(name) or None
        return self.body.get(name)

    def id(self, name: str = "id", where: str = "path", required: bool = True) -> int | None:
        value = self.param(name, where)
        if value is None or value == "":
            if required:
                raise missing_param(name)
            return None
        return parse_id(value, name)

    def wrapper(self, name: str) -> dict:
        value = self.body.get(name)
        if value is None or value == {}:
            raise missing_param(name)
        if not isinstance(value, dict):
            raise ApiError(400, {"errors": f"{name} must be a JSON object"})
        return value

    def updates(self) -> list:
        updates = self.body.get("updates")
        if updates is None:
            raise missing_param("updates")
        if not isinstance(updates, list):
            raise ApiError(400, {"errors": "updates must be an array"})
        if len(updates) > SYNC_LIMIT:
            raise ApiError(413, {"errors": "Payload Too Large"})
        return updates

    def company(self, where: str = "query") -> int:
        company_id = self.id("company_id", where)
        if company_id != COMPANY_ID:
            raise ApiError(403, {"errors": "App is not connected to this company"})
        return company_id

    def project(self, where: str = "query") -> dict:
        return record_or_404(self.state.projects, self.id("project_id", where), "Project")

    def contract(self, project: dict, name: str = "id", where: str = "path") -> dict:
        return record_or_404(self.state.contracts, self.id(name, where),
                             "Purchase order contract", project["id"])

    def filters(self, name: str) -> list[str] | None:
        """The values of filters[name] / filters[name][], or None: also when the operation's
        OAS query list does not declare that filter, which Procore then does not apply
        (spec.listed_filters)."""
        if name not in listed_filters().get(self.route, ()):
            return None
        params = self.request.query_params
        values = params.getlist(f"filters[{name}]") + params.getlist(f"filters[{name}][]")
        return [v for v in values if v != ""] or None

    def filter_value(self, name: str) -> str | None:
        """The single value of a listed filters[name], or None (absent, empty or unlisted)."""
        values = self.filters(name)
        return values[0] if values else None


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Callable[[Call], Response]
    company_header: bool
    query: tuple[str, ...]
    invalid_status: int = 422
    body_types: tuple[str, ...] = ("application/json",)


_ENDPOINTS: list[Endpoint] = []
JSON_BODY, FORM_BODY, MULTIPART_BODY = ("application/json", "application/x-www-form-urlencoded",
                                        "multipart/form-data")


def api(method: str, path: str, *, company_header: bool = True, query: tuple[str, ...] = (),
        invalid_status: int = 422, body_types: tuple[str, ...] = (JSON_BODY,)):
    """Register a handler; `query` lists the query parameters the subset marks (Required).

    `body_types`: the media types a body may have (see app.read_body); JSON only by default.

    `invalid_status` answers a validation failure: 422 by default; 400 on the change order
    operations whose documented responses list 400 and no 422 (weigandconstruction/
    procore_python_sdk docs, generated from Procore's OpenAPI). The older operations keep 422
    although several of them document only 400 too (ASSUMPTION, docs/api-assumptions.md).
    """
    def register(handler: Callable[[Call], Response]) -> Callable[[Call], Response]:
        _ENDPOINTS.append(Endpoint(method, path, handler, company_header, query, invalid_status,
                                   body_types))
        return handler
    return register


def registered_endpoints() -> list[Endpoint]:
    """Every handler registered so far; app.py imports all resource modules before asking."""
    return list(_ENDPOINTS)
