"""CI smoke for benchmarks/run.py: a tiny run of every in-process scenario, no timing asserts.

Keeps the benchmark script working as the connector changes: 2 projects x 10 POs x 3 lines,
no latency, through the script's own functions (the real Dagster job against the sandboxes).
The change-latency scenario (a `dagster dev` subprocess for minutes) is not run here.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import run as bench

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bench")
    cfg = bench.BenchConfig(
        projects=2, pos_per_project=10, lines_per_po=3, latency_ms=0,
        delta_fractions=(0.05, 0.1), staging_scale="small", staging_projects=2,
        staging_pos_per_project=10, staging_lines_per_po=3, staging_subprocess=False,
        staging_profile_fraction=0.5)
    results = bench.run_benchmarks(
        cfg, ["backfill", "noop", "delta", "staging", "baseline"], isolate=False,
        workdir=workdir / "work", name="smoke")
    json_path, md_path = bench.write_results(results, workdir / "results", "smoke")
    return results, json_path, md_path


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
    assert "calls / floor" in text


def test_backfill_reports_calls_floor_and_memory(smoke):
    results, _, _ = smoke
    for key in ("backfill", "backfill_rate_limited"):
        b = results["scenarios"][key]
        assert b["success"], b["failures"]
        assert b["shape"]["pos_synced"] > 0
        assert b["floor"]["line_item_syncs"] == b["shape"]["pos_synced"]
        assert b["procore"]["by_endpoint"]
        assert b["calls_over_floor"] > 0
        assert b["procore"]["status_429"] == 0
        assert b["peak_rss_mib"] > 0
    assert "pacing" in results["scenarios"]["backfill_rate_limited"]


def test_noop_poll_writes_nothing(smoke):
    results, _, _ = smoke
    for key in ("noop", "noop_after_delta"):
        noop = results["scenarios"][key]
        assert noop["success"]
        assert noop["procore"]["writes"] == 0
        assert noop["x3"]["total"] >= 1
        poll = noop["sensor_poll"]
        assert poll["sensors"] == ["x3_purchase_invoice_changes", "x3_purchase_order_changes"]
        assert poll["run_requests"] == 0 and poll["procore"]["total"] == 0
        # PO headers and PO line stamps (a line-only change need not move the header stamp),
        # and invoice headers: one query each.
        assert poll["x3"]["total"] == 3


def test_delta_runs_write_only_for_changed_pos(smoke):
    results, _, _ = smoke
    delta = results["scenarios"]["delta"]
    assert [r["fraction"] for r in delta["runs"]] == [0.05, 0.1]
    for run in delta["runs"]:
        assert run["success"]
        assert run["procore"]["writes"] >= run["changed_pos"]  # one line-item sync each
        assert "calls_per_changed_po" in run
    assert "procore_calls" in delta["scaling"]


def test_staging_and_baseline_report(smoke):
    results, _, _ = smoke
    staging = results["scenarios"]["staging"]
    assert staging["lines"] == 2 * 10 * 3
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
    merged = bench.merge_results([results, rerun], "merged")
    assert merged["scenarios"]["noop"]["from_run"] == "rerun"
    assert merged["scenarios"]["backfill"]["from_run"] == "smoke"
    assert merged["commits"] == sorted({results["git"]["commit"], "f" * 40} - {None})
    text = bench.to_markdown(merged)
    assert "Merged from:" in text and "`ffffffffffff`)" in text
    same = bench.merge_results([results, {**results, "name": "again"}], "merged")
    assert len(same["commits"]) == 1 and same["errors"] == {}
