"""Preview rows -> the tables accountants sign off: totals, markdown and CSV (pure).

A row is what one flow's planner says the live run would record for one record:
`{"flow", "key", "project_id", "action", "detail", "amount"}`, where `action` is the ledger
action of that event (create | adopt | update | inactivate | hold | export ...), and `amount`
a Decimal (the record's total) or None.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

COLUMNS = ["flow", "project_id", "project", "key", "action", "amount", "detail"]
FLOW_ORDER = ["purchase_order", "purchase_invoice", "supplier", "vendor", "dimension"]
# Always in the numeric metadata, 0 when absent, so a chart over runs has stable series.
STANDARD_ACTIONS = ("create", "adopt", "update", "inactivate", "hold")
# A PO row's amount is its total; these actions put that total in Procore (created, taken
# over, or changed to it) — the committed cost the sign-off is about.
COMMITTED = {"create": "committed_created", "adopt": "committed_adopted",
             "update": "committed_updated"}
NOT_WRITTEN = "defer"  # over the per-run limit: a later run writes it (no event this run)
COMPANY_WIDE = "company-wide (vendors, dimensions)"
MARKDOWN_DETAIL_LIMIT = 300
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def preview_frame(rows: Iterable[Mapping], project_names: Mapping[int, str]) -> pd.DataFrame:
    """All rows as one table in COLUMNS order, sorted by flow, project and key."""
    records = [{
        "flow": str(r["flow"]),
        "project_id": int(r["project_id"]) if r.get("project_id") is not None else None,
        "project": (project_names.get(int(r["project_id"]), "")
                    if r.get("project_id") is not None else ""),
        "key": str(r["key"]),
        "action": str(r["action"]),
        "amount": _money(r.get("amount")),
        "detail": str(r.get("detail") or ""),
    } for r in rows]
    df = pd.DataFrame(records, columns=COLUMNS)
    df["project_id"] = df["project_id"].astype("Int64")  # not float: ids print as 101
    if df.empty:
        return df
    order = {flow: i for i, flow in enumerate(FLOW_ORDER)}
    df["_flow"] = df["flow"].map(lambda f: order.get(f, len(order)))
    df["_project"] = [-1 if p is None else p for p in map(_project_id, df["project_id"])]
    df = df.sort_values(["_flow", "_project", "key"], kind="stable")
    return df.drop(columns=["_flow", "_project"]).reset_index(drop=True)


def _project_id(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _money(value) -> Decimal | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def action_counts(df: pd.DataFrame) -> dict[str, int]:
    """Rows per action: the standard actions always, others when present."""
    counts = {action: 0 for action in STANDARD_ACTIONS}
    for action, n in df["action"].value_counts().items():
        counts[str(action)] = int(n)
    return counts


def totals_by_action(df: pd.DataFrame) -> pd.DataFrame:
    """Per flow and action: how many records, and their total amount where they have one."""
    columns = ["flow", "action", "records", "amount"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    out = [{"flow": flow, "action": action, "records": len(group),
            "amount": _sum(group["amount"])}
           for (flow, action), group in df.groupby(["flow", "action"], sort=False)]
    return pd.DataFrame(out, columns=columns)


def totals_by_project(df: pd.DataFrame) -> pd.DataFrame:
    """Per project: records per action (every flow), and the PO totals created, adopted and
    updated; rows without a project (vendors, dimensions) under COMPANY_WIDE."""
    actions = list(dict.fromkeys([*STANDARD_ACTIONS, *df["action"].tolist()]))
    columns = ["project_id", "project", *actions, *COMMITTED.values()]
    out = []
    pids = [_project_id(p) for p in df["project_id"]]
    for pid in sorted({p for p in pids if p is not None}) + [None]:
        group = df[[p == pid for p in pids]]
        if group.empty:
            continue
        row = {"project_id": pid if pid is not None else "",
               "project": group["project"].iloc[0] if pid is not None else COMPANY_WIDE}
        counts = group["action"].value_counts()
        row.update({action: int(counts.get(action, 0)) for action in actions})
        pos = group[group["flow"] == "purchase_order"]
        for action, column in COMMITTED.items():
            row[column] = _sum(pos.loc[pos["action"] == action, "amount"])
        out.append(row)
    return pd.DataFrame(out, columns=columns)


def _sum(amounts: pd.Series) -> Decimal:
    return sum((a for a in amounts if a is not None and not pd.isna(a)), Decimal("0.00"))


def markdown(df: pd.DataFrame, limit: int | None = None,
             columns: list[str] | None = None) -> str:
    """A markdown table for the Dagster UI: pipes escaped, long details cut (the CSV has them
    in full), and how many rows were left out."""
    if df.empty:
        return "_none_"
    shown = df[columns] if columns else df
    shown = shown.head(limit) if limit else shown
    text = shown.astype(object).where(shown.notna(), "").astype(str).map(_cell)
    out = text.to_markdown(index=False, disable_numparse=True)  # amounts as written, 2 decimals
    if limit and len(df) > limit:
        out += f"\n\n_{len(df) - limit} more rows not shown: see the CSV_"
    return out


def plain_table(df: pd.DataFrame) -> str:
    """A fixed-width table for a terminal, amounts as written (not re-read as floats)."""
    return df.astype(str).to_markdown(index=False, tablefmt="simple", disable_numparse=True)


def _cell(value: str) -> str:
    value = " ".join(value.split()).replace("|", "\\|")
    if len(value) > MARKDOWN_DETAIL_LIMIT:
        value = value[:MARKDOWN_DETAIL_LIMIT - 1] + "…"
    return value


def to_csv(df: pd.DataFrame) -> str:
    """Every row, COLUMNS in order, amounts as plain decimals. Text cells that a spreadsheet
    would run as a formula (a hand-typed name starting with "=") get a leading apostrophe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in df[COLUMNS].itertuples(index=False):
        writer.writerow([_text(row.flow), _blank_or(row.project_id, int), _text(row.project),
                         _text(row.key), _text(row.action), _blank_or(row.amount, str),
                         _text(row.detail)])
    return out.getvalue()


def _blank_or(value, show) -> str:
    return "" if value is None or pd.isna(value) else str(show(value))


def _text(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
