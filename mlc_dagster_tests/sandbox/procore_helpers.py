"""Shared fixtures and helpers for the Procore sandbox tests (real HTTP on loopback).

Only the Procore app runs, on one loopback port per test module; each test gets a freshly
built app behind it, so state, config, faults and limits never leak between tests.
Test modules import the fixtures they use: `server_fixture`, `sandbox_fixture` and
`api_fixture` provide the fixtures `server`, `sandbox` and `api`.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from mlc_sandbox.controls import SandboxControls
from mlc_sandbox.procore.app import build_app
from mlc_sandbox.procore.state import ProcoreState
from mlc_sandbox.seed import COMPANY_ID, SANDBOX_CREDENTIALS, build_seed
from mlc_sandbox.server import free_port

SEED = build_seed(42, "small")
PROJECT = SEED.projects[0]["id"]
OTHER_PROJECT = SEED.projects[1]["id"]
COST_CODE = SEED.project_cost_codes[PROJECT][0]["id"]
FOREIGN_COST_CODE = SEED.project_cost_codes[OTHER_PROJECT][0]["id"]
LINE_ITEM_TYPE = SEED.line_item_types[0]["id"]
PERIOD = next(p["id"] for p in SEED.billing_periods[PROJECT] if p["status"] == "open")
CLOSED_PERIOD = next(p["id"] for p in SEED.billing_periods[PROJECT] if p["status"] == "closed")
VENDOR = SEED.vendors[0]
# One TLS context for every client: httpx otherwise spends ~0.1 s loading CA certificates
# per client, which would dominate this file's run time (the sandbox itself is plain HTTP).
TLS = ssl.create_default_context()
HTTP = httpx.Client(verify=TLS, timeout=10)
RATE_LIMIT_HEADERS = ("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset")


@dataclass
class Sandbox:
    url: str
    state: ProcoreState
    controls: SandboxControls

    def configure(self, **values) -> None:
        HTTP.post(f"{self.url}/_sandbox/config", json=values).raise_for_status()


class AppSlot:
    """ASGI app whose target is swapped per test: one loopback server, fresh state each test."""

    app = None

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


@pytest.fixture(name="server", scope="module")
def server_fixture():
    slot, port = AppSlot(), free_port()
    server = uvicorn.Server(uvicorn.Config(slot, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "sandbox did not start"
        time.sleep(0.01)
    yield slot, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture(name="sandbox")
def sandbox_fixture(server):
    """A freshly seeded Procore sandbox (state, controls, limits) behind the shared server."""
    slot, url = server
    controls = SandboxControls()
    slot.app = build_app(SEED, controls)
    return Sandbox(url, slot.app.state_obj, controls)


def token_for(url: str) -> str:
    response = HTTP.post(f"{url}/oauth/token", data={
        "grant_type": "client_credentials",
        "client_id": SANDBOX_CREDENTIALS["procore_client_id"],
        "client_secret": SANDBOX_CREDENTIALS["procore_client_secret"]})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture(name="api")
def api_fixture(sandbox):
    """An authenticated client sending Procore-Company-Id, like the connector does."""
    headers = {"Authorization": f"Bearer {token_for(sandbox.url)}",
               "Procore-Company-Id": str(COMPANY_ID)}
    with httpx.Client(base_url=sandbox.url, headers=headers, timeout=10, verify=TLS) as client:
        yield client


def sync_contracts(api, updates, project_id=PROJECT) -> dict:
    response = api.patch("/rest/v1.0/purchase_order_contracts/sync",
                         json={"project_id": project_id, "updates": updates})
    assert response.status_code == 200, response.text
    return response.json()


def sync_lines(api, contract_id, updates, project_id=PROJECT) -> dict:
    response = api.patch(f"/rest/v1.0/purchase_order_contracts/{contract_id}/line_items/sync",
                         params={"project_id": project_id}, json={"updates": updates})
    assert response.status_code == 200, response.text
    return response.json()


def line(origin_id, amount="100.00", **fields) -> dict:
    return {"origin_id": origin_id, "amount": amount, "cost_code_id": COST_CODE,
            "line_item_type_id": LINE_ITEM_TYPE, "uom": "EA", "description": origin_id, **fields}


def make_contract(api, origin_id="PO-1", lines=("L1",), project_id=PROJECT, **fields) -> dict:
    entity = sync_contracts(api, [{"origin_id": origin_id, "vendor_id": VENDOR["id"],
                                   "title": origin_id, **fields}], project_id)["entities"][0]
    if lines:
        result = sync_lines(api, entity["id"], [line(f"{origin_id}-{n}") for n in lines],
                            project_id)
        assert result["errors"] == []
    return entity


def approve(api, contract_id) -> None:
    response = api.patch(f"/rest/v1.0/purchase_order_contracts/{contract_id}", json={
        "project_id": PROJECT, "purchase_order_contract": {"status": "Approved"}})
    assert response.status_code == 200, response.text


def create_requisition(api, contract_id, origin_id, period=PERIOD, **fields):
    requisition = {"period_id": period, "invoice_number": origin_id or "INV", **fields}
    if origin_id:
        requisition["origin_id"] = origin_id
    return api.post("/rest/v1.0/requisitions", json={
        "project_id": PROJECT, "commitment_id": contract_id, "requisition": requisition})


def pco_of(api, package_id, project_id=PROJECT) -> dict:
    """The potential change order Procore creates with a single-tier package."""
    pcos = api.get("/rest/v1.0/potential_change_orders", params={"project_id": project_id})
    assert pcos.status_code == 200, pcos.text
    [pco] = [p for p in pcos.json() if p["change_order_package_id"] == package_id]
    return pco


def sync_pco_lines(api, pco_id, updates, project_id=PROJECT) -> dict:
    response = api.patch(f"/rest/v1.0/potential_change_orders/{pco_id}/line_items/sync",
                         params={"project_id": project_id}, json={"updates": updates})
    assert response.status_code == 200, response.text
    return response.json()
