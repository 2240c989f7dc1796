"""CI guard for issue #15 part 4: Sage X3 calls per changed PO, on REST and on GraphQL.

benchmarks/scenarios/x3_load.py on a tiny seed (2 projects x 10 POs x 3 lines): after a
backfill, a run with nothing changed, then a run after 3 POs were amended through X3 REST.
The PO flow of a run may make, on REST, one list page per 200 changed POs, one detail read
per changed PO (the list view has no lines) and one line-stamp poll page; on GraphQL the same
without the detail reads (the list query carries the lines). Counted from the X3 sandbox's
call log (REST) and from the queries the connector's GraphQL client sends, checked against
that log's count. Plus the pure helpers of benchmarks/limits.py and
benchmarks/scenarios/real_limit.py the reports rely on.
"""

from __future__ import annotations

import pytest

from benchmarks import limits
from benchmarks.config import BenchConfig
from benchmarks.scenarios import real_limit, x3_load


@pytest.mark.slow
@pytest.mark.parametrize("api", ["rest", "graphql"])
def test_x3_calls_per_changed_po(tmp_path, api):
    cfg = BenchConfig(projects=2, pos_per_project=10, lines_per_po=3, latency_ms=0,
                      x3_load_changes=(0, 3))
    measured = x3_load.measure_api(cfg, tmp_path, api)
    quiet, changed = measured["runs"]
    assert quiet["success"] and changed["success"]
    assert quiet["po_flow"] == {"list_pages": 1, "detail_reads": 0, "line_stamp_polls": 1}
    details = 3 if api == "rest" else 0
    assert changed["po_flow"] == {"list_pages": 1, "detail_reads": details,
                                  "line_stamp_polls": 1}
    assert changed["met_without_line_stamp_polls"]
    if api == "graphql":  # every GraphQL request the client sent reached the sandbox
        assert changed["client_graphql_requests"] == changed["sandbox_graphql_calls"]


def test_rest_and_graphql_calls_are_told_apart():
    assert x3_load.rest_kind("GET /api1/x3/erp/SEED/PORDER") == "list_pages"
    assert x3_load.rest_kind("GET /api1/x3/erp/SEED/PORDER('{key}')") == "detail_reads"
    assert x3_load.rest_kind("GET /api1/x3/erp/SEED/PORDERQ") == "line_stamp_polls"
    assert x3_load.rest_kind("GET /api1/x3/erp/SEED/PINVOICE").startswith("other")
    query = ("query($filter: String) { xtremX3Purchasing { purchaseOrder { query(filter: "
             "$filter) { edges { node { _id } } } } } }")
    assert x3_load.graphql_kind(query, {"filter": None}) == "list_pages"
    assert x3_load.graphql_kind(query, {"filter": "{_id:{_in:['A']}}"}) == "detail_reads"
    lines = query.replace("purchaseOrder {", "purchaseOrderLine {")
    assert x3_load.graphql_kind(lines, {}) == "line_stamp_polls"
    assert x3_load.graphql_kind("mutation { x }", {}) == "other: mutation"


def test_window_replay_follows_the_sandbox_rule():
    # a window opens at the first call after the previous one ended
    assert limits.window_counts([0.0, 0.5, 0.99, 1.0, 1.2, 5.0], 1.0) == [3, 2, 1]
    calls = [{"at": 1.0, "duration_ms": 100, "status": 200, "path": "/rest/v1.0/me"},
             {"at": 1.05, "duration_ms": 10, "status": 429, "path": "/rest/v1.0/me"},
             {"at": 2.0, "duration_ms": 0, "status": 200, "path": "/oauth/token"}]
    assert limits.limiter_times(calls, latency_ms=50) == pytest.approx([0.95, 2.05])  # no 429
    assert x3_load.max_in_flight([{"at": 2.0, "duration_ms": 1000},
                                  {"at": 2.5, "duration_ms": 1000},
                                  {"at": 5.0, "duration_ms": 100}]) == 2


def test_compression_check_names_the_largest_sensible_compression():
    sixty = real_limit.compression_check(60)
    assert sixty["spike_wait_below_max_wait"] and sixty["largest_sensible_compression"] == 73
    assert not real_limit.compression_check(80)["spike_wait_below_max_wait"]
    scaled = limits.scaled_limits(60)
    assert (scaled.hourly_limit, scaled.hourly_window_seconds) == (600, 60)
    assert scaled.spike_limit == 25 and abs(scaled.spike_window_seconds - 1 / 6) < 1e-9
    assert scaled.allowed_per_second == 10
