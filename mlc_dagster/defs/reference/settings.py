"""Settings of the reference-data job (suppliers <-> vendors, cost codes -> X3 dimensions), and
how long the PO sync may reuse its last read of Procore reference data.

The reuse window follows the PO sync's fallback schedule (MLC_SYNC_CRON): a run reuses the
reference data that the previous run read or reused if that happened less than one schedule
gap plus half a gap ago. So every fallback run reuses it, even one that starts late because
it queued behind another run. At the default */15 the window is 1,350 s. A reuse also keeps
the read's own time, and a read older than one reference-job gap plus half a gap
(MLC_REFERENCE_CRON; 5,400 s at the default hourly) is never reused. So the data stays
fresh even when runs come often and the reference schedule is stopped.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mlc_dagster.defs.dimensions.plan import DimensionTypes
from mlc_dagster.defs.suppliers.plan import SupplierRules

DEFAULT_SYNC_CRON = "*/15 * * * *"  # MLC_SYNC_CRON's default (AutomationSettings.sync_cron)
DEFAULT_REFERENCE_CRON = "0 * * * *"
# A cron this module cannot read (Dagster accepts a few extensions) counts as the default
# fallback gap: the reuse window is then too short at worst, which costs reads, never staleness.
FALLBACK_GAP_SECONDS = 900


@dataclass(frozen=True)
class ReferenceSettings:
    cron: str  # MLC_REFERENCE_CRON
    # MLC_REFERENCE_MAX_AGE_SECONDS, else derived from MLC_SYNC_CRON (reuse_window_seconds):
    # the PO sync reuses a reference read or reuse younger than this; 0 = never reuse.
    max_age_seconds: int
    # The oldest read ever reused, however often runs pass it on: derived from
    # MLC_REFERENCE_CRON, and never below max_age_seconds.
    max_read_age_seconds: int
    supplier_rules: SupplierRules
    dimension_types: DimensionTypes

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ReferenceSettings:
        cron = env.get("MLC_REFERENCE_CRON") or DEFAULT_REFERENCE_CRON
        max_age = _whole_number(env, "MLC_REFERENCE_MAX_AGE_SECONDS")
        if max_age is None:
            max_age = reuse_window_seconds(env.get("MLC_SYNC_CRON") or DEFAULT_SYNC_CRON)
        return cls(
            cron=cron,
            max_age_seconds=max_age,
            max_read_age_seconds=max(max_age, reuse_window_seconds(cron)),
            supplier_rules=SupplierRules(
                contact_owner=(env.get("MLC_VENDOR_CONTACT_OWNER") or "x3").lower(),
                code_prefix=env.get("MLC_X3_NEW_SUPPLIER_PREFIX", "PC")),
            # Set but empty switches a segment off; unset uses the default type.
            dimension_types=DimensionTypes(
                cost_code=env.get("MLC_X3_DIMENSION_COST_CODE", "CCT").strip(),
                cost_type=env.get("MLC_X3_DIMENSION_COST_TYPE", "CTY").strip(),
                sub_job=env.get("MLC_X3_DIMENSION_SUB_JOB", "SJB").strip()),
        )


def _whole_number(env: Mapping[str, str], name: str) -> int | None:
    """An optional whole number of seconds (unset or empty: None); a bad value names `name`."""
    value = (env.get(name) or "").strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise ValueError(f"{name} must be a whole number of seconds (0 or more), got {value!r}")
    return number


def reuse_window_seconds(cron: str) -> int:
    """The longest gap between two ticks of `cron`, plus half of it as a margin: a run that
    starts late (queued behind another run, a daemon restart) still falls inside."""
    gap = cron_longest_gap_seconds(cron) or FALLBACK_GAP_SECONDS
    return gap + gap // 2


# --- a small reader of five-field cron strings (UTC, as the schedules run) ---------------------

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS = {name.lower(): (i + 1) % 7 for i, name in enumerate(calendar.day_abbr)}  # sun = 0
_MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
           "@annually": "0 0 1 1 *"}


def _field(text: str, low: int, high: int, names: Mapping[str, int] | None = None) -> set[int]:
    values: set[int] = set()
    for part in text.lower().split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(part)
        if body == "*":
            start, end = low, high
        else:
            first, _, last = body.partition("-")
            start = names[first] if names and first in names else int(first)
            end = (names[last] if names and last in names else int(last)) if last else (
                high if step_text else start)
        if not low <= start <= end <= high:
            raise ValueError(part)
        values.update(range(start, end + 1, step))
    return values


@functools.lru_cache(maxsize=32)
def cron_longest_gap_seconds(cron: str, horizon_days: int = 400) -> int | None:
    """The longest time between two consecutive ticks of a five-field cron string, over
    `horizon_days` (a year and a bit, so monthly and weekday-only crons show their real gap);
    None when the string is not one this reader knows."""
    fields = _MACROS.get(cron.strip().lower(), cron).split()
    if len(fields) != 5:
        return None
    try:
        minutes = sorted(_field(fields[0], 0, 59))
        hours = sorted(_field(fields[1], 0, 23))
        days = _field(fields[2], 1, 31)
        months = _field(fields[3], 1, 12, _MONTHS)
        weekdays = {d % 7 for d in _field(fields[4], 0, 7, _DAYS)}
    except (ValueError, KeyError):
        return None
    any_day, any_weekday = fields[2] == "*", fields[4] == "*"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    gap, previous = 0, None
    for offset in range(horizon_days):
        day = start + timedelta(days=offset)
        if day.month not in months:
            continue
        in_month, in_week = day.day in days, (day.weekday() + 1) % 7 in weekdays
        # Vixie cron: with both fields restricted, either one matching is enough.
        if not (in_month and in_week if any_day or any_weekday else in_month or in_week):
            continue
        for hour in hours:
            for minute in minutes:
                tick = day.timestamp() + hour * 3600 + minute * 60
                if previous is not None:
                    gap = max(gap, int(tick - previous))
                previous = tick
    return gap or None
