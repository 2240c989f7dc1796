"""Contract test: every request body the connector sends to Procore, field by field, is in the
official operation's body template (issue 13 point 4).

The Procore sandbox drops any body attribute that the operation's OAS template
(mlc_sandbox/procore/procore_api_subset.json) does not name, as Procore ignores attributes it
does not permit, and records the dotted paths in the call log (`dropped`). Here the real
Dagster jobs run end to end against the sandboxes - the reference-data job, the seeded PO
sync with its invoices, an amendment, an amendment to an Approved commitment (the change
order path), a new invoice - and the test fails if any call dropped anything, naming the
method, path and field.
"""

from __future__ import annotations

import re
from collections import defaultdict
from decimal import Decimal

from mlc_dagster_tests.conftest import sandbox_calls
from mlc_dagster_tests.e2e.flow_helpers import (
    ProcoreApi,
    X3Records,
    compact_sandboxes_fixture,  # noqa: F401 - `sandboxes`: the compact universe
    compact_seed,
    job_runner_fixture,  # noqa: F401 - `run`: jobs on one instance
)

SEED = compact_seed()
ID = re.compile(r"/\d+(?=/|$)")
INDEX = re.compile(r"\[\d+\]")
# Write operations the scenario must have exercised, so the test cannot pass by sending nothing.
EXERCISED = {
    "PATCH /rest/v1.0/vendors/sync",
    "PATCH /rest/v1.0/purchase_order_contracts/sync",
    "PATCH /rest/v1.0/purchase_order_contracts/{id}/line_items/sync",
    "POST /rest/v1.1/requisitions",
    "POST /rest/v1.0/change_order_packages",
    "PATCH /rest/v1.0/potential_change_orders/{id}/line_items/sync",
}


def dropped_fields(calls: list[dict]) -> dict[str, set[str]]:
    """`METHOD /path/{id}` -> the body fields the sandbox dropped (array indices folded)."""
    found: dict[str, set[str]] = defaultdict(set)
    for call in calls:
        for field in call.get("dropped") or []:
            found[operation(call)].add(INDEX.sub("[]", field))
    return found


def operation(call: dict) -> str:
    return f"{call['method']} {ID.sub('/{id}', call['path'])}"


def invoice(number: str, po: dict, quantity: str) -> dict:
    line = po["lines"][0]
    return {"NUM": number, "PIHTYP": 1, "BPSNUM": po["BPSNUM"], "BPSINV": f"INV-{number}",
            "INVDAT": "2026-12-10", "PJT": po["PJTH"],
            "PINVOICED": [{"PIDLIN": 1000, "POHNUM": po["POHNUM"], "POPLIN": line["POPLIN"],
                           "QTYUOM": quantity, "NETPRI": line["NETPRI"]}]}


def amend_first_line(x3: X3Records, po: str, extra_quantity: int) -> None:
    """A buyer raises the first line's quantity and the PO revision, as in X3 (which
    computes the line amount itself)."""
    order = x3.get("PORDER", po)
    line = order["PORDERQ"][0]
    quantity = Decimal(str(line["QTYUOM"])) + extra_quantity
    x3.edit("PORDER", po, {"REVNUM": int(order.get("REVNUM") or 0) + 1, "PORDERQ": [
        {"POPLIN": line["POPLIN"], "QTYUOM": str(quantity)}]})


def single_tier_contracts(procore: ProcoreApi) -> list[dict]:
    """Synced commitments of single-tier projects (their show has only change_order_packages)."""
    out = []
    for contract in sorted(procore.contracts(), key=lambda c: c["origin_code"]):
        shown = procore.http.get(f"/rest/v1.0/purchase_order_contracts/{contract['id']}",
                                 params={"project_id": contract["project_id"]}).json()
        if "potential_change_orders" not in shown:
            out.append(contract)
    return out


def test_no_request_body_field_is_outside_the_official_templates(sandboxes, run, sync_env):
    procore, x3 = ProcoreApi(sandboxes["procore"].url), X3Records(sandboxes["sage_x3"].url)
    run("sync_reference_data")  # the seed's X3-only suppliers become vendors (vendors/sync)
    run()  # the seeded POs and their invoices

    amended, approved = (c["origin_code"] for c in single_tier_contracts(procore)[:2])
    amend_first_line(x3, amended, 2)
    contract = next(c for c in procore.contracts() if c["origin_code"] == approved)
    response = procore.http.patch(f"/rest/v1.0/purchase_order_contracts/{contract['id']}", json={
        "project_id": contract["project_id"],
        "purchase_order_contract": {"status": "Approved"}})
    assert response.status_code == 200, response.text
    amend_first_line(x3, approved, 3)  # Approved: the change order path
    pos = {po["POHNUM"]: po for po in SEED.x3_purchase_orders}
    x3.create("PINVOICE", invoice("PI29500001", pos[amended], "1"))
    run()

    calls = sandbox_calls(sandboxes["procore"])
    offending = dropped_fields(calls)
    assert not offending, "request body fields Procore would ignore (not in the OAS template):\n" + \
        "\n".join(f"  {op}: {', '.join(sorted(fields))}" for op, fields in sorted(offending.items()))
    sent = {operation(c) for c in calls if c["method"] != "GET" and (c["status"] or 500) < 500}
    assert EXERCISED <= sent, f"the scenario never sent: {sorted(EXERCISED - sent)}"
    assert all("dropped" in c for c in calls if c["method"] in ("POST", "PATCH", "PUT")
               and c["path"].startswith("/rest/")), "a write call was not checked"
    # Filters the operation does not declare are ignored by Procore: a connector relying on
    # one would read an unfiltered list (the sandbox logs them as `ignored_filters`).
    ignored = {f"{operation(c)}: {f}" for c in calls for f in c.get("ignored_filters") or []}
    assert not ignored, f"filters Procore does not declare for the operation: {sorted(ignored)}"
