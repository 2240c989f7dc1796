"""Scenario `delta` (3): a share of the POs (0.2 %, 1 %, 2 % by default) amended through the
X3 REST `$edit` API, a measured run after each, each against its own floor; then a fit of
calls and wall time against the number of changed POs."""

from __future__ import annotations

import random
import statistics
from collections import Counter
from decimal import Decimal

from benchmarks import floor as call_floor
from benchmarks.harness import SyncSession, synced_contracts
from benchmarks.report_rows import AddRow


def amend_pos(x3_url: str, numbers: list[str]) -> None:
    """Through the X3 REST API: bump the revision and add 1 to the first line's quantity."""
    import httpx

    from mlc_sandbox.seed import SANDBOX_CREDENTIALS as creds

    with httpx.Client(base_url=f"{x3_url}/api1/x3/erp/{creds['x3_endpoint']}",
                      auth=(creds["x3_user"], creds["x3_password"]), timeout=60) as http:
        for number in numbers:
            po = http.get(f"/PORDER('{number}')", params={"representation": "PORDER.$details"})
            po.raise_for_status()
            po = po.json()
            first = po["PORDERQ"][0]
            quantity = Decimal(str(first["QTYUOM"])) + 1
            amount = (quantity * Decimal(str(first["NETPRI"]))).quantize(Decimal("0.01"))
            response = http.put(f"/PORDER('{number}')", params={"representation": "PORDER.$edit"},
                                json={"REVNUM": int(po["REVNUM"]) + 1, "PORDERQ": [
                                    {"POPLIN": first["POPLIN"], "QTYUOM": str(quantity),
                                     "LINAMT": str(amount)}]})
            if response.status_code != 200:
                raise RuntimeError(f"X3 $edit of {number} failed: {response.status_code} "
                                   f"{response.text[:300]}")


def bench_delta(session: SyncSession, fractions: tuple[float, ...]) -> dict:
    rng = random.Random(session.cfg.seed + 8)
    synced = synced_contracts(session.handles["procore"])
    pool = sorted(synced)
    rng.shuffle(pool)
    total_pos = len(session.seed.x3_purchase_orders)
    projects = {po["POHNUM"]: po["PJTH"] for po in session.seed.x3_purchase_orders}
    lines_of = {po["POHNUM"]: len(po["lines"]) for po in session.seed.x3_purchase_orders}
    runs = []
    for fraction in fractions:
        n = max(1, round(total_pos * fraction))
        chosen, pool = pool[:n], pool[n:]
        amend_pos(session.handles["sage_x3"].url, chosen)
        run = session.measured_run()
        by_project = Counter(projects[po] for po in chosen)
        floor = call_floor.delta_floor({po: projects[po] for po in chosen}, lines_of)
        calls = run["procore"]["po_flow"]
        runs.append({
            "fraction": fraction, "changed_pos": n, "projects_touched": len(by_project), **run,
            "floor": floor.as_dict(),
            "floor_check": call_floor.floor_check(run["procore"]["by_endpoint"], floor),
            "calls_per_changed_po": round(calls / n, 3),
            "writes_per_changed_po": round(run["procore"]["writes"] / n, 3),
            "x3_calls_per_changed_po": round(run["x3"]["total"] / n, 3),
            "calls_over_floor": round(calls / floor.flow("po"), 4),
        })
    return {"latency_ms": session.latency_ms, "total_pos": total_pos, "runs": runs,
            "scaling": scaling(runs)}


def scaling(runs: list[dict]) -> dict:
    """Least-squares fit of calls and writes against changed POs: fixed + per-PO cost."""
    if len(runs) < 2:
        return {}
    out = {}
    for what, get in (("procore_calls", lambda r: r["procore"]["po_flow"]),
                      ("procore_writes", lambda r: r["procore"]["writes"]),
                      ("x3_calls", lambda r: r["x3"]["total"]), ("wall_s", lambda r: r["wall_s"])):
        xs = [r["changed_pos"] for r in runs]
        ys = [get(r) for r in runs]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
        out[what] = {"fixed": round(my - slope * mx, 3), "per_changed_po": round(slope, 4)}
    return out


# --- report -----------------------------------------------------------------------------------

def summary_rows(delta: dict, add: AddRow) -> None:
    """Per run: calls, writes, X3 calls, calls per changed PO, against the floor; the fit."""
    for run in delta["runs"]:
        label = f"3 delta {run['fraction'] * 100:g} %"
        add(label, f"{run['changed_pos']} POs: Procore calls (PO flow) / writes / X3 calls",
            f"{run['procore']['po_flow']} / {run['procore']['writes']} / {run['x3']['total']}")
        add(label, "calls per changed PO (writes per PO)",
            f"{run['calls_per_changed_po']:.2f} ({run['writes_per_changed_po']:.2f})")
        add(label, "calls / floor; wall; reference reused",
            f"{run['calls_over_floor']:.3f}; {run['wall_s']:.1f} s; "
            f"{'yes' if len(run['reference_reused']) == 4 else run['reference_reused'] or 'no'}")
    fit = delta.get("scaling", {})
    if fit:
        add("3 delta", "fit: Procore calls = fixed + k × changed POs",
            f"{fit['procore_calls']['fixed']:.1f} + "
            f"{fit['procore_calls']['per_changed_po']:.3f} × n", "proportional to changes")
        add("3 delta", "fit: wall = fixed + k × changed POs",
            f"{fit['wall_s']['fixed']:.2f} s + {fit['wall_s']['per_changed_po']:.4f} s × n")
