"""Scenario `staging` (5): 20 x 1000 x 20 = 400k lines through staging, validation and
mapping alone, in a fresh child process (time and peak RSS per phase), plus a per-row call
profile: connector functions called about once per line or per PO."""

from __future__ import annotations

import cProfile
import gc
import json
import pickle
import pstats
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.config import REPO, RUN_SCRIPT, BenchConfig, build_seed_for
from benchmarks.machine import Meter, peak_rss_mib, reset_peak_rss, rss_mib
from benchmarks.report_rows import TARGETS, AddRow


def prepare_staging(cfg: BenchConfig, workdir: Path) -> dict:
    """Seed -> canonical X3 records (the REST client's own converter) -> a ledger snapshot,
    plus the Procore reference frames; what `x3_purchase_orders` would find on a poll."""
    from mlc_dagster.defs.reference.frames import (
        LINE_ITEM_TYPE_COLUMNS,
        PROJECT_COLUMNS,
        VENDOR_COLUMNS,
        cost_codes_frame,
        frame,
    )
    from mlc_dagster.ledger.store import Ledger
    from mlc_dagster.resources.sage_x3_client import SageX3RestClient
    from mlc_sandbox.sage_x3.classes import PORDER
    from mlc_sandbox.sage_x3.rest import rest_row

    workdir.mkdir(parents=True, exist_ok=True)
    seed = build_seed_for(cfg, "staging")
    # As the sandbox serves a `$details` row: since issue 13 a line's GL account is in the
    # PORDERC member, not on the line (a bare seed record would stage with no mapping key).
    converter = SageX3RestClient("http://127.0.0.1:9", "SEED", "user", "password")
    records = [converter._from_rest("purchase_order", rest_row(PORDER, po, with_lines=True),
                                    with_lines=True) for po in seed.x3_purchase_orders]
    converter.close()
    ledger_url = f"sqlite:///{workdir / 'staging_ledger.sqlite'}"
    ledger = Ledger(ledger_url)
    ledger.upsert_snapshot("purchase_order", records, "po_number")
    ledger.dispose()
    frames = {"projects": frame(seed.projects, PROJECT_COLUMNS),
              "vendors": frame(seed.vendors, VENDOR_COLUMNS),
              "cost_codes": cost_codes_frame(seed.project_cost_codes),
              "line_item_types": frame(seed.line_item_types, LINE_ITEM_TYPE_COLUMNS)}
    frames_path = workdir / "reference_frames.pkl"
    frames_path.write_bytes(pickle.dumps(frames))
    (workdir / "gl_map.csv").write_text(seed.mapping_csv)
    return {"ledger_url": ledger_url, "frames": str(frames_path),
            "mapping": str(workdir / "gl_map.csv"), "pos": len(records),
            "lines": sum(len(r["lines"]) for r in records)}


def measure_staging(prepared: dict, profile_fraction: float = 0.0) -> dict:
    """Snapshot load, staging + pandera validation, mapping, content hashes: seconds and
    peak RSS after each phase (this process only; run it in a fresh one for clean peaks)."""
    from mlc_dagster.defs.purchase_orders.desired import build_desired_commitments
    from mlc_dagster.defs.purchase_orders.gl_map import parse_gl_mapping
    from mlc_dagster.defs.purchase_orders.staging import stage_purchase_orders
    from mlc_dagster.ledger.store import Ledger

    frames = pickle.loads(Path(prepared["frames"]).read_bytes())
    mapping = parse_gl_mapping(Path(prepared["mapping"]).read_text())
    gc.collect()
    reset_peak_rss()
    out = {"rss_before_mib": rss_mib(), "phases": {}}
    meter = Meter()
    clock = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        out["phases"][name] = {"s": round(now - clock, 2), "peak_rss_mib": peak_rss_mib()}
        clock = now

    ledger = Ledger(prepared["ledger_url"])
    records = list(ledger.snapshot("purchase_order"))
    phase("snapshot_load")
    staged = stage_purchase_orders(records)
    phase("staging_and_validation")
    desired = build_desired_commitments(staged, mapping, frames["projects"], frames["vendors"],
                                        frames["cost_codes"], frames["line_item_types"])
    phase("mapping")
    hashes = [c.hash for c in desired.commitments]
    phase("content_hashes")
    out["machine_load"] = meter.stop()
    p = out["phases"]
    out.update({
        "pos": len(records), "lines": sum(len(r["lines"]) for r in records),
        "valid_pos": len(staged.headers), "valid_lines": len(staged.lines),
        "quarantined_pos": len(staged.held_po_numbers), "commitments": len(desired.commitments),
        "held_pos": len(desired.held_reasons()), "hashes": len(hashes),
        "staging_validation_mapping_s": round(p["staging_and_validation"]["s"]
                                              + p["mapping"]["s"], 2),
        "with_snapshot_load_s": round(p["snapshot_load"]["s"] + p["staging_and_validation"]["s"]
                                      + p["mapping"]["s"], 2),
        "peak_rss_mib": peak_rss_mib(),
    })
    ledger.dispose()
    del records, staged, desired, hashes
    if profile_fraction:
        out["per_row_profile"] = profile_per_row(prepared, mapping, frames, profile_fraction)
    return out


def profile_per_row(prepared: dict, mapping, frames, fraction: float, top: int = 10) -> dict:
    """cProfile a slice of the snapshot through the same three phases and list the connector
    functions called about once per line or per PO: Python loops over rows."""
    from mlc_dagster.defs.purchase_orders.desired import build_desired_commitments
    from mlc_dagster.defs.purchase_orders.staging import stage_purchase_orders
    from mlc_dagster.ledger.store import Ledger

    ledger = Ledger(prepared["ledger_url"])
    records = list(ledger.snapshot("purchase_order"))
    ledger.dispose()
    records = records[: max(1, int(len(records) * fraction))]
    lines = sum(len(r["lines"]) for r in records)
    profiler = cProfile.Profile()
    profiler.enable()
    staged = stage_purchase_orders(records)
    desired = build_desired_commitments(staged, mapping, frames["projects"], frames["vendors"],
                                        frames["cost_codes"], frames["line_item_types"])
    _ = [c.hash for c in desired.commitments]
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    rows = []
    for (filename, lineno, func), (_cc, ncalls, _tottime, cumtime, _callers) in stats.items():
        if "mlc_dagster" not in filename or ncalls < len(records):
            continue
        where = f"{filename.split('mlc_dagster/')[-1]}:{lineno} {func}"
        rows.append({"function": where, "calls": ncalls,
                     "calls_per_line": round(ncalls / lines, 2),
                     "calls_per_po": round(ncalls / len(records), 2),
                     "cum_s": round(cumtime, 3)})
    rows.sort(key=lambda r: -r["cum_s"])
    return {"pos": len(records), "lines": lines, "functions": rows[:top]}


def bench_staging(cfg: BenchConfig, workdir: Path) -> dict:
    """Prepare here, measure in a fresh child process (`run.py --internal-staging-child`)
    unless `cfg.staging_subprocess` is off."""
    build_start = time.perf_counter()
    prepared = prepare_staging(cfg, workdir / "staging")
    prepare_s = time.perf_counter() - build_start
    if cfg.staging_subprocess:
        child = subprocess.run(
            [sys.executable, str(RUN_SCRIPT), "--internal-staging-child",
             json.dumps(prepared), "--staging-profile-fraction", str(cfg.staging_profile_fraction)],
            capture_output=True, text=True, cwd=REPO, check=False)
        if child.returncode != 0:
            raise RuntimeError(f"staging child failed:\n{child.stderr[-3000:]}")
        measured = json.loads(child.stdout.strip().splitlines()[-1])
        measured["process"] = "fresh child process (peak RSS = that process)"
    else:
        measured = measure_staging(prepared, cfg.staging_profile_fraction)
        measured["process"] = "in-process"
    shape = cfg.shape("staging")
    return {"shape": {"projects": shape[0], "pos_per_project": shape[1], "lines_per_po": shape[2]},
            "prepare_s": round(prepare_s, 1), **measured}


# --- report -----------------------------------------------------------------------------------

def summary_rows(st: dict, add: AddRow) -> None:
    add("5 staging", "lines (POs)", f"{st['lines']:,} ({st['pos']:,})")
    add("5 staging", "staging + validation + mapping",
        f"{st['staging_validation_mapping_s']:.1f} s", "≤ 20 s",
        st["staging_validation_mapping_s"] <= TARGETS["staging_s"])
    add("5 staging", "… plus snapshot load from the ledger", f"{st['with_snapshot_load_s']:.1f} s")
    add("5 staging", "… content hashes (planning)", f"{st['phases']['content_hashes']['s']:.1f} s")
    add("5 staging", "peak RSS", f"{st['peak_rss_mib']:,.0f} MiB", "≤ 2 GiB",
        st["peak_rss_mib"] <= TARGETS["staging_peak_mib"])


def markdown(st: dict) -> list[str]:
    """Seconds and peak RSS per phase, and the per-row profile."""
    lines = ["", f"## Staging phases ({st['lines']:,} lines)", "",
             "| Phase | Seconds | Peak RSS so far |", "|---|---|---|"]
    lines += [f"| {k} | {v['s']:.2f} | {v['peak_rss_mib']:,.0f} MiB |"
              for k, v in st["phases"].items()]
    prof = st.get("per_row_profile")
    if prof:
        lines += ["", f"Connector functions called at least once per PO (cProfile on "
                  f"{prof['pos']:,} POs / {prof['lines']:,} lines):", "",
                  "| Function | Calls per line | Calls per PO | Cumulative s (profiled) |",
                  "|---|---|---|---|"]
        lines += [f"| `{f['function']}` | {f['calls_per_line']} | {f['calls_per_po']} | "
                  f"{f['cum_s']} |" for f in prof["functions"]]
    return lines
