"""MLC_WRITE_MODE=preview: what refuses to write, and the read-only request guards.

The mode itself is `Settings.write_mode` (mlc_dagster/settings.py), read when a run or a tick
starts, so one deployment switches by its environment alone. No Dagster asset imports here
(the resources, sensors and every write step import this).
"""

from __future__ import annotations

import json
import re

import dagster as dg
import httpx

from mlc_dagster.resources.http_core import READ_METHODS, RequestGuard

PREVIEW = "MLC_WRITE_MODE=preview"
STEP_REFUSAL = (f"{PREVIEW}: this step writes to Procore/X3; run preview_sync, or set "
                "MLC_WRITE_MODE=live after sign-off")
_GRAPHQL_WRITE = re.compile(r"\b(mutation|subscription)\b")
_GRAPHQL_COMMENT = re.compile(r"#[^\n]*")


def ensure_live(step: str, write_mode: str) -> None:
    """Call first in every step that writes to Procore or X3 (or records writes), with the
    run's `Settings.write_mode`. Fails at once: the write steps' retry policies must not retry
    a refusal."""
    if write_mode == "preview":
        raise dg.Failure(STEP_REFUSAL, metadata={"step": step, "write_mode": "preview"},
                         allow_retries=False)


def skip_reason(what: str) -> str:
    """Why a sensor or schedule launched nothing. It leaves its cursor alone, so the changes
    it would have seen are still found by the first live tick."""
    return (f"{PREVIEW}: {what} launches no write run while previewing; run preview_sync "
            "(`mlc-dagster preview`) to see the plan, or set MLC_WRITE_MODE=live after sign-off")


def _refusal(system: str, request: httpx.Request) -> str:
    return (f"{PREVIEW}: refused {system} {request.method} {request.url.path} before sending it; "
            "the preview only reads (set MLC_WRITE_MODE=live after sign-off to write)")


def procore_read_only(token_url: str) -> RequestGuard:
    """Procore: reads only, plus the OAuth token POST (client credentials) at `token_url`."""
    token = httpx.URL(token_url)

    def guard(request: httpx.Request) -> str | None:
        if request.method in READ_METHODS:
            return None
        if request.method == "POST" and request.url.copy_with(query=None) == token:
            return None
        return _refusal("Procore", request)

    return guard


def x3_read_only(graphql_url: str | None = None) -> RequestGuard:
    """Sage X3: REST reads only (POST/PUT/DELETE on a class are writes); GraphQL requests are
    POSTs to `graphql_url`, allowed when the document is a query (a mutation or subscription
    anywhere in it refuses it: stricter than needed, never looser)."""
    endpoint = httpx.URL(graphql_url) if graphql_url else None

    def guard(request: httpx.Request) -> str | None:
        if request.method in READ_METHODS:
            return None
        if (request.method == "POST" and endpoint is not None
                and request.url.copy_with(query=None) == endpoint
                and is_graphql_query(request.content)):
            return None
        return _refusal("Sage X3", request)

    return guard


def is_graphql_query(body: bytes) -> bool:
    """A GraphQL request body whose document only reads: `query ...` or the `{ ... }` short
    form, with no mutation or subscription operation in it."""
    try:
        document = json.loads(body or b"null")
    except ValueError:
        return False
    query = document.get("query") if isinstance(document, dict) else None
    if not isinstance(query, str):
        return False
    text = _GRAPHQL_COMMENT.sub("", query).strip()
    return (text.startswith("{") or re.match(r"query\b", text) is not None) \
        and not _GRAPHQL_WRITE.search(text)
