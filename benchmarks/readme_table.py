"""The README's performance table, written from a results file by the script, not by hand.

    .venv/bin/python benchmarks/readme_table.py benchmarks/results/latest.json

Every row of the report that has a target (benchmarks/report.py `summary_rows`, which also
decides "met") goes between the README's two markers, with the results' commit and date.
`--check` exits 1 when the README differs from what the results say.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from benchmarks.report import summary_rows  # noqa: E402

README = HERE.parent / "README.md"
START = "<!-- performance-targets:start (benchmarks/readme_table.py) -->"
END = "<!-- performance-targets:end -->"


def target_table(results: dict) -> str:
    """The rows with a target, as a markdown table, under a line naming the measurement."""
    rows = [r for r in summary_rows(results) if r["target"]]
    parts = results.get("merged_from") or [{
        "name": results.get("name"), "commit": (results.get("git") or {}).get("commit"),
        "started_at": results.get("started_at"), "scenarios": sorted(results["scenarios"])}]
    used = {s.get("from_run", results.get("name")) for s in results["scenarios"].values()}
    sources = "; ".join(
        f"`{p['name']}` ({', '.join(p['scenarios'])}) {str(p['started_at'])[:10]} on "
        f"`{str(p['commit'] or '?')[:7]}`" for p in parts if p["name"] in used)
    lines = [f"From `benchmarks/results/{results.get('name', '?')}.json`, merged from: "
             f"{sources}.", "",
             "| Scenario | Metric | Value | Target | Met |", "|---|---|---|---|---|"]
    lines += [f"| {r['scenario']} | {r['metric']} | {r['value']} | {r['target']} | {r['met']} |"
              for r in rows]
    return "\n".join(lines)


def with_table(readme: str, table: str) -> str:
    if START not in readme or END not in readme:
        raise SystemExit(f"README has no {START!r} ... {END!r} markers")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is stale")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    updated = with_table(text, target_table(json.loads(args.results.read_text())))
    if args.check:
        return 0 if updated == text else 1
    args.readme.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
