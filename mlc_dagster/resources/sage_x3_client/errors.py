"""How a Sage X3 call fails: the exceptions, and how they are read from X3's answers.

X3 explains a failure in its body (REST `$diagnoses`, GraphQL `errors` or
`extensions.diagnoses`), not by its status alone; this module reads those bodies.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from mlc_dagster.resources.http_core import is_retryable


class SageX3Error(Exception):
    """A Sage X3 call failed; `message` carries X3's own diagnosis text."""

    def __init__(self, status: int | None, method: str, path: str, message: str,
                 diagnoses: list | None = None) -> None:
        self.status = status
        self.method = method
        self.path = path
        self.message = message
        self.diagnoses = diagnoses or []
        outcome = f"failed with {status}" if status is not None else "failed"
        super().__init__(f"Sage X3 {method} {path} {outcome}: {message}")

    @property
    def retryable(self) -> bool:
        return (self.status is None or self.status == 429 or self.status >= 500) \
            and not self.record_missing

    @property
    def record_missing(self) -> bool:
        """X3 said the record does not exist. Recognised from the diagnosis, never from the
        status alone: Sage documents only "4xx or 5xx" for failed calls (integration-guide
        ws-query), and a 404 also answers an unknown class, representation or endpoint."""
        return any(is_missing_diagnosis(d) for d in self.diagnoses)


class SageX3AuthError(SageX3Error):
    """X3 refused our credentials; retrying will not help."""


class X3WriteForbidden(PermissionError):
    """An attempt to write an X3 class or node outside the allow-list (e.g. the GL)."""


# X3's "record does not exist" diagnosis: message number 721 of the supervisor's message
# table ("721 : Record does not exist", as quoted in the `$diagnoses` example of the REST
# notes, sage_x3_api.md 2.6). Matched on the number or the text, case-insensitively.
MISSING_RECORD_MESSAGE = re.compile(r"(?:^|\D)721\s*:|record does not exist", re.IGNORECASE)


def is_missing_diagnosis(diagnosis: Any) -> bool:
    """An error-level REST diagnosis saying the record does not exist."""
    return (isinstance(diagnosis, dict)
            and str(diagnosis.get("$severity", "error")).lower() in ("error", "fatal")
            and bool(MISSING_RECORD_MESSAGE.search(str(diagnosis.get("$message", "")))))


def diagnosis_messages(body: Any) -> list[str]:
    """Error texts from a REST `$diagnoses` list or GraphQL `errors` / `extensions.diagnoses`."""
    if not isinstance(body, dict):
        return []
    messages = []
    for diagnosis in body.get("$diagnoses") or []:
        if isinstance(diagnosis, dict) \
                and diagnosis.get("$severity", "error") in ("error", "fatal"):
            messages.append(str(diagnosis.get("$message", "")))
    for error in body.get("errors") or []:
        messages.append(str(error.get("message", error)) if isinstance(error, dict) else str(error))
    extensions = body.get("extensions")
    for diagnosis in (extensions.get("diagnoses") or []) if isinstance(extensions, dict) else []:
        if isinstance(diagnosis, dict) and diagnosis.get("severity") in ("error", "fatal"):
            messages.append(str(diagnosis.get("message", "")))
    return messages


def json_or_none(response: httpx.Response) -> Any:
    """The response body as JSON, or None when it is not JSON (an HTML error page)."""
    try:
        return response.json()
    except ValueError:
        return None


def x3_should_retry(response: httpx.Response, idempotent: bool) -> bool:
    """Retry what http_core retries, plus X3 running out of sessions ("too many sessions");
    never a missing record, whatever its status (X3 may answer it with a 5xx)."""
    if response.status_code >= 400 and b"$diagnoses" in response.content:
        body = json_or_none(response)
        if isinstance(body, dict) and any(is_missing_diagnosis(d)
                                          for d in body.get("$diagnoses") or []):
            return False
    if is_retryable(response, idempotent):
        return True
    if response.status_code < 400 and b"$diagnoses" not in response.content \
            and b'"errors"' not in response.content:
        return False
    return any("session" in message.lower()
               for message in diagnosis_messages(json_or_none(response)))
