"""ProcoreResource: the Dagster face of ProcoreClient (secrets only via dg.EnvVar)."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from mlc_dagster.common.write_mode import procore_read_only
from mlc_dagster.resources.http_core import RetryPolicy
from mlc_dagster.resources.procore_client import ProcoreClient
from mlc_dagster.resources.tls import check_url
from mlc_dagster.settings import load_settings

# Set on a run that continues a hand-over at the rate limit (procore_writes/continuation.py): the
# epoch second from which its Procore client may send.
NOT_BEFORE_TAG = "mlc/procore_not_before"


def not_before(tags: dict[str, str]) -> float | None:
    """The time a continuation run may send its first Procore call, from its tags."""
    value = tags.get(NOT_BEFORE_TAG)
    try:
        return float(value) if value else None
    except ValueError:
        return None


class ProcoreResource(dg.ConfigurableResource):
    """OAuth client credentials, pacing by rate-limit headers, retries and batch sync.

    Production, developer-sandbox and monthly-sandbox differ only by the two
    URLs (e.g. https://login-sandbox.procore.com + https://sandbox.procore.com).
    """

    login_url: str = "https://login.procore.com"
    api_url: str = "https://api.procore.com"
    client_id: str
    client_secret: str
    company_id: str
    # Per-run overrides from the launchpad's run config (the fault-matrix tests use them);
    # None = the settings read when the run starts (MLC_PROCORE_*, MLC_ALLOW_INSECURE_LOOPBACK).
    timeout_seconds: float | None = None
    max_attempts: int | None = None
    max_wait_seconds: float | None = None
    allow_insecure_loopback: bool | None = None

    _client: ProcoreClient | None = PrivateAttr(default=None)
    _not_before: float | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """A run continuing a hand-over at the rate limit (procore_writes/continuation.py) carries
        the time the allowance returns; its client sends nothing before then."""
        run = context.run
        self._not_before = not_before(run.tags) if run is not None else None

    def get_client(self) -> ProcoreClient:
        """One client per run (or sensor tick), so the token and pacing state are shared.

        MLC_WRITE_MODE=preview: the client refuses every request but reads and the OAuth
        token POST, before sending it (`WriteRefused`)."""
        if self._client is None:
            settings = load_settings()
            tuning = settings.procore
            insecure = (settings.allow_insecure_loopback if self.allow_insecure_loopback is None
                        else self.allow_insecure_loopback)
            self._client = ProcoreClient(
                check_url(self.login_url, allow_insecure_loopback=insecure,
                          setting="PROCORE_LOGIN_URL"),
                check_url(self.api_url, allow_insecure_loopback=insecure,
                          setting="PROCORE_API_URL"),
                self.client_id, self.client_secret, int(self.company_id),
                timeout=self.timeout_seconds or tuning.timeout_seconds,
                retry=RetryPolicy(max_attempts=self.max_attempts or tuning.max_attempts),
                max_wait_seconds=self.max_wait_seconds or tuning.max_wait_seconds,
            )
            if self._not_before:
                self._client.hold_until(self._not_before)
            if settings.preview:
                self._client.refuse_requests(procore_read_only(self._client.token_url))
        return self._client

    def teardown_after_execution(self, context) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
