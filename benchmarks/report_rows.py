"""What every scenario's report rows share: the targets, how a value prints, and the floor
check in a few words. Each scenario module writes its own rows with an `add` callback
(benchmarks/report.py `summary_rows`):

    add(scenario, metric, value, target=None, met=None, digits=2)
"""

from __future__ import annotations

from collections.abc import Callable

AddRow = Callable[..., None]
TARGETS = {
    "calls_over_floor": 1.05, "noop_writes": 0, "noop_wall_s": 2.0, "latency_p95_s": 30.0,
    "staging_s": 20.0, "staging_peak_mib": 2048.0, "backfill_429s": 0,
}


def fmt(value, digits: int = 2) -> str:
    """A report cell: – for none, yes/no, thousands separators, `digits` decimals."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def over_text(check: dict) -> str:
    """A floor check's calls above the floor, by endpoint, and the allowance."""
    over = ", ".join(f"`{e}` +{n}" for e, n in check["over"].items()) or "none"
    allowed = sum(check.get("allowance", {}).values())
    return over + (f" (allowed: {allowed}, see floor.allowance_reasons)" if allowed else "")
