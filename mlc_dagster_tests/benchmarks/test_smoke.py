"""CI smoke for the benchmarks, and the guard on Procore call counts (issue #15, part 5).

A tiny run of every in-process scenario (4 projects x 12 POs x 3 lines, no latency) through
the benchmark's own functions (benchmarks/suite.py, report.py, floor.py, scenarios/): the
real Dagster job against the sandboxes. The change-latency scenario (a `dagster dev`
subprocess for minutes) is not run here. Nothing here asserts a time.

The guard counts calls and never times them. The backfill must not make more Procore calls, on
any endpoint, than the floor that benchmarks/floor.py computes from the seed and the mapping
CSV alone, never from what the run did:

    token 1
    + reference reads: projects pages + vendors pages + line item types pages
      + cost codes pages per Procore project                 (pages of 100)
    + per project with POs to write: 1 adoption scan (an empty commitments list, issue #14)
      + ceil(POs / 1000) header syncs
    + per PO to write: 1 line-item sync (ceil(lines / 1000))
    + invoices, per project with a final invoice to send: 1 requisitions listing and
      1 billing-periods read; per (invoice, PO): 1 POST; per commitment with invoicing
      disabled that an invoice tries: that POST is refused, and 1 read of the commitment

A PO is written when its project, its supplier's active vendor, every line's GL mapping and
the mapped cost code (in the project) and cost type all exist. On this seed, 47 of the 48 POs
are written: PO26000009's supplier SUP039 has no Procore vendor. 12 of the 13 invoices are
final (PI26000008 is not), all billing POs that are written: 10 in P1001 and 2 in P1002.
PO26000013 (P1002) refuses invoices: its POST is refused, then the commitment is read.
So the floor is 1 + (1 + 1 + 1 + 4) + (4 + 4) + 47 + (2 + 2 + 12 + 1) = 80 calls.

Slack allowed, each with its reason: one requisitions listing per commitment on a project
where a run invoices 2-4 commitments (P1002 here: +1). Below 5 commitments the connector lists
each one, which keeps the answers small on projects with many requisitions (benchmarks/floor.py,
PROJECT_LISTING_MIN_COMMITMENTS). Nothing else. A run below the floor fails too, because then
the floor is wrong.

A no-change run, and the same run one fallback-schedule gap (900 s) later, must make no
Procore call and no write on either system. The X3 side is checked from the call log and by a
digest of every X3 record. Invoices held because their commitment refuses invoices are
re-checked at most every MLC_INVOICING_RECHECK_SECONDS (1 h), not on every run (until issue
15 that cost a token and a read per such commitment on every run: the former known gap, now
0). Each delta run stays at its own floor (a token, one header sync per project touched, one
line-item sync per amended PO).

Each guard is also shown to fail: a writer that syncs lines twice, the old 600 s reuse window
(the fallback run 900 s later re-reads the reference data), reference data that is never
reused, a run that writes to X3, and content hashes that never match.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from benchmarks import floor as call_floor
from benchmarks import report, suite
from benchmarks.config import BenchConfig, build_seed_for
from benchmarks.harness import SyncSession
from benchmarks.scenarios import backfill, delta, noop

pytestmark = pytest.mark.slow

SMOKE = {"projects": 4, "pos_per_project": 12, "lines_per_po": 3}
# Hand-derived from the seed (see the module docstring); pins benchmarks/floor.py itself.
SMOKE_FLOOR = {
    "POST /oauth/token": 1, "GET /rest/v1.0/projects": 1, "GET /rest/v1.0/vendors": 1,
    "GET /rest/v1.0/line_item_types": 1, "GET /rest/v1.0/cost_codes": 4,
    "GET /rest/v1.0/purchase_order_contracts": 4,
    "PATCH /rest/v1.0/purchase_order_contracts/sync": 4,
    "PATCH /rest/v1.0/purchase_order_contracts/{id}/line_items/sync": 47,
    "GET /rest/v1.1/requisitions": 2, "GET /rest/v1.0/projects/{id}/billing_periods": 2,
    "POST /rest/v1.1/requisitions": 12, "GET /rest/v1.0/purchase_order_contracts/{id}": 1,
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bench")
    cfg = BenchConfig(
        **SMOKE, latency_ms=0, delta_fractions=(0.05, 0.1), staging_scale="small",
        staging_projects=2, staging_pos_per_project=10, staging_lines_per_po=3,
        staging_subprocess=False, staging_profile_fraction=0.5)
    results = suite.run_benchmarks(
        cfg, ["backfill", "noop", "delta", "staging", "baseline"], isolate=False,
        workdir=workdir / "work", name="smoke")
    json_path, md_path = report.write_results(results, workdir / "results", "smoke")
    return results, json_path, md_path


def hourly_recheck(results) -> dict[str, int]:
    """What the hourly re-check of invoices held on commitments that refuse invoices costs,
    counted from the seed (Floor.recheck): a token and one read of PO26000013's commitment."""
    return results["scenarios"]["backfill"]["floor"]["recheck"]


def test_writes_json_and_markdown_with_machine_and_settings(smoke):
    results, json_path, md_path = smoke
    assert results["errors"] == {}
    data = json.loads(json_path.read_text())
    for key in ("machine", "versions", "git", "settings", "scenarios", "summary"):
        assert key in data
    assert data["machine"]["cpu_count"] >= 1
    assert {"python", "dagster", "pandas"} <= set(data["versions"])
    assert data["settings"]["latency_ms"] == 0
    text = md_path.read_text()
    assert "| Scenario | Metric | Value | Target | Met |" in text
    assert "calls / floor" in text and "Floor (benchmarks/floor.py" in text


def test_the_floor_is_computed_from_the_seed_as_the_docstring_says():
    seed = build_seed_for(BenchConfig(**SMOKE))
    floor = call_floor.backfill_floor(seed, seed.mapping_csv)
    assert dict(floor.calls) == SMOKE_FLOOR and floor.total == 80
    assert floor.held_pos == {"PO26000009": "supplier SUP039 is not an active Procore vendor"}
    assert dict(floor.allowance) == {"GET /rest/v1.1/requisitions": 1}


def test_floor_check_reports_calls_above_and_below_the_floor():
    floor = call_floor.Floor(Counter({call_floor.TOKEN: 1, call_floor.LINE_SYNC: 3}))
    floor.allowance[call_floor.REQUISITION_LIST] = 1
    check = call_floor.floor_check(
        {"POST /oauth/token": 2, "GET /rest/v1.1/requisitions": 2,
         "PATCH /rest/v1.0/purchase_order_contracts/{id}/line_items/sync": 2}, floor)
    assert check["over"] == {"POST /oauth/token": 1, "GET /rest/v1.1/requisitions": 1}
    assert check["under"] == {call_floor.LINE_SYNC: 1}
    assert check["violations"] == [
        "GET /rest/v1.1/requisitions: 2 calls, floor 0 + 1 allowed (+1)",
        "POST /oauth/token: 2 calls, floor 1 (+1)"]


def test_backfill_makes_no_procore_call_above_the_independent_floor(smoke):
    results, _, _ = smoke
    for key in ("backfill", "backfill_rate_limited"):
        b = results["scenarios"][key]
        assert b["success"], b["failures"]
        assert b["floor"]["by_endpoint"] == SMOKE_FLOOR
        check = b["floor_check"]
        assert check["violations"] == [], f"{key}: Procore calls above the floor"
        assert check["under"] == {}, f"{key}: fewer calls than the floor: the floor is wrong"
        assert check["calls"] <= check["floor"] + sum(check["allowance"].values())
        # ... and the POs in Procore are the ones the floor counted
        assert b["pos_check"] == {"expected": 47, "missing": [], "unexpected": []}
        assert b["shape"]["pos_synced"] == 47
        assert b["procore"]["status_429"] == 0
        assert b["peak_rss_mib"] > 0
    assert "pacing" in results["scenarios"]["backfill_rate_limited"]


def test_noop_run_makes_no_procore_call_and_writes_nothing(smoke):
    results, _, _ = smoke
    for key in ("noop", "noop_after_delta"):
        quiet = results["scenarios"][key]
        assert quiet["success"] and quiet["fallback_tick"]["success"]
        assert quiet["fallback_tick"]["later_s"] == 900
        assert hourly_recheck(results) == {call_floor.CONTRACT_READ: 1, call_floor.TOKEN: 1}
        assert noop.noop_violations(quiet) == []  # no tolerance left: 0 Procore calls
        assert quiet["procore"]["total"] == quiet["fallback_tick"]["procore"]["total"] == 0
        for run in (quiet, quiet["fallback_tick"]):
            assert run["procore"]["writes"] == 0 and run["x3"]["writes"] == 0
            assert run["x3_state_unchanged"] is True
            assert sorted(run["reference_reused"]) == [
                "procore_cost_codes", "procore_line_item_types", "procore_projects",
                "procore_vendors"]
        assert quiet["x3"]["total"] >= 1
        poll = quiet["sensor_poll"]
        assert poll["sensors"] == ["x3_purchase_invoice_changes", "x3_purchase_order_changes"]
        assert poll["run_requests"] == 0 and poll["procore"]["total"] == 0
        # PO headers and PO line stamps (a line-only change need not move the header stamp),
        # and invoice headers: one query each.
        assert poll["x3"]["total"] == 3


def test_delta_runs_stay_at_their_floor(smoke):
    results, _, _ = smoke
    delta = results["scenarios"]["delta"]
    assert [r["fraction"] for r in delta["runs"]] == [0.05, 0.1]
    for run in delta["runs"]:
        assert run["success"]
        assert run["floor_check"]["over"] == {}
        assert run["floor_check"]["under"] == {}
        assert "calls_per_changed_po" in run
    assert "procore_calls" in delta["scaling"]


def test_staging_and_baseline_report(smoke):
    results, _, _ = smoke
    staging = results["scenarios"]["staging"]
    assert staging["lines"] == 2 * 10 * 3
    # the records are what the X3 client makes of a `$details` row: they stage and map (until
    # issue 15 every one was quarantined for a blank mapping key, and nothing noticed)
    assert staging["valid_pos"] == staging["pos"] == staging["commitments"] + staging["held_pos"]
    assert staging["commitments"] > 0 and staging["hashes"] == staging["commitments"]
    assert staging["peak_rss_mib"] > 0
    assert set(staging["phases"]) == {"snapshot_load", "staging_and_validation", "mapping",
                                      "content_hashes"}
    baseline = results["scenarios"]["baseline"]
    assert baseline["procore_calls"] > results["scenarios"]["backfill"]["procore"]["total"]
    assert "vs_baseline" in results["comparisons"]


def test_merge_takes_later_scenarios_and_flags_mixed_commits(smoke):
    results, _, _ = smoke
    rerun = {**results, "name": "rerun", "scenarios": {"noop": results["scenarios"]["noop"]},
             "git": {**results["git"], "commit": "f" * 40}}
    merged = report.merge_results([results, rerun], "merged")
    assert merged["scenarios"]["noop"]["from_run"] == "rerun"
    assert merged["scenarios"]["backfill"]["from_run"] == "smoke"
    assert merged["commits"] == sorted({results["git"]["commit"], "f" * 40} - {None})
    text = report.to_markdown(merged)
    assert "Merged from:" in text and "`ffffffffffff`)" in text
    same = report.merge_results([results, {**results, "name": "again"}], "merged")
    assert len(same["commits"]) == 1 and same["errors"] == {}


# --- the guards fail when the connector is broken on purpose -------------------------------

@pytest.fixture
def small_session(tmp_path):
    cfg = BenchConfig(projects=2, pos_per_project=10, lines_per_po=3, latency_ms=0,
                      rate_compression=0)
    with SyncSession(cfg, tmp_path / "sync") as session:
        yield session


def test_floor_guard_fails_when_the_writer_syncs_lines_twice(small_session, monkeypatch):
    from mlc_dagster.resources.procore_client import ProcoreClient

    sync_lines = ProcoreClient.sync_contract_line_items

    def twice(self, *args, **kwargs):
        sync_lines(self, *args, **kwargs)
        return sync_lines(self, *args, **kwargs)

    monkeypatch.setattr(ProcoreClient, "sync_contract_line_items", twice)
    b = backfill.bench_backfill(small_session)
    assert b["success"]  # the commitments are right: only the count betrays it
    assert b["floor_check"]["over"] == {call_floor.LINE_SYNC: 19}
    assert b["floor_check"]["violations"] == [
        f"{call_floor.LINE_SYNC}: 38 calls, floor 19 (+19)"]


def test_noop_guard_fails_on_reads_writes_and_x3_writes(small_session, monkeypatch):
    from mlc_dagster.defs.reference import assets as reference_assets

    assert backfill.bench_backfill(small_session)["success"]
    clean = noop.bench_noop(small_session)
    assert clean["violations"] == []  # this seed has no commitment refusing invoices

    # 0. the old 600 s reuse window: the run one fallback gap (900 s) later reads the
    # reference data again (token, projects, vendors, line item types, 2 x cost codes)
    monkeypatch.setenv("MLC_REFERENCE_MAX_AGE_SECONDS", "600")
    old_window = noop.bench_noop(small_session)
    assert old_window["violations"] == [
        "run one fallback tick later: 6 Procore call(s): GET /rest/v1.0/cost_codes x2, "
        "GET /rest/v1.0/line_item_types x1, GET /rest/v1.0/projects x1, "
        "GET /rest/v1.0/vendors x1, POST /oauth/token x1"]
    monkeypatch.undo()

    # 1. reference data never reused: the no-change runs read Procore (and only read)
    monkeypatch.setattr(reference_assets, "recent_materialization",
                        lambda *args: None)
    reads = noop.bench_noop(small_session)
    assert [v.split(":")[0] for v in reads["violations"]] == [
        "whole run", "run one fallback tick later"]
    assert all("Procore call(s)" in v and "/rest/v1.0/cost_codes" in v
               for v in reads["violations"])
    monkeypatch.undo()

    # 2. a run that writes to X3: an edit through the X3 REST API from the PO step's own
    # X3 read (the sensors do not call it)
    from mlc_dagster.defs.purchase_orders import assets as po_assets

    refresh_from_x3 = po_assets.refresh_from_x3

    def edit_then_refresh(client, store, entity, **kwargs):
        delta.amend_pos(small_session.handles["sage_x3"].url, ["PO26000001"])
        return refresh_from_x3(client, store, entity, **kwargs)

    monkeypatch.setattr(po_assets, "refresh_from_x3", edit_then_refresh)
    x3 = noop.bench_noop(small_session)
    for label in ("whole run", "run one fallback tick later"):
        assert f"{label}: 1 X3 write call(s)" in x3["violations"]
        assert f"{label}: X3 records changed" in x3["violations"]
    assert not any(v.startswith("sensor poll") for v in x3["violations"])
    monkeypatch.undo()

    # 3. content hashes that never match, every PO staged: every PO is written again
    from mlc_dagster.defs.purchase_orders import desired as commitments
    from mlc_dagster.x3_reads import scope

    counter = iter(range(10**6))
    monkeypatch.setattr(commitments, "content_hash", lambda payload: f"changed-{next(counter)}")
    monkeypatch.setattr(scope, "read_planned", lambda store, entity: None)
    rewrites = noop.bench_noop(small_session)
    assert "whole run: 21 Procore write(s)" in rewrites["violations"]  # 2 headers + 19 POs
    assert "run one fallback tick later: 21 Procore write(s)" in rewrites["violations"]
