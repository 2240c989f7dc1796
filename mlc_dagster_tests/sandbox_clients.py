"""Test utilities shared by end-to-end suites: drive the sandboxes like a user would.

`ProcoreReader` reads Procore sandbox state through the normal GET endpoints,
`X3Driver` creates / amends / deletes Sage X3 data through the REST API, and
`run_sync` executes a job through Dagster's own execution API.
"""

from __future__ import annotations

import time

import dagster as dg
import httpx

from mlc_dagster_tests.oracle import MAX_WAIT, retry_pause
from mlc_sandbox.seed import COMPANY_ID, SANDBOX_CREDENTIALS

WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}


def run_sync(job_name: str = "sync_sage_x3_to_procore", **run_config):
    from mlc_dagster.definitions import defs

    job = defs.resolve_job_def(job_name)
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False,
                                        run_config=run_config or None)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return result


class RateLimitedTransport(httpx.HTTPTransport):
    """Waits out a 429 like any client of Procore must: a test reading right after a run that
    used most of the spike window would otherwise read the error body as data."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        waited = 0.0
        while True:
            response = super().handle_request(request)
            if response.status_code != 429:
                return response
            pause = retry_pause(response)
            if waited + pause > MAX_WAIT:
                return response
            response.close()
            time.sleep(pause)
            waited += pause


class ProcoreReader:
    """Reads Procore sandbox state the way any API client would."""

    def __init__(self, url: str):
        token = httpx.post(f"{url}/oauth/token", json={
            "grant_type": "client_credentials",
            "client_id": SANDBOX_CREDENTIALS["procore_client_id"],
            "client_secret": SANDBOX_CREDENTIALS["procore_client_secret"]}).json()["access_token"]
        self.http = httpx.Client(base_url=url, transport=RateLimitedTransport(), headers={
            "Authorization": f"Bearer {token}", "Procore-Company-Id": str(COMPANY_ID)})
        self.company_id = COMPANY_ID

    def _get(self, path: str, **params) -> list | dict:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def projects(self):
        return self._get("/rest/v1.0/projects", company_id=self.company_id, per_page=1000)

    def contracts(self):
        out = []
        for project in self.projects():
            page = self._get("/rest/v1.0/purchase_order_contracts", project_id=project["id"],
                             per_page=1000)
            out += [dict(c, project_id=project["id"]) for c in page]
        return out

    def line_items(self, contract):
        return self._get(f"/rest/v1.0/purchase_order_contracts/{contract['id']}/line_items",
                         project_id=contract["project_id"], per_page=1000)


class X3Driver:
    """Drives Sage X3 sandbox data through its REST API ($create / $edit / DELETE)."""

    def __init__(self, url: str):
        self.http = httpx.Client(base_url=f"{url}/api1/x3/erp/SEED", auth=(
            SANDBOX_CREDENTIALS["x3_user"], SANDBOX_CREDENTIALS["x3_password"]))

    def po(self, number):
        r = self.http.get(f"/PORDER('{number}')", params={"representation": "PORDER.$details"})
        r.raise_for_status()
        return r.json()

    def edit_po(self, number, body):
        r = self.http.put(f"/PORDER('{number}')", params={"representation": "PORDER.$edit"},
                          json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def delete_po(self, number):
        r = self.http.delete(f"/PORDER('{number}')", params={"representation": "PORDER.$edit"})
        assert r.status_code in (200, 204), r.text

    def create_po(self, body):
        r = self.http.post("/PORDER", params={"representation": "PORDER.$create"}, json=body)
        assert r.status_code in (200, 201), r.text
        return r.json()
