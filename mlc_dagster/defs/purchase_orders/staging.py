"""Turn canonical Sage X3 purchase-order records into validated DataFrames.

Vectorised end to end: records are flattened once, types coerced column-wise,
and pandera validates lazily. Anything wrong becomes a quarantine row naming
the PO, the line and the field; a PO with any bad line is held whole, never
half-synced.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import chain

import numpy as np
import pandas as pd

from mlc_dagster.defs.purchase_orders.schemas import PO_HEADER_SCHEMA, PO_LINE_SCHEMA
from mlc_dagster.x3_reads import quarantine
from mlc_dagster.x3_reads.scope import StagingScope

HEADER_TEXT = ["po_number", "supplier_code", "project_code", "currency", "site", "reference",
               "update_stamp"]
LINE_TEXT = ["gl_account", "mapping_key", "uom", "item_code", "description", "project_code"]
LINE_NUMBERS = ["quantity", "unit_price", "amount"]
QUARANTINE_COLUMNS = quarantine.columns("po_number")


@dataclass
class StagedPurchaseOrders:
    """Valid POs (headers + lines) and the quarantine explaining every held PO; `scope` says
    which POs of the snapshot these are (x3_reads/scope.py; None: not chosen by a run)."""

    headers: pd.DataFrame
    lines: pd.DataFrame
    quarantine: pd.DataFrame
    scope: StagingScope | None = None

    @property
    def held_po_numbers(self) -> set[str]:
        return set(self.quarantine["po_number"])

    @property
    def po_numbers(self) -> set[str]:
        """Every staged PO, valid or quarantined."""
        return set(self.headers["po_number"]) | self.held_po_numbers

    def plus(self, other: StagedPurchaseOrders) -> StagedPurchaseOrders:
        """These POs and `other`'s (staged apart, e.g. loaded by key for invoices); the
        scope stays this one's."""
        return replace(self, headers=_concat(self.headers, other.headers),
                       lines=_concat(self.lines, other.lines),
                       quarantine=_concat(self.quarantine, other.quarantine))


def _concat(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    if not len(second):
        return first
    if not len(first):
        return second
    return pd.concat([first, second], ignore_index=True)


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
    if "gl_account" in lines:
        # Lines snapshotted before the mapping key was configurable have no mapping_key:
        # they were keyed by their GL account.
        legacy = ~np.fromiter(("mapping_key" in line for r in records for line in r.get("lines") or []),
                              dtype=bool, count=len(lines))
        if legacy.any():
            if "mapping_key" not in lines:
                lines["mapping_key"] = None
            lines.loc[legacy, "mapping_key"] = lines.loc[legacy, "gl_account"]
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

    problems.append(quarantine.schema_problems(PO_HEADER_SCHEMA, headers, key="po_number",
                                               label="PO", skip=header_failed))
    problems.append(quarantine.schema_problems(PO_LINE_SCHEMA, lines, key="po_number", label="PO",
                                               line="line_number", skip=line_failed))
    held_reasons = quarantine.combine("po_number", problems)

    held = set(held_reasons["po_number"])
    good_headers = headers[~headers["po_number"].isin(held)].reset_index(drop=True)
    good_lines = lines[~lines["po_number"].isin(held)].reset_index(drop=True)
    return StagedPurchaseOrders(good_headers, good_lines, held_reasons)


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
    df["closed"] = yes_no_flags(df["closed"])
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
    df["closed"] = yes_no_flags(df["closed"]).fillna(False).astype(bool)
    return df


YES = ("yes", "true", "2", "y")  # X3 local menu 1/2 = no/yes, booleans, yes/no text
NO = ("no", "false", "1", "n", "")


def yes_no_flags(series: pd.Series, *, missing=False) -> pd.Series:
    """Yes/no values as a nullable boolean Series: NA where a value is neither yes nor no,
    `missing` where there is none. Vectorised, since it runs on every PO line."""
    text = series.astype("string").str.strip().str.lower()
    flags = pd.Series(pd.NA, index=series.index, dtype="boolean")
    flags[text.isin(YES).fillna(False).astype(bool)] = True
    flags[text.isin(NO).fillna(False).astype(bool)] = False
    flags[text.isna().astype(bool)] = missing
    return flags


def _problems(po_numbers: pd.Series, line_numbers, field: str, reason: str) -> pd.DataFrame:
    return quarantine.problem_rows("po_number", "PO", po_numbers, line_numbers, field, reason)
