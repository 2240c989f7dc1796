"""Authentication: HTTP Basic, the HS256 JWT and a provided token; secrets never shown."""

from __future__ import annotations

import logging

import httpx
import jwt
import pytest

from mlc_dagster.resources.http_core import RequestRecord, redact
from mlc_dagster.resources.sage_x3_client import (
    JwtBearerAuth,
    ProvidedTokenAuth,
    SageX3AuthError,
    SageX3Error,
    UserPasswordAuth,
)
from mlc_dagster_tests.resources.sage_x3_client.clients import (
    JWT_SECRET,
    PASSWORD,
    connection,
    graphql_client,
    rest_client,
)
from mlc_dagster_tests.resources.test_http_core import FakeClock


def test_rest_bad_password_is_a_clear_auth_error_without_the_password():
    client = rest_client(lambda r: httpx.Response(401, json={"$diagnoses": []}))
    with pytest.raises(SageX3AuthError) as caught:
        list(client.read_all("supplier"))
    assert "user 'MLCAPI'" in str(caught.value) and PASSWORD not in str(caught.value)


def test_jwt_claims_reuse_and_remint_before_expiry():
    tokens = []

    def handler(request):
        assert request.headers["x-xtrem-endpoint"] == "SEED"
        tokens.append(request.headers["Authorization"].removeprefix("Bearer "))
        return httpx.Response(200, json={"data": {"x3MasterData": {"supplier": {"query": connection([])}}}})

    clock = FakeClock(now=1_780_000_000.4)
    client = graphql_client(handler, clock, token_lifetime=300)
    list(client.read_all("supplier"))
    claims = jwt.decode(tokens[0], JWT_SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"iss": "app-1", "sub": "MLCAPI", "iat": 1_779_999_995, "exp": 1_780_000_295}
    clock.now += 200
    list(client.read_all("supplier"))
    assert tokens[1] == tokens[0]
    clock.now += 70  # within 30 s of expiry: a new token
    list(client.read_all("supplier"))
    assert tokens[2] != tokens[0]


def test_graphql_401_remints_once_then_fails_clearly():
    statuses = [401, 200]
    tokens = []

    def handler(request):
        tokens.append(request.headers["Authorization"])
        status = statuses.pop(0) if statuses else 401
        if status == 401:
            return httpx.Response(401, json={"errors": [{"message": "Invalid token: token expired"}]})
        return httpx.Response(200, json={"data": {"x3MasterData": {"supplier": {"query": connection([])}}}})

    clock = FakeClock()
    client = graphql_client(handler, clock)
    list(client.read_all("supplier"))
    assert len(tokens) == 2
    clock.now += 1
    with pytest.raises(SageX3AuthError) as caught:
        list(client.read_all("supplier"))
    assert len(tokens) == 4
    assert "client id 'app-1', user 'MLCAPI'" in str(caught.value)
    assert "token expired" in str(caught.value) and JWT_SECRET not in str(caught.value)


def test_a_token_lifetime_must_outlast_the_clock_skew_allowance():
    with pytest.raises(ValueError):
        graphql_client(lambda r: httpx.Response(200), token_lifetime=5)


def test_bearer_token_provider_for_the_cloud_gateway():
    issued = iter(["gw-token-1", "gw-token-2"])
    seen = []

    def handler(request):
        seen.append(request.headers["Authorization"])
        if len(seen) == 1:
            return httpx.Response(401, json={"errors": [{"message": "expired"}]})
        return httpx.Response(200, json={"data": {"x3MasterData": {"supplier": {"query": connection([])}}}})

    client = graphql_client(handler, bearer_token_provider=lambda: next(issued))
    list(client.read_all("supplier"))
    assert seen == ["Bearer gw-token-1", "Bearer gw-token-2"]


def test_secrets_stay_out_of_reprs_logs_records_and_errors(caplog):
    caplog.set_level(logging.DEBUG)
    records: list[RequestRecord] = []
    # Each server echoes its client's secret back; each client redacts what it holds.
    rest = rest_client(lambda r: httpx.Response(500, json={"$diagnoses": [{"$message": PASSWORD}]}),
                       on_request=records.append)
    graphql = graphql_client(lambda r: httpx.Response(400, json={"errors": [{"message": JWT_SECRET}]}),
                             on_request=records.append)
    errors = []
    for client in (rest, graphql):
        with pytest.raises(SageX3Error) as caught:
            list(client.read_all("supplier"))
        errors.append(caught.value)
    texts = [repr(rest), repr(graphql), str(vars(rest)), str(vars(graphql)), caplog.text,
             *map(str, errors), *map(repr, records)]
    for text in texts:
        assert PASSWORD not in text and JWT_SECRET not in text
    assert all("[REDACTED]" in str(e) for e in errors)


def test_basic_auth_sends_once_and_a_bearer_flow_once_more_after_a_401():
    request = httpx.Request("GET", "https://x3.example.com/api1/x3/erp/SEED/BPSUPPLIER")
    basic = UserPasswordAuth("MLCAPI", PASSWORD).sync_auth_flow(request)
    assert next(basic).headers["Authorization"].startswith("Basic ")
    with pytest.raises(StopIteration):  # a wrong password is not tried again
        basic.send(httpx.Response(401))

    tokens = iter(["gw-token-1", "gw-token-2"])
    bearer = ProvidedTokenAuth(lambda: next(tokens)).sync_auth_flow(request)
    assert next(bearer).headers["Authorization"] == "Bearer gw-token-1"
    assert bearer.send(httpx.Response(401)).headers["Authorization"] == "Bearer gw-token-2"
    with pytest.raises(StopIteration):  # the second 401 is the client's to report
        bearer.send(httpx.Response(401))


def test_a_renewed_token_is_recorded_as_two_exchanges_of_one_attempt():
    statuses = [401, 200]
    records: list[RequestRecord] = []

    def handler(request):
        if statuses.pop(0) == 401:
            return httpx.Response(401, json={"errors": [{"message": "expired"}]})
        return httpx.Response(200, json={"data": {"x3MasterData": {"supplier": {
            "query": connection([])}}}})

    client = graphql_client(handler, on_request=records.append)
    list(client.read_all("supplier"))
    assert [(r.status, r.attempt) for r in records] == [(401, 1), (200, 1)]
    assert client.stats.total_calls == 2


def test_auth_flows_never_show_their_secrets_and_hand_them_to_redact():
    basic = UserPasswordAuth("MLCAPI", PASSWORD)
    signed = JwtBearerAuth("app-1", JWT_SECRET, "MLCAPI", clock=FakeClock())
    token = signed.token()
    for text in (repr(basic), repr(signed), str(vars(basic)), str(vars(signed))):
        assert PASSWORD not in text and JWT_SECRET not in text and token not in text
    secrets = [*basic.secrets(), *signed.secrets()]
    assert redact(f"{PASSWORD} {JWT_SECRET} {token}", secrets) == "[REDACTED] " * 2 + "[REDACTED]"
    assert signed.describe() == "the token from client id 'app-1', user 'MLCAPI'"
