"""The Syracuse REST web API (`/api1/x3/erp/{ENDPOINT}/{CLASS}`) with HTTP Basic.

Lists page by the class key through `$links.$next`; a document's lines come only with its
`$details` representation, read a few at a time; a PO line's GL account and dimensions are
read from where X3 keeps them (`LineValueSource`). Writes go through `_write` alone, which
refuses any class outside the allow-list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx

from mlc_dagster.resources.sage_x3_client.auth import UserPasswordAuth
from mlc_dagster.resources.sage_x3_client.base import SageX3Client
from mlc_dagster.resources.sage_x3_client.errors import (
    SageX3Error,
    diagnosis_messages,
    json_or_none,
)
from mlc_dagster.resources.sage_x3_client.literals import since_where
from mlc_dagster.resources.sage_x3_client.names import EntityNames, LineValueSource
from mlc_dagster.resources.sage_x3_client.records import (
    CANONICAL_KEYS,
    canonical_stamp,
    canonical_text,
)
from mlc_dagster.resources.sage_x3_client.writable import (
    WRITABLE_REST_CLASSES,
    refuse_unless_writable,
)


class SageX3RestClient(SageX3Client):
    """The Syracuse REST web API (`/api1/x3/erp/{ENDPOINT}/{CLASS}`), HTTP Basic."""

    def __init__(self, base_url: str, endpoint: str, user: str, password: str,
                 **options: Any) -> None:
        self.user = user
        super().__init__(base_url, endpoint, auth=UserPasswordAuth(user, password), **options)

    # reads ---------------------------------------------------------------------------

    def changed(self, entity: str, since_stamp: str | None, *, page_size: int = 200
                ) -> Iterator[list[dict]]:
        """Records stamped >= since, ordered by the class key: the `$next` links page with a
        `key=gt.<last key>` cursor over the class key (integration-guide ws-query), so an
        `orderBy` on anything else would skip or repeat records across pages."""
        names = self.names.entity(entity)
        where = since_where(names.rest_fields["update_stamp"], since_stamp)
        return self._pages(entity, where, self._key_order(names), page_size)

    def read_all(self, entity: str, *, page_size: int = 200) -> Iterator[list[dict]]:
        names = self.names.entity(entity)
        return self._pages(entity, None, self._key_order(names), page_size)

    def changed_line_documents(self, entity: str, since_stamp: str | None, *,
                               page_size: int = 200) -> Iterator[list[dict]]:
        names = self.names.entity(entity)
        if not (names.rest_line_class and names.rest_line_document):
            return iter(())
        stamp_column = names.rest_line_fields.get("update_stamp", "UPDDATTIM")
        where = since_where(stamp_column, since_stamp)
        key = CANONICAL_KEYS[entity][0]
        document = names.rest_line_document
        representation = names.rest_line_representation or names.rest_line_class

        def pages() -> Iterator[list[dict]]:
            # No orderBy: the server's own order is the class key, which is what its
            # key-cursor `$next` links page over.
            for page in self._query_pages(names.rest_line_class, representation, where, None,
                                          page_size):
                rows = [{key: canonical_text(r.get(document)),
                         "update_stamp": canonical_stamp(r.get(stamp_column))} for r in page]
                if rows:
                    yield rows
        return pages()

    @staticmethod
    def _key_order(names: EntityNames) -> str:
        return ",".join(f"{column} asc" for column in names.rest_key)

    def read_purchase_orders(self, numbers: Iterable[str], *, max_concurrency: int = 4
                             ) -> list[dict]:
        return self._read_details("purchase_order", numbers, max_concurrency)

    def read_purchase_invoices(self, numbers: Iterable[str], *, max_concurrency: int = 4
                               ) -> list[dict]:
        return self._read_details("purchase_invoice", numbers, max_concurrency)

    def _pages(self, entity: str, where: str | None, order_by: str | None, page_size: int
               ) -> Iterator[list[dict]]:
        names = self.names.entity(entity)
        for page in self._query_pages(names.rest_class, names.rest_representation, where,
                                      order_by, page_size):
            records = [self._from_rest(entity, r) for r in page]
            if records:
                yield records

    def _query_pages(self, rest_class: str, representation: str, where: str | None,
                     order_by: str | None, page_size: int) -> Iterator[list[dict]]:
        """Raw `$resources` pages of a `$query`, following `$links.$next.$url`."""
        url: str | None = self._class_url(rest_class)
        params: dict | None = {"representation": f"{representation}.$query", "count": page_size}
        if order_by:
            params["orderBy"] = order_by
        if where is not None:
            params["where"] = where
        while url:
            body = self._get(url, params)
            yield [r for r in body.get("$resources") or [] if isinstance(r, dict)]
            next_link = (body.get("$links") or {}).get("$next") or {}
            url = self._same_origin(next_link["$url"]) if next_link.get("$url") else None
            params = None

    def _read_details(self, entity: str, keys: Iterable[str], max_concurrency: int) -> list[dict]:
        """`$details` per record (list views carry no lines), a few at a time."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return []
        with ThreadPoolExecutor(max_workers=max(1, min(max_concurrency, len(keys)))) as pool:
            records = list(pool.map(lambda key: self._details(entity, key), keys))
        return [record for record in records if record is not None]

    def _details(self, entity: str, key: str) -> dict | None:
        """One record with its lines; None only when X3's diagnosis says it does not exist."""
        names = self.names.entity(entity)
        url = self._class_url(names.rest_class) + key_segment(key)
        try:
            body = self._get(url, {"representation": f"{names.rest_representation}.$details"})
        except SageX3Error as exc:
            if exc.record_missing:
                return None
            raise
        return self._from_rest(entity, body, with_lines=True)

    def _field_maps(self, names: EntityNames) -> tuple[dict[str, str], dict[str, str]]:
        return names.rest_fields, names.rest_line_fields

    def _final_values(self) -> tuple[str, ...]:
        return self.names.invoice_final_rest

    def _from_rest(self, entity: str, record: dict, with_lines: bool = False) -> dict:
        names = self.names.entity(entity)
        header, line = self._converters(entity)
        canonical = header(record)
        if with_lines and names.rest_lines:
            lines = record.get(names.rest_lines)
            raw_lines = [item for item in (lines if isinstance(lines, list) else [])
                         if isinstance(item, dict)]
            canonical["lines"] = [line(item) for item in raw_lines]
            if entity == "purchase_order":
                self._read_line_analytics(names, record, raw_lines, canonical["lines"])
        return self._finish(entity, canonical)

    def _read_line_analytics(self, names: EntityNames, record: dict, raw_lines: list[dict],
                             lines: list[dict]) -> None:
        """GL account and mapping dimension of each PO line, from where X3 keeps them."""
        key = self.names.mapping_key
        line_number = names.rest_line_fields.get("line_number", "POPLIN")
        accounts = _line_values(record, raw_lines, line_number, self.names.line_account,
                                key.chart)
        for canonical, account in zip(lines, accounts, strict=True):
            canonical["gl_account"] = account
        if key.kind == "dimension":
            values = _line_values(record, raw_lines, line_number, self.names.line_dimension,
                                  key.dimension_type)
            for canonical, value in zip(lines, values, strict=True):
                canonical["mapping_key"] = value

    # writes --------------------------------------------------------------------------

    def create_supplier(self, record: dict) -> str:
        names = self.names.supplier
        body = self._to_rest(names, record)
        created = self._write("POST", names, None, "$create", body)
        code = canonical_text(created.get(names.rest_fields["supplier_code"]))
        return code or record["supplier_code"]

    def update_supplier(self, code: str, fields: dict) -> None:
        names = self.names.supplier
        self._write("PUT", names, code, "$edit", self._to_rest(names, fields))

    def upsert_dimension(self, dimension_type: str, code: str, description: str, active: bool,
                         short_description: str | None = None) -> str:
        names = self.names.dimension
        record = {"dimension_type": dimension_type, "code": code, "description": description,
                  "active": active}
        if short_description is not None:
            record["short_description"] = short_description
        key = f"{dimension_type}~{code}"
        try:
            self._write("PUT", names, key, "$edit",
                        self._to_rest(names, {k: v for k, v in record.items()
                                              if k not in CANONICAL_KEYS["dimension"]}))
            return "updated"
        except SageX3Error as exc:
            if not exc.record_missing:
                raise
        self._write("POST", names, None, "$create", self._to_rest(names, record))
        return "created"

    def _write(self, method: str, names: EntityNames, key: str | None, facet: str,
               body: dict) -> dict:
        """The only REST write path; it refuses anything outside the allow-list."""
        _guard_rest_class(names.rest_class)
        url = self._class_url(names.rest_class) + (key_segment(key) if key is not None else "")
        params = {"representation": f"{names.rest_representation}.{facet}"}
        path = urlsplit(url).path
        response = self._send(
            lambda: self._http.build_request(method, url, params=params, json=body),
            method, path, idempotent=method != "POST")
        return self._check(response, method, path)

    @staticmethod
    def _to_rest(names: EntityNames, record: dict) -> dict:
        body = {}
        for name, value in record.items():
            column = names.rest_fields.get(name)
            if column is None or name == "update_stamp":
                continue
            body[column] = (2 if value else 1) if name == "active" else value
        return body

    # transport -----------------------------------------------------------------------

    def _class_url(self, rest_class: str) -> str:
        return f"{self.base_url}/api1/x3/erp/{self.endpoint}/{rest_class}"

    def _same_origin(self, url: str) -> str:
        url = urljoin(self.base_url + "/", url)
        if urlsplit(url)[:2] != urlsplit(self.base_url)[:2]:
            raise SageX3Error(None, "GET", urlsplit(url).path,
                              "refusing to follow a $next link to a different host")
        return url

    def _get(self, url: str, params: dict | None) -> dict:
        path = urlsplit(url).path
        response = self._send(lambda: self._http.build_request("GET", url, params=params),
                              "GET", path)
        return self._check(response, "GET", path)

    def _check(self, response: httpx.Response, method: str, path: str) -> dict:
        if response.status_code == 401:
            raise self._rejected(method, path, f"{self.base_url}/api1/x3/erp/{self.endpoint}")
        if response.is_error:
            raise self._error(response, method, path)
        body = json_or_none(response)
        if not isinstance(body, dict):
            raise SageX3Error(response.status_code, method, path, "response is not a JSON object")
        messages = diagnosis_messages(body)
        if messages:
            raise self._error(response, method, path, messages)
        return body


def key_segment(key: str) -> str:
    """`PO'1` -> `('PO''1')`, percent-encoded for the URL path."""
    return "('" + quote(key.replace("'", "''"), safe="~") + "')"


def _pick(values: Any, selectors: Any, wanted: str | None) -> str | None:
    """One value of an X3 array column: the position where `selectors` holds `wanted`
    (position 0 when nothing is wanted); a plain (non-array) value is taken as is."""
    if not isinstance(values, list):
        return canonical_text(values)
    if wanted is None:
        return canonical_text(values[0]) if values else None
    if not isinstance(selectors, list):
        return None
    for index, selector in enumerate(selectors):
        if canonical_text(selector) == wanted and index < len(values):
            return canonical_text(values[index])
    return None


def _line_values(record: dict, raw_lines: list[dict], line_number: str,
                 source: LineValueSource, wanted: str | None) -> list[str | None]:
    """`source`'s value for each raw REST line of a `$details` record."""
    if source.member is None:
        return [_pick(raw.get(source.values), raw.get(source.selectors or ""), wanted)
                for raw in raw_lines]
    entries = record.get(source.member)
    by_line: dict[str, str | None] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict):
            by_line[str(entry.get(source.line_key))] = _pick(
                entry.get(source.values), entry.get(source.selectors or ""), wanted)
    return [by_line.get(str(raw.get(line_number))) for raw in raw_lines]


def _guard_rest_class(rest_class: str) -> None:
    refuse_unless_writable("class", rest_class, WRITABLE_REST_CLASSES)
