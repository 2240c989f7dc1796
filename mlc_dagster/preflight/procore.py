"""The Procore half of the preflight: settings, token, company access, and the reads the
go-live checks need. GETs only (plus the OAuth token POST)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from mlc_dagster.preflight.golive import RATE_HEADERS, ProjectCommitments
from mlc_dagster.preflight.report import FAIL, OK, PingRow, attempt, fix_for_status
from mlc_dagster.preflight.x3 import insecure_loopback
from mlc_dagster.resources.http_core import WaitTooLong

PROCORE_SETTINGS = ("PROCORE_LOGIN_URL", "PROCORE_API_URL", "PROCORE_CLIENT_ID",
                    "PROCORE_CLIENT_SECRET", "PROCORE_COMPANY_ID")


class RateLimitWatch(httpx.BaseTransport):
    """An httpx transport that keeps the X-Rate-Limit-* headers of the latest response that
    had them, so the allowance is known without an extra call. They are plain numbers; the
    client's own request records carry no headers at all."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self._inner = inner or httpx.HTTPTransport()  # verifies TLS, like httpx's default
        self.latest: dict[str, str] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        seen = {name: response.headers[name] for name in RATE_HEADERS if name in response.headers}
        if seen:
            self.latest = seen
        return response

    def close(self) -> None:
        self._inner.close()


PROCORE_FIXES = {
    401: "check PROCORE_CLIENT_ID / PROCORE_CLIENT_SECRET and PROCORE_LOGIN_URL (sandbox vs "
         "production credentials differ)",
    403: "install the app in this company and grant the service account access "
         "(PROCORE_COMPANY_ID)",
    400: "PROCORE_COMPANY_ID must be the numeric company id",
}


def procore_fix(exc: Exception) -> str:
    if isinstance(exc, WaitTooLong):
        return ("Procore's rate limit is nearly used up (see the procore rate limit row): "
                "run ping again after the reset")
    return fix_for_status(exc, PROCORE_FIXES,
                          "check PROCORE_API_URL / PROCORE_LOGIN_URL and network access")


def procore_client(env: Mapping[str, str], watch: RateLimitWatch):
    """A ProcoreClient for these settings, or the FAIL row saying which setting is wrong."""
    from mlc_dagster.resources.procore_client import ProcoreClient
    from mlc_dagster.resources.tls import check_url

    missing = [name for name in PROCORE_SETTINGS if not env.get(name)]
    if missing:
        return PingRow("procore settings", FAIL, f"missing {', '.join(missing)}",
                       "set them in the environment (see .env.example)")
    insecure = insecure_loopback(env)
    try:
        return ProcoreClient(
            check_url(env["PROCORE_LOGIN_URL"], allow_insecure_loopback=insecure,
                      setting="PROCORE_LOGIN_URL"),
            check_url(env["PROCORE_API_URL"], allow_insecure_loopback=insecure,
                      setting="PROCORE_API_URL"),
            env["PROCORE_CLIENT_ID"], env["PROCORE_CLIENT_SECRET"], int(env["PROCORE_COMPANY_ID"]),
            transport=watch)
    except ValueError as exc:
        return PingRow("procore settings", FAIL, str(exc),
                       "PROCORE_COMPANY_ID must be numeric; URLs must be https://")


def connection_rows(client) -> tuple[list[PingRow], list[dict] | None]:
    """Token, company access, projects: the active projects when all three work."""
    rows = [attempt("procore token", lambda: (client._access_token(), "token obtained")[1],
                    procore_fix)]
    if not rows[-1].ok:
        return rows, None
    rows.append(attempt("procore company access", lambda: (
        f"company {client.company_id}: "
        f"{len(client.list_all('/rest/v1.0/companies'))} companies visible"), procore_fix))
    if not rows[-1].ok:
        return rows, None
    projects: list[dict] = []

    def read_projects() -> str:
        projects.extend(client.projects())
        return f"{len(projects)} active projects"

    rows.append(attempt("procore projects visible", read_projects, procore_fix))
    return rows, (projects if rows[-1].ok else None)


def read_commitments(client, projects: dict[int, str]
                     ) -> tuple[list[ProjectCommitments], dict[str, Exception]]:
    """One list call per project (all pages); a project that cannot be read is reported,
    the others still checked."""
    read, failed = [], {}
    for project_id, label in projects.items():
        try:
            read.append(ProjectCommitments(project_id, label,
                                           client.purchase_order_contracts(project_id)))
        except Exception as exc:  # noqa: BLE001 - reported in the commitments row
            failed[label] = exc
    return read, failed


def commitments_row(read: list[ProjectCommitments], failed: dict[str, Exception],
                    scope: str) -> PingRow:
    total = sum(len(p.commitments) for p in read)
    detail = f"{total} commitments in {len(read)} {scope}"
    if not failed:
        return PingRow("procore commitments", OK, detail)
    errors = "; ".join(f"{label}: {type(exc).__name__}: {exc}" for label, exc in failed.items())
    return PingRow("procore commitments", FAIL, f"cannot list {errors} ({detail})",
                   procore_fix(next(iter(failed.values()))))


def show_one_commitment_each(client, read: list[ProjectCommitments]) -> dict[str, dict]:
    """The show response of the first commitment of each project (at most one call each)."""
    return {p.label: client.purchase_order_contract(p.project_id, p.commitments[0]["id"])
            for p in read if p.commitments}
