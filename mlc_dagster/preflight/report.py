"""Preflight rows (ok / warn / fail, what was seen, the fix) and how the CLI prints them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

OK, WARN, FAIL = "ok", "warn", "fail"
MARKS = {OK: "ok  ", WARN: "WARN", FAIL: "FAIL"}


@dataclass
class PingRow:
    """One check. `warn` does not block a go-live (exit 0); `fail` does (exit 1)."""

    check: str
    level: str
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.level not in MARKS:
            raise ValueError(f"preflight row {self.check!r}: level must be ok, warn or fail, "
                             f"got {self.level!r}")

    @property
    def ok(self) -> bool:
        """Nothing here stops a go-live: ok or warn."""
        return self.level != FAIL


def attempt(check: str, run: Callable[[], str | PingRow],
            fix: Callable[[Exception], str]) -> PingRow:
    """Run one check; an exception becomes its FAIL row, so it never stops the others.

    `run` returns the detail of an ok row, or a whole row (for warnings)."""
    try:
        result = run()
    except Exception as exc:  # noqa: BLE001 - every failure becomes a report line
        return PingRow(check, FAIL, f"{type(exc).__name__}: {exc}", fix(exc))
    return result if isinstance(result, PingRow) else PingRow(check, OK, result)


def fix_for_status(exc: Exception, fixes: Mapping[int, str], otherwise: str) -> str:
    """The fix for a failed call by its HTTP status (`fixes`), else `otherwise` (no answer,
    or a status with no known cause)."""
    return fixes.get(getattr(exc, "status", None), otherwise)


def listed(items: Iterable[str], limit: int) -> str:
    """`a, b, c (+4 more)`: the first `limit` items and how many were left out."""
    items = list(items)
    text = ", ".join(items[:limit])
    return text + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def counts(rows: Iterable[PingRow]) -> dict[str, int]:
    out = dict.fromkeys(MARKS, 0)
    for row in rows:
        out[row.level] += 1
    return out


def format_report(rows: list[PingRow]) -> str:
    """`ok   <check>  <detail>` lines, a `fix:` line under each warning and failure, and
    the closing `N ok, N warnings, N failed`."""
    width = max((len(r.check) for r in rows), default=0)
    lines = []
    for row in rows:
        lines.append(f"{MARKS[row.level]} {row.check.ljust(width)}  {row.detail}")
        if row.level != OK and row.fix:
            lines.append(f"     {' ' * width}  fix: {row.fix}")
    total = counts(rows)
    lines += ["", f"{total[OK]} ok, {total[WARN]} warnings, {total[FAIL]} failed"]
    return "\n".join(lines)


def exit_code(rows: Iterable[PingRow]) -> int:
    """1 when any check failed; warnings alone leave the go-live open (0)."""
    return 1 if counts(rows)[FAIL] else 0
