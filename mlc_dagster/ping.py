"""`mlc-dagster ping`: prove both systems answer with the configured settings.

Each check says what worked and, when it failed, the likely fix. Secrets are
never printed: error texts come from the clients, which redact them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

X3_ENTITIES = ("purchase_order", "purchase_invoice", "supplier", "gl_account", "dimension")


@dataclass
class PingRow:
    check: str
    ok: bool
    detail: str
    fix: str = ""


def _try(check: str, fn: Callable[[], str], fix: Callable[[Exception], str]) -> PingRow:
    try:
        return PingRow(check, True, fn())
    except Exception as exc:  # noqa: BLE001 - every failure becomes a report line
        return PingRow(check, False, f"{type(exc).__name__}: {exc}", fix(exc))


def _status(exc: Exception) -> int | None:
    return getattr(exc, "status", None)


def _procore_fix(exc: Exception) -> str:
    status = _status(exc)
    if status == 401:
        return "check PROCORE_CLIENT_ID / PROCORE_CLIENT_SECRET and PROCORE_LOGIN_URL (sandbox vs production credentials differ)"
    if status == 403:
        return "install the app in this company and grant the service account access (PROCORE_COMPANY_ID)"
    if status == 400:
        return "PROCORE_COMPANY_ID must be the numeric company id"
    return "check PROCORE_API_URL / PROCORE_LOGIN_URL and network access"


def _x3_fix(exc: Exception) -> str:
    status = _status(exc)
    if status == 401:
        return "check SAGE_X3_USER / SAGE_X3_PASSWORD (REST) or the connected app's SAGE_X3_JWT_* settings (GraphQL)"
    if status == 404:
        return "check SAGE_X3_ENDPOINT (the Syracuse endpoint / folder name) and SAGE_X3_URL"
    if status == 500:
        return "the representation may not expose UPDDATTIM; check the class/representation names"
    return "check SAGE_X3_URL, SAGE_X3_API (rest|graphql) and network access"


def run_ping(env: Mapping[str, str]) -> list[PingRow]:
    from mlc_dagster.resources.procore_client import ProcoreClient
    from mlc_dagster.resources.sage_x3_client import SageX3GraphQLClient, SageX3RestClient
    from mlc_dagster.resources.tls import check_url

    rows: list[PingRow] = []
    insecure = env.get("MLC_ALLOW_INSECURE_LOOPBACK", "").lower() in {"1", "true", "yes"}
    missing = [n for n in ("PROCORE_LOGIN_URL", "PROCORE_API_URL", "PROCORE_CLIENT_ID",
                           "PROCORE_CLIENT_SECRET", "PROCORE_COMPANY_ID") if not env.get(n)]
    if missing:
        rows.append(PingRow("procore settings", False, f"missing {', '.join(missing)}",
                            "set them in the environment (see .env.example)"))
    else:
        try:
            client = ProcoreClient(
                check_url(env["PROCORE_LOGIN_URL"], allow_insecure_loopback=insecure,
                          setting="PROCORE_LOGIN_URL"),
                check_url(env["PROCORE_API_URL"], allow_insecure_loopback=insecure,
                          setting="PROCORE_API_URL"),
                env["PROCORE_CLIENT_ID"], env["PROCORE_CLIENT_SECRET"], int(env["PROCORE_COMPANY_ID"]))
        except ValueError as exc:
            rows.append(PingRow("procore settings", False, str(exc),
                                "PROCORE_COMPANY_ID must be numeric; URLs must be https://"))
        else:
            with client:
                token = _try("procore token", lambda: (client._access_token(), "token obtained")[1],
                             _procore_fix)
                rows.append(token)
                if token.ok:
                    rows.append(_try("procore company access", lambda: (
                        f"company {client.company_id}: "
                        f"{len(client.list_all('/rest/v1.0/companies'))} companies visible"),
                        _procore_fix))
                    rows.append(_try("procore projects visible",
                                     lambda: f"{len(client.projects())} projects", _procore_fix))

    api = env.get("SAGE_X3_API", "rest")
    try:
        url = check_url(env.get("SAGE_X3_URL", ""), allow_insecure_loopback=insecure,
                        setting="SAGE_X3_URL")
        if api == "graphql":
            x3 = SageX3GraphQLClient(url, env.get("SAGE_X3_ENDPOINT", ""),
                                     jwt_client_id=env.get("SAGE_X3_JWT_CLIENT_ID", ""),
                                     jwt_secret=env.get("SAGE_X3_JWT_SECRET", ""),
                                     jwt_user=env.get("SAGE_X3_JWT_USER", ""))
        else:
            x3 = SageX3RestClient(url, env.get("SAGE_X3_ENDPOINT", ""), env.get("SAGE_X3_USER", ""),
                                  env.get("SAGE_X3_PASSWORD", ""))
    except ValueError as exc:
        rows.append(PingRow("sage x3 settings", False, str(exc),
                            "set SAGE_X3_URL (https://) and SAGE_X3_API=rest|graphql"))
        return rows
    with x3:
        for entity in X3_ENTITIES:
            rows.append(_try(f"sage x3 {api} {entity}", lambda e=entity: (
                f"query ok ({len(next(iter(x3.changed(e, None, page_size=1)), []))} record on first page)"),
                _x3_fix))
    return rows
