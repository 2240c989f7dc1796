"""How the X3 clients authenticate, as httpx auth flows (`httpx.Auth.auth_flow`).

- REST: HTTP Basic with an X3 user and password (`UserPasswordAuth`); a 401 is final.
- GraphQL on premise: an HS256 JWT that a connected application signs itself
  (`JwtBearerAuth`), cached until shortly before it expires.
- GraphQL behind Sage's cloud gateway: an OAuth2 access token from a callable
  (`ProvidedTokenAuth`).

A bearer flow answers a 401 by dropping its token and sending the request once more with a
new one; a second 401 is the caller's to report. The flow runs inside one `httpx.Client.send`,
so every attempt of the retrying sender carries fresh credentials, and http_core records both
exchanges of a renewal (the 401 stays in `response.history`).

Secrets are held as `Secret` and never appear in a repr; `secrets()` hands them to `redact`.
"""

from __future__ import annotations

import base64
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Generator

import httpx
import jwt

from mlc_dagster.resources.http_core import Secret

# Tokens are back-dated by this much, so a server clock slightly behind ours does not see a
# token "issued in the future".
JWT_CLOCK_SKEW_SECONDS = 5


class X3Auth(httpx.Auth):
    """An httpx auth flow that can also name the credentials X3 refused, and list the secrets
    it holds so that error texts can be redacted."""

    @abstractmethod
    def describe(self) -> str:
        """Whose credentials these are, for an error message (never a secret):
        `the user/password for user 'MLCAPI'`."""

    @abstractmethod
    def secrets(self) -> list[Secret | None]:
        """Every secret this flow holds or has sent, for `redact`."""


class UserPasswordAuth(X3Auth):
    """HTTP Basic for the Syracuse REST API. The header is built per request, from a `Secret`,
    so no attribute holds the encoded password."""

    def __init__(self, user: str, password: str) -> None:
        self.user = user
        self._password = Secret(password)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        credentials = f"{self.user}:{self._password.reveal()}".encode()
        request.headers["Authorization"] = f"Basic {base64.b64encode(credentials).decode()}"
        yield request

    def describe(self) -> str:
        return f"the user/password for user {self.user!r}"

    def secrets(self) -> list[Secret | None]:
        return [self._password]

    def __repr__(self) -> str:
        return f"UserPasswordAuth(user={self.user!r})"


class BearerAuth(X3Auth):
    """A bearer token on every request; on a 401 the token is dropped and the request sent once
    more with a new one (an expired or revoked token), as httpx's own flows answer a 401."""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self.forget(token)
            request.headers["Authorization"] = f"Bearer {self.token()}"
            yield request

    @abstractmethod
    def token(self) -> str:
        """A token to send now."""

    def forget(self, token: str) -> None:
        """X3 refused `token`: do not hand it out again."""


class JwtBearerAuth(BearerAuth):
    """A connected application's HS256 JWT (`iss` = client id, `sub` = X3 user), signed here.

    One token serves every request until shortly before it expires (the last fifth of its
    life, at most 30 s), then a new one is signed; a refused token is re-signed at once.
    """

    def __init__(self, client_id: str, secret: str, user: str, *, lifetime: int = 300,
                 audience: str | None = None, clock: Callable[[], float] = time.time) -> None:
        if lifetime <= JWT_CLOCK_SKEW_SECONDS:
            raise ValueError(f"token_lifetime must exceed the {JWT_CLOCK_SKEW_SECONDS} s "
                             "clock-skew allowance")
        self.client_id = client_id
        self.user = user
        self.lifetime = lifetime
        self.audience = audience
        self._secret = Secret(secret)
        self._clock = clock
        self._token: Secret | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._renew_at:
                # Back-dated so a server clock slightly behind ours does not see a token
                # "issued in the future"; exp - iat stays within the app's token validity.
                issued = int(now) - JWT_CLOCK_SKEW_SECONDS
                expires = issued + self.lifetime
                claims = {"iss": self.client_id, "sub": self.user, "iat": issued, "exp": expires}
                if self.audience is not None:
                    claims["aud"] = self.audience
                self._token = Secret(jwt.encode(claims, self._secret.reveal(), algorithm="HS256"))
                self._renew_at = expires - min(30.0, (expires - now) / 5)
            return self._token.reveal()

    def forget(self, token: str) -> None:
        with self._lock:
            if self._token is not None and self._token.reveal() == token:
                self._token = None

    def describe(self) -> str:
        return f"the token from client id {self.client_id!r}, user {self.user!r}"

    def secrets(self) -> list[Secret | None]:
        return [self._secret, self._token]

    def __repr__(self) -> str:
        return f"JwtBearerAuth(client_id={self.client_id!r}, user={self.user!r})"


class ProvidedTokenAuth(BearerAuth):
    """A current OAuth2 access token from `provider` (Sage's cloud gateway), asked for on every
    request: the provider caches and refreshes it."""

    def __init__(self, provider: Callable[[], str]) -> None:
        self._provider = provider
        self._last: Secret | None = None

    def token(self) -> str:
        token = self._provider()
        self._last = Secret(token)
        return token

    def describe(self) -> str:
        return "the token from the bearer token provider"

    def secrets(self) -> list[Secret | None]:
        return [self._last]

    def __repr__(self) -> str:
        return "ProvidedTokenAuth()"
