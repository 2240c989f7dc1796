"""Shared fixtures and helpers for the Sage X3 sandbox tests (real HTTP on loopback).

The X3 app runs alone (uvicorn in a thread), one server per test module, so these tests do
not need the Procore sandbox. Test modules import the fixtures they use: `x3_server_fixture`
with `x3_fixture` (and `x3_writable_fixture`, `x3_operations_fixture`) provide `x3`,
`x3_writable` and `x3_operations`; `x3_big_fixture` provides `x3_big`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
import uvicorn

from mlc_dagster.x3_import.templates import render, supplier_template
from mlc_sandbox.controls import SandboxControls
from mlc_sandbox.sage_x3.app import build_app
from mlc_sandbox.sage_x3.classes import WEB_API_READ_ONLY
from mlc_sandbox.sage_x3.state import X3State
from mlc_sandbox.seed import SANDBOX_CREDENTIALS, SeedData, build_seed
from mlc_sandbox.server import free_port

C = SANDBOX_CREDENTIALS
API = f"/api1/x3/erp/{C['x3_endpoint']}"
STAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


# --------------------------------------------------------------------------------------
# Fixtures: the X3 app alone, served by uvicorn on 127.0.0.1
# --------------------------------------------------------------------------------------


@dataclass
class X3Sandbox:
    url: str
    state: X3State
    controls: SandboxControls
    rest: httpx.Client  # sends HTTP Basic with the sandbox credentials
    http: httpx.Client  # sends nothing by itself (GraphQL, auth failures, controls)

    def query(self, cls: str, **params) -> httpx.Response:
        params = {"representation": f"{cls}.$query", **params}
        return self.rest.get(f"{API}/{cls}", params=params)

    def keys(self, cls: str, where: str) -> set[str]:
        """Keys of every row matching `where` (asserts it fits one page)."""
        resp = self.query(cls, where=where, count=200)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert "$next" not in body["$links"]
        return {row["$key"] for row in body["$resources"]}

    def details(self, cls: str, key: str) -> httpx.Response:
        return self.rest.get(f"{API}/{cls}('{key}')", params={"representation": f"{cls}.$details"})

    def create(self, cls: str, body: dict) -> httpx.Response:
        return self.rest.post(f"{API}/{cls}", params={"representation": f"{cls}.$create"},
                              json=body)

    def edit(self, cls: str, key: str, body: dict) -> httpx.Response:
        return self.rest.put(f"{API}/{cls}('{key}')", params={"representation": f"{cls}.$edit"},
                             json=body)

    def delete(self, cls: str, key: str) -> httpx.Response:
        return self.rest.delete(f"{API}/{cls}('{key}')",
                                params={"representation": f"{cls}.$edit"})

    def gql(self, query: str, variables: dict | None = None, *, token: str | None = None,
            endpoint: str | None = C["x3_endpoint"]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or make_token()}"}
        if endpoint is not None:
            headers["x-xtrem-endpoint"] = endpoint
        return self.http.post("/xtrem/api", json={"query": query, "variables": variables},
                              headers=headers)

    def gql_data(self, query: str, variables: dict | None = None) -> dict:
        resp = self.gql(query, variables)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert "errors" not in body, body["errors"]
        return body["data"]


@contextmanager
def run_x3(seed_data: SeedData) -> Iterator[X3Sandbox]:
    controls = SandboxControls()
    app = build_app(seed_data, controls)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, name="x3-sandbox-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "X3 sandbox did not start"
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    # Long-lived clients: building an httpx client (and its SSL context) costs ~0.1 s.
    rest = httpx.Client(base_url=url, auth=(C["x3_user"], C["x3_password"]), timeout=30)
    http = httpx.Client(base_url=url, timeout=30)
    try:
        yield X3Sandbox(url, app.state_obj, controls, rest, http)
    finally:
        rest.close()
        http.close()
        server.should_exit = True
        thread.join(timeout=5)


_SMALL_SEED = build_seed(42, "small")


@pytest.fixture(name="x3_server", scope="module")
def x3_server_fixture() -> Iterator[X3Sandbox]:
    with run_x3(_SMALL_SEED) as sandbox:
        yield sandbox


@pytest.fixture(name="x3")
def x3_fixture(x3_server) -> X3Sandbox:
    """The small-seed sandbox, reset to fresh data, real clock and no faults for each test
    (one server per test module: starting uvicorn per test would dominate the run time)."""
    x3_server.state.reset(_SMALL_SEED)
    x3_server.http.post("/_sandbox/config", json={"x3_line_change_moves_header": False})
    x3_server.http.delete("/_sandbox/faults")
    x3_server.http.delete("/_sandbox/calls")
    return x3_server


@pytest.fixture(name="x3_writable")
def x3_writable_fixture(x3) -> X3Sandbox:
    """A customer who built writable classes/representations for suppliers and dimension
    values (standard X3 has none: classes.WEB_API_READ_ONLY); `x3` resets it."""
    x3.state.writable_classes = set(WEB_API_READ_ONLY)
    return x3


@pytest.fixture(name="x3_operations")
def x3_operations_fixture(x3) -> X3Sandbox:
    """A customer who set up GraphQL API operations (GESAPIOPE) for the supplier and
    dimension nodes (standard X3 has no mutation: graphql_schema._mutation_sdl)."""
    x3.state.api_operations = {"dimension", "supplier"}
    return x3


def import_supplier(x3: X3Sandbox, code: str, name: str) -> None:
    """Add a supplier the way standard X3 takes one: an import file (template YMLCBPS)."""
    supplier = {"BPSNUM": code, "BPRNAM": name, "BPRSHO": name[:10], "BSGCOD": "SUP",
                "ENAFLG": 2, "LAN": "ENG", "TSSCOD(0)": "CON", "ACCCOD": "STD",
                "VACBPR": "NOR", "PTE": "30NET", "BPAADD": "MAIN"}
    address = {"BPAADD": "MAIN", "BPAADDLIG(0)": "1 Dock Road", "POSCOD": "L3 4AA",
               "CTY": "Liverpool", "CRY": "GB", "TEL(0)": "", "WEB(0)": ""}
    text = render(supplier_template(), [[("B", supplier), ("A", address)]])
    resp = x3.http.post("/_sandbox/x3/import", params={"template": "YMLCBPS", "file": "s.txt"},
                        content=text.encode())
    assert resp.status_code == 200 and resp.json()["created"] == [code], resp.text


@pytest.fixture(name="x3_big", scope="module")
def x3_big_fixture() -> Iterator[X3Sandbox]:
    """2,500 POs whose stamps collide in groups of 7, so ordering by UPDDATTIM alone is
    ambiguous and paging must use the POHNUM tiebreaker. Read-only tests only."""
    with run_x3(build_seed(42, "small", pos_per_project=125)) as sandbox:
        pos = sandbox.state.x3_purchase_orders
        assert len(pos) == 2500
        base = datetime(2026, 2, 1, 9, 0, 0, tzinfo=UTC)
        # Reverse order of POHNUM vs stamp so sorting by key alone would be wrong.
        for i, po in enumerate(reversed(pos)):
            po["UPDDATTIM"] = (base + timedelta(seconds=i // 7)).strftime("%Y-%m-%dT%H:%M:%SZ")
        yield sandbox


def make_token(*, secret: str = C["x3_jwt_secret"], iat_offset: float = -5,
               lifetime: float = 60, **claims) -> str:
    now = time.time()
    payload = {"iss": C["x3_jwt_client_id"], "sub": C["x3_jwt_user"], "aud": "",
               "iat": int(now + iat_offset), "exp": int(now + iat_offset + lifetime)}
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")


def recently(value: str, within: float = 10) -> bool:
    """An UPDDATTIM written by the server 'now' (UTC, second resolution)."""
    assert STAMP_RE.match(value), value
    moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return abs((datetime.now(UTC) - moment).total_seconds()) <= within


def gql_filter_string(value: str) -> str:
    """How a client must quote a value inside an Xtrem filter string."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"



def age(record: dict, stamp: str = "2020-01-01T00:00:00Z") -> None:
    """Back-date a record and its lines, so a change made now moves their stamps."""
    record["UPDDATTIM"] = stamp
    for line in record.get("lines", []):
        line["UPDDATTIM"] = stamp
