"""Helpers for the invoice and reference-data end-to-end tests.

A compact seeded universe (4 projects x 6 POs, the seed's invoices, 40 suppliers, the
Procore-only vendors) keeps each job run to a few seconds; one Dagster instance per test
lets runs see each other's materialisations, as they do in a deployment. X3 data is driven
through the X3 sandbox's REST API, Procore data through Procore's normal endpoints.
"""

from __future__ import annotations

from contextlib import contextmanager
from urllib.parse import quote

import dagster as dg
import httpx
import pytest

from mlc_dagster_tests.conftest import sandbox_calls
from mlc_dagster_tests.sandbox_clients import WRITE_METHODS, ProcoreReader, X3Driver
from mlc_sandbox.seed import build_seed
from mlc_sandbox.server import running_sandboxes

COMPACT = {"projects": 4, "pos_per_project": 6}


def compact_seed():
    return build_seed(42, "small", **COMPACT)


@contextmanager
def compact_sandboxes():
    with running_sandboxes(seed_data=compact_seed()) as handles:
        yield handles


@pytest.fixture(name="sandboxes")
def compact_sandboxes_fixture():
    """Overrides conftest's `sandboxes` in the modules that import it."""
    with compact_sandboxes() as handles:
        yield handles


def history_seed():
    """The compact universe plus the hand-entered Procore history (seed_history.py)."""
    return build_seed(42, "small", **COMPACT, history=True)


@pytest.fixture(name="history_sandboxes")
def history_sandboxes_fixture():
    """Sandboxes over `history_seed()`: Procore already holds the hand-made commitments."""
    with running_sandboxes(seed_data=history_seed()) as handles:
        yield handles


@pytest.fixture(name="run")
def job_runner_fixture(sync_env):
    """Runs jobs on one Dagster instance for the whole test."""
    with dg.instance_for_test() as instance:
        yield JobRunner(instance)


class JobRunner:
    """Runs jobs of the one Definitions object on one instance, failing loudly."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance

    def __call__(self, job_name: str = "sync_sage_x3_to_procore", **run_config):
        from mlc_dagster.definitions import defs

        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=self.instance, raise_on_error=False, run_config=run_config or None)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        return result


def materialization(result, asset: str) -> dict:
    """Metadata values of one asset's materialisation in a run."""
    for event in result.get_asset_materialization_events():
        if event.materialization.asset_key.path[-1] == asset:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{asset} was not materialised")


def check(result, name: str):
    return next(c for c in result.get_asset_check_evaluations() if c.check_name == name)


def api_writes(handle) -> list[tuple[str, str]]:
    """Write calls to the real API routes (not OAuth, not the sandbox controls)."""
    return [(c["method"], c["path"]) for c in sandbox_calls(handle)
            if c["method"] in WRITE_METHODS and c["path"].startswith(("/rest/", "/api1/", "/xtrem/"))]


def clear_calls(*handles) -> None:
    for handle in handles:
        httpx.delete(f"{handle.url}/_sandbox/calls")


class X3Records(X3Driver):
    """Any X3 class through the REST API: $create, $edit and $details."""

    def create(self, cls: str, body: dict) -> dict:
        r = self.http.post(f"/{cls}", params={"representation": f"{cls}.$create"}, json=body)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def edit(self, cls: str, key: str, body: dict) -> dict:
        r = self.http.put(f"/{cls}('{quote(key, safe='~')}')",
                          params={"representation": f"{cls}.$edit"}, json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def get(self, cls: str, key: str) -> dict | None:
        r = self.http.get(f"/{cls}('{quote(key, safe='~')}')",
                          params={"representation": f"{cls}.$details"})
        return r.json() if r.status_code == 200 else None

    def query(self, cls: str, where: str | None = None) -> list[dict]:
        params = {"representation": f"{cls}.$query", "count": 1000}
        if where:
            params["where"] = where
        return self.http.get(f"/{cls}", params=params).json()["$resources"]


class ProcoreApi(ProcoreReader):
    """Procore reads plus the few writes a project manager would make in the UI."""

    def requisitions(self, project_id: int) -> list[dict]:
        return self.http.get("/rest/v1.1/requisitions", params={
            "project_id": project_id, "view": "extended", "per_page": 1000}).json()

    def all_requisitions(self) -> dict[str, dict]:
        return {r["origin_id"]: dict(r, project_id=p["id"]) for p in self.projects()
                for r in self.requisitions(p["id"]) if r.get("origin_id")}

    def vendors(self, inactive: bool = False) -> list[dict]:
        path = (f"/rest/v1.0/companies/{self.company_id}/vendors/inactive" if inactive
                else "/rest/v1.0/vendors")
        return self.http.get(path, params={"company_id": self.company_id, "per_page": 1000}).json()

    def create_vendor(self, **fields) -> dict:
        r = self.http.post("/rest/v1.0/vendors", json={"company_id": self.company_id,
                                                       "vendor": fields})
        assert r.status_code == 201, r.text
        return r.json()

    def update_vendor(self, vendor_id: int, **fields) -> dict:
        r = self.http.patch(f"/rest/v1.0/vendors/{vendor_id}",
                            json={"company_id": self.company_id, "vendor": fields})
        assert r.status_code == 200, r.text
        return r.json()
