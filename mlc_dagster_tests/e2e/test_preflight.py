"""`mlc-dagster ping` as the go-live preflight, over real HTTP against the sandboxes.

The customer's day one is the compact seed with its hand-entered Procore history
(`history_seed()`: hand-typed commitments, one owned by another integration
"ACME-ERP:PO:4711", a vendor owned by another integration "ACME-ERP:V:88"; the last project
is three-tier, the one before two-tier), plus what this module adds through the systems' own
APIs: a Procore project with no X3 counterpart, two X3 POs on a project Procore does not
have, a hand commitment on a PO whose commitment has invoicing disabled, and one commitment
of ours. `ping` must list each warning with counts and examples, exit 0 on warnings alone and
1 on a real failure, and never write.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from mlc_dagster.ping import FAIL, OK, WARN, PingRow, exit_code, format_report, run_ping
from mlc_dagster.preflight.golive import (
    ProjectCommitments,
    project_matching,
    rate_limit_row,
    tier_row,
    write_mode_row,
)
from mlc_dagster_tests.conftest import sandbox_calls
from mlc_dagster_tests.e2e.flow_helpers import (
    ProcoreApi,
    X3Records,
    api_writes,
    clear_calls,
    compact_sandboxes_fixture,  # noqa: F401 - `sandboxes`: the compact universe
    history_sandboxes_fixture,  # noqa: F401 - `history_sandboxes`: with the hand-made history
    history_seed,
)
from mlc_sandbox.server import sandbox_env

SEED = history_seed()
PROJECTS = [p["project_number"] for p in SEED.projects]  # the order ping reads them in
PROJECT_ID = {p["project_number"]: p["id"] for p in SEED.projects}
NUMBER_OF = {p["id"]: p["project_number"] for p in SEED.projects}
NO_INVOICING_PO = SEED.requisitions_disabled_pos[0]  # PO26000013, in the 2-tier project P1003
TIERS = {p["project_number"]: SEED.change_order_tiers.get(p["id"], 1) for p in SEED.projects}
UNKNOWN_X3_PROJECT, NEW_PROCORE_PROJECT = "P9999", "P1005"
FOREIGN_PO, FOREIGN_VENDOR = "ACME-ERP:PO:4711", "ACME-ERP:V:88"
# project -> commitments this module adds through the API: (number, origin_id)
ADDED = {"P1001": [("PO26000004", "X3:PO:PO26000004")],  # ours: not another integration's
         "P1003": [(NO_INVOICING_PO, None)]}  # typed by hand; Procore disables its invoicing
# (project, number, origin_id) of every commitment Procore holds on day one
COMMITMENTS = [(NUMBER_OF[c["project_id"]], c["number"], c["origin_id"])
               for c in SEED.procore_commitments] + [
    (project, number, origin) for project, added in ADDED.items() for number, origin in added]
HAND = Counter(project for project, _number, origin in COMMITMENTS if not origin)
FOREIGN = [f"{project} #{number} {origin}" for project, number, origin in COMMITMENTS
           if origin and not origin.startswith("X3:PO:")]
FOREIGN_VENDOR_NAME = next(v["name"] for v in SEED.vendors if v["origin_id"] == FOREIGN_VENDOR)


def test_the_seed_is_what_this_module_assumes():
    assert TIERS == {"P1001": 1, "P1002": 1, "P1003": 2, "P1004": 3}
    assert NO_INVOICING_PO == "PO26000013"
    assert next(po["PJTH"] for po in SEED.x3_purchase_orders
                if po["POHNUM"] == NO_INVOICING_PO) == "P1003"
    assert FOREIGN == [f"P1002 #PO26000009 {FOREIGN_PO}"]  # the history's foreign commitment
    assert all(HAND[p] for p in PROJECTS) and sum(HAND.values()) == 14
    assert len({(p, n) for p, n, _o in COMMITMENTS}) == len(COMMITMENTS)  # numbers unique
    assert not any(project == UNKNOWN_X3_PROJECT for project in PROJECT_ID)


def go_live_day_one(handles) -> None:
    """What this module adds to the seeded history, through the systems' own APIs."""
    procore = ProcoreApi(handles["procore"].url)
    created = procore.http.post("/rest/v1.0/projects", json={
        "company_id": procore.company_id,
        "project": {"name": "Leeds Yard 05", "project_number": NEW_PROCORE_PROJECT}})
    assert created.status_code == 201, created.text
    for project, commitments in ADDED.items():
        for number, origin_id in commitments:
            body = {"number": number, "title": f"typed by hand: {number}"}
            if origin_id:
                body["origin_id"] = origin_id
            r = procore.http.post("/rest/v1.0/purchase_order_contracts", json={
                "project_id": PROJECT_ID[project], "purchase_order_contract": body})
            assert r.status_code == 201, r.text

    x3 = X3Records(handles["sage_x3"].url)
    template = x3.po("PO26000001")
    for n in (1, 2):  # two POs on a project Procore does not have
        body = {k: v for k, v in template.items() if not k.startswith("$") and k != "PORDERQ"}
        body.update({"POHNUM": f"PO2999000{n}", "PJTH": UNKNOWN_X3_PROJECT, "REVNUM": 0})
        body["PORDERQ"] = [{k: v for k, v in line.items() if not k.startswith("$")}
                           for line in template["PORDERQ"]]
        x3.create_po(body)


@pytest.fixture
def day_one(history_sandboxes):
    go_live_day_one(history_sandboxes)
    clear_calls(history_sandboxes["procore"], history_sandboxes["sage_x3"])
    return history_sandboxes


def env_for(handles, api: str = "rest", **overrides) -> dict[str, str]:
    return {**sandbox_env(handles["procore"].url, handles["sage_x3"].url, api), **overrides}


def by_check(rows: list[PingRow]) -> dict[str, PingRow]:
    assert len({r.check for r in rows}) == len(rows), [r.check for r in rows]
    return {r.check: r for r in rows}


# --- warnings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("api", ["rest", "graphql"])
def test_ping_lists_every_go_live_warning_and_writes_nothing(day_one, api):
    rows = run_ping(env_for(day_one, api))
    found = by_check(rows)
    warned = {r.check for r in rows if r.level == WARN}
    assert warned == {"project matching", "other integrations' commitments",
                      "other integrations' vendors", "hand-entered commitments",
                      "invoicing enabled", "change-order tier"}, format_report(rows)
    assert not [r for r in rows if r.level == FAIL], format_report(rows)
    assert all(r.fix for r in rows if r.level == WARN)
    assert exit_code(rows) == 0

    match = found["project matching"]
    assert f"1 of 5 X3 projects match no active Procore project by project_number: " \
           f"{UNKNOWN_X3_PROJECT} (2 POs)" in match.detail
    assert f"1 Procore project has no X3 project ({NEW_PROCORE_PROJECT})" in match.detail
    assert "held" in match.fix and "MLC_PROJECT_MATCH" in match.fix
    # the unmatched Procore project is not read; the four matched ones are
    total = len(COMMITMENTS)
    assert found["procore commitments"].detail == f"{total} commitments in 4 matched projects"

    foreign = found["other integrations' commitments"]
    assert foreign.detail == (f"1 of {total} commitments carry another integration's origin_id: "
                              f"{FOREIGN[0]}")
    assert "X3:PO:" not in foreign.detail  # ours are not another integration's
    assert "never overwrites" in foreign.fix and "held" in foreign.fix

    vendors = found["other integrations' vendors"]
    assert vendors.detail == (f"1 of {len(SEED.vendors)} vendors carry an origin_id that is no "
                              f"X3 supplier code: {FOREIGN_VENDOR_NAME} {FOREIGN_VENDOR}")
    assert "never overwrites" in vendors.fix and "suppliers" in vendors.fix

    hand = found["hand-entered commitments"]
    assert hand.detail == (f"{sum(HAND.values())} commitments without an origin_id in 4 projects: "
                           + ", ".join(f"{p}: {HAND[p]}" for p in PROJECTS))
    assert "mlc-dagster preview" in hand.fix and "adoption" in hand.fix

    invoicing = found["invoicing enabled"]
    assert invoicing.detail == (f"1 of {total} commitments have subcontractor invoicing "
                                f"disabled: P1003 #{NO_INVOICING_PO}")
    assert "enable subcontractor invoicing" in invoicing.fix

    tiers = found["change-order tier"]
    assert tiers.detail == "single-tier: P1001, P1002; 2-tier: P1003; 3-tier: P1004"
    assert "P1003, P1004 will be held" in tiers.fix

    assert found["write mode"].level == OK
    assert found["write mode"].detail == "live: runs write to Procore and X3"
    assert found["procore rate limit"].level == OK
    assert found["procore rate limit"].detail.startswith("limit 1000, remaining ")

    # read-only: no write call on either system (X3 GraphQL queries are POSTs that read)
    assert api_writes(day_one["procore"]) == []
    procore_calls = [(c["method"], c["path"]) for c in sandbox_calls(day_one["procore"])]
    assert ("POST", "/oauth/token") in procore_calls
    assert {m for m, _p in procore_calls} == {"GET", "POST"}
    shows = [p for m, p in procore_calls if p.startswith("/rest/v1.0/purchase_order_contracts/")]
    assert len(shows) == 4  # the tier: one Show per project that has a commitment
    lists = [p for m, p in procore_calls if p == "/rest/v1.0/purchase_order_contracts"]
    assert len(lists) == 4  # one list per matched project
    x3_calls = sandbox_calls(day_one["sage_x3"])
    assert x3_calls
    if api == "rest":
        assert api_writes(day_one["sage_x3"]) == []
    else:
        assert {(c["method"], c["path"]) for c in x3_calls
                if c["path"].startswith(("/api1/", "/xtrem/"))} == {("POST", "/xtrem/api")}


def test_cli_prints_warnings_with_fixes_and_exits_zero(day_one):
    command = [str(Path(sys.executable).parent / "mlc-dagster"), "ping"]
    done = subprocess.run(command, env={**os.environ, **env_for(day_one)}, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("ok   procore token ") for line in lines), done.stdout
    warns = [i for i, line in enumerate(lines) if line.startswith("WARN ")]
    assert len(warns) == 6, done.stdout
    assert all(lines[i + 1].lstrip().startswith("fix: ") for i in warns), done.stdout
    assert not any(line.startswith("FAIL") for line in lines)
    assert lines[-1] == "13 ok, 6 warnings, 0 failed", done.stdout
    assert FOREIGN[0] in done.stdout


def test_a_clean_universe_passes_without_warnings(sandboxes):
    """Nothing in Procore yet, every X3 project matched: every row ok."""
    rows = run_ping(env_for(sandboxes))
    assert [r for r in rows if r.level != OK] == [], format_report(rows)
    found = by_check(rows)
    assert found["change-order tier"].detail == (
        "unknown until the first commitment exists: P1001, P1002, P1003, P1004")
    assert found["project matching"].detail.startswith(
        "all 4 X3 projects (24 POs) match a Procore project by project_number")


def test_project_matching_follows_the_configured_table(day_one, tmp_path):
    table = tmp_path / "projects.csv"
    table.write_text("x3_project,procore_project\n"
                     + "".join(f"{p},{p}\n" for p in PROJECT_ID)
                     + f"{UNKNOWN_X3_PROJECT},{NEW_PROCORE_PROJECT}\n")
    rows = by_check(run_ping(env_for(day_one, MLC_PROJECT_MATCH="table",
                                     MLC_PROJECT_MAP_CSV=str(table))))
    match = rows["project matching"]
    assert match.level == OK, match
    assert match.detail == ("all 5 X3 projects (26 POs) match a Procore project by table; "
                            "every active Procore project has an X3 project")
    assert rows["procore commitments"].detail == f"{len(COMMITMENTS)} commitments in 5 matched " \
                                                 "projects"
    assert rows["change-order tier"].detail.endswith(
        f"unknown until the first commitment exists: {NEW_PROCORE_PROJECT}")


@pytest.mark.parametrize("overrides, fix", [
    ({"MLC_PROJECT_MATCH": "project_code"}, "MLC_PROJECT_MATCH"),
    ({"MLC_PROJECT_MATCH": "table"}, "MLC_PROJECT_MAP_CSV"),
])
def test_a_bad_project_rule_fails_its_row_only(day_one, overrides, fix):
    rows = run_ping(env_for(day_one, **overrides))
    match = by_check(rows)["project matching"]
    assert match.level == FAIL and fix in match.fix, match
    assert [r.check for r in rows if r.level == FAIL] == ["project matching"]
    assert exit_code(rows) == 1


# --- real failures ------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, failing", [
    ({"PROCORE_CLIENT_SECRET": "not-the-secret"}, "procore token"),
    ({"MLC_WRITE_MODE": "bogus"}, "write mode"),
    ({"MLC_X3_INVOICE_STATUS_FIELD": "ZSTATUS"}, "sage x3 rest purchase_invoice fields"),
])
def test_a_real_failure_exits_non_zero_and_the_other_checks_still_run(day_one, overrides,
                                                                       failing):
    rows = run_ping(env_for(day_one, **overrides))
    found = by_check(rows)
    assert [r.check for r in rows if r.level == FAIL] == [failing], format_report(rows)
    assert found[failing].fix
    assert exit_code(rows) == 1
    assert found["sage x3 rest supplier"].level == OK  # one failure stops nothing else
    if failing == "procore token":
        assert found["procore go-live checks"].level == WARN
        assert found["procore go-live checks"].detail.startswith("skipped")
        assert "project matching" not in found
        assert "not-the-secret" not in format_report(rows)
    else:
        assert found["hand-entered commitments"].level == WARN
    assert api_writes(day_one["procore"]) == [] and api_writes(day_one["sage_x3"]) == []


def test_x3_unreadable_still_checks_what_procore_holds(day_one):
    """X3 refuses the PO and supplier queries: those rows fail, and the Procore checks run
    over every active project, saying what they could not check."""
    faults = httpx.post(f"{day_one['sage_x3'].url}/_sandbox/faults", json={
        "route": "GET /(PORDER|BPSUPPLIER)$", "status": 403, "count": -1})
    faults.raise_for_status()
    rows = run_ping(env_for(day_one))
    found = by_check(rows)
    assert [r.check for r in rows if r.level == FAIL] == [
        "sage x3 rest purchase_order", "sage x3 rest supplier"], format_report(rows)
    assert found["sage x3 rest purchase_invoice fields"].level == OK
    assert found["project matching"].level == WARN
    assert found["project matching"].detail.startswith("not checked")
    assert found["procore commitments"].detail == (
        f"{len(COMMITMENTS)} commitments in 5 active projects (X3 projects unknown)")
    assert found["other integrations' vendors"].detail.startswith("not checked")
    assert found["other integrations' commitments"].detail.endswith(FOREIGN[0])
    assert found["invoicing enabled"].level == WARN
    assert exit_code(rows) == 1


def test_a_nearly_spent_rate_limit_is_a_warning_with_the_numbers(day_one):
    """Another job has used the hour's allowance: the row says how much is left; the reads
    the client will not wait an hour for fail, saying why."""
    url = day_one["procore"].url
    httpx.post(f"{url}/_sandbox/config", json={"hourly_limit": 50}).raise_for_status()
    other_job = ProcoreApi(url)  # its token: 1 request
    for _ in range(44):
        other_job.projects()
    rows = run_ping(env_for(day_one))
    found = by_check(rows)
    limit = found["procore rate limit"]
    assert limit.level == WARN, limit
    # 4 left after ping's token; ping's reads spend them rather than spread them over the
    # hour (a wait it would not sit through), so the row shows what the last answer said
    assert re.match(r"limit 50, remaining [0-4] \(resets in ", limit.detail), limit.detail
    assert "less than 10% left" in limit.detail and "wait for the reset" in limit.fix
    # the reads made after the allowance ran out fail, saying why (which ones depends on how
    # many of the 4 calls left ping's earlier reads used)
    waited = [r for r in rows if r.level == FAIL and "WaitTooLong" in r.detail]
    assert waited and all("rate limit" in r.fix for r in waited), rows
    assert exit_code(rows) == 1


# --- the rules, on their own ----------------------------------------------------------------------

def test_write_mode_values():
    assert write_mode_row({}).detail == "live: runs write to Procore and X3"
    assert write_mode_row({"MLC_WRITE_MODE": "preview"}).detail == "preview: nothing will be written"
    bad = write_mode_row({"MLC_WRITE_MODE": "dry"})
    assert bad.level == FAIL and bad.fix == "set MLC_WRITE_MODE=preview or live"


@pytest.mark.parametrize("value", ["live", "preview", " Preview ", "", "LIVE", "bogus", "dry"])
def test_write_mode_is_read_as_the_jobs_read_it(monkeypatch, value):
    from mlc_dagster.settings import env_write_mode

    monkeypatch.setenv("MLC_WRITE_MODE", value)
    try:
        jobs_mode = env_write_mode()
    except ValueError:
        jobs_mode = None
    row = write_mode_row({"MLC_WRITE_MODE": value})
    assert (row.level == OK) == (jobs_mode is not None), row
    assert jobs_mode is None or row.detail.startswith(f"{jobs_mode}: ")


@pytest.mark.parametrize("headers, level, detail", [
    ({"X-Rate-Limit-Limit": "600", "X-Rate-Limit-Remaining": "60",
      "X-Rate-Limit-Reset": "1100"}, OK, "limit 600, remaining 60 (resets in 100 s)"),
    ({"X-Rate-Limit-Limit": "600", "X-Rate-Limit-Remaining": "59",
      "X-Rate-Limit-Reset": "1100"}, WARN, "limit 600, remaining 59 (resets in 100 s)"),
    ({}, WARN, "Procore sent no X-Rate-Limit-Limit"),
    (None, WARN, "Procore sent no X-Rate-Limit-Limit"),
    ({"X-Rate-Limit-Limit": "600", "X-Rate-Limit-Remaining": "n/a",
      "X-Rate-Limit-Reset": "1100"}, WARN, "Procore sent no X-Rate-Limit-Limit"),
])
def test_rate_limit_threshold(headers, level, detail):
    row = rate_limit_row(headers, now=1000.0)
    assert row.level == level and row.detail.startswith(detail), row


def test_project_matching_counts_both_sides():
    from collections import Counter

    projects = [{"id": 1, "project_number": "A", "active": True},
                {"id": 2, "project_number": "B", "active": True},
                {"id": 3, "project_number": "C", "active": False}]
    row, matched = project_matching(Counter({"A": 3, "C": 1, "Z": 2}), 1, projects,
                                    "project_number", None)
    assert matched == {1: "A"}
    assert row.level == WARN
    assert row.detail == ("2 of 3 X3 projects match no active Procore project by project_number:"
                          " C (1 PO), Z (2 POs); 1 Procore project has no X3 project (B); "
                          "1 PO without a project code (held)")


def test_tier_from_the_show_response():
    shows = {"A": {"change_order_packages": []},
             "B": {"change_order_packages": [], "potential_change_orders": []},
             "C": {}}
    row = tier_row(shows, ["D"])
    assert row.level == WARN
    assert row.detail == ("single-tier: A; 2-tier: B; tier not shown: C; "
                          "unknown until the first commitment exists: D")
    assert tier_row({"A": shows["A"]}, ["D"]).level == OK
    assert ProjectCommitments(1, "A", []).commitments == []
