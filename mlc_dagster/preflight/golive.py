"""The go-live checks as pure functions over what the preflight read (no I/O here).

Each returns one row: ok, or a warning saying what the first sync will do with what was
found (hold, adopt, leave alone) and how to change that before it runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from mlc_dagster.defs.purchase_orders.adoption import is_foreign_origin
from mlc_dagster.defs.purchase_orders.change_orders import change_order_tier
from mlc_dagster.defs.purchase_orders.gl_map import match_projects
from mlc_dagster.defs.reference.frames import PROJECT_COLUMNS, frame
from mlc_dagster.preflight.report import FAIL, OK, WARN, PingRow, listed

RATE_HEADERS = ("x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset")
LOW_ALLOWANCE = 0.10  # warn below this share of the limit
WRITE_MODES = {"preview": "preview: nothing will be written",
               "live": "live: runs write to Procore and X3"}
EXAMPLES = 3
PROJECTS_SHOWN = 5
NO_COMMITMENTS = "no commitments in these projects yet"

FOREIGN_FIX = ("the connector never overwrites them; {what} matching them are held - unlink "
               "them in the other integration if they should become ours")


@dataclass
class ProjectCommitments:
    """One Procore project's commitments, from one list call."""

    project_id: int
    label: str
    commitments: list[dict]


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def project_label(project: Mapping) -> str:
    """How people name a project: its number, else its name, else its id."""
    return str(project.get("project_number") or project.get("name") or f"id {project.get('id')}")


def _commitment_label(label: str, commitment: Mapping) -> str:
    return f"{label} #{commitment.get('number') or commitment.get('id')}"


# --- settings --------------------------------------------------------------------------------

def write_mode_row(env: Mapping[str, str]) -> PingRow:
    """MLC_WRITE_MODE (preview|live, default live): what a run will do. Read as the jobs
    read it (settings.env_write_mode: case and spaces ignored, blank is live)."""
    value = env.get("MLC_WRITE_MODE", "")
    mode = value.strip().lower() or "live"
    if mode in WRITE_MODES:
        return PingRow("write mode", OK, WRITE_MODES[mode])
    return PingRow("write mode", FAIL, f"MLC_WRITE_MODE={value!r} is neither preview nor live",
                   "set MLC_WRITE_MODE=preview or live")


# --- projects --------------------------------------------------------------------------------

def project_matching(po_projects: Counter, pos_without_project: int, projects: list[dict],
                     rule: str, table: dict[str, str] | None) -> tuple[PingRow, dict[int, str]]:
    """X3 projects (the POs' project codes) vs the Procore company's active projects, by the
    sync's own rule (`match_projects`). Returns the row and the matched Procore projects
    (id -> label), which the commitment checks then read."""
    active = [p for p in projects if p.get("active") is not False]
    codes = sorted(po_projects)
    ids = match_projects(pd.Series(codes, dtype=object), frame(active, PROJECT_COLUMNS), rule, table)
    by_id = {int(p["id"]): project_label(p) for p in active}
    matched_codes = {code: int(pid) for code, pid in zip(codes, ids, strict=True)
                     if pd.notna(pid) and int(pid) in by_id}
    matched = {pid: by_id[pid] for pid in dict.fromkeys(matched_codes.values())}
    unmatched = [code for code in codes if code not in matched_codes]
    idle = [label for pid, label in by_id.items() if pid not in matched]
    notes = [f"{plural(len(idle), 'Procore project')} {'has' if len(idle) == 1 else 'have'} "
             f"no X3 project ({listed(idle, PROJECTS_SHOWN)})" if idle
             else "every active Procore project has an X3 project"]
    if pos_without_project:
        notes.append(f"{plural(pos_without_project, 'PO')} without a project code (held)")
    if not unmatched:
        detail = (f"all {plural(len(codes), 'X3 project')} ({plural(sum(po_projects.values()), 'PO')})"
                  f" match a Procore project by {rule}; " + "; ".join(notes))
        return PingRow("project matching", OK, detail), matched
    detail = (f"{len(unmatched)} of {plural(len(codes), 'X3 project')} match no active Procore "
              f"project by {rule}: "
              + listed([f"{code} ({plural(po_projects[code], 'PO')})" for code in unmatched],
                       PROJECTS_SHOWN * 2)
              + "; " + "; ".join(notes))
    fix = ("their POs will be held: create (or activate) the project in Procore, or fix "
           "MLC_PROJECT_MATCH" + (" / MLC_PROJECT_MAP_CSV" if rule == "table" else
                                  " (or use MLC_PROJECT_MATCH=table with MLC_PROJECT_MAP_CSV)"))
    return PingRow("project matching", WARN, detail, fix), matched


# --- what Procore already holds ---------------------------------------------------------------

def foreign_commitments_row(projects: list[ProjectCommitments]) -> PingRow:
    """Commitments whose origin_id is another integration's (ours start with X3:PO:)."""
    found = [f"{_commitment_label(p.label, c)} {c['origin_id']}" for p in projects
             for c in p.commitments if is_foreign_origin(c.get("origin_id"))]
    checked = sum(len(p.commitments) for p in projects)
    if not found:
        return PingRow("other integrations' commitments", OK,
                       f"none of {plural(checked, 'commitment')} carries another integration's "
                       "origin_id" if checked else NO_COMMITMENTS)
    return PingRow("other integrations' commitments", WARN,
                   f"{len(found)} of {plural(checked, 'commitment')} carry another integration's "
                   f"origin_id: {listed(found, EXAMPLES)}",
                   FOREIGN_FIX.format(what="POs"))


def foreign_vendors_row(vendors: list[dict], supplier_codes: set[str] | None) -> PingRow:
    """Vendors whose origin_id is not an X3 supplier code (ours are the bare code)."""
    linked = [v for v in vendors if v.get("origin_id")]
    if supplier_codes is None:
        return PingRow("other integrations' vendors", WARN,
                       f"not checked: the X3 suppliers could not be read "
                       f"({plural(len(linked), 'vendor')} carry an origin_id)",
                       "fix the sage x3 supplier row above and run ping again")
    found = [f"{v.get('name') or v.get('id')!s} {v['origin_id']}" for v in linked
             if str(v["origin_id"]).strip() not in supplier_codes]
    if not found:
        return PingRow("other integrations' vendors", OK,
                       f"{plural(len(linked), 'vendor')} with an origin_id, all X3 supplier codes "
                       f"({len(vendors)} vendors)")
    return PingRow("other integrations' vendors", WARN,
                   f"{len(found)} of {plural(len(vendors), 'vendor')} carry an origin_id that is "
                   f"no X3 supplier code: {listed(found, EXAMPLES)}",
                   FOREIGN_FIX.format(what="suppliers"))


def hand_entered_row(projects: list[ProjectCommitments]) -> PingRow:
    """Commitments with no origin_id: hand-made, perhaps twins of X3 POs (adopted, not doubled)."""
    per_project = [(p.label, sum(1 for c in p.commitments if not c.get("origin_id")))
                   for p in projects]
    per_project = [(label, n) for label, n in per_project if n]
    total = sum(n for _label, n in per_project)
    if not total:
        return PingRow("hand-entered commitments", OK, "no commitment without an origin_id")
    return PingRow("hand-entered commitments", WARN,
                   f"{plural(total, 'commitment')} without an origin_id in "
                   f"{plural(len(per_project), 'project')}: "
                   + listed([f"{label}: {n}" for label, n in per_project], PROJECTS_SHOWN),
                   "run `mlc-dagster preview` (or the preview_sync job) and check the adoption "
                   "rows before the first live sync")


def invoicing_row(projects: list[ProjectCommitments]) -> PingRow:
    """Commitments with subcontractor invoicing (requisitions) disabled."""
    disabled = [_commitment_label(p.label, c) for p in projects for c in p.commitments
                if c.get("requisitions_are_enabled") is False]
    checked = sum(len(p.commitments) for p in projects)
    if not disabled:
        return PingRow("invoicing enabled", OK,
                       f"subcontractor invoicing enabled on all {plural(checked, 'commitment')}"
                       if checked else NO_COMMITMENTS)
    return PingRow("invoicing enabled", WARN,
                   f"{len(disabled)} of {plural(checked, 'commitment')} have subcontractor "
                   f"invoicing disabled: {listed(disabled, EXAMPLES)}",
                   "enable subcontractor invoicing on those commitments in Procore, or their X3 "
                   "invoices will be held")


def tier_row(shown: dict[str, dict], without_commitment: list[str]) -> PingRow:
    """Each project's change-order tier, from one commitment's show response (label -> show)."""
    tiers = {label: change_order_tier(show) for label, show in shown.items()}
    groups = {name: [label for label, tier in tiers.items() if tier == value]
              for name, value in (("single-tier", 1), ("2-tier", 2), ("3-tier", 3),
                                  ("tier not shown", None))}
    groups["unknown until the first commitment exists"] = without_commitment
    detail = "; ".join(f"{name}: {listed(labels, PROJECTS_SHOWN)}"
                       for name, labels in groups.items() if labels) or "no project to check"
    held = groups["2-tier"] + groups["3-tier"] + groups["tier not shown"]
    if not held:
        return PingRow("change-order tier", OK, detail)
    return PingRow("change-order tier", WARN, detail,
                   "amendments to Approved commitments in "
                   f"{listed(held, PROJECTS_SHOWN)} will be held (the connector creates change "
                   "orders on single-tier projects only): when X3 amends an approved PO there, "
                   "enter the change order in Procore by hand")


# --- rate limit ---------------------------------------------------------------------------------

def _number(headers: Mapping[str, str], name: str) -> float | None:
    try:
        return float(headers[name])
    except (KeyError, TypeError, ValueError):
        return None


def rate_limit_row(headers: Mapping[str, str] | None, now: float) -> PingRow:
    """The allowance in the latest response's X-Rate-Limit-Limit / -Remaining / -Reset."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    limit, remaining, reset = (_number(headers, name) for name in RATE_HEADERS)
    if limit is None or remaining is None or reset is None:
        return PingRow("procore rate limit", WARN,
                       "Procore sent no X-Rate-Limit-Limit / -Remaining / -Reset headers",
                       "the connector paces itself by these headers: check that no proxy "
                       "strips them (PROCORE_API_URL)")
    detail = (f"limit {limit:.0f}, remaining {remaining:.0f} "
              f"(resets in {max(0.0, reset - now):.0f} s)")
    if remaining < LOW_ALLOWANCE * limit:
        return PingRow("procore rate limit", WARN, detail + ": less than 10% left",
                       "wait for the reset before the first sync; the allowance is shared by "
                       "everything using these app credentials - pause other jobs or ask Procore "
                       "for a higher limit")
    return PingRow("procore rate limit", OK, detail)
