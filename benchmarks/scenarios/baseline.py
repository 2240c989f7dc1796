"""Scenario `baseline` (6): the same backfill done naively, as a simple integration would.

It reads X3 and maps the same way as the connector, then writes with its own HTTP client:
one POST per contract and one POST per line item (the connector's client refuses these
writes). `--baseline-projects N` writes the first N projects only and scales up.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

from benchmarks.calls import CallLog, summarize_calls
from benchmarks.config import BenchConfig, build_seed_for
from benchmarks.harness import configure, started_sandboxes
from benchmarks.limits import UNLIMITED
from benchmarks.machine import Meter, peak_rss_mib, reset_peak_rss
from benchmarks.report_rows import AddRow

CONTRACTS = "/rest/v1.0/purchase_order_contracts"


class NaiveProcoreWriter:
    """How a simple integration writes: its own HTTP client, one POST per contract and one
    per line item. Not the connector's ProcoreClient, which refuses these writes (its
    allow-list of Procore writes has only the batch `sync` endpoints for commitments)."""

    def __init__(self, url: str, company_id: int) -> None:
        import httpx

        from mlc_sandbox.seed import SANDBOX_CREDENTIALS as creds

        token = httpx.post(f"{url}/oauth/token", data={
            "grant_type": "client_credentials", "client_id": creds["procore_client_id"],
            "client_secret": creds["procore_client_secret"]}, timeout=60)
        token.raise_for_status()
        self.http = httpx.Client(base_url=url, timeout=60, headers={
            "Authorization": f"Bearer {token.json()['access_token']}",
            "Procore-Company-Id": str(company_id)})

    def post(self, path: str, body: dict) -> dict:
        response = self.http.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def write(self, commitments) -> None:
        """Each commitment's header, then each of its lines, one POST apiece."""
        for c in commitments:
            status = "Closed" if c.closed else "Draft"
            contract = self.post(CONTRACTS, {
                "project_id": c.project_id,
                "purchase_order_contract": {**c.header, "status": status}})
            for line in c.lines:
                self.post(f"{CONTRACTS}/{contract['id']}/line_items",
                          {"project_id": c.project_id, "line_item": line})

    def close(self) -> None:
        self.http.close()


def bench_baseline(cfg: BenchConfig, workdir: Path) -> dict:
    """The same backfill as a simple integration would write it: read X3 the same way, map
    the same way, then one POST per contract and one POST per line item."""
    from mlc_dagster.defs.purchase_orders.desired import build_desired_commitments
    from mlc_dagster.defs.purchase_orders.gl_map import parse_gl_mapping
    from mlc_dagster.defs.purchase_orders.staging import stage_purchase_orders
    from mlc_dagster.defs.reference.frames import (
        LINE_ITEM_TYPE_COLUMNS,
        PROJECT_COLUMNS,
        VENDOR_COLUMNS,
        cost_codes_frame,
        frame,
    )
    from mlc_dagster.resources.procore_client import ProcoreClient
    from mlc_dagster.resources.sage_x3_client import SageX3RestClient
    from mlc_dagster.settings import read_text, sample_mapping_path
    from mlc_sandbox.seed import COMPANY_ID
    from mlc_sandbox.seed import SANDBOX_CREDENTIALS as creds

    seed = build_seed_for(cfg)
    with started_sandboxes(seed) as handles:
        configure(handles, latency_ms=cfg.latency_ms, x3_latency_ms=cfg.x3_latency,
                  limits=UNLIMITED)
        procore_log, x3_log = CallLog(handles["procore"]), CallLog(handles["sage_x3"])
        url = handles["procore"].url
        procore = ProcoreClient(url, url, creds["procore_client_id"],
                                creds["procore_client_secret"], COMPANY_ID)
        x3 = SageX3RestClient(handles["sage_x3"].url, creds["x3_endpoint"], creds["x3_user"],
                              creds["x3_password"])
        gc.collect()
        reset_peak_rss()
        meter = Meter()
        headers = [r for page in x3.changed("purchase_order", None) for r in page]
        records = x3.read_purchase_orders([h["po_number"] for h in headers])
        staged = stage_purchase_orders(records)
        projects = frame(procore.projects(), PROJECT_COLUMNS)
        desired = build_desired_commitments(
            staged, parse_gl_mapping(read_text(sample_mapping_path())), projects,
            frame(procore.vendors(), VENDOR_COLUMNS),
            cost_codes_frame({int(p): procore.project_cost_codes(int(p))
                              for p in projects["id"]}),
            frame(procore.line_item_types(), LINE_ITEM_TYPE_COLUMNS))
        commitments = desired.commitments
        if cfg.baseline_projects:
            keep = set(projects["id"].head(cfg.baseline_projects).astype(int))
            commitments = [c for c in commitments if c.project_id in keep]
        read_s = time.perf_counter() - meter.t0
        procore_log.mark()
        write_start = time.perf_counter()
        naive = NaiveProcoreWriter(url, COMPANY_ID)
        naive.write(commitments)
        naive.close()
        write_s = time.perf_counter() - write_start
        usage = meter.stop()
        peak = peak_rss_mib()
        write_calls = summarize_calls(procore_log.since_mark(), cfg.latency_ms)
        procore_log.start = 0
        all_calls = summarize_calls(procore_log.since_mark(), cfg.latency_ms)
        procore.close()
        x3.close()
    factor = len(desired.commitments) / len(commitments) if commitments else 1.0
    return {
        "latency_ms": cfg.latency_ms, "pos_written": len(commitments),
        "pos_desired": len(desired.commitments), "sampled_projects": cfg.baseline_projects or None,
        "scale_up_factor": round(factor, 4),
        "read_and_map_s": round(read_s, 2), "write_s": round(write_s, 2),
        "wall_s": round(read_s + write_s * factor, 2), "measured_wall_s": usage["wall_s"],
        "procore": all_calls, "write_calls": write_calls,
        "procore_calls": round(all_calls["total"] - write_calls["total"]
                               + write_calls["total"] * factor),
        "x3": summarize_calls(x3_log.since_mark(), cfg.x3_latency),
        "peak_rss_mib": peak, "machine_load": usage,
    }


def versus_backfill(ours: dict, base: dict) -> dict:
    """The connector's backfill (its PO flow) against the naive one: calls and wall time."""
    our_wall = ours["wall_s"] - ours.get("other_flow_steps_s", 0)
    return {
        "our_calls": ours["procore"]["po_flow"], "baseline_calls": base["procore_calls"],
        "calls_ratio": round(ours["procore"]["po_flow"] / base["procore_calls"], 4),
        "our_wall_s": round(our_wall, 2), "baseline_wall_s": base["wall_s"],
        "wall_ratio": round(our_wall / base["wall_s"], 4),
        "baseline_hours_at_600_per_h": round(base["procore_calls"] / 600, 1),
        "our_hours_at_600_per_h": round(ours["procore"]["po_flow"] / 600, 1)}


# --- report -----------------------------------------------------------------------------------

def summary_rows(base: dict, add: AddRow) -> None:
    add("6 baseline", "naive Procore calls; wall",
        f"{base['procore_calls']:,}; {base['wall_s']:,.1f} s"
        + (f" (measured on {base['sampled_projects']} projects, scaled "
           f"×{base['scale_up_factor']:.2f})" if base["sampled_projects"] else ""))


def comparison_rows(vs: dict, add: AddRow) -> None:
    add("6 baseline", "ours / naive: calls; wall",
        f"{vs['calls_ratio']:.4f}; {vs['wall_ratio']:.4f}")
