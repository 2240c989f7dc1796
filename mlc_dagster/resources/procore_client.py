"""Procore REST client: OAuth2 client credentials, company header, paging and batch sync.

Plain Python (no Dagster) so it can be tested against `httpx.MockTransport` and the
sandbox. Where ids go follows Procore's v1 conventions: `project_id` in the query for
reads, in the JSON body for writes, except line-item sync which wants it in the query.

Every Procore call goes through `ProcoreClient.request`, and the only writes it sends are
`PROCORE_WRITES`: the endpoints the domain methods below write, nothing more. Any other write
(a journal entry, a budget, a direct cost, a payment...) is refused before it is sent, by
`request` itself and again by a request hook on the client's httpx connection, so even a
request built around `request` cannot leave (test_no_gl_writes proves no other code sends).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from mlc_dagster.common.payload import error_text
from mlc_dagster.resources.http_core import (
    ClientOptions,
    Endpoint,
    HttpClientBase,
    RatePacer,
    RateWindow,
    Secret,
    WriteRefused,
    redact,
    write_allow_list,
)

MAX_SYNC_BATCH = 1000

# The only Procore writes the connector sends, one per domain method of ProcoreClient (named in
# the comments); `{id}` is a numeric id. Reads and the OAuth token POST always pass; everything else
# is refused before it is sent. Widen it deliberately: test_no_gl_writes pins this exact list,
# and no GL or accounting endpoint (journal entries, budgets, direct costs, payments) belongs here.
PROCORE_WRITES: tuple[Endpoint, ...] = tuple(Endpoint.parse(e) for e in (
    "PATCH /rest/v1.0/vendors/sync",  # sync_vendors
    "PATCH /rest/v1.0/purchase_order_contracts/sync",  # sync_purchase_order_contracts
    "PATCH /rest/v1.0/purchase_order_contracts/{id}",  # update_purchase_order_contract
    "PATCH /rest/v1.0/purchase_order_contracts/{id}/line_items/sync",  # sync_contract_line_items
    "PATCH /rest/v1.0/purchase_order_contracts/{id}/line_items/{id}",  # update_contract_line_item
    "DELETE /rest/v1.0/purchase_order_contracts/{id}/line_items/{id}",  # delete_contract_line_item
    "POST /rest/v1.0/projects/{id}/billing_periods",  # create_billing_period
    "POST /rest/v1.1/requisitions",  # create_requisition
    "POST /rest/v1.0/change_order_packages",  # create_change_order_package
    # sync_potential_change_order_line_items:
    "PATCH /rest/v1.0/potential_change_orders/{id}/line_items/sync",
))


class ProcoreWriteForbidden(WriteRefused):
    """A Procore write that is not in `PROCORE_WRITES`; it was never sent. A defect in the
    connector, not a Procore answer: it is deliberately not a `ProcoreError`, so no step
    records it as a refused record and carries on."""


class ProcoreError(Exception):
    """A Procore call that failed; `message` is Procore's own text from the response body."""

    def __init__(self, status: int | None, method: str, path: str, message: str,
                 request_id: str | None = None, errors: Any = None) -> None:
        self.status = status
        self.method = method
        self.path = path
        self.message = message
        self.request_id = request_id
        self.errors = errors
        where = f"Procore {method} {path}"
        outcome = f"failed with {status}" if status is not None else "failed"
        suffix = f" [request id {request_id}]" if request_id else ""
        super().__init__(f"{where} {outcome}: {message}{suffix}")

    @property
    def retryable(self) -> bool:
        """True for failures that may succeed later (throttling, 5xx, network)."""
        return self.status is None or self.status == 429 or self.status >= 500

    @property
    def refused(self) -> bool:
        """Procore said no to this write (a 4xx that is not auth, missing or throttling).

        Procore's generated SDK documents 400 where our notes expected 422 for most financial
        writes, so callers must not tell a business-rule refusal by one status code.
        """
        return self.status is not None and 400 <= self.status < 500 \
            and self.status not in (401, 403, 404, 429)


class ProcoreAuthError(ProcoreError):
    """Procore refused our credentials or token; retrying will not help."""


@dataclass
class SyncResult:
    """Merged outcome of a batch `…/sync`: per-item results as data, never exceptions."""

    entities: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    calls: int = 0
    request_ids: list[str] = field(default_factory=list)  # Procore's X-Request-Id per call

    def by_origin_id(self) -> dict[str, dict]:
        """origin_id -> the entity Procore stored, or the echoed item with its `errors`."""
        outcome = {str(e["origin_id"]): e for e in self.entities if e.get("origin_id") is not None}
        outcome.update({str(e["origin_id"]): e for e in self.errors if e.get("origin_id") is not None})
        return outcome


class ProcoreClient(HttpClientBase):
    """One company's view of the Procore REST API, with OAuth, pacing and retries."""

    def __init__(
        self,
        login_url: str,
        api_url: str,
        client_id: str,
        client_secret: str,
        company_id: int,
        **options: Any,
    ) -> None:
        """`options`: those of `http_core.ClientOptions` (timeout 30 s unless given)."""
        client_options = ClientOptions(**options)
        self.login_url = login_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = Secret(client_secret)
        self.company_id = int(company_id)
        self._clock = client_options.clock
        self._write_guard = write_allow_list("Procore", self.api_url, PROCORE_WRITES,
                                             token_url=self.token_url, where="PROCORE_WRITES")
        # The hook sees every request this connection sends, however it was built.
        self._http = httpx.Client(timeout=client_options.timeout, verify=client_options.verify,
                                  transport=client_options.transport,
                                  headers={"Accept": "application/json"},
                                  event_hooks={"request": [self._refuse_unlisted_write]})
        self._sender = client_options.sender(self._http, "procore",
                                             pacer=RatePacer(clock=client_options.clock))
        self._token: Secret | None = None
        self._token_expires_at = 0.0
        self._token_lock = threading.Lock()

    def hold_until(self, epoch_seconds: float) -> None:
        """Send nothing before `epoch_seconds` (a continuation run, procore_writes/continuation.py)."""
        self._sender.pacer.hold_until(epoch_seconds)

    @property
    def rate_window(self) -> RateWindow | None:
        """The rate-limit window as the last response described it (None before any call)."""
        return self._sender.pacer.window

    def __repr__(self) -> str:
        return (f"ProcoreClient(api_url={self.api_url!r}, company_id={self.company_id}, "
                f"client_id={self.client_id!r})")

    # --- OAuth ---------------------------------------------------------------------

    @property
    def token_url(self) -> str:
        """Where the client-credentials grant is POSTed (the one write a read-only client
        makes: MLC_WRITE_MODE=preview)."""
        return f"{self.login_url}/oauth/token"

    def _access_token(self) -> str:
        with self._token_lock:
            if self._token is None or self._clock() >= self._token_expires_at:
                self._fetch_token()
            return self._token.reveal()

    def _fetch_token(self) -> None:
        """Client-credentials grant; renewal is simply asking again."""
        url = self.token_url
        issued_at = self._clock()
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self._client_secret.reveal()}
        try:
            response = self._sender.send(lambda: self._http.build_request("POST", url, data=form))
        except httpx.TransportError as exc:
            message = self._redact(f"{type(exc).__name__}: {exc}")
            raise ProcoreError(None, "POST", "/oauth/token", message) from None
        error = _oauth_error(response)
        if response.status_code == 401 or error == "invalid_client":
            raise ProcoreAuthError(
                response.status_code, "POST", "/oauth/token",
                f"Procore rejected the client id/secret ({response.status_code} "
                f"{error or 'invalid_client'}) at {url}",
                response.headers.get("x-request-id"))
        if response.is_error:
            raise self._error(response, "POST", "/oauth/token")
        payload = response.json()
        self._token = Secret(payload["access_token"])
        expires_in = payload.get("expires_in")
        if expires_in is None:
            # No lifetime given: keep the token until Procore answers 401.
            self._token_expires_at = float("inf")
        else:
            expires_in = float(expires_in)
            self._token_expires_at = issued_at + expires_in - min(60.0, expires_in / 10)

    def _forget_token(self, token: str) -> None:
        with self._token_lock:
            if self._token is not None and self._token.reveal() == token:
                self._token = None

    # --- requests ------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: dict | None = None, json: Any = None,
                idempotent: bool | None = None) -> httpx.Response:
        """One API call: every Procore API call goes through here (the OAuth token POST is
        `_fetch_token`'s). A write (anything but GET/HEAD) must match `PROCORE_WRITES`, else
        `ProcoreWriteForbidden` is raised before a token is asked for or anything is sent.
        Retries throttling, 5xx and network failures; a POST (which may create a duplicate)
        is only retried when Procore certainly did not process it. A 401 renews the token
        once and retries once. Other 4xx raise `ProcoreError`."""
        method = method.upper()
        url = self._url(path)
        self._refuse_unlisted_write(httpx.Request(method, url))
        if idempotent is None:
            idempotent = method != "POST"
        used: list[str] = []

        def build() -> httpx.Request:
            token = self._access_token()
            used.append(token)
            return self._http.build_request(
                method, url, params=params, json=json,
                headers={"Authorization": f"Bearer {token}",
                         "Procore-Company-Id": str(self.company_id)})

        for renewed in (False, True):
            try:
                response = self._sender.send(build, idempotent=idempotent)
            except httpx.TransportError as exc:
                message = self._redact(f"{type(exc).__name__}: {exc}")
                raise ProcoreError(None, method, urlsplit(url).path, message) from None
            if response.status_code != 401:
                break
            if renewed:
                raise ProcoreAuthError(
                    401, method, urlsplit(url).path,
                    "Procore rejected a freshly issued access token; check the service "
                    "account's access to this company and project",
                    response.headers.get("x-request-id"))
            self._forget_token(used[-1])
        if response.is_error:
            raise self._error(response, method, urlsplit(url).path)
        return response

    def get_json(self, path: str, params: dict | None = None) -> Any:
        response = self.request("GET", path, params=params)
        return response.json() if response.content else None

    def iter_pages(self, path: str, params: dict | None = None, per_page: int = 100
                   ) -> Iterator[list[dict]]:
        """Yield one list per page, following `Link: rel="next"` (or `Total` without it).

        Pages are requested by number rather than by fetching the link's URL, so the
        bearer token only ever goes to `api_url`.
        """
        page, fetched = 1, 0
        while True:
            response = self.request("GET", path, params={**(params or {}), "page": page,
                                                         "per_page": per_page})
            body = response.json() if response.content else []
            items = body.get("data", []) if isinstance(body, dict) else body
            if items:
                yield items
            fetched += len(items)
            if "link" in response.headers:
                more = "next" in response.links
            elif "total" in response.headers:
                more = bool(items) and fetched < int(response.headers["total"])
            else:
                more = False  # not a paginated endpoint
            if not more:
                return
            page += 1

    def list_all(self, path: str, params: dict | None = None, per_page: int = 100) -> list[dict]:
        return [item for page in self.iter_pages(path, params, per_page) for item in page]

    def sync(self, path: str, updates: list[dict], *, params: dict | None = None,
             body: dict | None = None, batch_size: int = MAX_SYNC_BATCH) -> SyncResult:
        """Create-or-update by `origin_id` through a `…/sync` endpoint, ≤1000 items a call.

        Item-level failures come back in `SyncResult.errors`; no updates means no call.
        """
        if not 1 <= batch_size <= MAX_SYNC_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_SYNC_BATCH}")
        result = SyncResult()
        for start in range(0, len(updates), batch_size):
            chunk = updates[start:start + batch_size]
            response = self.request("PATCH", path, params=params,
                                    json={**(body or {}), "updates": chunk})
            data = response.json()
            if response.headers.get("x-request-id"):
                result.request_ids.append(response.headers["x-request-id"])
            result.entities.extend(data.get("entities") or [])
            result.errors.extend(data.get("errors") or [])
            result.calls += 1
        return result

    # --- domain helpers --------------------------------------------------------------

    def projects(self) -> list[dict]:
        return self.list_all("/rest/v1.0/projects", {"company_id": self.company_id})

    def vendors(self) -> list[dict]:
        return self.list_all("/rest/v1.0/vendors", {"company_id": self.company_id})

    def sync_vendors(self, updates: list[dict]) -> SyncResult:
        return self.sync("/rest/v1.0/vendors/sync", updates, body={"company_id": self.company_id})

    def project_cost_codes(self, project_id: int) -> list[dict]:
        return self.list_all("/rest/v1.0/cost_codes", {"project_id": project_id})

    def line_item_types(self) -> list[dict]:
        return self.list_all("/rest/v1.0/line_item_types", {"company_id": self.company_id})

    def uoms(self) -> list[dict]:
        return self.list_all(f"/rest/v1.0/companies/{self.company_id}/uoms")

    def purchase_order_contracts(self, project_id: int, origin_id: str | None = None) -> list[dict]:
        params: dict[str, Any] = {"project_id": project_id}
        if origin_id is not None:
            params["filters[origin_id]"] = origin_id
        return self.list_all("/rest/v1.0/purchase_order_contracts", params)

    def purchase_order_contract(self, project_id: int, contract_id: int) -> dict:
        return self.get_json(f"/rest/v1.0/purchase_order_contracts/{contract_id}",
                             {"project_id": project_id})

    def sync_purchase_order_contracts(self, project_id: int, updates: list[dict]) -> SyncResult:
        return self.sync("/rest/v1.0/purchase_order_contracts/sync", updates,
                         body={"project_id": project_id})

    def update_purchase_order_contract(self, project_id: int, contract_id: int,
                                       fields: dict) -> dict:
        return self.request("PATCH", f"/rest/v1.0/purchase_order_contracts/{contract_id}",
                            json={"project_id": project_id,
                                  "purchase_order_contract": fields}).json()

    def contract_line_items(self, project_id: int, contract_id: int) -> list[dict]:
        return self.list_all(f"/rest/v1.0/purchase_order_contracts/{contract_id}/line_items",
                             {"project_id": project_id})

    def sync_contract_line_items(self, project_id: int, contract_id: int,
                                 updates: list[dict]) -> SyncResult:
        return self.sync(f"/rest/v1.0/purchase_order_contracts/{contract_id}/line_items/sync",
                         updates, params={"project_id": project_id})

    def update_contract_line_item(self, project_id: int, contract_id: int, line_item_id: int,
                                  fields: dict) -> dict:
        """OAS: PATCH /rest/v1.0/purchase_order_contracts/{id}/line_items/{id} (Update Purchase
        Order Contract Line Item); its body carries origin_id, which is how an adopted
        hand-typed line gets ours."""
        return self.request(
            "PATCH",
            f"/rest/v1.0/purchase_order_contracts/{contract_id}/line_items/{line_item_id}",
            json={"project_id": project_id, "line_item": fields}).json()

    def delete_contract_line_item(self, project_id: int, contract_id: int,
                                  line_item_id: int) -> None:
        self.request("DELETE",
                     f"/rest/v1.0/purchase_order_contracts/{contract_id}/line_items/{line_item_id}",
                     params={"project_id": project_id})

    def billing_periods(self, project_id: int) -> list[dict]:
        return self.list_all(f"/rest/v1.0/projects/{project_id}/billing_periods")

    def create_billing_period(self, project_id: int, start_date: str, end_date: str) -> dict:
        """OAS: POST /rest/v1.0/projects/:project_id/billing_periods (Create billing period).
        No status: Procore opens it, which it refuses while another period is open."""
        return self.request("POST", f"/rest/v1.0/projects/{project_id}/billing_periods",
                            json={"billing_period": {"start_date": start_date,
                                                     "end_date": end_date,
                                                     "due_date": end_date}}).json()

    def requisitions(self, project_id: int, commitment_id: int | None = None, *,
                     per_page: int = 100) -> list[dict]:
        """One commitment's requisitions, or (no `commitment_id`) the whole project's."""
        params: dict[str, Any] = {"project_id": project_id}
        if commitment_id is not None:
            params["filters[commitment_id]"] = commitment_id
        return self.list_all("/rest/v1.1/requisitions", params, per_page=per_page)

    def requisition(self, project_id: int, requisition_id: int) -> dict:
        """OAS: GET /rest/v1.1/requisitions/:id (Show Requisition), with its items."""
        return self.get_json(f"/rest/v1.1/requisitions/{requisition_id}",
                             {"project_id": project_id})

    def create_requisition(self, project_id: int, commitment_id: int, requisition: dict) -> dict:
        """OAS: POST /rest/v1.1/requisitions. Not idempotent: look the requisition up by
        origin_id before calling. There is no update: a requisition with an origin_id is
        immutable in Procore (tutorial_financial_tools.md, "Subcontractor Invoices")."""
        return self.request("POST", "/rest/v1.1/requisitions",
                            json={"project_id": project_id, "commitment_id": commitment_id,
                                  "requisition": requisition}).json()

    # Change orders on single-tier projects: a package plus its potential change order (PCO),
    # whose line items carry the amounts (procore/documentation tutorial_change_orders.md).
    # The commitment_change_orders create body has no line items and no origin_id: not used.

    def change_order_packages(self, project_id: int, contract_id: int) -> list[dict]:
        """OAS: GET /rest/v1.0/change_order_packages (List Change Order Packages)."""
        return self.list_all("/rest/v1.0/change_order_packages",
                             {"project_id": project_id, "contract_id": contract_id})

    def create_change_order_package(self, project_id: int, contract_id: int,
                                    change_order: dict) -> dict:
        """OAS: POST /rest/v1.0/change_order_packages. Not idempotent: look it up first."""
        return self.request("POST", "/rest/v1.0/change_order_packages",
                            json={"project_id": project_id, "contract_id": contract_id,
                                  "change_order": change_order}).json()

    def potential_change_orders(self, project_id: int, contract_id: int) -> list[dict]:
        """OAS: GET /rest/v1.0/potential_change_orders (List Potential Change Orders)."""
        return self.list_all("/rest/v1.0/potential_change_orders",
                             {"project_id": project_id, "filters[contract_id]": contract_id})

    def potential_change_order_line_items(self, project_id: int, pco_id: int) -> list[dict]:
        """OAS: GET /rest/v1.0/potential_change_orders/{id}/line_items."""
        return self.list_all(f"/rest/v1.0/potential_change_orders/{pco_id}/line_items",
                             {"project_id": project_id})

    def sync_potential_change_order_line_items(self, project_id: int, pco_id: int,
                                               updates: list[dict]) -> SyncResult:
        """OAS: PATCH /rest/v1.0/potential_change_orders/{id}/line_items/sync, by origin_id."""
        return self.sync(f"/rest/v1.0/potential_change_orders/{pco_id}/line_items/sync",
                         updates, params={"project_id": project_id})

    # --- internals -------------------------------------------------------------------

    def _refuse_unlisted_write(self, request: httpx.Request) -> None:
        """Raise `ProcoreWriteForbidden` for a write not in `PROCORE_WRITES` (also the httpx
        request hook: it runs before every request this client's connection sends)."""
        refusal = self._write_guard(request)
        if refusal:
            raise ProcoreWriteForbidden(refusal)

    def _url(self, path: str) -> str:
        if not path.startswith(("http://", "https://")):
            return f"{self.api_url}/{path.lstrip('/')}"
        if urlsplit(path)[:2] != urlsplit(self.api_url)[:2]:
            raise ValueError("refusing to send the Procore token to a different host")
        return path

    def _redact(self, text: str) -> str:
        return redact(text, [self._client_secret, self._token])

    def _error(self, response: httpx.Response, method: str, path: str) -> ProcoreError:
        message, errors = _error_details(response)
        return ProcoreError(response.status_code, method, path, self._redact(message),
                            response.headers.get("x-request-id"), errors)


def _oauth_error(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None


def _error_details(response: httpx.Response) -> tuple[str, Any]:
    """Procore's message from whichever of its several error shapes the body uses."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return (text[:500] or response.reason_phrase), None
    if not isinstance(body, dict):
        return str(body)[:500], None
    errors = body.get("errors")
    error = body.get("error")
    message = body.get("message") or body.get("error_description")
    if not message and isinstance(error, dict):
        message = error.get("message")
    if not message and isinstance(errors, str):
        message = errors
    if not message and isinstance(errors, dict):
        message = error_text(errors)
    if not message and isinstance(error, str):
        message = error
    return str(message or response.reason_phrase)[:500], errors
