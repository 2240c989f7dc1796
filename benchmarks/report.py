"""A benchmark's results: the summary table (each scenario writes its own rows), the markdown
report, several runs merged into one, and the files benchmarks/results/<name>.json and .md.

docs/performance.md explains the figures; benchmarks/readme_table.py copies the rows that
have a target into the README.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from benchmarks.report_rows import fmt
from benchmarks.scenarios import (
    backfill,
    baseline,
    delta,
    latency,
    noop,
    real_limit,
    staging,
    x3_load,
)

# Scenario key -> the function that adds its rows, in the report's order. The comparison with
# the naive baseline comes after these, and the X3 load last.
ROW_WRITERS = (
    ("backfill", backfill.summary_rows),
    ("backfill_rate_limited", backfill.rate_limited_rows),
    ("real_limit", real_limit.summary_rows),
    ("noop", partial(noop.summary_rows, label="2 no-op poll")),
    ("noop_after_delta", partial(noop.summary_rows, label="2 no-op poll (after deltas)")),
    ("delta", delta.summary_rows),
    ("latency", latency.summary_rows),
    ("staging", staging.summary_rows),
    ("baseline", baseline.summary_rows),
)


def comparisons(s: dict) -> dict:
    """Figures that need two scenarios: the backfill against the naive baseline."""
    if "backfill" in s and "baseline" in s:
        return {"vs_baseline": baseline.versus_backfill(s["backfill"], s["baseline"])}
    return {}


def summary_rows(results: dict) -> list[dict]:
    """Every scenario's rows, in scenario order: scenario, metric, value, target, met."""
    s, rows = results["scenarios"], []

    def add(scenario, metric, value, target=None, met=None, digits=2):
        rows.append({"scenario": scenario, "metric": metric, "value": fmt(value, digits),
                     "target": target or "",
                     "met": "" if met is None else ("yes" if met else "NO")})

    for key, write_rows in ROW_WRITERS:
        if key in s:
            write_rows(s[key], add)
    vs = results.get("comparisons", {}).get("vs_baseline")
    if vs:
        baseline.comparison_rows(vs, add)
    if "x3_load" in s:
        x3_load.summary_rows(s["x3_load"], add)
    return rows


def _heading(results: dict) -> list[str]:
    """Title, when and on which commit(s), the machine, the settings."""
    git, m, v = results["git"], results["machine"], results["versions"]
    dirty = (f" with uncommitted changes in {len(git['dirty_files'])} file(s)"
             if git["dirty_files"] else "")
    settings = results["settings"]
    commits = results.get("commits") or [git["commit"] or "unknown"]
    return [
        f"# Benchmark `{results['name']}`", "",
        f"Measured {results['started_at']} – {results['finished_at']} on "
        + (f"commit `{commits[0][:12]}`{dirty} ({git['subject']})." if len(commits) == 1 else
           "commits " + ", ".join(f"`{c[:12]}`" for c in commits) + " (see “Merged from”)."),
        "",
        f"Machine: {m['cpu_count']} × {m['cpu_model']}, {m['ram_gib']} GiB RAM, {m['platform']}. "
        f"Python {v.get('python')}, Dagster {v.get('dagster')}, pandas {v.get('pandas')}, "
        f"pandera {v.get('pandera')}.", "",
        f"Settings: seed {settings['seed']}, scale `{settings['scale']}`, latency "
        f"{settings['latency_ms']} ms per call (X3 {settings['x3_latency_ms']} ms), sandboxes in "
        "the benchmark process, the real Dagster job via `execute_in_process`, SQLite ledger.", "",
    ]


def _summary_table(results: dict) -> list[str]:
    lines = ["| Scenario | Metric | Value | Target | Met |", "|---|---|---|---|---|"]
    lines += [f"| {r['scenario']} | {r['metric']} | {r['value']} | {r['target']} | {r['met']} |"
              for r in results["summary"]]
    if results.get("merged_from"):
        lines += ["", "Merged from: " + "; ".join(
            f"`{p['name']}` ({', '.join(p['scenarios'])}; {p['started_at']} – {p['finished_at']}, "
            f"commit `{(p['commit'] or '?')[:12]}`)" for p in results["merged_from"]) + "."]
    return lines


def _loads(s: dict):
    for key in ("backfill", "backfill_rate_limited", "noop", "noop_after_delta", "staging",
                "baseline", "latency"):
        if key in s and "machine_load" in s[key]:
            yield key, s[key]["machine_load"]
    for run in s.get("delta", {}).get("runs", []):
        yield f"delta {run['fraction'] * 100:g} %", run["machine_load"]


def _machine_load_table(s: dict) -> list[str]:
    lines = ["", "## Machine load during each measurement", "",
             "| Measurement | Measured span s | Load avg (1 min) start → end | Our CPU (cores) "
             "| Others' CPU (cores) |",
             "|---|---|---|---|---|"]
    for label, usage in _loads(s):
        lines.append(f"| {label} | {usage['wall_s']:,.1f} | {usage['load_avg_start'][0]} → "
                     f"{usage['load_avg_end'][0]} | {fmt(usage.get('own_cpu_cores'))} | "
                     f"{fmt(usage.get('others_busy_cores'))} |")
    return lines


def to_markdown(results: dict) -> str:
    """The report: heading, summary table, each scenario's section, machine load, errors."""
    s = results["scenarios"]
    lines = _heading(results) + _summary_table(results)
    if "backfill" in s:
        lines += backfill.markdown(s["backfill"], s.get("backfill_rate_limited"))
    if "noop" in s:
        lines += noop.markdown(s["noop"])
    if "latency" in s:
        lines += latency.markdown(s["latency"])
    if "staging" in s:
        lines += staging.markdown(s["staging"])
    if "real_limit" in s:
        lines += real_limit.markdown(s["real_limit"])
    lines += _machine_load_table(s)
    if results["errors"]:
        lines += ["", "## Errors", ""] + [f"- {k}: `{e}`" for k, e in results["errors"].items()]
    return "\n".join(lines) + "\n"


def merge_results(parts: list[dict], name: str) -> dict:
    """One report from several runs (e.g. a scenario re-run on a quieter machine): later
    parts win per scenario; each scenario records the run it came from."""
    merged = {**parts[0], "name": name, "scenarios": {}, "errors": {}, "merged_from": []}
    for part in parts:
        merged["merged_from"].append({
            "name": part["name"], "commit": part["git"]["commit"],
            "started_at": part["started_at"], "finished_at": part["finished_at"],
            "scenarios": sorted(part["scenarios"])})
        for key, value in part["scenarios"].items():
            merged["scenarios"][key] = {**value, "from_run": part["name"]}
        merged["errors"].update(part.get("errors", {}))
    # Parts may come from different commits (each scenario keeps its run, and the markdown
    # names each part's commit); the report's own `git` is the newest part's.
    merged["git"] = parts[-1]["git"]
    merged["commits"] = sorted({p["commit"] for p in merged["merged_from"] if p["commit"]})
    merged["started_at"] = min(p["started_at"] for p in merged["merged_from"])
    merged["finished_at"] = max(p["finished_at"] for p in merged["merged_from"])
    merged["comparisons"] = comparisons(merged["scenarios"])
    merged["summary"] = summary_rows(merged)
    return merged


def write_results(results: dict, outdir: Path, name: str) -> tuple[Path, Path]:
    """<outdir>/<name>.json (every figure) and <name>.md (the report)."""
    outdir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = outdir / f"{name}.json", outdir / f"{name}.md"
    json_path.write_text(json.dumps(results, indent=1, sort_keys=False, default=str) + "\n")
    md_path.write_text(to_markdown(results))
    return json_path, md_path
