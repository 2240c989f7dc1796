"""Sage X3 sandbox over real HTTP on loopback: REST (`/api1`) and GraphQL (`/xtrem/api`).

Each test states one rule of the contract in `reference/sage_x3_api.md` (or a choice the
sandbox makes where the reference is open) and fails if the simulator breaks it. The
sandbox runs alone here (uvicorn in a thread), so these tests do not need the Procore
sandbox.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import uvicorn

from mlc_dagster.x3_import.templates import render, supplier_template
from mlc_sandbox import sage_x3_app
from mlc_sandbox.controls import SandboxControls
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
    state: sage_x3_app.X3State
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
    app = sage_x3_app.build_app(seed_data, controls)
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


@pytest.fixture(scope="module")
def _x3_server() -> Iterator[X3Sandbox]:
    with run_x3(_SMALL_SEED) as sandbox:
        yield sandbox


@pytest.fixture
def x3(_x3_server) -> X3Sandbox:
    """The small-seed sandbox, reset to fresh data, real clock and no faults for each test
    (one server per module: starting uvicorn per test would dominate the run time)."""
    _x3_server.state.reset(_SMALL_SEED)
    _x3_server.http.post("/_sandbox/config", json={"x3_line_change_moves_header": False})
    _x3_server.http.delete("/_sandbox/faults")
    _x3_server.http.delete("/_sandbox/calls")
    return _x3_server


@pytest.fixture
def x3_writable(x3) -> X3Sandbox:
    """A customer who built writable classes/representations for suppliers and dimension
    values (standard X3 has none: sage_x3_app.WEB_API_READ_ONLY); `x3` resets it."""
    x3.state.writable_classes = set(sage_x3_app.WEB_API_READ_ONLY)
    return x3


@pytest.fixture
def x3_operations(x3) -> X3Sandbox:
    """A customer who set up GraphQL API operations (GESAPIOPE) for the supplier and
    dimension nodes (standard X3 has no mutation: sage_x3_app._mutation_sdl)."""
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


@pytest.fixture(scope="module")
def x3_big() -> Iterator[X3Sandbox]:
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


# ======================================================================================
# REST: authentication, routing, representations
# ======================================================================================


def test_basic_auth_accepted(x3):
    resp = x3.query("BPSUPPLIER")
    assert resp.status_code == 200
    assert resp.json()["$resources"]


@pytest.mark.parametrize("auth", [
    None,
    (C["x3_user"], "wrong-password"),
    ("SOMEONE", C["x3_password"]),
    "Basic !!!not-base64!!!",
    "Bearer abc",
])
def test_basic_auth_refused_with_syracuse_challenge(x3, auth):
    url = f"{API}/BPSUPPLIER?representation=BPSUPPLIER.$query"
    if isinstance(auth, str):
        resp = x3.http.get(url, headers={"Authorization": auth})
    else:
        resp = x3.http.get(url, auth=auth)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == 'Basic realm="Syracuse"'
    assert resp.json()["$diagnoses"][0]["$severity"] == "error"


def test_unknown_endpoint_and_class_are_404(x3):
    resp = x3.rest.get("/api1/x3/erp/NOPE/PORDER", params={"representation": "PORDER.$query"})
    assert resp.status_code == 404
    assert "$diagnoses" in resp.json()
    resp = x3.query("NOCLASS")
    assert resp.status_code == 404
    assert "$diagnoses" in resp.json()


@pytest.mark.parametrize("params", [
    {},
    {"representation": "PORDER"},
    {"representation": "BPSUPPLIER.$query"},
    {"representation": "PORDER.$details"},
])
def test_query_needs_the_class_query_representation(x3, params):
    resp = x3.rest.get(f"{API}/PORDER", params=params)
    assert resp.status_code == 400
    assert resp.json()["$diagnoses"][0]["$message"]


def test_representation_dollar_literal_or_percent_encoded(x3):
    for raw in ("representation=PORDER.$query", "representation=PORDER.%24query"):
        resp = x3.rest.get(f"{x3.url}{API}/PORDER?{raw}&count=1")
        assert resp.status_code == 200, raw
        assert len(resp.json()["$resources"]) == 1


# ======================================================================================
# REST: $query envelope and paging
# ======================================================================================


def test_query_envelope_and_rows(x3):
    body = x3.query("PORDER").json()
    assert set(body) == {"$itemsPerPage", "$resources", "$links"}
    assert body["$itemsPerPage"] == 20 and len(body["$resources"]) == 20
    row = body["$resources"][0]
    assert row["$uuid"] and row["$key"] == row["POHNUM"]
    assert "UPDDATTIM" in row and "BPSNUM" in row
    assert "lines" not in row and "PORDERQ" not in row  # $query rows carry the header only
    nxt = body["$links"]["$next"]
    assert nxt["$type"] == "application/json" and nxt["$method"] == "GET"
    assert nxt["$url"].startswith(f"{x3.url}{API}/PORDER?")
    assert parse_qs(urlsplit(nxt["$url"]).query)["key"] == [f"gt.{body['$resources'][-1]['POHNUM']}"]


def test_count_is_capped_by_the_server(x3):
    body = x3.query("PORDER", count=1000).json()
    assert body["$itemsPerPage"] == 200
    assert len(body["$resources"]) == 200
    body = x3.query("PORDER", count=7).json()
    assert body["$itemsPerPage"] == 7 and len(body["$resources"]) == 7


@pytest.mark.parametrize("count", ["abc", "0", "-5"])
def test_invalid_count_is_400(x3, count):
    resp = x3.query("PORDER", count=count)
    assert resp.status_code == 400
    assert "$diagnoses" in resp.json()


def test_last_page_has_no_next_link(x3):
    where = "BPSNUM in ('SUP001','SUP002','SUP003')"
    total = len(x3.keys("BPSUPPLIER", where))
    assert total == 3
    first = x3.query("BPSUPPLIER", where=where, count=2).json()
    assert len(first["$resources"]) == 2 and "$next" in first["$links"]
    second = x3.rest.get(first["$links"]["$next"]["$url"]).json()
    assert [r["BPSNUM"] for r in second["$resources"]] == ["SUP003"]
    assert "$next" not in second["$links"]
    exact = x3.query("BPSUPPLIER", where=where, count=3).json()
    assert len(exact["$resources"]) == 3 and "$next" not in exact["$links"]


def test_empty_result_is_200_with_no_rows(x3):
    body = x3.query("PORDER", where="POHNUM eq 'NOPE'").json()
    assert body["$resources"] == [] and body["$links"] == {}


def _follow_rest(x3: X3Sandbox, first: httpx.Response) -> list[dict]:
    rows, resp, pages = [], first, 0
    while True:
        assert resp.status_code == 200, resp.text
        body = resp.json()
        rows += body["$resources"]
        pages += 1
        assert pages < 1000
        if "$next" not in body["$links"]:
            return rows
        resp = x3.rest.get(body["$links"]["$next"]["$url"])


def test_rest_pages_2500_pos_by_key_exactly_once(x3_big):
    resp = x3_big.query("PORDER", where="UPDDATTIM ge @2026-01-01T00:00:00Z@",
                        orderBy="POHNUM asc", count=200)
    rows = _follow_rest(x3_big, resp)
    numbers = [r["POHNUM"] for r in rows]
    assert len(numbers) == 2500 and len(set(numbers)) == 2500
    assert numbers == sorted(numbers)
    assert all(urlsplit(link).query for link in [])  # links checked in the next test


def test_rest_next_link_is_a_key_cursor_over_the_class_key(x3_big):
    """integration-guide ws-query: `$next` = `key=gt.<key>`; ordered by anything but the key,
    following the server's own links skips rows (stamps here run against the key order)."""
    first = x3_big.query("PORDER", orderBy="UPDDATTIM asc", count=200).json()
    last = first["$resources"][-1]["POHNUM"]
    assert parse_qs(urlsplit(first["$links"]["$next"]["$url"]).query)["key"] == [f"gt.{last}"]
    rows = _follow_rest(x3_big, x3_big.query("PORDER", orderBy="UPDDATTIM asc", count=200))
    assert len({r["POHNUM"] for r in rows}) < 2500


def test_rest_paging_respects_where_watermark_and_small_pages(x3_big):
    watermark = "2026-02-01T09:03:00Z"  # 180 s in -> stamps shared by groups of 7
    expected = {po["POHNUM"] for po in x3_big.state.x3_purchase_orders
                if po["UPDDATTIM"] >= watermark}
    resp = x3_big.query("PORDER", where=f"UPDDATTIM ge @{watermark}@", count=47)
    rows = _follow_rest(x3_big, resp)
    numbers = [r["POHNUM"] for r in rows]
    assert len(numbers) == len(set(numbers)) == len(expected)
    assert set(numbers) == expected


def test_rest_paging_descending_order(x3):
    resp = x3.query("PORDER", orderBy="POHNUM DESC", count=50)
    numbers = [r["POHNUM"] for r in _follow_rest(x3, resp)]
    assert numbers == sorted((po["POHNUM"] for po in x3.state.x3_purchase_orders), reverse=True)


def test_rest_key_cursor_is_a_condition_on_the_class_key(x3):
    """key=gt.<POHNUM>: rows whose class key is after it, in the requested order."""
    pos = sorted(x3.state.x3_purchase_orders, key=lambda p: p["POHNUM"])
    pivot = pos[10]["POHNUM"]
    body = x3.query("PORDER", key=f"gt.{pivot}", count=5).json()
    assert [r["POHNUM"] for r in body["$resources"]] == [p["POHNUM"] for p in pos[11:16]]


def test_order_by_outside_the_query_facet_is_refused(x3):
    """integration-guide ws-query: only properties of the $query facet can be sorted on."""
    resp = x3.query("PORDER", orderBy="CREDATTIM asc")
    assert resp.status_code == 400
    assert "$query facet" in resp.json()["$diagnoses"][0]["$message"]
    row = x3.query("PORDER", count=1).json()["$resources"][0]
    assert "CREDATTIM" not in row and "APPFLG" not in row and "UPDDATTIM" in row
    assert x3.query("PORDER", orderBy="UPDDATTIM desc").status_code == 200


def test_previous_link_returns_the_page_before(x3):
    first = x3.query("PORDER", orderBy="UPDDATTIM,POHNUM", count=10).json()
    assert "$previous" not in first["$links"]
    second = x3.rest.get(first["$links"]["$next"]["$url"]).json()
    back = x3.rest.get(second["$links"]["$previous"]["$url"]).json()
    assert back["$resources"] == first["$resources"]


@pytest.mark.parametrize("params", [
    {"orderBy": "NOSUCH asc"},
    {"orderBy": "POHNUM sideways"},
    {"key": "zz.PO1"},
    {"key": "gt.a~b~c"},
])
def test_bad_order_or_key_is_400(x3, params):
    resp = x3.query("PORDER", **params)
    assert resp.status_code == 400
    assert "$diagnoses" in resp.json()


# ======================================================================================
# REST: where parser
# ======================================================================================


def _supplier_codes(x3, pred) -> set[str]:
    return {s["BPSNUM"] for s in x3.state.x3_suppliers if pred(s)}


@pytest.mark.parametrize("where, pred", [
    ("BPSNUM eq 'SUP005'", lambda s: s["BPSNUM"] == "SUP005"),
    ("BPSNUM ne 'SUP005'", lambda s: s["BPSNUM"] != "SUP005"),
    ("BPSNUM lt 'SUP003'", lambda s: s["BPSNUM"] < "SUP003"),
    ("BPSNUM le 'SUP003'", lambda s: s["BPSNUM"] <= "SUP003"),
    ("BPSNUM gt 'SUP038'", lambda s: s["BPSNUM"] > "SUP038"),
    ("BPSNUM ge 'SUP038'", lambda s: s["BPSNUM"] >= "SUP038"),
    ("CUR eq 'EUR' and CRY eq 'FR'", lambda s: s["CUR"] == "EUR" and s["CRY"] == "FR"),
    ("CTY eq 'Lyon' or CTY eq 'Paris'", lambda s: s["CTY"] in ("Lyon", "Paris")),
    ("not CUR eq 'GBP'", lambda s: s["CUR"] != "GBP"),
    ("not (CUR eq 'GBP' or CTY eq 'Lyon')", lambda s: s["CUR"] != "GBP" and s["CTY"] != "Lyon"),
    ("(CTY eq 'Lyon' or CTY eq 'Leeds') and BPSNUM lt 'SUP020'",
     lambda s: s["CTY"] in ("Lyon", "Leeds") and s["BPSNUM"] < "SUP020"),
    ("BPSNUM in ('SUP001', 'SUP010','NOPE')", lambda s: s["BPSNUM"] in ("SUP001", "SUP010")),
    ("BPSNUM not in ('SUP001','SUP010')", lambda s: s["BPSNUM"] not in ("SUP001", "SUP010")),
    ("BPSNAM like '%Steel%'", lambda s: "Steel" in s["BPSNAM"]),
    ("BPSNAM like 'Atlas%'", lambda s: s["BPSNAM"].startswith("Atlas")),
    ("BPSNUM like 'SUP00_'", lambda s: re.fullmatch(r"SUP00.", s["BPSNUM"]) is not None),
    ("BPSNUM between 'SUP010' and 'SUP012'", lambda s: "SUP010" <= s["BPSNUM"] <= "SUP012"),
    ("ENAFLG eq 2 AND BPSTYP eq 1", lambda s: s["ENAFLG"] == 2 and s["BPSTYP"] == 1),
    ("UPDDATTIM ge @2025-12-16T07:50:00Z@", lambda s: s["UPDDATTIM"] >= "2025-12-16T07:50:00Z"),
    ("UPDDATTIM lt '2025-12-16T07:50:00Z'", lambda s: s["UPDDATTIM"] < "2025-12-16T07:50:00Z"),
    ("UPDDATTIM gt '2025-12-16T08:50:00+01:00'", lambda s: s["UPDDATTIM"] > "2025-12-16T07:50:00Z"),
])
def test_where_operators(x3, where, pred):
    expected = _supplier_codes(x3, pred)
    assert expected, "test data should match something"
    assert x3.keys("BPSUPPLIER", where) == expected


def test_where_numbers_and_dates_compare_by_type(x3):
    pos = x3.state.x3_purchase_orders
    # TOTORD is numeric: '99999.00' < '100000.00' numerically but not as text.
    expected = {p["POHNUM"] for p in pos if Decimal(p["TOTORD"]) > Decimal("100000")}
    resp = x3.query("PORDER", where="TOTORD gt 100000", count=200)
    rows = _follow_rest(x3, resp)
    assert {r["POHNUM"] for r in rows} == expected
    expected = {p["POHNUM"] for p in pos if p["ORDDAT"] >= "2026-09-01"}
    rows = _follow_rest(x3, x3.query("PORDER", where="ORDDAT ge @2026-09-01@", count=200))
    assert {r["POHNUM"] for r in rows} == expected
    closed = {p["POHNUM"] for p in pos if p["CLEFLG"] == 2}
    assert closed and x3.keys("PORDER", "CLEFLG eq 2") == closed


def test_where_escaped_quote_is_data_not_syntax(x3):
    import_supplier(x3, "SUPQ01", "O'Brien & Sons Ltd")
    assert x3.keys("BPSUPPLIER", "BPSNAM eq 'O''Brien & Sons Ltd'") == {"SUPQ01"}
    assert x3.keys("BPSUPPLIER", "BPSNAM like '%''Brien%'") == {"SUPQ01"}


@pytest.mark.parametrize("value", [
    "x' or '1'='1",
    "x' or POHNUM ne '",
    "PO26000001') or (POHNUM ne '",
    "%' or POHNUM like '%",
])
def test_where_injection_through_escaped_literal_matches_nothing(x3, value):
    escaped = value.replace("'", "''")
    assert x3.keys("PORDER", f"POHNUM eq '{escaped}'") == set()
    assert x3.keys("PORDER", f"POHNUM in ('{escaped}')") == set()


def test_where_unescaped_injection_is_rejected_not_executed(x3):
    resp = x3.query("PORDER", where="POHNUM eq 'x' or '1'='1'")
    assert resp.status_code == 400
    assert resp.json()["$diagnoses"][0]["$sdataCode"] == "BadWhereSyntax"


@pytest.mark.parametrize("where", [
    "NOSUCH eq 'x'",
    "POHNUM eq 'x' or (CLEFLG eq 1 and pohnum eq 'y')",
    "NOSUCH in ('a')",
])
def test_where_unknown_property_is_http_500(x3, where):
    resp = x3.query("PORDER", where=where)
    assert resp.status_code == 500
    assert resp.json()["$diagnoses"][0]["$severity"] == "error"
    assert "Traceback" not in resp.text


@pytest.mark.parametrize("where", [
    "POHNUM eq",
    "POHNUM eq 'abc",
    "(POHNUM eq 'a'",
    "POHNUM eq 'a')",
    "POHNUM == 'a'",
    "POHNUM eq 'a' and",
    "eq 'a'",
    "POHNUM in 'a'",
    "POHNUM like 5",
    "POHNUM eq 'a' POHNUM eq 'b'",
    "(" * 200 + "POHNUM eq 'a'" + ")" * 200,
    "NOSUCH eq )",  # syntax is checked before properties
])
def test_where_syntax_error_is_400(x3, where):
    resp = x3.query("PORDER", where=where)
    assert resp.status_code == 400, resp.text
    diagnosis = resp.json()["$diagnoses"][0]
    assert diagnosis["$sdataCode"] == "BadWhereSyntax"


@pytest.mark.parametrize("where", ["REVNUM eq 'abc'", "UPDDATTIM ge 'yesterday'",
                                   "POHNUM eq @2026-01-01@"])
def test_where_value_of_wrong_type_is_400(x3, where):
    resp = x3.query("PORDER", where=where)
    assert resp.status_code == 400
    assert "$diagnoses" in resp.json()


# ======================================================================================
# REST: $details
# ======================================================================================


def test_details_has_lines_with_uuids(x3):
    po = x3.state.x3_purchase_orders[0]
    body = x3.details("PORDER", po["POHNUM"]).json()
    assert body["POHNUM"] == po["POHNUM"] and body["$uuid"]
    assert "lines" not in body
    lines = body["PORDERQ"]
    assert [ln["POPLIN"] for ln in lines] == [ln["POPLIN"] for ln in po["lines"]]
    assert all(ln["$uuid"] for ln in lines) and len({ln["$uuid"] for ln in lines}) == len(lines)
    assert "ACC" not in lines[0] and "CCE" not in lines[0]


def test_details_serve_line_accounts_and_dimensions_outside_the_lines(x3):
    """V11 dictionary: PORDERQ/PORDERP have no account or dimension column; the line's
    accounts are PORDERC.LINACC (by COA) and its dimensions CPTANALIN.CCE (by DIE)."""
    po = x3.state.x3_purchase_orders[0]
    body = x3.details("PORDER", po["POHNUM"]).json()
    accounts = {e["POPLIN"]: e for e in body["PORDERC"]}
    dimensions = {e["VCRLIN"]: e for e in body["CPTANALIN"]}
    for line in po["lines"]:
        assert accounts[line["POPLIN"]] == {"POPLIN": line["POPLIN"], "COA": ["SEED"],
                                            "LINACC": [line["ACC"]]}
        assert dimensions[line["POPLIN"]]["DIE"] == ["PRJ", "CST"]
        assert dimensions[line["POPLIN"]]["CCE"] == [po["PJTH"], f"C{line['ACC']}"]


def test_line_account_on_a_quantity_line_is_refused(x3):
    body = {**NEW_PO, "POHNUM": "PO99000010",
            "PORDERQ": [{**NEW_PO["PORDERQ"][0], "ACC": "602300"}]}
    resp = x3.create("PORDER", body)
    assert resp.status_code == 400 and "unknown property ACC" in resp.text


def test_details_invoice_and_composite_keys(x3):
    invoice = x3.state.x3_purchase_invoices[0]
    body = x3.details("PINVOICE", invoice["NUM"]).json()
    assert [ln["PIDLIN"] for ln in body["PINVOICED"]] == [ln["PIDLIN"] for ln in invoice["lines"]]
    assert x3.details("GACCOUNT", "SEED~601100").json()["DES"] == "Purchases - general requirements"
    assert x3.details("CACCE", "PRJ~P1001").json()["DESSHO"] == "P1001"
    edit = x3.rest.get(f"{API}/CACCE('PRJ~P1001')", params={"representation": "CACCE.$edit"})
    assert edit.status_code == 200


@pytest.mark.parametrize("cls, key", [("PORDER", "NOPE"), ("GACCOUNT", "SEED"),
                                      ("CACCE", "PRJ~NOPE")])
def test_details_not_found(x3, cls, key):
    resp = x3.details(cls, key)
    assert resp.status_code in sage_x3_app.MISSING_RECORD_STATUSES
    assert resp.json() == {"$diagnoses": [{"$severity": "error",
                                            "$message": "721 : Record does not exist"}]}


def test_missing_record_status_varies_with_the_key(x3):
    """Sage documents only "4xx or 5xx": the status of a missing record is not a signal."""
    statuses = {x3.details("PORDER", f"NOPE{i}").status_code for i in range(12)}
    assert statuses == set(sage_x3_app.MISSING_RECORD_STATUSES)
    assert x3.details("PORDER", "NOPE3").status_code == x3.details("PORDER", "NOPE3").status_code


def test_keys_with_slash_and_quote_round_trip(x3_writable):
    x3 = x3_writable
    resp = x3.create("CACCE", {"DIE": "CCT", "CCE": "A/B'C", "DES": "Odd code"})
    assert resp.status_code == 201, resp.text
    assert x3.rest.get(resp.headers["location"]).json()["CCE"] == "A/B'C"
    assert x3.details("CACCE", "CCT~A/B''C").json()["DES"] == "Odd code"


def test_template_gives_create_defaults(x3):
    resp = x3.rest.get(f"{API}/PORDER/$template", params={"representation": "PORDER.$create"})
    assert resp.status_code == 200
    assert resp.json()["CLEFLG"] == 1 and "UPDDATTIM" not in resp.json()


def test_prototype_lists_properties(x3):
    resp = x3.rest.get(f"{API}/BPSUPPLIER/$prototypes('BPSUPPLIER.$create')")
    props = resp.json()["$properties"]
    assert props["BPSNAM"] == {"$type": "application/x-string", "$isMandatory": True,
                               "$maxLength": 35}


# ======================================================================================
# REST: writes
# ======================================================================================


NEW_PO = {
    "POHNUM": "PO99000001", "BPSNUM": "SUP001", "PJTH": "P1001", "POHFCY": "GB011",
    "ORDDAT": "2026-03-01", "ORDREF": "Test order",
    "PORDERQ": [
        {"POPLIN": 1000, "ITMREF": "CONC-C30", "ITMDES": "Ready-mix",
         "QTYUOM": "10", "UOM": "M3", "NETPRI": "95.50"},
        {"POPLIN": 2000, "ITMREF": "LAB-DAY", "ITMDES": "Labour",
         "QTYUOM": 8, "UOM": "HR", "NETPRI": 40},
    ],
    "PORDERC": [{"POPLIN": 1000, "COA": ["SEED"], "LINACC": ["602300"]},
                {"POPLIN": 2000, "COA": ["SEED"], "LINACC": ["612000"]}],
    "CPTANALIN": [{"VCRLIN": 1000, "DIE": ["PRJ", "CST"], "CCE": ["P1001", "C602300"]}],
}


def test_create_purchase_order(x3):
    resp = x3.create("PORDER", NEW_PO)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["POHNUM"] == "PO99000001" and body["CUR"] == "GBP"  # currency from supplier
    assert body["TOTORD"] == "1275.00"
    assert [ln["LINAMT"] for ln in body["PORDERQ"]] == ["955.00", "320.00"]
    assert [e["LINACC"] for e in body["PORDERC"]] == [["602300"], ["612000"]]
    assert [e["CCE"] for e in body["CPTANALIN"]] == [["P1001", "C602300"], []]
    assert body["UPDDATTIM"] == body["CREDATTIM"] and recently(body["UPDDATTIM"])
    location = resp.headers["location"]
    assert location.startswith(f"{x3.url}{API}/PORDER('PO99000001')")
    assert x3.rest.get(location).json()["ORDREF"] == "Test order"
    assert x3.keys("PORDER", "POHNUM eq 'PO99000001'") == {"PO99000001"}


def test_create_assigns_line_numbers(x3):
    body = {"POHNUM": "PO99000002", "BPSNUM": "SUP002",
            "PORDERQ": [{"ITMREF": "A", "QTYUOM": 1, "NETPRI": 1},
                        {"ITMREF": "B", "QTYUOM": 1, "NETPRI": 2}]}
    lines = x3.create("PORDER", body).json()["PORDERQ"]
    assert [ln["POPLIN"] for ln in lines] == [1000, 2000]


@pytest.mark.parametrize("cls, body, fragment", [
    ("PORDER", {"BPSNUM": "SUP001"}, "POHNUM"),
    ("PORDER", {"POHNUM": "", "BPSNUM": "SUP001"}, "POHNUM"),
    ("PORDER", {"POHNUM": "PO26000001", "BPSNUM": "SUP001"}, "Record already exists"),
    ("PORDER", {"POHNUM": "PO9", "BPSNUM": "SUP001", "NOSUCH": 1}, "NOSUCH"),
    ("PORDER", {"POHNUM": "PO9", "BPSNUM": "SUP001", "REVNUM": "two"}, "REVNUM"),
    ("PORDER", {"POHNUM": "PO9", "BPSNUM": "SUP001", "CLEFLG": 7}, "CLEFLG"),
    ("PORDER", {"POHNUM": "PO9", "BPSNUM": "SUP001", "ORDDAT": "01/03/2026"}, "ORDDAT"),
    ("PORDER", {"POHNUM": "PO9", "BPSNUM": "SUP001",
                "PORDERQ": [{"POPLIN": 1000}, {"POPLIN": 1000}]}, "duplicate"),
    ("PORDER", {"POHNUM": "PO9", "BPSNUM": "SUP001", "PORDERQ": [{"QTYUOM": "lots"}]}, "QTYUOM"),
    ("PORDER", {"POHNUM": "PO9", "BPSNUM": "SUP001",
                "PORDERQ": [{"QTYUOM": "1e999999999"}]}, "QTYUOM"),
    ("BPSUPPLIER", {"BPSNUM": "SUP001", "BPSNAM": "Again"}, "Record already exists"),
    ("BPSUPPLIER", {"BPSNUM": "SUPX"}, "BPSNAM"),
    ("BPSUPPLIER", {"BPSNUM": "SUPX", "BPSNAM": "N" * 36}, "BPSNAM"),
    ("CACCE", {"DIE": "CCT", "CCE": "01-100"}, "DES"),
])
def test_create_validation(x3_writable, cls, body, fragment):
    x3 = x3_writable  # suppliers/dimensions: a customer-built writable class validates too
    before = len(x3.state.records(sage_x3_app.CLASSES[cls]))
    resp = x3.create(cls, body)
    assert resp.status_code == 400, resp.text
    assert fragment in resp.json()["$diagnoses"][0]["$message"]
    assert len(x3.state.records(sage_x3_app.CLASSES[cls])) == before


def test_supplier_name_of_35_characters_is_accepted(x3_writable):
    x3 = x3_writable
    resp = x3.create("BPSUPPLIER", {"BPSNUM": "SUPX", "BPSNAM": "N" * 35})
    assert resp.status_code == 201
    assert resp.json()["BPSSHO"] == "N" * 10


def test_invalid_json_body_is_400(x3):
    resp = x3.rest.post(f"{API}/PORDER", params={"representation": "PORDER.$create"},
                        content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400 and "$diagnoses" in resp.json()
    resp = x3.rest.post(f"{API}/PORDER", params={"representation": "PORDER.$create"}, json=[1])
    assert resp.status_code == 400


def _age(record: dict, stamp: str = "2020-01-01T00:00:00Z") -> None:
    record["UPDDATTIM"] = stamp
    for line in record.get("lines", []):
        line["UPDDATTIM"] = stamp


def test_edit_header_is_partial_and_moves_stamp(x3):
    po = x3.state.x3_purchase_orders[0]
    _age(po)
    before = x3.details("PORDER", po["POHNUM"]).json()
    resp = x3.edit("PORDER", po["POHNUM"], {"ORDREF": "Changed ref", "REVNUM": 1})
    assert resp.status_code == 200, resp.text
    after = resp.json()
    assert after["ORDREF"] == "Changed ref" and after["REVNUM"] == 1
    assert recently(after["UPDDATTIM"])
    unchanged = {k: v for k, v in before.items() if k not in ("ORDREF", "REVNUM", "UPDDATTIM",
                                                              "$etag")}
    assert {k: after[k] for k in unchanged} == unchanged


def test_edit_of_one_line_keeps_header_stamp_and_recomputes_totals(x3):
    """Undocumented whether a line-only change moves the header UPDDATTIM: by default it
    does not (the stricter reading); the line's own stamp moves and the totals follow."""
    po = next(p for p in x3.state.x3_purchase_orders if len(p["lines"]) >= 2)
    _age(po)
    first, second = po["lines"][0]["POPLIN"], po["lines"][1]["POPLIN"]
    resp = x3.edit("PORDER", po["POHNUM"], {"PORDERQ": [{"POPLIN": first, "QTYUOM": "2",
                                                         "NETPRI": "10.00"}]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["UPDDATTIM"] == "2020-01-01T00:00:00Z"
    lines = {ln["POPLIN"]: ln for ln in body["PORDERQ"]}
    assert lines[first]["LINAMT"] == "20.00" and recently(lines[first]["UPDDATTIM"])
    assert lines[second]["UPDDATTIM"] == "2020-01-01T00:00:00Z"
    assert body["TOTORD"] == str(sum(Decimal(ln["LINAMT"]) for ln in body["PORDERQ"]))
    # The line class sees the line's new stamp; the header query does not.
    assert x3.keys("PORDERQ", f"UPDDATTIM gt @2025-01-01T00:00:00Z@ and POHNUM eq "
                              f"'{po['POHNUM']}'") == {f"{po['POHNUM']}~{first}~1"}
    assert x3.keys("PORDER", "UPDDATTIM gt @2025-01-01T00:00:00Z@ and "
                             f"POHNUM eq '{po['POHNUM']}'") == set()


def test_line_change_moves_header_when_configured(x3):
    po = x3.state.x3_purchase_orders[1]
    _age(po)
    assert x3.http.post("/_sandbox/config",
                        json={"x3_line_change_moves_header": True}).status_code == 200
    resp = x3.edit("PORDER", po["POHNUM"], {"PORDERQ": [{"POPLIN": po["lines"][0]["POPLIN"],
                                                         "QTYUOM": "3"}]})
    assert recently(resp.json()["UPDDATTIM"])


def test_line_amount_is_computed_never_taken_from_the_body(x3):
    """X3 computes LINAMT from quantity and net price (ASSUMPTION: qty x NETPRI, 2 dp): a
    client's amount is ignored, a quantity or price edit recomputes it and the totals."""
    po = x3.state.x3_purchase_orders[2]
    line = po["lines"][0]["POPLIN"]
    body = x3.edit("PORDER", po["POHNUM"], {"PORDERQ": [
        {"POPLIN": line, "QTYUOM": "4", "NETPRI": "2.505", "LINAMT": "999.99"}]}).json()
    got = next(ln for ln in body["PORDERQ"] if ln["POPLIN"] == line)
    assert got["LINAMT"] == "10.02"
    assert body["TOTORD"] == str(sum(Decimal(ln["LINAMT"]) for ln in body["PORDERQ"]))
    body = x3.edit("PORDER", po["POHNUM"], {"PORDERQ": [{"POPLIN": line, "QTYUOM": "1"}]}).json()
    assert next(ln for ln in body["PORDERQ"] if ln["POPLIN"] == line)["LINAMT"] == "2.51"
    body = x3.edit("PORDER", po["POHNUM"], {"PORDERQ": [{"POPLIN": line, "LINAMT": "5"}]}).json()
    assert next(ln for ln in body["PORDERQ"] if ln["POPLIN"] == line)["LINAMT"] == "2.51"
    invoice = x3.state.x3_purchase_invoices[0]
    inv = x3.edit("PINVOICE", invoice["NUM"], {"PINVOICED": [
        {"PIDLIN": invoice["lines"][0]["PIDLIN"], "QTYUOM": "2", "NETPRI": "3",
         "AMTNOTLIN": "1"}]}).json()
    assert inv["PINVOICED"][0]["AMTNOTLIN"] == "6.00"
    assert inv["AMTNOT"] == str(sum(Decimal(ln["AMTNOTLIN"]) for ln in inv["PINVOICED"]))


def test_line_analytics_edit_moves_only_the_line_stamp(x3):
    po = x3.state.x3_purchase_orders[4]
    _age(po)
    line = po["lines"][0]["POPLIN"]
    resp = x3.edit("PORDER", po["POHNUM"], {"CPTANALIN": [
        {"VCRLIN": line, "DIE": ["PRJ", "CST"], "CCE": [po["PJTH"], "C999999"]}]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["UPDDATTIM"] == "2020-01-01T00:00:00Z"
    assert next(e for e in body["CPTANALIN"] if e["VCRLIN"] == line)["CCE"][1] == "C999999"
    assert recently(next(ln for ln in body["PORDERQ"] if ln["POPLIN"] == line)["UPDDATTIM"])
    bad = x3.edit("PORDER", po["POHNUM"], {"CPTANALIN": [{"VCRLIN": 1, "CCE": []}]})
    assert bad.status_code == 400 and "does not exist" in bad.text


def test_line_class_is_list_only(x3):
    resp = x3.rest.get(f"{API}/PORDERQ('PO26000001~1000~1')",
                       params={"representation": "PORDERQ.$details"})
    assert resp.status_code == 400
    write = x3.rest.post(f"{API}/PORDERQ", params={"representation": "PORDERQ.$create"},
                         json={"POHNUM": "X"})
    assert write.status_code == 405


def test_edit_adds_and_deletes_lines(x3):
    po = next(p for p in x3.state.x3_purchase_orders if len(p["lines"]) >= 2)
    _age(po)
    doomed = po["lines"][0]["POPLIN"]
    new_line = max(ln["POPLIN"] for ln in po["lines"]) + 1000
    resp = x3.edit("PORDER", po["POHNUM"], {"PORDERQ": [
        {"POPLIN": doomed, "$delete": True},
        {"POPLIN": new_line, "ITMREF": "NEW", "QTYUOM": 3, "NETPRI": "1.50"},
    ]})
    assert resp.status_code == 200, resp.text
    numbers = [ln["POPLIN"] for ln in resp.json()["PORDERQ"]]
    assert doomed not in numbers and numbers[-1] == new_line
    assert resp.json()["UPDDATTIM"] == "2020-01-01T00:00:00Z"  # lines only
    stored = x3.state.find(sage_x3_app.PORDER, po["POHNUM"])
    assert [ln["POPLIN"] for ln in stored["lines"]] == numbers


def test_edit_line_by_uuid(x3):
    po = x3.state.x3_purchase_orders[3]
    line = x3.details("PORDER", po["POHNUM"]).json()["PORDERQ"][0]
    resp = x3.edit("PORDER", po["POHNUM"], {"PORDERQ": [{"$uuid": line["$uuid"], "ITMDES": "X"}]})
    assert resp.json()["PORDERQ"][0]["ITMDES"] == "X"


def test_failed_edit_changes_nothing(x3):
    po = x3.state.x3_purchase_orders[0]
    _age(po)
    resp = x3.edit("PORDER", po["POHNUM"], {"ORDREF": "should not stick", "PORDERQ": [
        {"POPLIN": po["lines"][0]["POPLIN"], "QTYUOM": "5"}, {"POPLIN": 1, "$delete": True}]})
    assert resp.status_code == 400
    assert po["ORDREF"] != "should not stick" and po["UPDDATTIM"] == "2020-01-01T00:00:00Z"


def test_edit_without_changes_keeps_stamp(x3):
    po = x3.state.x3_purchase_orders[0]
    _age(po)
    resp = x3.edit("PORDER", po["POHNUM"], {"ORDREF": po["ORDREF"]})
    assert resp.status_code == 200 and resp.json()["UPDDATTIM"] == "2020-01-01T00:00:00Z"


def test_edit_refuses_key_change_and_missing_record(x3):
    resp = x3.edit("PORDER", "PO26000001", {"POHNUM": "PO26000002"})
    assert resp.status_code == 400
    resp = x3.edit("PORDER", "NOPE", {"ORDREF": "x"})
    assert resp.status_code in sage_x3_app.MISSING_RECORD_STATUSES
    assert resp.json()["$diagnoses"][0]["$message"] == "721 : Record does not exist"


def test_same_second_changes_share_a_stamp(x3):
    frozen = datetime(2026, 3, 1, 12, 0, 0, 400_000, tzinfo=UTC)
    x3.state.clock = lambda: frozen
    a, b = x3.state.x3_purchase_orders[:2]
    x3.edit("PORDER", a["POHNUM"], {"ORDREF": "a"})
    x3.edit("PORDER", b["POHNUM"], {"ORDREF": "b"})
    assert a["UPDDATTIM"] == b["UPDDATTIM"] == "2026-03-01T12:00:00Z"


def test_delete_purchase_order(x3):
    number = x3.state.x3_purchase_orders[5]["POHNUM"]
    resp = x3.delete("PORDER", number)
    assert resp.status_code == 204 and resp.content == b""
    gone = x3.details("PORDER", number)
    assert gone.json()["$diagnoses"][0]["$message"] == "721 : Record does not exist"
    assert x3.delete("PORDER", number).status_code == gone.status_code
    assert x3.keys("PORDER", f"POHNUM eq '{number}'") == set()


@pytest.mark.parametrize("cls, key, body", [
    ("BPSUPPLIER", "SUP001", {"BPSNUM": "SUPX", "BPSNAM": "New supplier"}),
    ("CACCE", "PRJ~P1001", {"DIE": "CCT", "CCE": "03-300", "DES": "Concrete"}),
])
def test_standard_x3_refuses_supplier_and_dimension_writes(x3, cls, key, body):
    """Standard X3's representations of these classic objects are read-only (query and
    details); the diagnosis points to the import template."""
    x3_class = sage_x3_app.CLASSES[cls]
    before = sage_x3_app._copy_json(x3.state.records(x3_class))
    for resp in (x3.create(cls, body), x3.edit(cls, key, {"ENAFLG": 1}), x3.delete(cls, key)):
        assert resp.status_code == 405, resp.text
        message = resp.json()["$diagnoses"][0]["$message"]
        assert "read-only" in message and "import template" in message
    assert x3.state.records(x3_class) == before
    assert x3.details(cls, key).status_code == 200


def test_dimension_create_edit_delete(x3_writable):
    x3 = x3_writable
    resp = x3.create("CACCE", {"DIE": "CCT", "CCE": "03-300", "DES": "Cast-in-Place Concrete",
                               "DESSHO": "03-300"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["ENAFLG"] == 2
    assert x3.keys("CACCE", "DIE eq 'CCT'") == {"CCT~03-300"}
    x3.state.find(sage_x3_app.CACCE, "CCT~03-300")["UPDDATTIM"] = "2020-01-01T00:00:00Z"
    resp = x3.edit("CACCE", "CCT~03-300", {"DES": "Concrete", "ENAFLG": 1})
    assert resp.json()["DES"] == "Concrete" and resp.json()["ENAFLG"] == 1
    assert recently(resp.json()["UPDDATTIM"])
    assert x3.delete("CACCE", "CCT~03-300").status_code == 204
    assert x3.keys("CACCE", "DIE eq 'CCT'") == set()


def test_gl_accounts_are_read_only(x3):
    before = [dict(a) for a in x3.state.x3_gl_accounts]
    resp = x3.rest.post(f"{API}/GACCOUNT", params={"representation": "GACCOUNT.$create"},
                        json={"COA": "SEED", "ACC": "699999", "DES": "New"})
    assert resp.status_code == 405 and "$diagnoses" in resp.json()
    resp = x3.rest.put(f"{API}/GACCOUNT('SEED~601100')",
                       params={"representation": "GACCOUNT.$edit"}, json={"DES": "x"})
    assert resp.status_code == 405
    resp = x3.rest.delete(f"{API}/GACCOUNT('SEED~601100')",
                          params={"representation": "GACCOUNT.$edit"})
    assert resp.status_code == 405
    assert x3.state.x3_gl_accounts == before
    assert x3.query("GACCOUNT", count=100).json()["$resources"]


def test_sandbox_controls_wrap_the_app(x3):
    x3.query("PORDER", count=1)
    calls = x3.http.get("/_sandbox/calls").json()["calls"]
    assert any(c["path"] == f"{API}/PORDER" and c["status"] == 200 and c["system"] == "sage_x3"
               for c in calls)
    x3.http.post("/_sandbox/faults", json={"route": "GET /api1/", "status": 503})
    resp = x3.query("PORDER", count=1)
    assert resp.status_code == 503 and "$diagnoses" in resp.json()


# ======================================================================================
# GraphQL: authentication
# ======================================================================================

PING = "{ x3MasterData { supplier { query(first: 1) { edges { node { _id } } } } } }"


def test_graphql_valid_token(x3):
    data = x3.gql_data(PING)
    assert data["x3MasterData"]["supplier"]["query"]["edges"][0]["node"]["_id"] == "SUP001"


def test_graphql_tolerates_small_clock_skew(x3):
    resp = x3.gql(PING, token=make_token(iat_offset=10))
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("token, reason", [
    (lambda: make_token(iat_offset=-120, lifetime=60), "expired"),
    (lambda: make_token(iat_offset=120), "future"),
    (lambda: make_token(secret="not-the-connected-app-secret-0123456789"), "signature"),
    (lambda: make_token(lifetime=601), "validity"),
    (lambda: make_token(iss="someone-else"), "iss"),
    (lambda: make_token(sub="OTHERUSER"), "sub"),
    (lambda: jwt.encode({"iss": C["x3_jwt_client_id"], "sub": C["x3_jwt_user"]},
                        C["x3_jwt_secret"], algorithm="HS256"), "iat"),
    (lambda: jwt.encode({"iss": C["x3_jwt_client_id"], "sub": C["x3_jwt_user"],
                         "iat": int(time.time()), "exp": int(time.time()) + 60},
                        None, algorithm="none"), "Invalid token"),
    (lambda: "not.a.jwt", "Invalid token"),
])
def test_graphql_refuses_bad_tokens(x3, token, reason):
    resp = x3.gql(PING, token=token())
    assert resp.status_code == 401
    message = resp.json()["errors"][0]["message"]
    assert reason in message


def test_graphql_without_bearer_is_401(x3):
    resp = x3.http.post("/xtrem/api", json={"query": PING}, headers={"x-xtrem-endpoint": "SEED"})
    assert resp.status_code == 401 and resp.json()["errors"][0]["message"]
    resp = x3.http.post("/xtrem/api", json={"query": PING},
                        auth=(C["x3_user"], C["x3_password"]), headers={"x-xtrem-endpoint": "SEED"})
    assert resp.status_code == 401


def test_graphql_endpoint_header(x3):
    resp = x3.gql(PING, endpoint=None)
    assert resp.status_code == 400
    assert "x-xtrem-endpoint" in resp.json()["errors"][0]["message"]
    assert x3.gql(PING, endpoint="OTHER").status_code == 404


# ======================================================================================
# GraphQL: schema, queries, filters, paging
# ======================================================================================


def test_graphql_returns_only_requested_fields(x3):
    data = x3.gql_data("{ x3Purchasing { purchaseOrder { query(first: 2) { edges { node "
                       "{ _id isClosed } } } } } }")
    nodes = [e["node"] for e in data["x3Purchasing"]["purchaseOrder"]["query"]["edges"]]
    assert [set(n) for n in nodes] == [{"_id", "isClosed"}] * 2


def test_graphql_unknown_field_is_an_error(x3):
    resp = x3.gql("{ x3Purchasing { purchaseOrder { query { edges { node { number } } } } } }")
    assert resp.status_code == 400
    assert "Cannot query field 'number'" in resp.json()["errors"][0]["message"]
    resp = x3.gql("{ x3Purchasing { purchaseOrder { query { edges { node { _id } } } } }")
    assert resp.status_code == 400  # syntax error


PO_FIELDS = """
_id id _updateStamp _createStamp revisionNumber orderDate isClosed
orderFromSupplier { code { code } } project { code } purchaseSite { code } currency { code }
internalOrderReference totalAmountExcludingTax
purchaseOrderLines { query { edges { node {
  lineNumber product { code description1 } account { code } project { code }
  quantityInOrderUnitOrdered orderUnit { code } netPrice lineAmountExcludingTax isClosed
} } } }
"""


def test_graphql_purchase_order_read_maps_x3_columns(x3):
    po = next(p for p in x3.state.x3_purchase_orders if p["CLEFLG"] == 2)
    query = f"query($id: String!) {{ x3Purchasing {{ purchaseOrder {{ read(_id: $id) {{ {PO_FIELDS} }} }} }} }}"
    node = x3.gql_data(query, {"id": po["POHNUM"]})["x3Purchasing"]["purchaseOrder"]["read"]
    assert node["_id"] == node["id"] == po["POHNUM"]
    assert node["_updateStamp"] == po["UPDDATTIM"] and node["_createStamp"] == po["CREDATTIM"]
    assert node["revisionNumber"] == po["REVNUM"] and node["orderDate"] == po["ORDDAT"]
    assert node["isClosed"] == "yes"
    assert node["orderFromSupplier"] == {"code": {"code": po["BPSNUM"]}}
    assert node["project"] == {"code": po["PJTH"]} and node["purchaseSite"] == {"code": po["POHFCY"]}
    assert node["currency"] == {"code": po["CUR"]}
    assert node["internalOrderReference"] == po["ORDREF"]
    assert node["totalAmountExcludingTax"] == po["TOTORD"]
    lines = [e["node"] for e in node["purchaseOrderLines"]["query"]["edges"]]
    assert len(lines) == len(po["lines"])  # all lines when `first` is omitted
    first = po["lines"][0]
    assert lines[0] == {
        "lineNumber": first["POPLIN"],
        "product": {"code": first["ITMREF"], "description1": first["ITMDES"]},
        "account": {"code": first["ACC"]}, "project": {"code": first["PJT"]},
        "quantityInOrderUnitOrdered": first["QTYUOM"], "orderUnit": {"code": first["UOM"]},
        "netPrice": first["NETPRI"], "lineAmountExcludingTax": first["LINAMT"], "isClosed": "no",
    }


def test_graphql_read_unknown_is_null_and_alias_package(x3):
    data = x3.gql_data('{ xtremX3Purchasing { purchaseOrder { read(_id: "NOPE") { _id } } } }')
    assert data["xtremX3Purchasing"]["purchaseOrder"]["read"] is None


def test_graphql_line_collection_paging(x3):
    po = next(p for p in x3.state.x3_purchase_orders if len(p["lines"]) >= 3)
    query = """query($id: String!, $after: String) { x3Purchasing { purchaseOrder { read(_id: $id) {
      purchaseOrderLines { query(first: 2, after: $after) { edges { node { lineNumber } }
      pageInfo { endCursor hasNextPage } totalCount } } } } } }"""
    seen, after = [], None
    while True:
        data = x3.gql_data(query, {"id": po["POHNUM"], "after": after})
        conn = data["x3Purchasing"]["purchaseOrder"]["read"]["purchaseOrderLines"]["query"]
        assert conn["totalCount"] == len(po["lines"])
        seen += [e["node"]["lineNumber"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert seen == [ln["POPLIN"] for ln in po["lines"]]


def test_graphql_purchase_invoice_fields(x3):
    invoice = x3.state.x3_purchase_invoices[0]
    invoice["PIHTYP"] = 3
    query = """query($id: String!) { x3Purchasing { purchaseInvoice { read(_id: $id) {
      _id category billBySupplier { code { code } } sourceDocument sourceDocumentDate
      accountingDate currency { code } amountOfLinesExcludingTax status
      purchaseInvoiceLines { query { edges { node { lineNumber sourceDocument
        sourceDocumentLineNumber product { code } productDescriptionInUserLanguage
        quantityInPurchaseUnitInvoiced purchaseUnit { code } netPrice
        lineAmountExcludingTax } } } } } } } }"""
    node = x3.gql_data(query, {"id": invoice["NUM"]})["x3Purchasing"]["purchaseInvoice"]["read"]
    assert node["category"] == "creditMemo"
    assert node["billBySupplier"]["code"]["code"] == invoice["BPSNUM"]
    assert node["sourceDocument"] == invoice["BPSINV"]
    assert node["sourceDocumentDate"] == invoice["INVDAT"]
    assert node["amountOfLinesExcludingTax"] == invoice["AMTNOT"]
    assert node["status"] == ("posted" if invoice["STA"] == 2 else "notPosted")
    line, stored = node["purchaseInvoiceLines"]["query"]["edges"][0]["node"], invoice["lines"][0]
    assert line["sourceDocument"] == stored["POHNUM"]
    assert line["sourceDocumentLineNumber"] == stored["POPLIN"]
    assert line["lineAmountExcludingTax"] == stored["AMTNOTLIN"]
    assert line["quantityInPurchaseUnitInvoiced"] == stored["QTYUOM"]


@pytest.mark.parametrize("field", ["supplierDocumentNumber", "documentDate", "project { code }"])
def test_graphql_invoice_serves_no_undocumented_names(x3, field):
    query = f'{{ x3Purchasing {{ purchaseInvoice {{ query {{ edges {{ node {{ {field} }} }} }} }} }} }}'
    assert x3.gql(query).status_code == 400


def test_invoices_carry_a_status_most_posted(x3):
    statuses = [inv["STA"] for inv in x3.state.x3_purchase_invoices]
    assert set(statuses) == {1, 2} and statuses.count(2) > statuses.count(1)
    row = x3.query("PINVOICE", count=1).json()["$resources"][0]
    assert row["STA"] in (1, 2)


def test_graphql_line_dimension_node(x3):
    po = x3.state.x3_purchase_orders[0]
    query = """query($f: String) { x3Purchasing { purchaseOrderLineDimensionDimensions {
      query(filter: $f, first: 500) { edges { node { purchaseOrder purchaseOrderLine
        denormalizedIndex dimensionType { _id } dimension { dimension } } } } } } }"""
    data = x3.gql_data(query, {"f": f"{{purchaseOrder:'{po['POHNUM']}'}}"})
    rows = [e["node"] for e in data["x3Purchasing"]["purchaseOrderLineDimensionDimensions"]
            ["query"]["edges"]]
    got = {(r["purchaseOrderLine"], r["dimensionType"]["_id"]): r["dimension"]["dimension"]
           for r in rows}
    want = {(ln["POPLIN"], die): cce for ln in po["lines"]
            for die, cce in zip(ln["DIE"], ln["CCE"], strict=True)}
    assert got == want and all(r["purchaseOrder"] == po["POHNUM"] for r in rows)


def test_graphql_purchase_order_line_node_has_stamps(x3):
    po = x3.state.x3_purchase_orders[0]
    _age(po)
    x3.edit("PORDER", po["POHNUM"], {"PORDERQ": [{"POPLIN": po["lines"][0]["POPLIN"],
                                                  "QTYUOM": "9"}]})
    since = (datetime.now(UTC) - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = """query($f: String) { x3Purchasing { purchaseOrderLine { query(filter: $f) {
      edges { node { purchaseOrder { _id } lineNumber _updateStamp } } } } } }"""
    edges = x3.gql_data(query, {"f": f"{{_updateStamp:{{_gte:'{since}'}}}}"})[
        "x3Purchasing"]["purchaseOrderLine"]["query"]["edges"]
    assert [(e["node"]["purchaseOrder"]["_id"], e["node"]["lineNumber"]) for e in edges] == [
        (po["POHNUM"], po["lines"][0]["POPLIN"])]


def test_graphql_supplier_account_dimension_nodes(x3):
    data = x3.gql_data("""{
      x3MasterData { supplier { read(_id: "SUP001") { _id code { code vatNumber } companyName1
        shortCompanyName isActive currency { code } addressByDefault { country { code } city
        zipCode addressLine1 phone email } } } }
      x3FinanceData {
        account { query(first: 500) { totalCount edges { node { _id code chartOfAccounts { code }
          localizedDescription } } } }
        dimension { read(_id: "PRJ~P1001") { _id dimensionType { code } dimension
          localizedDescription localizedShortDescription isActive } } } }""")
    s = x3.state.x3_suppliers[0]
    supplier = data["x3MasterData"]["supplier"]["read"]
    assert supplier["code"] == {"code": "SUP001", "vatNumber": s["EECNUM"]}
    assert supplier["companyName1"] == s["BPSNAM"] and supplier["isActive"] is True
    assert supplier["addressByDefault"] == {"country": {"code": s["CRY"]}, "city": s["CTY"],
                                            "zipCode": s["POSCOD"], "addressLine1": s["ADDLIG"],
                                            "phone": s["TEL"], "email": s["WEB"]}
    accounts = data["x3FinanceData"]["account"]["query"]
    assert accounts["totalCount"] == len(x3.state.x3_gl_accounts)
    assert accounts["edges"][0]["node"]["_id"] == "SEED~601100"
    assert data["x3FinanceData"]["dimension"]["read"] == {
        "_id": "PRJ~P1001", "dimensionType": {"code": "PRJ"}, "dimension": "P1001",
        "localizedDescription": x3.state.x3_dimensions[0]["DES"],
        "localizedShortDescription": "P1001", "isActive": True}


def _po_ids(x3, filter_text: str) -> set[str]:
    query = """query($f: String) { x3Purchasing { purchaseOrder { query(filter: $f, first: 500) {
      totalCount edges { node { _id } } pageInfo { hasNextPage } } } } }"""
    conn = x3.gql_data(query, {"f": filter_text})["x3Purchasing"]["purchaseOrder"]["query"]
    assert not conn["pageInfo"]["hasNextPage"]
    ids = {e["node"]["_id"] for e in conn["edges"]}
    assert len(ids) == conn["totalCount"]
    return ids


def _pos(x3, pred) -> set[str]:
    return {p["POHNUM"] for p in x3.state.x3_purchase_orders if pred(p)}


@pytest.mark.parametrize("filter_text, pred", [
    ("{_id:'PO26000007'}", lambda p: p["POHNUM"] == "PO26000007"),
    ('{_id:"PO26000007"}', lambda p: p["POHNUM"] == "PO26000007"),
    ("{orderFromSupplier:{code:{code:'SUP001'}}}", lambda p: p["BPSNUM"] == "SUP001"),
    ("{orderFromSupplier:'SUP001'}", lambda p: p["BPSNUM"] == "SUP001"),
    ("{orderFromSupplier:{_id:'SUP001'}}", lambda p: p["BPSNUM"] == "SUP001"),
    ("{isClosed:{_ne:'yes'}}", lambda p: p["CLEFLG"] != 2),
    ("{isClosed:'yes'}", lambda p: p["CLEFLG"] == 2),
    ("{_updateStamp:{_gte:'2026-01-05T08:30:00Z'}}", lambda p: p["UPDDATTIM"] >= "2026-01-05T08:30:00Z"),
    ("{_updateStamp:{_gt:'2026-01-05T08:30:00.000Z'}}", lambda p: p["UPDDATTIM"] > "2026-01-05T08:30:00Z"),
    ("{_updateStamp:{_lt:'2026-01-05T08:05:00Z'}}", lambda p: p["UPDDATTIM"] < "2026-01-05T08:05:00Z"),
    ("{_updateStamp:{_lte:'2026-01-05T08:05:00Z', _gte:'2026-01-05T08:04:00Z'}}",
     lambda p: "2026-01-05T08:04:00Z" <= p["UPDDATTIM"] <= "2026-01-05T08:05:00Z"),
    ("{_id:{_in:['PO26000001','PO26000003','NOPE']}}",
     lambda p: p["POHNUM"] in ("PO26000001", "PO26000003")),
    ("{project:{code:{_nin:['P1001','P1002']}}}", lambda p: p["PJTH"] not in ("P1001", "P1002")),
    ("{_and:[{project:'P1003'},{orderFromSupplier:{_ne:'SUP001'}}]}",
     lambda p: p["PJTH"] == "P1003" and p["BPSNUM"] != "SUP001"),
    ("{_or:[{project:'P1003'},{project:'P1004'}]}", lambda p: p["PJTH"] in ("P1003", "P1004")),
    ("[{project:'P1003'},{isClosed:'no'}]", lambda p: p["PJTH"] == "P1003" and p["CLEFLG"] == 1),
    ("{_not:{project:'P1003'}}", lambda p: p["PJTH"] != "P1003"),
    ("{totalAmountExcludingTax:{_gt:1000000}}", lambda p: Decimal(p["TOTORD"]) > 1000000),
    ("{orderDate:{_lt:'2026-03-01'}}", lambda p: p["ORDDAT"] < "2026-03-01"),
    ("{ revisionNumber : 0 , purchaseSite : { code : 'FR011' } , }",
     lambda p: p["REVNUM"] == 0 and p["POHFCY"] == "FR011"),
])
def test_graphql_filters(x3, filter_text, pred):
    expected = _pos(x3, pred)
    assert expected, "test data should match something"
    assert _po_ids(x3, filter_text) == expected


@pytest.mark.parametrize("value", [
    "x' } ",
    "PO26000001', _id:{_ne:'",
    "x\\' , _or:[{_id:{_ne:\\'",
    "\\",
])
def test_graphql_filter_escaped_value_never_changes_meaning(x3, value):
    assert _po_ids(x3, "{_id:" + gql_filter_string(value) + "}") == set()


def test_graphql_filter_quote_in_data(x3):
    import_supplier(x3, "SUPQ02", "D'Arcy \\ Partners")
    query = """query($f: String) { x3MasterData { supplier { query(filter: $f) {
      edges { node { _id } } } } } }"""
    data = x3.gql_data(query, {"f": "{companyName1:" + gql_filter_string("D'Arcy \\ Partners") + "}"})
    assert [e["node"]["_id"] for e in data["x3MasterData"]["supplier"]["query"]["edges"]] == ["SUPQ02"]


@pytest.mark.parametrize("filter_text, fragment", [
    ("{_id:'PO26000001' or 1}", "invalid filter"),
    ("{_id:'x'' or ''1''=''1'}", "invalid filter"),  # SQL-style escaping is not Xtrem's
    ("{_id:'unterminated}", "invalid filter"),
    ("{_id:PO1}", "invalid filter"),
    ("{_id:'a', _id:'b'}", "duplicate"),
    ("{nosuch:'x'}", "nosuch"),
    ("{orderFromSupplier:{code:{nosuch:'x'}}}", "nosuch"),
    ("{_updateStamp:{_gte:'not a date'}}", "invalid value"),
    ("{revisionNumber:'abc'}", "invalid value"),
    ("{isClosed:'maybe'}", "invalid value"),
    ("{_id:{_in:'x'}}", "array"),
    ("{purchaseOrderLines:{lineNumber:1000}}", "collection"),
    ("'just a string'", "expected an object"),
])
def test_graphql_malformed_filter_is_a_graphql_error(x3, filter_text, fragment):
    query = """query($f: String) { x3Purchasing { purchaseOrder { query(filter: $f) {
      edges { node { _id } } } } } }"""
    resp = x3.gql(query, {"f": filter_text})
    body = resp.json()
    assert body["errors"], body
    assert fragment in body["errors"][0]["message"]
    assert body["data"]["x3Purchasing"]["purchaseOrder"]["query"] is None


def test_graphql_order_by_descending_and_nested(x3):
    query = """query($o: String) { x3Purchasing { purchaseOrder { query(orderBy: $o, first: 500) {
      edges { node { _id purchaseSite { code } } } } } } }"""
    def ids(order):
        data = x3.gql_data(query, {"o": order})
        return [e["node"]["_id"] for e in data["x3Purchasing"]["purchaseOrder"]["query"]["edges"]]
    pos = x3.state.x3_purchase_orders
    assert ids("{_id:-1}") == sorted((p["POHNUM"] for p in pos), reverse=True)
    expected = [p["POHNUM"] for p in sorted(sorted(pos, key=lambda p: p["POHNUM"]),
                                             key=lambda p: p["POHFCY"], reverse=True)]
    assert ids("{purchaseSite:{code:-1}}") == expected
    resp = x3.gql(query, {"o": "{_id:2}"})
    assert "must be 1 or -1" in resp.json()["errors"][0]["message"]


def test_graphql_first_default_and_cap(x3_big):
    query = """query($first: Int) { x3Purchasing { purchaseOrder { query(first: $first) {
      edges { cursor } pageInfo { hasNextPage } totalCount } } } }"""
    conn = x3_big.gql_data(query, {"first": None})["x3Purchasing"]["purchaseOrder"]["query"]
    assert len(conn["edges"]) == 20 and conn["pageInfo"]["hasNextPage"]
    conn = x3_big.gql_data(query, {"first": 5000})["x3Purchasing"]["purchaseOrder"]["query"]
    assert len(conn["edges"]) == 500 and conn["totalCount"] == 2500


def test_graphql_pages_2500_pos_by_stamp_exactly_once(x3_big):
    query = """query($after: String) { x3Purchasing { purchaseOrder {
      query(filter: "{_updateStamp:{_gte:'2026-01-01T00:00:00Z'}}",
            orderBy: "{_updateStamp:1,_id:1}", first: 300, after: $after) {
        edges { cursor node { _id _updateStamp } }
        pageInfo { endCursor hasNextPage startCursor hasPreviousPage } totalCount } } } }"""
    seen, after, pages = [], None, 0
    while True:
        conn = x3_big.gql_data(query, {"after": after})["x3Purchasing"]["purchaseOrder"]["query"]
        assert conn["totalCount"] == 2500
        assert conn["pageInfo"]["hasPreviousPage"] is (after is not None)
        assert conn["pageInfo"]["endCursor"] == conn["edges"][-1]["cursor"]
        seen += [(e["node"]["_updateStamp"], e["node"]["_id"]) for e in conn["edges"]]
        pages += 1
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert pages == 9
    assert len(seen) == 2500 and len({i for _s, i in seen}) == 2500
    assert seen == sorted(seen)


def test_graphql_bad_cursor_is_an_error(x3):
    query = """{ x3Purchasing { purchaseOrder { query(after: "bm9wZQ") { edges { cursor } } } } }"""
    assert "invalid cursor" in x3.gql(query).json()["errors"][0]["message"]


def test_graphql_sees_rest_writes(x3):
    po = x3.state.x3_purchase_orders[0]
    _age(po)
    x3.edit("PORDER", po["POHNUM"], {"ORDREF": "seen", "PORDERQ": [
        {"POPLIN": po["lines"][0]["POPLIN"], "NETPRI": "1.00"}]})
    query = f'{{ x3Purchasing {{ purchaseOrder {{ read(_id: "{po["POHNUM"]}") {{ _updateStamp }} }} }} }}'
    stamp = x3.gql_data(query)["x3Purchasing"]["purchaseOrder"]["read"]["_updateStamp"]
    assert recently(stamp)


# ======================================================================================
# GraphQL: mutations (configured API operations)
# ======================================================================================

CREATE_DIMENSION = """mutation($data: Dimension_Input!) { x3FinanceData { dimension {
  create(data: $data) { _id dimension dimensionType { code } isActive _updateStamp } } } }"""


def test_dimension_create_mutation_is_visible_over_rest(x3_operations):
    x3 = x3_operations
    data = x3.gql_data(CREATE_DIMENSION, {"data": {
        "dimensionType": "CCT", "dimension": "03-300", "localizedDescription": "Cast-in-Place Concrete",
        "localizedShortDescription": "03-300", "isActive": True}})
    created = data["x3FinanceData"]["dimension"]["create"]
    assert created["_id"] == "CCT~03-300" and created["isActive"] is True
    assert recently(created["_updateStamp"])
    rows = x3.query("CACCE", where="DIE eq 'CCT' and CCE eq '03-300'").json()["$resources"]
    assert len(rows) == 1
    assert rows[0]["DES"] == "Cast-in-Place Concrete" and rows[0]["ENAFLG"] == 2


def test_dimension_mutation_errors_and_update(x3_operations):
    x3 = x3_operations
    variables = {"data": {"dimensionType": "CCT", "dimension": "01-100",
                          "localizedDescription": "General Requirements"}}
    x3.gql_data(CREATE_DIMENSION, variables)
    again = x3.gql(CREATE_DIMENSION, variables).json()
    assert "Record already exists" in again["errors"][0]["message"]
    too_long = x3.gql(CREATE_DIMENSION, {"data": {**variables["data"], "dimension": "X" * 16}})
    assert "CCE" in too_long.json()["errors"][0]["message"]
    update = """mutation { x3FinanceData { dimension { update(data: {dimensionType: "CCT",
      dimension: "01-100", localizedDescription: "General", isActive: false}) {
      _id localizedDescription isActive } } } }"""
    node = x3.gql_data(update)["x3FinanceData"]["dimension"]["update"]
    assert node == {"_id": "CCT~01-100", "localizedDescription": "General", "isActive": False}
    assert x3.details("CACCE", "CCT~01-100").json()["ENAFLG"] == 1


def test_supplier_mutations(x3_operations):
    x3 = x3_operations
    create = """mutation($data: Supplier_Input!) { x3MasterData { supplier { create(data: $data) {
      _id companyName1 code { vatNumber } addressByDefault { city country { code } } } } } }"""
    data = x3.gql_data(create, {"data": {
        "code": "SUP900", "companyName1": "Harbor Crane Services", "shortCompanyName": "Harbor",
        "isActive": True, "vatNumber": "GB999", "currency": "GBP", "country": "GB",
        "city": "London", "zipCode": "EC1A 1BB", "addressLine1": "1 High Street",
        "phone": "+44 20 0000 0000", "email": "ops@harbor.example"}})
    node = data["x3MasterData"]["supplier"]["create"]
    assert node["_id"] == "SUP900" and node["code"]["vatNumber"] == "GB999"
    assert node["addressByDefault"] == {"city": "London", "country": {"code": "GB"}}
    assert x3.details("BPSUPPLIER", "SUP900").json()["BPSNAM"] == "Harbor Crane Services"
    long_name = x3.gql(create, {"data": {"code": "SUP901", "companyName1": "N" * 36}}).json()
    assert "BPSNAM" in long_name["errors"][0]["message"]
    update = """mutation { x3MasterData { supplier { update(data: {code: "SUP900",
      phone: "+44 1"}) { _id } } } }"""
    x3.gql_data(update)
    body = x3.details("BPSUPPLIER", "SUP900").json()
    assert body["TEL"] == "+44 1" and body["BPSNAM"] == "Harbor Crane Services"


def test_standard_x3_has_no_mutation_at_all(x3):
    """Without API operations (GESAPIOPE) the schema has no Mutation type: supplier and
    dimension writes are refused like any other mutation, and nothing is written."""
    before = sage_x3_app._copy_json([x3.state.x3_dimensions, x3.state.x3_suppliers])
    schema = x3.gql_data("""{ __schema { mutationType { name } types { name } } }""")
    assert schema["__schema"]["mutationType"] is None
    assert not [t["name"] for t in schema["__schema"]["types"] if t["name"].endswith("Mutations")]
    for mutation in (CREATE_DIMENSION, """mutation { x3MasterData { supplier { update(data: {
            code: "SUP001", isActive: false}) { _id } } } }"""):
        body = x3.gql(mutation, {"data": {"dimensionType": "CCT", "dimension": "03-300"}}
                      if mutation is CREATE_DIMENSION else None).json()
        assert body["errors"] and body.get("data") is None
    assert [x3.state.x3_dimensions, x3.state.x3_suppliers] == before


def test_no_mutation_can_write_gl_accounts_or_entries(x3_operations):
    """Even with every API operation the sandbox models, none writes GL accounts/entries."""
    x3 = x3_operations
    resp = x3.gql("""mutation { x3FinanceData { account { create(data: {code: "1"}) { _id } } } }""")
    assert resp.status_code == 400
    assert "Cannot query field 'account'" in resp.json()["errors"][0]["message"]
    schema = x3.gql_data("""{ __schema { mutationType { name } types { name fields { name } } } }""")
    names = set()
    for gql_type in schema["__schema"]["types"]:
        if gql_type["name"].endswith("Mutations") or gql_type["name"] == "Mutation":
            names |= {f["name"] for f in gql_type["fields"] or []}
    assert names == {"x3FinanceData", "x3MasterData", "xtremX3FinanceData", "xtremX3MasterData",
                     "dimension", "supplier", "create", "update"}
    assert not any(word in name.lower() for name in names
                   for word in ("account", "journal", "entry", "gl"))
