"""SageX3Resource: the Dagster face of the Sage X3 REST or GraphQL client."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from mlc_dagster.common.write_mode import x3_read_only
from mlc_dagster.resources.sage_x3_client import SageX3GraphQLClient, SageX3RestClient
from mlc_dagster.resources.tls import check_url
from mlc_dagster.settings import load_settings


class SageX3Resource(dg.ConfigurableResource):
    """`api` picks the transport: `rest` (Syracuse web API, HTTP Basic) or `graphql`
    (X3 Services, connected-application HS256 JWT). Both yield the same canonical records."""

    api: str = ""  # "" = SAGE_X3_API when the run starts (default rest)
    url: str
    endpoint: str = "SEED"
    user: str | None = None
    password: str | None = None
    jwt_client_id: str | None = None
    jwt_secret: str | None = None
    jwt_user: str | None = None
    timeout_seconds: float | None = None  # None = MLC_X3_TIMEOUT_SECONDS (default 60)
    allow_insecure_loopback: bool | None = None  # None = MLC_ALLOW_INSECURE_LOOPBACK

    _client: SageX3RestClient | SageX3GraphQLClient | None = PrivateAttr(default=None)

    def get_client(self) -> SageX3RestClient | SageX3GraphQLClient:
        """MLC_WRITE_MODE=preview: the client refuses REST writes and GraphQL mutations before
        sending them (`WriteRefused`); GraphQL queries (POSTs) still go."""
        if self._client is not None:
            return self._client
        settings = load_settings()
        insecure = (settings.allow_insecure_loopback if self.allow_insecure_loopback is None
                    else self.allow_insecure_loopback)
        url = check_url(self.url, allow_insecure_loopback=insecure, setting="SAGE_X3_URL")
        api = self.api or settings.x3.api
        timeout = self.timeout_seconds or settings.x3.timeout_seconds
        names = settings.x3.names  # MLC_MAPPING_KEY, MLC_X3_* name overrides
        if api == "rest":
            if not (self.user and self.password):
                raise ValueError("SAGE_X3_API=rest needs SAGE_X3_USER and SAGE_X3_PASSWORD")
            self._client = SageX3RestClient(url, self.endpoint, self.user, self.password,
                                            timeout=timeout, names=names)
        elif api == "graphql":
            if not (self.jwt_client_id and self.jwt_secret and self.jwt_user):
                raise ValueError("SAGE_X3_API=graphql needs SAGE_X3_JWT_CLIENT_ID, "
                                 "SAGE_X3_JWT_SECRET and SAGE_X3_JWT_USER")
            self._client = SageX3GraphQLClient(url, self.endpoint, jwt_client_id=self.jwt_client_id,
                                               jwt_secret=self.jwt_secret, jwt_user=self.jwt_user,
                                               timeout=timeout, names=names)
        else:
            raise ValueError(f"SAGE_X3_API must be 'rest' or 'graphql', got {api!r}")
        if settings.preview:
            self._client.refuse_requests(x3_read_only(getattr(self._client, "api_url", None)))
        return self._client

    def teardown_after_execution(self, context) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
