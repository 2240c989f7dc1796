"""Calls counted from a sandbox's own call log (the list `/_sandbox/calls` serves): a window
onto that log, and what a slice of it says (writes, reads, 429s, calls per endpoint)."""

from __future__ import annotations

import re
from collections import Counter

WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}
# Procore endpoints of the PO -> commitment flow (writes, the adoption scan and the reference
# reads). Anything else the job calls belongs to another flow and is reported separately; a
# commitment's show read (`GET .../purchase_order_contracts/{id}`) is the invoice flow's here
# (it confirms invoicing is disabled): the benchmark seeds have no approved or hand-made
# commitments, the PO flow's only reasons to read one.
PO_FLOW = re.compile(
    r"^(POST /oauth/token|GET /rest/v1\.0/(projects|vendors|cost_codes|line_item_types)$"
    r"|GET /rest/v1\.0/purchase_order_contracts$"
    r"|(?!GET)[A-Z]+ /rest/v1\.0/purchase_order_contracts"
    r"|GET /rest/v1\.0/purchase_order_contracts/\{id\}/line_items"
    r"|[A-Z]+ /rest/v1\.0/(change_order_packages|potential_change_orders))")


class CallLog:
    """A window onto a sandbox's call log: the calls since the last `mark()`."""

    def __init__(self, handle) -> None:
        self.controls = handle.controls
        self.start = 0
        self.mark()

    def mark(self) -> None:
        with self.controls._lock:
            self.start = len(self.controls.calls)

    def since_mark(self) -> list[dict]:
        with self.controls._lock:
            return list(self.controls.calls[self.start:])


def summarize_calls(calls: list[dict], latency_ms: int) -> dict:
    """Totals, writes, reads, tokens, 429s and errors, the PO flow's share, calls per
    endpoint, and the sandbox's own time beyond the injected latency."""
    from mlc_dagster.resources.http_core import path_template

    by_endpoint = Counter(f"{c['method']} {path_template(c['path'])}" for c in calls)
    # Procore REST and X3 REST (`/api1/...`) writes; the token POST and X3 GraphQL's POST
    # (queries and mutations alike) are not counted here (see harness.x3_state_fingerprint).
    writes = sum(1 for c in calls if c["method"] in WRITE_METHODS
                 and c["path"].startswith(("/rest/", "/api1/")))
    auth = sum(1 for c in calls if c["path"] == "/oauth/token")
    server_ms = sum(max(0.0, (c.get("duration_ms") or 0) - latency_ms) for c in calls)
    other = {k: n for k, n in by_endpoint.items() if not PO_FLOW.match(k)}
    return {"total": len(calls), "writes": writes, "reads": len(calls) - writes - auth,
            "auth": auth, "po_flow": len(calls) - sum(other.values()), "other_flows": other,
            "status_429": sum(1 for c in calls if c["status"] == 429),
            "errors": sum(1 for c in calls if (c["status"] or 0) >= 400 and c["status"] != 429),
            "by_endpoint": dict(by_endpoint.most_common()),
            "sandbox_server_s": round(server_ms / 1000, 2)}
