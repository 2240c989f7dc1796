"""Turn canonical Sage X3 purchase-order records into validated DataFrames.

Vectorised end to end: records are flattened once, types coerced column-wise,
and pandera validates lazily. Anything wrong becomes a quarantine row naming
the PO, the line and the field; a PO with any bad line is held whole, never
half-synced.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
import pandas as pd
import pandera.errors

from mlc_dagster.sage_x3.schemas import CHECK_WORDING, PO_HEADER_SCHEMA, PO_LINE_SCHEMA

HEADER_TEXT = ["po_number", "supplier_code", "project_code", "currency", "site", "reference",
               "update_stamp"]
LINE_TEXT = ["gl_account", "uom", "item_code", "description", "project_code"]
LINE_NUMBERS = ["quantity", "unit_price", "amount"]
QUARANTINE_COLUMNS = ["po_number", "line_number", "field", "reason"]


@dataclass
class StagedPurchaseOrders:
    """Valid POs (headers + lines) and the quarantine explaining every held PO."""

    headers: pd.DataFrame
    lines: pd.DataFrame
    quarantine: pd.DataFrame

    @property
    def held_po_numbers(self) -> set[str]:
        return set(self.quarantine["po_number"])


def stage_purchase_orders(records: list[dict]) -> StagedPurchaseOrders:
    headers = pd.DataFrame.from_records(
        [{k: v for k, v in r.items() if k != "lines"} for r in records],
        index=range(len(records)))  # keeps records that have no header field at all
    for column in HEADER_TEXT + ["order_date", "revision", "closed"]:
        if column not in headers:
            headers[column] = None
    headers["po_number"] = _text(headers["po_number"])
    line_counts = np.fromiter((len(r.get("lines") or []) for r in records), dtype=np.int64,
                              count=len(records))
    lines = pd.DataFrame.from_records(chain.from_iterable(r.get("lines") or [] for r in records),
                                      index=range(int(line_counts.sum())))
    for column in LINE_TEXT + LINE_NUMBERS + ["line_number", "closed"]:
        if column not in lines:
            lines[column] = None
    lines.insert(0, "po_number", np.repeat(headers["po_number"].to_numpy(dtype=object), line_counts))

    problems: list[pd.DataFrame] = []
    header_failed: set[tuple[int, str]] = set()  # (row, field) already reported by coercion
    line_failed: set[tuple[int, str]] = set()
    headers = _coerce_headers(headers, problems, header_failed)
    lines = _coerce_lines(lines, problems, line_failed)
    no_lines = headers.loc[~headers["po_number"].isin(lines["po_number"]), "po_number"]
    problems.append(_problems(no_lines, None, "lines", "PO has no lines"))

    problems.append(_validate(PO_HEADER_SCHEMA, headers, None, header_failed))
    problems.append(_validate(PO_LINE_SCHEMA, lines, lines["line_number"], line_failed))
    quarantine = pd.concat([p for p in problems if len(p)], ignore_index=True) if any(
        len(p) for p in problems) else pd.DataFrame(columns=QUARANTINE_COLUMNS)
    # First reason per (PO, line, field) wins: a value that failed coercion is not
    # reported again by the schema check that then sees its placeholder.
    quarantine = quarantine.drop_duplicates(["po_number", "line_number", "field"]).reset_index(
        drop=True)

    held = set(quarantine["po_number"])
    good_headers = headers[~headers["po_number"].isin(held)].reset_index(drop=True)
    good_lines = lines[~lines["po_number"].isin(held)].reset_index(drop=True)
    return StagedPurchaseOrders(good_headers, good_lines, quarantine)


def _text(series: pd.Series) -> pd.Series:
    return series.astype("string").fillna("").str.strip().astype(object)


def _whole_numbers(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """int64 values and a mask of entries that are missing, fractional, infinite or too big."""
    values = pd.to_numeric(series, errors="coerce").astype(float)
    finite = values.where(np.isfinite(values))
    bad = finite.isna() | (finite != finite.round()) | (finite.abs() >= 2**62)
    return finite.where(~bad, 0).astype("int64"), bad


def _dates(series: pd.Series) -> pd.Series:
    """ISO dates to naive timestamps; an offset on one value never spoils the others."""
    text = series.where(series.map(lambda v: isinstance(v, str | pd.Timestamp)), None)
    parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
    return parsed.dt.tz_convert(None)


def _coerce_headers(df: pd.DataFrame, problems: list, failed: set) -> pd.DataFrame:
    df = df.copy()
    for column in HEADER_TEXT:
        df[column] = _text(df[column])
    df["order_date"] = _dates(df["order_date"])
    df["revision"], bad = _whole_numbers(df["revision"])
    problems.append(_problems(df.loc[bad, "po_number"], None, "revision",
                              "revision is missing or not a whole number"))
    df["closed"] = df["closed"].map(_as_bool)
    bad_closed = df["closed"].isna()
    problems.append(_problems(df.loc[bad_closed, "po_number"], None, "closed",
                              "closed flag is not yes/no"))
    df["closed"] = df["closed"].fillna(False).astype(bool)
    missing_date = df["order_date"].isna()
    problems.append(_problems(df.loc[missing_date, "po_number"], None, "order_date",
                              "order_date is missing or not a date"))
    df.loc[missing_date, "order_date"] = pd.Timestamp("2000-01-01")
    failed.update((i, "order_date") for i in df.index[missing_date])
    return df


def _coerce_lines(df: pd.DataFrame, problems: list, failed: set) -> pd.DataFrame:
    df = df.copy()
    for column in LINE_TEXT:
        df[column] = _text(df[column])
    raw_numbers = df["line_number"]
    df["line_number"], bad = _whole_numbers(raw_numbers)
    problems.append(_problems(df.loc[bad, "po_number"], raw_numbers[bad], "line_number",
                              "line number is missing or not a whole number"))
    failed.update((i, "line_number") for i in df.index[bad])
    for column in LINE_NUMBERS:
        values = pd.to_numeric(df[column], errors="coerce").astype(float)
        bad = values.isna() | ~np.isfinite(values.fillna(0))
        problems.append(_problems(df.loc[bad, "po_number"], df.loc[bad, "line_number"], column,
                                  f"{column} is missing or not a number"))
        failed.update((i, column) for i in df.index[bad])
        df[column] = values.where(~bad, 0.0).astype(float)
    df["closed"] = df["closed"].map(_as_bool).fillna(False).astype(bool)
    return df


def _as_bool(value):
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    text = str(value).strip().lower()
    if text in {"yes", "true", "2", "y"}:
        return True
    if text in {"no", "false", "1", "n", ""}:
        return False
    return None


def _problems(po_numbers: pd.Series, line_numbers, field: str, reason: str) -> pd.DataFrame:
    if not len(po_numbers):
        return pd.DataFrame(columns=QUARANTINE_COLUMNS)
    lines = line_numbers.to_numpy() if line_numbers is not None else [None] * len(po_numbers)
    prefix = [
        f"PO {po}" + (f" line {line}" if line is not None else "") for po, line in zip(
            po_numbers, lines, strict=True)
    ]
    return pd.DataFrame({
        "po_number": po_numbers.to_numpy(), "line_number": lines, "field": field,
        "reason": [f"{p}: {reason}" for p in prefix],
    })


def _validate(schema, df: pd.DataFrame, line_numbers: pd.Series | None,
              already_failed: set[tuple[int, str]]) -> pd.DataFrame:
    """Run pandera lazily and turn its failure cases into quarantine rows.

    Values that already failed coercion hold a placeholder; their schema failures are
    skipped so each problem is reported once.
    """
    try:
        schema.validate(df, lazy=True)
        return pd.DataFrame(columns=QUARANTINE_COLUMNS)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    cases = cases[cases["index"].notna()]
    rows = []
    for case in cases.itertuples():  # one iteration per failure, not per row
        index = int(case.index)
        po = df.at[index, "po_number"]
        line = int(line_numbers.iat[index]) if line_numbers is not None else None
        check = str(case.check).split("(")[0]
        frame_level = case.schema_context == "DataFrameSchema"
        field = "line_number" if frame_level or case.column not in df else case.column
        if (index, field) in already_failed:
            continue
        wording = CHECK_WORDING.get(check, CHECK_WORDING.get(str(case.check), str(case.check)))
        if "{min}" in wording:
            wording = wording.format(min=str(case.check).split("(")[-1].rstrip(")"))
        where = f"PO {po}" + (f" line {line}" if line is not None else "")
        rows.append({"po_number": po, "line_number": line, "field": field,
                     "reason": f"{where}: {field} {wording}" + (
                         "" if frame_level else f" (got {_shown(case.failure_case)})")})
    return pd.DataFrame(rows, columns=QUARANTINE_COLUMNS)


def _shown(value) -> str:
    text = str(value) if isinstance(value, pd.Timestamp) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
