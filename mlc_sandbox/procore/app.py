"""The Procore sandbox as an ASGI app: the endpoint runner (auth, headers, body, handler),
rate limiting and request ids around it, and the routes of every resource module."""

from __future__ import annotations

import json
import logging
import uuid

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlc_sandbox.controls import CALL_NOTE, ControlsMiddleware, SandboxControls

# Imported for their routes: each module registers its handlers with routing.api.
from mlc_sandbox.procore import (  # noqa: F401
    billing_periods,
    change_orders,
    commitments,
    cost_codes,
    oauth,
    projects,
    reference,
    requisitions,
    vendors,
)
from mlc_sandbox.procore.errors import ApiError, Invalid, missing_param, oauth_error
from mlc_sandbox.procore.oauth import INVALID_TOKEN
from mlc_sandbox.procore.routing import (
    FORM_BODY,
    MULTIPART_BODY,
    Call,
    Endpoint,
    json_response,
    registered_endpoints,
)
from mlc_sandbox.procore.spec import FILTER_KEY, body_templates, listed_filters, permitted_body
from mlc_sandbox.procore.state import ProcoreState
from mlc_sandbox.seed import COMPANY_ID, SeedData

log = logging.getLogger(__name__)

RATE_LIMIT_MESSAGE = ("You have surpassed the max number of requests for an hour. "
                      "Please wait until your limit resets.")


def served_routes() -> list[tuple[str, str]]:
    """(method, path) of every API route, paths in Starlette `{param}` syntax."""
    return [(e.method, e.path) for e in registered_endpoints()]


def required_query(method: str, path: str) -> tuple[str, ...]:
    return next(e.query for e in registered_endpoints() if (e.method, e.path) == (method, path))


async def read_body(request: Request, body_types: tuple[str, ...]) -> dict:
    """The body, in one of the operation's media types; no body at all reads as {}.

    `/rest/` writes take JSON only: the OAS sends `Content-Type: application/json` on every
    served write, and procore/documentation api_essentials/troubleshooting.md ("400: Bad
    Request") says "Ensure `Content-Type: application/json` header is set for POST/PATCH/PUT
    requests"; anything else is a 400. The OAuth endpoints declare their own encodings.
    Malformed JSON or a JSON body that is not an object is a 400 too.
    """
    raw = await request.body()
    if not raw.strip():
        return {}
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in body_types:
        expected = " or ".join(body_types)
        if request.url.path.startswith("/oauth/"):
            # RFC 6749 section 5.2 error shape (PD oauth/oauth_endpoints.md); ASSUMPTION.
            raise oauth_error(400, "invalid_request", f"The request body must be {expected}.")
        raise ApiError(400, {"errors": f"Content-Type must be {expected}"})
    if media_type in (FORM_BODY, MULTIPART_BODY):
        form = await request.form()
        return {k: v for k, v in form.items() if not isinstance(v, UploadFile)}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, {"errors": "The request body is not valid JSON"}) from None
    if not isinstance(body, dict):
        raise ApiError(400, {"errors": "The request body must be a JSON object"})
    return body


def check_company_header(request: Request) -> None:
    raw = request.headers.get("procore-company-id", "").strip()
    if not raw:
        raise ApiError(400, {
            "errors": "Missing Procore-Company-Id header!",
            "message": "Requests made with this token must send the Procore-Company-Id header "
                       "naming the company they act on.",
        })
    if not raw.isdigit():
        raise ApiError(400, {"errors": "Procore-Company-Id header must be an integer company id"})
    if int(raw) != COMPANY_ID:
        raise ApiError(403, {"errors": "App is not connected to this company"})


def authenticate(state: ProcoreState, request: Request) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or state.valid_token(token.strip()) is None:
        raise ApiError(401, {"errors": INVALID_TOKEN}, {
            "WWW-Authenticate": f'Bearer realm="Procore", error="invalid_token", '
                                f'error_description="{INVALID_TOKEN}"'})


def unlisted_filters(request: Request, route: tuple[str, str]) -> list[str]:
    """The filters[...] query keys the operation's OAS query list does not declare."""
    listed = listed_filters().get(route, frozenset())
    return sorted({key for key in request.query_params
                   if (match := FILTER_KEY.fullmatch(key)) and match.group(1) not in listed})


def endpoint_runner(state: ProcoreState, endpoints: dict[str, Endpoint]):
    """The Starlette endpoint for one path: auth, headers, body, then the handler under the lock."""
    templates = body_templates()

    async def run(request: Request) -> Response:
        ep = endpoints[request.method if request.method != "HEAD" else "GET"]
        try:
            if ep.path.startswith("/rest/"):
                authenticate(state, request)
                if ep.company_header:
                    check_company_header(request)
            for name in ep.query:
                if not request.query_params.get(name):
                    raise missing_param(name)
            ignored = unlisted_filters(request, (ep.method, ep.path))
            if ignored:  # not applied (Call.filters); the call log names them
                request.scope.get(CALL_NOTE, {})["ignored_filters"] = ignored
            body = {}
            if request.method in ("POST", "PATCH", "PUT"):
                # Procore ignores attributes it does not permit (issue 13 point 4): only what
                # the operation's OAS body template names reaches the handler.
                body, dropped = permitted_body(await read_body(request, ep.body_types),
                                               templates.get((ep.method, ep.path)))
                request.scope.get(CALL_NOTE, {})["dropped"] = dropped
            with state.lock:
                return ep.handler(Call(request, state, body, (ep.method, ep.path)))
        except ApiError as exc:
            return json_response(exc.status, exc.body, exc.headers)
        except Invalid as exc:
            return json_response(ep.invalid_status, {"errors": exc.errors})
        except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as exc:
            # Odd client input that slipped past validation: a 400, never a 500 traceback.
            log.warning("procore sandbox: %s %s rejected: %r", request.method, request.url.path,
                        exc, exc_info=True)
            return json_response(400, {"errors": f"Bad request: {exc}"})

    return run


# --- ASGI assembly ----------------------------------------------------------------------------


def _add_headers(send, headers: list[tuple[bytes, bytes]]):
    async def send_with_headers(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *headers]}
        await send(message)
    return send_with_headers


class RateLimitMiddleware:
    """Counts every /rest/ call and token request against the live limits; 429 once spent.

    No Retry-After here: the docs disagree on it, so it only comes from injected faults.
    """

    def __init__(self, app, state: ProcoreState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path.startswith("/rest/") or path == "/oauth/token"):
            return await self.app(scope, receive, send)
        allowed, headers = self.state.limiter.take(self.state.controls.config)
        raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        if allowed:
            return await self.app(scope, receive, _add_headers(send, raw))
        body = json.dumps({"message": RATE_LIMIT_MESSAGE}).encode()
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *raw]})
        await send({"type": "http.response.body", "body": body})


class RequestIdMiddleware:
    """Every response carries a fresh X-Request-Id, as Procore's do."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = str(uuid.uuid4()).encode()
        await self.app(scope, receive, _add_headers(send, [(b"x-request-id", request_id)]))


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Unknown routes and wrong methods answer in JSON like the rest of the API."""
    return json_response(exc.status_code, {"errors": exc.detail}, exc.headers)


def build_app(seed_data: SeedData, controls: SandboxControls):
    """The Procore sandbox ASGI app; its state is reachable as `app.state_obj`."""
    state = ProcoreState(seed_data, controls)
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in registered_endpoints():
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    # Literal segments first, so /vendors/sync is never taken for /vendors/{id}.
    paths = sorted(by_path, key=lambda p: p.count("{"))
    routes = [Route(path, endpoint_runner(state, by_path[path]), methods=list(by_path[path]))
              for path in paths]
    starlette = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    starlette.router.redirect_slashes = False
    app = ControlsMiddleware(RequestIdMiddleware(RateLimitMiddleware(starlette, state)), controls,
                             "procore")
    app.state_obj = state
    return app
