"""What both X3 clients share: the interface the connector reads and writes through, how a
request is sent and its failure reported, and the canonical fields derived on both APIs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

from mlc_dagster.resources.http_core import ClientOptions, HttpClientBase, redact
from mlc_dagster.resources.sage_x3_client.auth import X3Auth
from mlc_dagster.resources.sage_x3_client.errors import (
    SageX3AuthError,
    SageX3Error,
    diagnosis_messages,
    json_or_none,
    x3_should_retry,
)
from mlc_dagster.resources.sage_x3_client.literals import X3_NAME, is_stamp
from mlc_dagster.resources.sage_x3_client.names import EntityNames, X3Names
from mlc_dagster.resources.sage_x3_client.records import (
    CANONICAL_FIELDS,
    CANONICAL_LINE_FIELDS,
    RecordConverter,
)


class SageX3Client(HttpClientBase, ABC):
    """What both X3 APIs offer the connector: delta reads, full reads, a few writes."""

    system = "sage_x3"

    def __init__(self, base_url: str, endpoint: str, *, auth: X3Auth,
                 names: X3Names | None = None, **options: Any) -> None:
        """`options`: those of `http_core.ClientOptions` (timeout 60 s unless given)."""
        if not X3_NAME.match(endpoint):
            raise ValueError(f"not an X3 endpoint name: {endpoint!r}")
        self.base_url = base_url.rstrip("/")
        self.endpoint = endpoint
        self.names = names or X3Names()
        self.auth = auth
        client_options = ClientOptions(**{"timeout": 60.0, **options})
        self._http = httpx.Client(timeout=client_options.timeout, verify=client_options.verify,
                                  transport=client_options.transport, auth=auth,
                                  headers={"Accept": "application/json"})
        self._sender = client_options.sender(self._http, self.system,
                                             should_retry=x3_should_retry)
        self._converter_cache: dict[str, tuple[RecordConverter, RecordConverter]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, endpoint={self.endpoint!r})"

    # The interface -------------------------------------------------------------------

    @abstractmethod
    def changed(self, entity: str, since_stamp: str | None, *, page_size: int = 200
                ) -> Iterator[list[dict]]:
        """Pages of canonical records with update stamp >= `since_stamp`, in no promised
        order (REST pages by the class key). Overlap and de-duplication are the caller's
        (see `DeltaCursor`, which does not depend on the order)."""

    @abstractmethod
    def read_all(self, entity: str, *, page_size: int = 200) -> Iterator[list[dict]]:
        """Every record of an entity, page by page, ordered by key (for reconciliation)."""

    @abstractmethod
    def changed_line_documents(self, entity: str, since_stamp: str | None, *,
                               page_size: int = 200) -> Iterator[list[dict]]:
        """Pages of `{<document key>: ..., "update_stamp": <line stamp>}` for the document
        lines stamped >= `since_stamp`: whether a line-only change moves the header stamp is
        not documented, so line stamps are polled too. Empty when the entity's line class /
        node is not configured (`rest_line_class` / `graphql_line_node` None)."""

    @abstractmethod
    def read_purchase_orders(self, numbers: Iterable[str], *, max_concurrency: int = 4
                             ) -> list[dict]:
        """Purchase orders with their lines; numbers X3 doesn't know are left out."""

    @abstractmethod
    def read_purchase_invoices(self, numbers: Iterable[str], *, max_concurrency: int = 4
                               ) -> list[dict]:
        """Purchase invoices with their lines; numbers X3 doesn't know are left out."""

    @abstractmethod
    def create_supplier(self, record: dict) -> str:
        """Create a supplier from a canonical record; returns its code."""

    @abstractmethod
    def update_supplier(self, code: str, fields: dict) -> None:
        """Change some canonical fields of one supplier."""

    @abstractmethod
    def upsert_dimension(self, dimension_type: str, code: str, description: str, active: bool,
                         short_description: str | None = None) -> str:
        """Create or update one analytical dimension value; returns "created" or "updated"."""

    # Shared helpers ------------------------------------------------------------------

    def _secrets(self) -> list[Any]:
        return self.auth.secrets()

    def _send(self, build: Callable[[], httpx.Request], method: str, path: str, *,
              idempotent: bool = True) -> httpx.Response:
        try:
            return self._sender.send(build, idempotent=idempotent)
        except httpx.TransportError as exc:
            message = redact(f"{type(exc).__name__}: {exc}", self._secrets())
            raise SageX3Error(None, method, path, message) from None

    def _error(self, response: httpx.Response, method: str, path: str,
               messages: list[str] | None = None) -> SageX3Error:
        body = json_or_none(response)
        messages = (messages or diagnosis_messages(body)
                    or [response.text[:500] or response.reason_phrase])
        message = redact("; ".join(messages), self._secrets())
        diagnoses = body.get("$diagnoses") if isinstance(body, dict) else None
        return SageX3Error(response.status_code, method, path, message, diagnoses)

    def _rejected(self, method: str, path: str, where: str,
                  reason: str | None = None) -> SageX3AuthError:
        """X3 answered 401 to the credentials of `self.auth`, at `where`."""
        text = f"Sage X3 rejected {self.auth.describe()} at {where}"
        if reason is not None:
            text += f": {reason}"
        return SageX3AuthError(401, method, path, redact(text, self._secrets()))

    def _converters(self, entity: str) -> tuple[RecordConverter, RecordConverter]:
        """(header, line) converters for an entity on this client's API."""
        if entity not in self._converter_cache:
            header_map, line_map = self._field_maps(self.names.entity(entity))
            self._converter_cache[entity] = (
                RecordConverter(CANONICAL_FIELDS[entity], header_map),
                RecordConverter(CANONICAL_LINE_FIELDS.get(entity, ()), line_map))
        return self._converter_cache[entity]

    @abstractmethod
    def _field_maps(self, names: EntityNames) -> tuple[dict[str, str], dict[str, str]]:
        """(header, line) field maps of this client's API."""

    @abstractmethod
    def _final_values(self) -> tuple[str, ...]:
        """Invoice status values meaning "final" on this client's API."""

    def _finish(self, entity: str, record: dict) -> dict:
        """Derived canonical fields, the same on both APIs.

        - invoices: `is_final` (status is one of the configured final values; a missing or
          unknown status is not final, the stricter reading);
        - PO lines: `mapping_key` (the GL account, or the configured dimension's value that
          the API-specific reader put in `mapping_key`);
        - POs with lines: `update_stamp` is the newest of the header and line stamps, so a
          line-only change (which may leave the header stamp alone) still changes it.
        """
        if entity == "purchase_invoice":
            finals = {value.lower() for value in self._final_values()}
            status = record.get("status")
            record["is_final"] = status is not None and str(status).strip().lower() in finals
        lines = record.get("lines")
        if entity == "purchase_order" and isinstance(lines, list):
            by_account = self.names.mapping_key.kind == "gl_account"
            stamps = [record.get("update_stamp")]
            for line in lines:
                if by_account:
                    line["mapping_key"] = line.get("gl_account")
                stamps.append(line.get("update_stamp"))
            valid = [s for s in stamps if is_stamp(s)]
            if valid:
                record["update_stamp"] = max(valid)
        return record
