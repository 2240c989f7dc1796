"""Procore cost codes, cost types and sub jobs -> Sage X3 analytical dimension values (pure).

Each Procore segment goes to its own X3 dimension type (configurable). X3 dimension values
are company-wide, so a cost code that exists in many projects is one value; its description
is the standard cost code list's name, else the name most projects use. A value we created
whose code has gone from Procore is deactivated, never deleted; values we never created
(e.g. the project dimension) are never touched.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from mlc_dagster.common.payload import clean_text, content_hash
from mlc_dagster.ledger.store import Change, RecordState
from mlc_dagster.x3_import.files import CONFIRM_ACTION, PENDING, export_file, is_stale
from mlc_dagster.x3_import.templates import Record, yes_no

ENTITY = "dimension"
CODE_LIMIT, DESCRIPTION_LIMIT = 15, 30  # CACCE: CCE 15, DES 30 characters
PROBLEM_COLUMNS = ["segment", "code", "problem"]


@dataclass(frozen=True)
class DimensionTypes:
    """X3 dimension type per Procore segment; an empty type switches that segment off."""

    cost_code: str = "CCT"
    cost_type: str = "CTY"
    sub_job: str = "SJB"

    def enabled(self) -> set[str]:
        return {t for t in (self.cost_code, self.cost_type, self.sub_job) if t}


@dataclass
class DesiredDimensions:
    values: dict[str, dict]  # "TYPE~CODE" -> {dimension_type, code, description, active}
    problems: pd.DataFrame  # segment, code, problem
    sources: dict[str, int] = field(default_factory=dict)  # dimension type -> values from Procore


def dimension_key(dimension_type: str, code: str) -> str:
    return f"{dimension_type}~{code}"


def desired_dimensions(standard_codes: pd.DataFrame, project_codes: pd.DataFrame,
                       line_item_types: pd.DataFrame, sub_jobs: pd.DataFrame,
                       types: DimensionTypes) -> DesiredDimensions:
    """Frames need `code` and `name`; project-level frames may list a code many times."""
    values: dict[str, dict] = {}
    problems: list[dict] = []
    sources: dict[str, int] = {}
    segments = [
        ("cost code", types.cost_code, [standard_codes, project_codes]),
        ("cost type", types.cost_type, [line_item_types]),
        ("sub job", types.sub_job, [sub_jobs]),
    ]
    for segment, dimension_type, frames in segments:
        if not dimension_type:
            continue
        names: dict[str, Counter] = {}
        preferred: dict[str, str] = {}
        for rank, df in enumerate(frames):
            for code, name in zip(df.get("code", []), df.get("name", []), strict=True):
                if not isinstance(code, str) or not code.strip():
                    problems.append({"segment": segment, "code": "", "problem":
                                     f"{segment} {name!r} has no code: not sent to X3"})
                    continue
                code = code.strip()
                names.setdefault(code, Counter())[clean_text(name or code,
                                                             DESCRIPTION_LIMIT)] += 1
                if rank == 0 and len(frames) > 1:
                    preferred.setdefault(code, clean_text(name or code, DESCRIPTION_LIMIT))
        sources[dimension_type] = len(names)
        for code, counter in sorted(names.items()):
            if len(code) > CODE_LIMIT:
                problems.append({"segment": segment, "code": code, "problem":
                                 f"{segment} {code} is longer than {CODE_LIMIT} characters, "
                                 "the X3 dimension code size: not sent"})
                continue
            ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
            description = preferred.get(code, ranked[0][0])
            if len(counter) > 1:
                problems.append({"segment": segment, "code": code, "problem": (
                    f"{segment} {code} has different names in Procore "
                    f"({', '.join(repr(n) for n, _ in ranked)}); X3 gets {description!r}")})
            values[dimension_key(dimension_type, code)] = {
                "dimension_type": dimension_type, "code": code, "description": description,
                "active": True}
    return DesiredDimensions(values, pd.DataFrame(problems, columns=PROBLEM_COLUMNS), sources)


@dataclass
class DimensionWrite:
    key: str
    value: dict
    action: str  # create | update | reactivate | deactivate
    changes: list[str]


@dataclass
class DimensionPlan:
    writes: list[DimensionWrite]
    unchanged: list[str]
    refused: list[str]  # why a deactivation was not planned
    pending: list[str] = field(default_factory=list)  # exported, X3 has not imported it yet


def plan_dimension_writes(desired: DesiredDimensions, states: dict[str, RecordState],
                          types: DimensionTypes) -> DimensionPlan:
    """Writes for what differs from the ledger. A value already exported with the same
    content is pending, never exported twice."""
    writes, unchanged, refused, pending = [], [], [], []
    for key, value in sorted(desired.values.items()):
        state = states.get(key)
        before = (state.summary or {}) if state else {}
        if state and state.content_hash == content_hash(value) \
                and state.status in ("synced", PENDING):
            (unchanged if state.status == "synced" else pending).append(key)
            continue
        if not before:
            writes.append(DimensionWrite(key, value, "create", [f"{key}: {value['description']!r}"]))
            continue
        changes = [f"description {before.get('description')!r} -> {value['description']!r}"
                   ] if before.get("description") != value["description"] else []
        action = "reactivate" if before.get("active") is False else "update"
        if action == "reactivate":
            changes.append("back in Procore: reactivated")
        writes.append(DimensionWrite(key, value, action, changes or ["re-sent"]))
    gone = [(key, state) for key, state in sorted(states.items())
            if key not in desired.values and (state.summary or {}).get("active")
            and (state.summary or {}).get("dimension_type") in types.enabled()]
    for key, state in gone:
        dimension_type = state.summary["dimension_type"]
        if not desired.sources.get(dimension_type):
            refused.append(f"{key}: Procore returned no values at all for dimension type "
                           f"{dimension_type}; not deactivating anything on that evidence")
            continue
        writes.append(DimensionWrite(key, dict(state.summary, active=False), "deactivate",
                                     ["no longer in Procore: deactivated (not deleted)"]))
    return DimensionPlan(writes, unchanged, refused, pending)


def matches_x3(value: dict, x3: dict | None) -> bool:
    """X3 holds this value as we want it (what the connector writes: description, active)."""
    return x3 is not None and (x3.get("description") or "") == value["description"] \
        and bool(x3.get("active")) == bool(value["active"])


def import_records(value: dict) -> list[Record]:
    """A dimension value as one record of the dimension import template (CACCE fields)."""
    return [(None, {"DIE": value["dimension_type"], "CCE": value["code"],
                    "DES": value["description"], "ENAFLG": yes_no(value["active"])})]


def confirm_exports(states: dict[str, RecordState], x3_values: dict[str, dict], now: datetime,
                    pending_hours: float) -> list[Change]:
    """Exported values X3 now shows become synced; ones X3 still does not show after the
    pending window become failed (so the next plan exports them again), naming the file."""
    changes = []
    for key, state in sorted(states.items()):
        if state.status != PENDING or not isinstance(state.summary, dict):
            continue
        file = export_file(state.payload)
        if matches_x3(state.summary, x3_values.get(key)):
            changes.append(Change(
                entity=ENTITY, key=key, status="synced", action=CONFIRM_ACTION,
                reason=f"seen in X3 after the import of {file}", content_hash=state.content_hash,
                summary=state.summary))
        elif is_stale(state.payload, now, pending_hours):
            changes.append(Change(
                entity=ENTITY, key=key, status="failed", action="fail",
                reason=f"not seen in X3 {pending_hours:g} h after export to {file}: check the "
                       "X3 import log (Usage > Imports, GIMPOBJ); exported again next run",
                content_hash=state.content_hash, summary=state.summary, payload=state.payload))
    return changes
