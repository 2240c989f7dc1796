"""Scenario `backfill` (1): every PO from an empty Procore, against the call floor.

Twice: latency-bound (no rate limit), then against 600/h and 25/10 s compressed in time
(benchmarks/limits.py `scaled_limits`) with the connector's default waits, so that it never
hands over. The floor comes from the seed and the mapping file alone (benchmarks/floor.py).
"""

from __future__ import annotations

import re
from dataclasses import asdict

from benchmarks import floor as call_floor
from benchmarks.harness import SyncSession, synced_contracts
from benchmarks.limits import UNLIMITED, pacing_profile
from benchmarks.report_rows import TARGETS, AddRow, fmt, over_text

OTHER_FLOW_STEP = re.compile(r"invoice|requisition|supplier|dimension")


def bench_backfill(session: SyncSession) -> dict:
    run = session.measured_run()
    contracts = synced_contracts(session.handles["procore"])
    # The floor comes from the seed and the mapping file alone (benchmarks/floor.py), never
    # from what this run wrote or reused: then a run making extra calls cannot agree with it.
    floor = call_floor.backfill_floor(session.seed, session.mapping_csv())
    expected = {po for pos in floor.pos.values() for po in pos}
    calls = run["procore"]["po_flow"]
    pos = len(contracts)
    latency_floor_s = floor.flow("po") * session.latency_ms / 1000
    other_steps_s = sum(v for k, v in run["steps_s"].items() if OTHER_FLOW_STEP.search(k))
    out = {
        "shape": {"projects": len(session.seed.projects),
                  "pos": len(session.seed.x3_purchase_orders),
                  "lines": sum(len(p["lines"]) for p in session.seed.x3_purchase_orders),
                  "pos_synced": pos, "lines_synced": sum(c["lines"] for c in contracts.values())},
        "latency_ms": session.latency_ms, "rate_limits": asdict(session.limits),
        **run,
        "floor": floor.as_dict(),
        "floor_check": call_floor.floor_check(run["procore"]["by_endpoint"], floor),
        "pos_check": {"expected": len(expected),
                      "missing": sorted(expected - set(contracts))[:20],
                      "unexpected": sorted(set(contracts) - expected)[:20]},
        "calls_per_po": round(calls / pos, 4) if pos else None,
        # PO flow against its floor (the figure reported since issue #8), and the whole job
        "calls_over_floor": round(calls / floor.flow("po"), 4),
        "all_calls_over_floor": round(run["procore"]["total"] / floor.total, 4),
        "wall_over_latency_floor": (round(run["wall_s"] / latency_floor_s, 2)
                                    if latency_floor_s else None),
        "other_flow_steps_s": round(other_steps_s, 2),
        "po_flow_wall_over_latency_floor": (
            round((run["wall_s"] - other_steps_s) / latency_floor_s, 2)
            if latency_floor_s else None),
    }
    if session.limits is not UNLIMITED:
        out["pacing"] = pacing_profile(session.procore_log.since_mark(), session.limits,
                                       floor.total, run["wall_s"], session.latency_ms)
    return out


# --- report -----------------------------------------------------------------------------------

def summary_rows(b: dict, add: AddRow) -> None:
    """The latency-bound backfill's rows."""
    add("1 backfill", "POs / lines in X3; synced",
        f"{b['shape']['pos']:,} / {b['shape']['lines']:,}; {b['shape']['pos_synced']:,} POs, "
        f"{b['shape']['lines_synced']:,} lines (rest held by design)")
    add("1 backfill", "Procore calls of the PO flow (floor)",
        f"{b['procore']['po_flow']:,} ({b['floor'].get('po_flow', b['floor']['total']):,})")
    if b["procore"]["other_flows"]:
        add("1 backfill", "Procore calls of other flows in the same job"
            + (" (floor)" if "invoice_flow" in b["floor"] else ""),
            f"{sum(b['procore']['other_flows'].values()):,}"
            + (f" ({b['floor']['invoice_flow']:,})" if "invoice_flow" in b["floor"] else "")
            + f"; {b['other_flow_steps_s']:.0f} s of steps")
    add("1 backfill", "calls / floor", b["calls_over_floor"], "≤ 1.05",
        b["calls_over_floor"] <= TARGETS["calls_over_floor"], 4)
    if "floor_check" in b:
        add("1 backfill", "whole job: calls / floor; calls above it, by endpoint",
            f"{b['all_calls_over_floor']:.4f}; " + over_text(b["floor_check"]),
            "none", not b["floor_check"]["over"])
    add("1 backfill", "calls per synced PO", b["calls_per_po"], digits=4)
    add("1 backfill", f"wall time (latency {b['latency_ms']} ms, no rate limit)",
        f"{b['wall_s']:,.1f} s")
    add("1 backfill", "wall / (floor calls × latency)", b["wall_over_latency_floor"])
    if b["procore"]["other_flows"]:
        add("1 backfill", "… without the other flows' steps", b["po_flow_wall_over_latency_floor"])
    add("1 backfill", "429s received", b["procore"]["status_429"], "0",
        b["procore"]["status_429"] == 0)
    add("1 backfill", "peak RSS (process incl. sandboxes; before run)",
        f"{b['peak_rss_mib']:,.0f} MiB ({b['rss_before_mib']:,.0f} MiB)")


def rate_limited_rows(r: dict, add: AddRow) -> None:
    """The rate-limited backfill's rows: calls, 429s, pacing against the rate floor."""
    label = "1 backfill, rate-limited"
    p = r["pacing"]
    add(label, "limits", r["rate_limits"]["description"])
    add(label, "429s received", r["procore"]["status_429"], "0", r["procore"]["status_429"] == 0)
    add(label, "calls / floor", r["calls_over_floor"], "≤ 1.05",
        r["calls_over_floor"] <= TARGETS["calls_over_floor"], 4)
    if "floor_check" in r:
        add(label, "whole job: calls / floor; calls above it",
            f"{r['all_calls_over_floor']:.4f}; " + over_text(r["floor_check"]),
            "none", not r["floor_check"]["over"])
    add(label, "wall (rate floor = floor calls / allowed rate)",
        f"{r['wall_s']:,.1f} s ({p['rate_floor_s']:,.1f} s)")
    add(label, "wall / rate floor", p["wall_over_rate_floor"], digits=3)
    spike = p.get("spike")
    add(label, "max calls in an hourly window (limit)"
        + (" / in a spike window (limit)" if spike else ""),
        f"{p['max_in_a_window']} ({p['window_limit']})"
        + (f" / {spike['max_in_a_window']} ({spike['window_limit']})" if spike else ""))
    add(label, "pacing wait in the client",
        f"{r['outcome'].get('rate_limit_wait_seconds') or 0:,.1f} s")


def _floor_text(b: dict) -> str:
    f = b["floor"]
    if "by_endpoint" not in f:  # results from before the floor was counted per endpoint
        return (f"Floor: {f['line_item_syncs']:,} line-item syncs + {f['header_syncs']} header "
                f"syncs + {f['reference_reads']} reference reads ({f.get('reference_detail')}) "
                f"= {f['total']:,}.")
    return ("Floor (benchmarks/floor.py, from the seed and the mapping file): " + ", ".join(
        f"`{e}` {n:,}" for e, n in f["by_endpoint"].items())
        + f" = {f['total']:,} ({f['po_flow']:,} PO flow, {f['invoice_flow']:,} invoices)."
        + "".join(f" Allowed above it: {r}." for r in b["floor_check"]["allowance_reasons"]))


def markdown(b: dict, rate_limited: dict | None) -> list[str]:
    """Calls by endpoint in both runs, the floor, step times, and the rate-limited pacing."""
    lines = ["", "## Backfill: Procore calls by endpoint", "",
             "| Endpoint | Latency-bound run | Rate-limited run |", "|---|---|---|"]
    other = (rate_limited or {}).get("procore", {}).get("by_endpoint", {})
    for endpoint, count in b["procore"]["by_endpoint"].items():
        lines.append(f"| `{endpoint}` | {count:,} | {fmt(other.get(endpoint))} |")
    lines += ["", _floor_text(b), "",
              "Step times (latency-bound run): " + ", ".join(
                  f"{k} {v:.1f} s" for k, v in b["steps_s"].items())
              + f"; Dagster overhead {b['dagster_overhead_s']:.1f} s; sandbox server time "
              f"{b['procore']['sandbox_server_s']:.1f} s (Procore) + "
              f"{b['x3']['sandbox_server_s']:.1f} s (X3) excluding injected latency; "
              f"X3 calls {b['x3']['total']:,}."]
    if rate_limited is not None:
        p = rate_limited["pacing"]
        lines += ["", f"Pacing (rate-limited run): calls per {p['window_s']} s window "
                  f"(limit {p['window_limit']}): {p['calls_per_window']}; achieved "
                  f"{p['achieved_calls_per_s']} calls/s of {p['allowed_calls_per_s']} allowed."]
    return lines
