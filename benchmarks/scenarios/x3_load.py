"""Scenario `x3_load` (issue #15, part 4): Sage X3 calls per changed PO, on REST and GraphQL.

For each API (SAGE_X3_API=rest, then graphql) a fresh pair of sandboxes is backfilled
(unmeasured, no latency); then, for each size in `--x3-load-changes`, that many synced POs
are amended through the X3 REST API and one sync run is measured. Its X3 calls of the PO
flow are split by kind:

- list pages: the header query of changed POs (REST `PORDER` `$query`, GraphQL
  `purchaseOrder` query), one per page of `page_size` records;
- detail reads: a PO with its lines (REST `PORDER('<key>')` `$details`; GraphQL only for POs
  changed by their lines alone, a query by `_id`);
- line-stamp polls: the query of lines stamped since the last run (REST `PORDERQ`, GraphQL
  `purchaseOrderLine`; issue 13: X3 does not document that a line-only change moves the
  header stamp).

Targets (issue #15): per changed PO, REST <= 1 + 1/page (a detail read each, plus a share of
a list page) and GraphQL <= 1/page (its list query carries the lines). REST kinds come from
the X3 sandbox's call log (the path says which); GraphQL sends every query to one path, so
its kinds are read from the queries the connector's client sends (a pass-through wrapper of
`SageX3GraphQLClient._execute`, changing nothing), checked against the sandbox's count.
The largest number of detail reads in flight at once, from the call log's times, shows the
read concurrency (MLC_X3_READ_CONCURRENCY, default 4).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import random
import re
import threading
from collections import Counter
from pathlib import Path

from benchmarks.config import BenchConfig
from benchmarks.harness import SyncSession, synced_contracts
from benchmarks.report_rows import AddRow
from benchmarks.scenarios.delta import amend_pos

PO_CLASS, PO_LINE_CLASS = "PORDER", "PORDERQ"  # the sandbox's REST classes of POs and lines
PO_NODE, PO_LINE_NODE = "purchaseOrder", "purchaseOrderLine"  # and GraphQL nodes
KINDS = ("list_pages", "detail_reads", "line_stamp_polls")
_REST = re.compile(r"^GET /api1/x3/erp/[^/]+/(?P<cls>[A-Z0-9_]+)(?P<key>\('\{key\}'\))?$")
_NODE = re.compile(r"\)\s*\{\s*\w+\s*\{\s*(?P<node>\w+)\s*\{\s*query\(")


def page_size() -> int:
    """The page size the connector asks X3 for when it lists changes."""
    from mlc_dagster.resources.sage_x3_client import SageX3Client

    return inspect.signature(SageX3Client.changed).parameters["page_size"].default


def read_concurrency_setting() -> str:
    return os.environ.get("MLC_X3_READ_CONCURRENCY") or "4 (default)"


def rest_kind(endpoint: str) -> str:
    """`GET /api1/x3/erp/SEED/PORDER('{key}')` -> detail_reads, and so on; `other:...`."""
    match = _REST.match(endpoint)
    if match and match["cls"] == PO_CLASS:
        return "detail_reads" if match["key"] else "list_pages"
    if match and match["cls"] == PO_LINE_CLASS and not match["key"]:
        return "line_stamp_polls"
    return f"other: {endpoint}"


def graphql_kind(query: str, variables: dict) -> str:
    """The kind of one GraphQL request, from its query text and filter."""
    if query.lstrip().startswith("mutation"):
        return "other: mutation"
    match = _NODE.search(query)
    node = match["node"] if match else "?"
    if node == PO_NODE:
        by_id = "_id:{_in:" in str((variables or {}).get("filter") or "")
        return "detail_reads" if by_id else "list_pages"
    if node == PO_LINE_NODE:
        return "line_stamp_polls"
    return f"other: {node}"


@contextlib.contextmanager
def graphql_requests():
    """Every GraphQL request the connector's client sends meanwhile, as (kind, ...) rows.
    A pass-through wrapper: the request goes out unchanged."""
    from mlc_dagster.resources.sage_x3_client import SageX3GraphQLClient

    seen: list[str] = []
    lock = threading.Lock()
    original = SageX3GraphQLClient._execute

    def execute(self, query, variables, **kwargs):
        with lock:
            seen.append(graphql_kind(query, variables))
        return original(self, query, variables, **kwargs)

    SageX3GraphQLClient._execute = execute
    try:
        yield seen
    finally:
        SageX3GraphQLClient._execute = original


def max_in_flight(calls: list[dict]) -> int:
    """The most calls open at one moment, from each call's start and end."""
    events = []
    for c in calls:
        end = c["at"]
        events += [(end - (c.get("duration_ms") or 0) / 1000, 1), (end, -1)]
    best = current = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        current += step
        best = max(best, current)
    return best


def targets(api: str, changed: int, page: int) -> dict:
    """Issue #15's ceilings for the PO flow's X3 calls of a run with `changed` POs."""
    pages = math.ceil(changed / page) if changed else 1
    return {"calls": (changed if api == "rest" else 0) + pages,
            "text": "≤ 1 + 1/page per PO" if api == "rest" else "≤ 1/page"}


def measure_run(session: SyncSession, api: str, changed: int, page: int) -> dict:
    from mlc_dagster.resources.http_core import path_template

    with graphql_requests() as graphql:
        run = session.measured_run()
    calls = session.x3_log.since_mark()
    if api == "rest":
        kinds = Counter(rest_kind(f"{c['method']} {path_template(c['path'])}") for c in calls)
    else:
        kinds = Counter(graphql)
        rest_calls = [c for c in calls if c["path"] != "/xtrem/api"]
        kinds.update(rest_kind(f"{c['method']} {path_template(c['path'])}") for c in rest_calls)
    po_flow = {k: kinds.get(k, 0) for k in KINDS}
    po_total = sum(po_flow.values())
    ceiling = targets(api, changed, page)
    without_polls = po_total - po_flow["line_stamp_polls"]
    details = [c for c in calls if rest_kind(f"{c['method']} {path_template(c['path'])}")
               == "detail_reads"]
    staged = run["x3_read"]
    return {
        "changed_pos": changed, "success": run["success"], "failures": run["failures"],
        "wall_s": run["wall_s"], "x3_calls": len(calls),
        "sandbox_graphql_calls": sum(c["path"] == "/xtrem/api" for c in calls),
        "client_graphql_requests": len(graphql),
        "po_flow": po_flow, "po_flow_total": po_total,
        "other": {k: n for k, n in kinds.items() if k not in KINDS},
        "per_changed_po": ({k: round(n / changed, 4) for k, n in
                            {**po_flow, "total": po_total}.items()} if changed else None),
        "records_listed": staged.get("x3_records_read"),
        "records_changed": staged.get("x3_records_changed"),
        "target_calls": ceiling["calls"], "target": ceiling["text"],
        "met": po_total <= ceiling["calls"],
        "met_without_line_stamp_polls": without_polls <= ceiling["calls"],
        "max_detail_reads_in_flight": max_in_flight(details),
        "procore_writes": run["procore"]["writes"],
    }


def measure_api(cfg: BenchConfig, workdir: Path, api: str) -> dict:
    rng = random.Random(cfg.seed + 15)
    page = page_size()
    with SyncSession(cfg, workdir, latency_ms=0, env={"SAGE_X3_API": api},
                           shape="x3_load") as session:
        setup = session.measured_run()
        if not setup["success"]:
            raise RuntimeError(f"x3_load {api}: setup backfill failed: {setup['failures']}")
        session.set_latency(cfg.latency_ms, cfg.x3_latency)
        pool = sorted(synced_contracts(session.handles["procore"]))
        rng.shuffle(pool)
        if sum(cfg.x3_load_changes) > len(pool):
            raise ValueError(f"x3_load: {sum(cfg.x3_load_changes)} POs to amend, only "
                             f"{len(pool)} synced at scale {cfg.x3_load_scale!r}")
        runs = []
        for n in cfg.x3_load_changes:
            chosen, pool = pool[:n], pool[n:]
            amend_pos(session.handles["sage_x3"].url, chosen)
            runs.append(measure_run(session, api, n, page))
    return {"api": api, "setup_backfill_s": setup["wall_s"],
            "pos_in_x3": len(session.seed.x3_purchase_orders), "runs": runs}


def bench_x3_load(cfg: BenchConfig, workdir: Path) -> dict:
    return {"page_size": page_size(), "read_concurrency": read_concurrency_setting(),
            "latency_ms": cfg.x3_latency, "scale": cfg.x3_load_scale,
            "apis": {api: measure_api(cfg, workdir / api, api) for api in cfg.x3_load_apis}}


def summary_rows(x: dict, add: AddRow) -> None:
    label = "7 X3 load"
    add(label, "list page size; read concurrency (setting; most detail reads in flight)",
        f"{x['page_size']}; {x['read_concurrency']}; " + ", ".join(
            f"{api} {max((r['max_detail_reads_in_flight'] for r in a['runs']), default=0)}"
            for api, a in x["apis"].items()))
    for api, a in x["apis"].items():
        for r in a["runs"]:
            f = r["po_flow"]
            where = f"{label}, {api}"
            if not r["changed_pos"]:
                add(where, "no change: list pages / detail reads / line-stamp polls",
                    f"{f['list_pages']} / {f['detail_reads']} / {f['line_stamp_polls']}")
                continue
            per = r["per_changed_po"]
            add(where, f"{r['changed_pos']} POs changed: list pages / detail reads / "
                "line-stamp polls (per changed PO)",
                f"{f['list_pages']} / {f['detail_reads']} / {f['line_stamp_polls']} "
                f"({per['list_pages']:.3f} / {per['detail_reads']:.3f} / "
                f"{per['line_stamp_polls']:.3f})")
            add(where, f"{r['changed_pos']} POs changed: PO-flow X3 calls per changed PO "
                "(ceiling)", f"{per['total']:.3f} ({r['target_calls'] / r['changed_pos']:.3f})",
                r["target"], r["met"])
            without_polls = r["po_flow_total"] - f["line_stamp_polls"]
            add(where, "… without the line-stamp polls",
                f"{without_polls / r['changed_pos']:.3f}",
                r["target"], r["met_without_line_stamp_polls"])
