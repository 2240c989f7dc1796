"""The Sage X3 sandbox as an ASGI app: REST and GraphQL over one X3State, with the
`/_sandbox/` controls and the administrator's `/_sandbox/x3/` around them."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlc_sandbox.controls import ControlsMiddleware, SandboxControls
from mlc_sandbox.sage_x3.admin import X3Administration
from mlc_sandbox.sage_x3.graphql_api import GraphQLApi
from mlc_sandbox.sage_x3.rest import RestApi, diagnoses
from mlc_sandbox.sage_x3.state import X3State
from mlc_sandbox.seed import SeedData


async def _not_found_handler(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    return diagnoses(status, f"{request.method} {request.url.path}: "
                             f"{'no such resource' if status == 404 else 'method not allowed'}")


def build_app(seed_data: SeedData, controls: SandboxControls):
    """The Sage X3 sandbox as an ASGI app, wrapped in the `/_sandbox/` controls."""
    state = X3State(seed_data, controls)
    rest = RestApi(state)
    graphql_api = GraphQLApi(state)
    app = Starlette(
        routes=[
            Route("/api1/x3/erp/{endpoint}/{rest:path}", rest.dispatch,
                  methods=["GET", "POST", "PUT", "DELETE"]),
            Route("/xtrem/api", graphql_api.handle, methods=["POST"]),
        ],
        exception_handlers={404: _not_found_handler, 405: _not_found_handler},
    )
    return X3Administration(ControlsMiddleware(app, controls, "sage_x3"), state)
