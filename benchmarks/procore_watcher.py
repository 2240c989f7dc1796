"""What a user's script sees: polling Procore's public REST API for commitments (issue #15,
part 3). Used by the change-latency scenario (benchmarks/scenarios/latency.py).

The watcher gets its own OAuth token from the Procore sandbox's token endpoint and asks, for
each PO it waits for, `GET /rest/v1.0/purchase_order_contracts?project_id=..&filters[origin_id]=..`
and, once the commitment exists, `GET /rest/v1.0/purchase_order_contracts/{id}/line_items`.
A change has arrived when a response shows the commitment with all its lines; the time is
taken when that response returns. It never reads the sandbox's in-process state.

Its calls go through the same sandbox and its call log. It counts every call it makes, per
endpoint, so that the scenario reports the connector's Procore calls without them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

CONTRACTS = "/rest/v1.0/purchase_order_contracts"


class ProcoreApiWatcher(threading.Thread):
    """Polls Procore's HTTP API every `poll_s` for the commitments it was asked to watch."""

    def __init__(self, url: str, company_id: int, client_id: str, client_secret: str,
                 poll_s: float = 0.5) -> None:
        super().__init__(daemon=True, name="procore-api-watcher")
        import httpx

        self.url, self.company_id, self.poll_s = url, company_id, poll_s
        self._credentials = {"grant_type": "client_credentials", "client_id": client_id,
                             "client_secret": client_secret}
        self.http = httpx.Client(base_url=url, timeout=30)
        self.expected: dict[str, tuple[str, int]] = {}  # origin_id -> (X3 project, lines)
        self.exists: dict[str, float] = {}
        self.complete: dict[str, float] = {}
        self.calls: Counter = Counter()  # "METHOD /path/{id}" -> calls this watcher made
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self._projects: dict[str, int] = {}
        self._contract_ids: dict[str, int] = {}

    def watch(self, origin_id: str, x3_project: str, lines: int) -> None:
        with self.lock:
            self.expected[origin_id] = (x3_project, lines)

    def connect(self) -> None:
        """A token and the company's projects (X3 project code = Procore project number)."""
        token = self._call("POST", "/oauth/token", data=self._credentials).json()
        self.http.headers.update({"Authorization": f"Bearer {token['access_token']}",
                                  "Procore-Company-Id": str(self.company_id)})
        page = 1
        while True:
            response = self._call("GET", "/rest/v1.0/projects", params={
                "company_id": self.company_id, "page": page, "per_page": 100})
            projects = response.json()
            self._projects.update({str(p["project_number"]): int(p["id"]) for p in projects})
            if 'rel="next"' not in response.headers.get("Link", ""):
                return
            page += 1

    def run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                pending = {o: v for o, v in self.expected.items() if o not in self.complete}
            for origin, (project, lines) in pending.items():
                try:
                    self._check(origin, project, lines)
                except Exception as exc:  # keep watching; report what went wrong
                    self.errors.append(f"{origin}: {type(exc).__name__}: {exc}"[:300])
            self.stop.wait(self.poll_s)

    def _check(self, origin: str, project: str, lines: int) -> None:
        project_id = self._projects[project]
        contract_id = self._contract_ids.get(origin)
        if contract_id is None:
            found = self._call("GET", CONTRACTS, params={
                "project_id": project_id, "filters[origin_id]": origin}).json()
            found = [c for c in found if c.get("origin_id") == origin]
            if not found:
                return
            contract_id = self._contract_ids[origin] = int(found[0]["id"])
            self.exists.setdefault(origin, time.time())
        items = self._call("GET", f"{CONTRACTS}/{contract_id}/line_items",
                           params={"project_id": project_id, "per_page": 100}).json()
        if len(items) >= lines:
            self.complete[origin] = time.time()

    def _call(self, method: str, path: str, **kwargs):
        response = self.http.request(method, path, **kwargs)
        template = path if "/line_items" not in path else f"{CONTRACTS}/{{id}}/line_items"
        self.calls[f"{method} {template}"] += 1
        response.raise_for_status()
        return response

    def close(self) -> None:
        self.stop.set()
        if self.is_alive():
            self.join(timeout=30)
        self.http.close()
