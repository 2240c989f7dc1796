"""End to end: X3 purchase invoices -> Procore requisitions inside the PO sync job.

A requisition with an origin_id is immutable in Procore (tutorial_financial_tools.md), so
every test here also checks what a user would see: one requisition per commitment and
supplier invoice number, never edited after it was created.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal

from mlc_dagster.defs.invoices.plan import (
    CHANGED_AFTER_SEND,
    CREDIT_MEMO_REASON,
    DELETED_AFTER_SEND,
)
from mlc_dagster.ledger.store import Ledger
from mlc_dagster_tests.conftest import sandbox_calls
from mlc_dagster_tests.e2e.flow_helpers import (
    ProcoreApi,
    X3Records,
    api_writes,
    check,
    clear_calls,
    compact_sandboxes_fixture,  # noqa: F401 - `sandboxes`: the compact universe
    compact_seed,
    job_runner_fixture,  # noqa: F401 - `run`: jobs on one instance
    materialization,
)

SEED = compact_seed()
POS = {po["POHNUM"]: po for po in SEED.x3_purchase_orders}
POSTED, NOT_POSTED = 2, 1  # PINVOICE.STA in the X3 sandbox (its default is not posted)
REQUISITIONS = "/rest/v1.1/requisitions"


def invoice(number: str, po: str, lines, **header) -> dict:
    """A posted PINVOICE body billing `lines` = [(po_line, quantity, unit price)] of `po`."""
    body = {"NUM": number, "PIHTYP": 1, "BPSNUM": POS[po]["BPSNUM"] if po in POS else "SUP001",
            "BPSINV": f"INV-{number}", "INVDAT": "2026-03-20", "PJT": POS.get(po, {}).get("PJTH"),
            "STA": POSTED,
            "PINVOICED": [{"PIDLIN": (n + 1) * 1000, "POHNUM": po, "POPLIN": po_line,
                           "QTYUOM": qty, "NETPRI": price}
                          for n, (po_line, qty, price) in enumerate(lines)]}
    body.update(header)
    return body


def first_line(po: str) -> int:
    return POS[po]["lines"][0]["POPLIN"]


def contract_of(procore: ProcoreApi, po: str) -> dict:
    return next(c for c in procore.contracts() if c["origin_id"] == f"X3:PO:{po}")


def billed_per_line_item(procore: ProcoreApi, requisition: dict, contract: dict) -> dict:
    """PO line origin_id -> amount billed by this requisition (read back from Procore)."""
    origin_of = {item["id"]: item["origin_id"] for item in procore.line_items(contract)}
    return {origin_of[i["line_item_id"]]: Decimal(str(i["work_completed_this_period"]))
            for i in requisition["items"] if Decimal(str(i["work_completed_this_period"]))}


def x3_per_line(x3_invoice: dict) -> dict:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in x3_invoice["PINVOICED"]:
        totals[f"X3:PO:{line['POHNUM']}:{line['POPLIN']}"] += Decimal(str(line["AMTNOTLIN"]))
    return dict(totals)


def per_commitment_and_number(procore: ProcoreApi) -> Counter:
    """Requisitions per (commitment, invoice number): how a user spots a duplicate, whatever
    origin_id it carries."""
    return Counter((r["commitment_id"], r["invoice_number"]) for p in procore.projects()
                   for r in procore.requisitions(p["id"]))


def requisition_writes(handle) -> list[tuple[str, str]]:
    return [w for w in api_writes(handle) if "requisition" in w[1]]


def test_seeded_invoices_become_requisitions_per_line_item_and_bad_ones_are_quarantined(
        sandboxes, run, sync_env):
    x3, procore = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    x3.create("PINVOICE", invoice("PI29000001", "PO26000008", [(first_line("PO26000008"), "2",
                                                                 "10.00")],
                                  BPSINV="Façade №7 — Ünïcødé 東京"))
    x3.create("PINVOICE", invoice("PI29000002", "PO99999999", [(1000, "1", "5.00")]))
    x3.create("PINVOICE", invoice("PI29000003", "PO26000009", [(first_line("PO26000009"), "1",
                                                                 "-40.00")]))
    x3.create("PINVOICE", invoice("PI29000004", "PO26000009", [(0, "1", "5.00")]))
    x3.create("PINVOICE", invoice("PI29000005", "PO26000009", [(first_line("PO26000009"), "1",
                                                                 "40.00")], PIHTYP=3))

    result = run()
    contracts = {c["origin_id"]: c for c in procore.contracts()}
    requisitions = procore.all_requisitions()
    ledger = Ledger(sync_env["ledger_url"])
    expected = [inv["NUM"] for inv in SEED.x3_purchase_invoices] + ["PI29000001"]
    for number in expected:
        x3_invoice = x3.get("PINVOICE", number)
        po = x3_invoice["PINVOICED"][0]["POHNUM"]
        requisition = requisitions[f"X3:PI:{number}:{po}"]
        contract = contracts[f"X3:PO:{po}"]
        assert requisition["commitment_id"] == contract["id"]
        assert requisition["invoice_number"] == x3_invoice["BPSINV"]
        assert requisition["billing_date"] == x3_invoice["INVDAT"]
        # Procore puts a new invoice in the project's open billing period
        periods = procore.http.get(f"/rest/v1.0/projects/{requisition['project_id']}"
                                   "/billing_periods").json()
        assert requisition["period_id"] == next(p["id"] for p in periods
                                                if p["status"] == "open")
        assert billed_per_line_item(procore, requisition, contract) == \
            x3_per_line(x3_invoice), number
        assert ledger.states("purchase_invoice", [number])[number].status == "synced"
    assert len(requisitions) == len(expected)  # nothing for the bad ones
    assert set(per_commitment_and_number(procore).values()) == {1}  # no duplicates

    states = ledger.states("purchase_invoice", ["PI29000002", "PI29000003", "PI29000004",
                                                "PI29000005"])
    assert {k: s.status for k, s in states.items()} == dict.fromkeys(states, "held")
    assert "invoice PI29000002 line 1000: PO PO99999999 is not a known Sage X3 PO" in \
        states["PI29000002"].reason
    assert "invoice PI29000003 line 1000: amount must not be negative" in \
        states["PI29000003"].reason
    assert "invoice PI29000004 line 1000: po_line must be greater than 0" in \
        states["PI29000004"].reason
    assert states["PI29000005"].reason == CREDIT_MEMO_REASON
    assert materialization(result, "x3_purchase_invoices")["quarantined_invoices"] == 3
    assert not check(result, "invoice_quarantine").passed
    assert check(result, "requisition_totals_match_x3").passed

    clear_calls(sandboxes["procore"], sandboxes["sage_x3"])
    second = run()
    assert api_writes(sandboxes["procore"]) == [] and api_writes(sandboxes["sage_x3"]) == []
    # only what can have changed is staged: the held and quarantined invoices, not the sent ones
    assert materialization(second, "x3_purchase_invoices")["staged_invoices"] == 4
    assert materialization(second, "procore_requisitions")["unchanged"] == 0


def test_an_invoice_not_final_in_x3_waits_and_is_sent_once_it_is_posted(
        sandboxes, run, sync_env):
    x3, procore = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    ledger = Ledger(sync_env["ledger_url"])
    po, number = "PO26000011", "PI29000040"
    x3.create("PINVOICE", invoice(number, po, [(first_line(po), "2", "10.00")],
                                  STA=NOT_POSTED))
    first = run()
    state = ledger.states("purchase_invoice", [number])[number]
    assert (state.status, state.reason) == (
        "held", f"not final in Sage X3 (status {NOT_POSTED}), sent once it is final")
    assert f"X3:PI:{number}:{po}" not in procore.all_requisitions()
    assert check(first, "requisition_totals_match_x3").passed  # a draft is no invoice yet

    run()  # still a draft: the same hold is not recorded again
    assert len(ledger.events("purchase_invoice", number)) == 1

    x3.edit("PINVOICE", number, {"STA": POSTED})
    run()  # picked up by the delta read, as any X3 change
    requisition = procore.all_requisitions()[f"X3:PI:{number}:{po}"]
    assert billed_per_line_item(procore, requisition, contract_of(procore, po)) == {
        f"X3:PO:{po}:{first_line(po)}": Decimal("20.00")}
    assert [e["action"] for e in ledger.events("purchase_invoice", number)] == ["hold", "create"]


def test_an_x3_change_after_send_is_held_with_the_difference_and_procore_is_never_edited(
        sandboxes, run, sync_env):
    x3, procore = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    ledger = Ledger(sync_env["ledger_url"])
    po, number = "PO26000011", "PI29000050"
    origin, line = f"X3:PI:{number}:{po}", first_line(po)
    x3.create("PINVOICE", invoice(number, po, [(line, "2", "10.00")]))
    run()
    sent = procore.all_requisitions()[origin]
    # Why the connector never tries: Procore refuses any change to a synced invoice.
    refused = procore.http.patch(f"{REQUISITIONS}/{sent['id']}", json={
        "project_id": sent["project_id"], "requisition": {"invoice_number": "X"}})
    assert refused.status_code == 422

    # A header field changes with the line: the sandbox (like X3, per the stricter reading)
    # does not move the header stamp on a line-only edit, which the nightly full read sees.
    x3.edit("PINVOICE", number, {"ACCDAT": "2026-03-21",
                                 "PINVOICED": [{"PIDLIN": 1000, "QTYUOM": "3"}]})
    clear_calls(sandboxes["procore"])
    result = run()
    state = ledger.states("purchase_invoice", [number])[number]
    assert state.status == "held" and state.reason.startswith(CHANGED_AFTER_SEND)
    assert "enter the difference by hand on the next invoice" in state.reason
    assert f"PO {po} line {line}: amount 20.00 -> 30.00, quantity 2 -> 3" in state.reason
    assert "total in Procore 20.00, in Sage X3 now 30.00 (difference +10.00)" in state.reason
    assert requisition_writes(sandboxes["procore"]) == []  # no PATCH, DELETE or new POST
    assert procore.all_requisitions()[origin] == sent  # what Procore shows is unchanged
    assert per_commitment_and_number(procore)[(sent["commitment_id"], f"INV-{number}")] == 1
    assert materialization(result, "procore_requisitions")["held_after_send"] == 1
    reconciliation = check(result, "requisition_totals_match_x3")
    assert not reconciliation.passed  # the 10.00 Procore does not have shows, explained
    assert reconciliation.metadata["changed_after_send"].value == 1
    assert CHANGED_AFTER_SEND in reconciliation.metadata["mismatches"].value

    run()  # the same difference is held once, not once per poll
    assert [e["action"] for e in ledger.events("purchase_invoice", number)] == [
        "create", "hold"]

    x3.edit("PINVOICE", number, {"ACCDAT": "2026-03-20",
                                 "PINVOICED": [{"PIDLIN": 1000, "QTYUOM": "2"}]})
    back = run()  # X3 put back to what Procore holds: synced again, still no write
    assert ledger.states("purchase_invoice", [number])[number].status == "synced"
    assert ledger.events("purchase_invoice", number)[-1]["action"] == "resolve"
    assert check(back, "requisition_totals_match_x3").passed
    assert requisition_writes(sandboxes["procore"]) == []


def test_invoice_on_held_po_waits_then_syncs_with_it_and_a_missing_open_period_is_created(
        sandboxes, run, sync_env, monkeypatch):
    x3, procore = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    held_po = "PO26000010"  # one line on GL 619900, which the shipped mapping lacks
    lines = [(ln["POPLIN"], "1", ln["NETPRI"]) for ln in POS[held_po]["lines"][:2]]
    x3.create("PINVOICE", invoice("PI29000010", held_po, lines))
    # A project manager closes project P1004's open period: Procore then has nowhere to put
    # a new invoice there (new invoices go into the open billing period).
    project = next(p for p in procore.projects() if p["name"].endswith("04"))
    periods = procore.http.get(f"/rest/v1.0/projects/{project['id']}/billing_periods").json()
    opened = next(p for p in periods if p["status"] == "open")
    closed = procore.http.patch(f"/rest/v1.0/projects/{project['id']}/billing_periods/"
                                f"{opened['id']}", json={"billing_period": {"status": "closed"}})
    assert closed.status_code == 200, closed.text
    x3.create("PINVOICE", invoice("PI29000011", "PO26000020", [(first_line("PO26000020"), "1",
                                                                 "99.00")], INVDAT="2027-02-03"))
    ledger = Ledger(sync_env["ledger_url"])

    run()
    states = ledger.states("purchase_invoice", ["PI29000010", "PI29000011"])
    assert states["PI29000010"].status == "held"
    assert states["PI29000010"].reason.startswith(f"waiting for PO {held_po}: ")
    assert "619900 has no cost code mapping" in states["PI29000010"].reason
    assert f"no open Procore billing period in project {project['id']}" in \
        states["PI29000011"].reason
    assert not any(k.startswith("X3:PI:PI29000010") for k in procore.all_requisitions())

    with open(sync_env["mapping"], "a") as fh:
        fh.write("619900,01-100,O\n")
    monkeypatch.setenv("MLC_CREATE_BILLING_PERIODS", "1")
    result = run()

    po_event = ledger.events("purchase_order", held_po)[-1]
    invoice_event = ledger.events("purchase_invoice", "PI29000010")[-1]
    assert (po_event["status"], invoice_event["status"]) == ("synced", "synced")
    assert po_event["run_id"] == invoice_event["run_id"] == result.run_id  # the same run
    requisitions = procore.all_requisitions()
    assert f"X3:PI:PI29000010:{held_po}" in requisitions
    assert ledger.states("purchase_invoice", ["PI29000011"])["PI29000011"].status == "synced"
    periods = procore.http.get(f"/rest/v1.0/projects/{project['id']}/billing_periods").json()
    created = next(p for p in periods if p["start_date"] == "2027-02-01")
    assert (created["end_date"], created["status"]) == ("2027-02-28", "open")
    assert requisitions["X3:PI:PI29000011:PO26000020"]["period_id"] == created["id"]


def test_a_commitment_with_invoicing_disabled_holds_its_invoices_without_retrying_the_post(
        sandboxes, run, sync_env, monkeypatch):
    x3, procore = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    ledger = Ledger(sync_env["ledger_url"])
    (po,) = SEED.requisitions_disabled_pos
    number = "PI29000060"
    x3.create("PINVOICE", invoice(number, po, [(first_line(po), "1", "10.00")]))
    run()
    assert contract_of(procore, po)["requisitions_are_enabled"] is False
    state = ledger.states("purchase_invoice", [number])[number]
    assert state.status == "held"
    assert state.reason.startswith("invoicing is not enabled on this commitment in Procore")
    assert f"X3:PI:{number}:{po}" not in procore.all_requisitions()

    show = f"/rest/v1.0/purchase_order_contracts/{contract_of(procore, po)['id']}"
    clear_calls(sandboxes["procore"])
    run()  # within MLC_INVOICING_RECHECK_SECONDS (1 h) of the last try: not even read
    assert not sandbox_calls(sandboxes["procore"], path=show)
    assert not sandbox_calls(sandboxes["procore"], method="POST", path=REQUISITIONS)

    monkeypatch.setenv("MLC_INVOICING_RECHECK_SECONDS", "0")
    clear_calls(sandboxes["procore"])
    run()  # re-checked: the commitment is read first, no refused POST, no new event
    assert sandbox_calls(sandboxes["procore"], method="GET", path=show)
    assert not sandbox_calls(sandboxes["procore"], method="POST", path=REQUISITIONS)
    assert len(ledger.events("purchase_invoice", number)) == 1


def test_invoice_sensor_requests_one_run_per_new_invoice_and_the_po_sensor_stays_quiet(
        sandboxes, run, sync_env):
    """A new X3 invoice on an already-synced PO reaches Procore without any PO change."""
    import dagster as dg

    from mlc_dagster.definitions import build_resources
    from mlc_dagster.defs.invoices.sensors import x3_purchase_invoice_changes
    from mlc_dagster.defs.purchase_orders.sensors import x3_purchase_order_changes

    x3, procore = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    resources = {name: build_resources()[name] for name in ("sage_x3", "ledger")}

    def tick(sensor, cursor):
        with dg.build_sensor_context(instance=run.instance, cursor=cursor,
                                     resources=resources) as context:
            return sensor(context)

    def caught_up(sensor):
        result = tick(sensor, None)
        assert result.run_requests  # everything is new on the first tick
        while result.run_requests:
            cursor = result.cursor
            result = tick(sensor, cursor)
        return result.cursor

    run()
    invoice_cursor = caught_up(x3_purchase_invoice_changes)
    po_cursor = caught_up(x3_purchase_order_changes)

    po = "PO26000011"
    x3.create("PINVOICE", invoice("PI29000020", po, [(first_line(po), "1", "12.50")],
                                  INVDAT="2026-02-10"))
    changed = tick(x3_purchase_invoice_changes, invoice_cursor)
    assert len(changed.run_requests) == 1
    request = changed.run_requests[0]
    assert request.tags == {"mlc/trigger": "x3_invoice_changes", "mlc/changed_invoices": "1"}
    assert request.run_key.startswith("x3-invoice-changes:")
    assert not tick(x3_purchase_invoice_changes, changed.cursor).run_requests
    assert not tick(x3_purchase_order_changes, po_cursor).run_requests

    run()  # what the requested run does
    requisition = procore.all_requisitions()[f"X3:PI:PI29000020:{po}"]
    assert billed_per_line_item(procore, requisition, contract_of(procore, po)) == {
        f"X3:PO:{po}:{first_line(po)}": Decimal("12.50")}


def test_invoice_deleted_in_x3_after_send_is_held_once_by_reconcile_and_never_zeroed(
        sandboxes, run, sync_env):
    x3, procore = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    ledger = Ledger(sync_env["ledger_url"])
    po, number = "PO26000011", "PI29000030"
    origin = f"X3:PI:{number}:{po}"
    x3.create("PINVOICE", invoice(number, po, [(first_line(po), "2", "10.00")]))
    run()
    sent = procore.all_requisitions()[origin]
    billed = {f"X3:PO:{po}:{first_line(po)}": Decimal("20.00")}
    assert billed_per_line_item(procore, sent, contract_of(procore, po)) == billed

    deleted = x3.http.delete(f"/PINVOICE('{number}')",
                             params={"representation": "PINVOICE.$edit"})
    assert deleted.status_code in (200, 204), deleted.text
    run()  # a delta read cannot see a deletion
    assert ledger.states("purchase_invoice", [number])[number].status == "synced"

    clear_calls(sandboxes["procore"])
    result = run("reconcile")
    state = ledger.states("purchase_invoice", [number])[number]
    assert (state.status, state.reason) == (
        "held", f"{DELETED_AFTER_SEND}: requisition #{sent['number']} on PO {po} keeps 20.00")
    assert requisition_writes(sandboxes["procore"]) == []  # never zeroed, never deleted
    assert procore.all_requisitions()[origin] == sent
    reconciliation = check(result, "requisition_totals_match_x3")
    assert not reconciliation.passed
    assert reconciliation.metadata["changed_after_send"].value == 1

    run("reconcile")
    assert requisition_writes(sandboxes["procore"]) == []
    assert [e["action"] for e in ledger.events("purchase_invoice", number)] == [
        "create", "hold"]  # held once, not on every full read


def test_busy_projects_are_listed_once_and_a_lost_ledger_still_never_duplicates(
        sandboxes, run, sync_env, monkeypatch, tmp_path):
    """7 seeded invoices bill 7 commitments: 6 in P1001 (one project-wide listing), 1 in
    P1002 (its own filtered listing). With the ledger gone, the same listings find every
    requisition by origin_id: linked, none created twice, none edited - and one whose X3
    invoice changed meanwhile is held with the difference instead."""
    x3, procore = X3Records(sandboxes["sage_x3"].url), ProcoreApi(sandboxes["procore"].url)
    run()
    listings = sandbox_calls(sandboxes["procore"], method="GET", path=REQUISITIONS)
    assert len(listings) == 2
    before = procore.all_requisitions()
    assert len(before) == len(SEED.x3_purchase_invoices)

    changed = SEED.x3_purchase_invoices[0]
    line = changed["lines"][0]
    x3.edit("PINVOICE", changed["NUM"], {"PINVOICED": [
        {"PIDLIN": line["PIDLIN"], "QTYUOM": str(Decimal(line["QTYUOM"]) + 1)}]})
    fresh = tmp_path / "fresh-ledger.sqlite"
    monkeypatch.setenv("MLC_LEDGER_URL", f"sqlite:///{fresh}")
    clear_calls(sandboxes["procore"])
    result = run()
    assert requisition_writes(sandboxes["procore"]) == []  # no POST, PATCH or DELETE
    assert procore.all_requisitions() == before
    assert set(per_commitment_and_number(procore).values()) == {1}
    assert materialization(result, "procore_requisitions")["linked"] == len(before) - 1
    state = Ledger(f"sqlite:///{fresh}").states("purchase_invoice", [changed["NUM"]])[
        changed["NUM"]]
    assert state.status == "held" and state.reason.startswith(CHANGED_AFTER_SEND)
    po = line["POHNUM"]
    assert f"PO {po} line {line['POPLIN']}: amount {Decimal(line['AMTNOTLIN']):.2f} -> " in \
        state.reason
