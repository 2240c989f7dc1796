"""Quarantine rows for any staged X3 entity: one row per problem, naming record, line, field.

`schema_problems` runs a pandera schema lazily and words each failure case for a person
("invoice PI1 line 1000: amount must not be negative (got -5.0)"); `problem_rows` builds
rows for problems found outside pandera (coercion failures, cross-record lookups). The
frame's first column is the entity key (`invoice_number`, `supplier_code`, ...).
"""

from __future__ import annotations

import pandas as pd
import pandera.errors

from mlc_dagster.defs.purchase_orders.schemas import CHECK_WORDING


def columns(key: str) -> list[str]:
    return [key, "line_number", "field", "reason"]


def empty(key: str) -> pd.DataFrame:
    return pd.DataFrame(columns=columns(key))


def where(label: str, record, line=None) -> str:
    return f"{label} {record}" + ("" if line is None else f" line {line}")


def problem_rows(key: str, label: str, records: pd.Series, lines: pd.Series | None,
                 field: str, reason: str) -> pd.DataFrame:
    """One row per record (and line) with the same problem."""
    if not len(records):
        return empty(key)
    line_values = list(lines) if lines is not None else [None] * len(records)
    return pd.DataFrame({
        key: list(records), "line_number": line_values, "field": field,
        "reason": [f"{where(label, r, n)}: {reason}" for r, n in zip(records, line_values,
                                                                     strict=True)],
    }, columns=columns(key))


def schema_problems(schema, df: pd.DataFrame, *, key: str, label: str,
                    line: str | None = None, wording: dict[str, str] | None = None,
                    skip: set[tuple[int, str]] = frozenset()) -> pd.DataFrame:
    """Validate lazily; every failure case becomes a worded quarantine row.

    `skip` holds (row, field) pairs already reported by coercion: those cells hold a
    placeholder, and their schema failures would repeat the same problem.
    """
    wording = {**CHECK_WORDING, **(wording or {})}
    try:
        schema.validate(df, lazy=True)
        return empty(key)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    rows = []
    for case in cases[cases["index"].notna()].itertuples():
        index = int(case.index)
        check = str(case.check)
        name = check.split("(")[0]
        frame_level = case.schema_context == "DataFrameSchema"
        field = (line or key) if frame_level or case.column not in df else case.column
        if (index, field) in skip:
            continue
        text = wording.get(name, wording.get(check, check))
        if "{min}" in text:
            text = text.format(min=check.split("(")[-1].rstrip(")"))
        line_no = df.at[index, line] if line else None
        got = "" if frame_level else f" (got {shown(case.failure_case)})"
        rows.append({key: df.at[index, key], "line_number": line_no, "field": field,
                     "reason": f"{where(label, df.at[index, key], line_no)}: {field} {text}{got}"})
    return pd.DataFrame(rows, columns=columns(key))


def combine(key: str, parts: list[pd.DataFrame]) -> pd.DataFrame:
    """All problems, first reason per (record, line, field) kept."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty(key)
    return pd.concat(parts, ignore_index=True).drop_duplicates(
        [key, "line_number", "field"]).reset_index(drop=True)


def shown(value) -> str:
    """A failing value as a person should see it in a reason: short, dates readable."""
    text = str(value) if isinstance(value, pd.Timestamp) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
