"""Canonical Sage X3 purchase invoices -> validated DataFrames (pure, vectorised).

Every problem becomes a quarantine row naming the invoice, the line and the field; an
invoice with any bad line is quarantined whole. Lines must point at a PO Sage X3 knows
(the staged PO snapshot), so an invoice for a PO read later is quarantined until then and
comes back by itself: the quarantine is recomputed from the snapshot on every run.

Whether an invoice is final in X3 is not a validation problem: staging carries the X3 client's
`is_final` (None when the record has no such field, e.g. an older client configuration) and
the raw `status`, and planning holds what is not final.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
import pandas as pd
import pandera.pandas as pa

from mlc_dagster.defs.purchase_orders.schemas import (
    MAX_AMOUNT,
    MAX_QUANTITY,
    at_most_two_decimals,
)
from mlc_dagster.x3_reads import quarantine as q
from mlc_dagster.x3_reads.scope import StagingScope

KEY, LABEL = "invoice_number", "invoice"
INVOICE_TYPES = ("invoice", "credit_memo")
REF_LIMIT = 30  # Procore shows the supplier's invoice number; X3 BPSINV is 30 characters
HEADER_TEXT = ["invoice_number", "invoice_type", "supplier_code", "supplier_invoice_ref",
               "currency", "project_code", "status", "update_stamp"]
FINAL = "is_final"  # canonical X3 field: the invoice is final (posted) in Sage X3
LINE_TEXT = ["po_number", "item_code", "description", "gl_account", "uom"]
LINE_NUMBERS = ["quantity", "amount"]


def _at_most(limit: int) -> pa.Check:
    return pa.Check(lambda s: s.str.len() <= limit, element_wise=False, name=f"at_most_{limit}")


HEADER_SCHEMA = pa.DataFrameSchema(
    {
        "invoice_number": pa.Column(str, pa.Check.str_length(1, 30), unique=True),
        "invoice_type": pa.Column(str, pa.Check.isin(INVOICE_TYPES)),
        "supplier_code": pa.Column(str, pa.Check.str_length(1, 15)),
        "supplier_invoice_ref": pa.Column(str, _at_most(REF_LIMIT)),
        "currency": pa.Column(str, pa.Check.str_matches(r"^[A-Z]{3}$")),
        "invoice_date": pa.Column(checks=pa.Check.in_range(pd.Timestamp("2000-01-01"),
                                                           pd.Timestamp("2100-12-31"))),
    },
    strict=False, coerce=False,
)

LINE_SCHEMA = pa.DataFrameSchema(
    {
        "line_number": pa.Column(int, pa.Check.gt(0)),
        "po_number": pa.Column(str, pa.Check.str_length(1, 30)),
        "po_line": pa.Column(int, pa.Check.gt(0)),
        "quantity": pa.Column(float, [pa.Check.ge(0), pa.Check.le(MAX_QUANTITY)]),
        "amount": pa.Column(float, [
            pa.Check.ge(0), pa.Check.le(MAX_AMOUNT),
            pa.Check(at_most_two_decimals, element_wise=False, error="more than two decimals")]),
    },
    checks=[pa.Check(lambda df: ~df.duplicated([KEY, "line_number"], keep=False),
                     name="unique_invoice_line")],
    strict=False, coerce=False,
)

WORDING = {
    "isin": f"is not one of {', '.join(INVOICE_TYPES)}",
    f"at_most_{REF_LIMIT}": f"is longer than {REF_LIMIT} characters",
    "unique_invoice_line": "duplicate line number in this invoice",
    "greater_than_or_equal_to": "must not be negative (credit memos are their own X3 type)",
}


@dataclass
class StagedInvoices:
    """Valid invoices (headers + lines), the quarantine, and every invoice's X3 stamp;
    `scope` says which invoices of the snapshot these are (x3_reads/scope.py)."""

    headers: pd.DataFrame
    lines: pd.DataFrame
    quarantine: pd.DataFrame
    stamps: dict[str, str | None]
    scope: StagingScope | None = None

    @property
    def quarantined(self) -> set[str]:
        return set(self.quarantine[KEY])

    def reasons(self) -> dict[str, str]:
        grouped = self.quarantine.groupby(KEY, sort=True)["reason"]
        return {key: "; ".join(dict.fromkeys(reasons)) for key, reasons in grouped}


def stage_purchase_invoices(records: list[dict], known_pos: set[str]) -> StagedInvoices:
    headers = pd.DataFrame.from_records([{k: v for k, v in r.items() if k not in ("lines", FINAL)}
                                         for r in records])
    for column in HEADER_TEXT + ["invoice_date"]:
        if column not in headers:
            headers[column] = None
    # True / False from the X3 client; None when the record has no such field (not final).
    headers[FINAL] = pd.Series([r[FINAL] is True if FINAL in r else None for r in records],
                               index=headers.index, dtype=object)
    # The raw X3 status, as text per record (a column of numbers and gaps would turn 2 into 2.0).
    headers["status"] = pd.Series(["" if r.get("status") is None else str(r["status"])
                                   for r in records], index=headers.index, dtype=object)
    counts = np.fromiter((len(r.get("lines") or []) for r in records), dtype=np.int64,
                         count=len(records))
    lines = pd.DataFrame.from_records(chain.from_iterable(r.get("lines") or [] for r in records))
    for column in LINE_TEXT + LINE_NUMBERS + ["line_number", "po_line"]:
        if column not in lines:
            lines[column] = None
    lines.insert(0, KEY, np.repeat(headers[KEY].astype("string").fillna("").to_numpy(
        dtype=object), counts))

    problems: list[pd.DataFrame] = []
    headers = _coerce_headers(headers, problems)
    lines = _coerce_lines(lines, problems)
    no_lines = headers.loc[~headers[KEY].isin(lines[KEY]), KEY]
    problems.append(q.problem_rows(KEY, LABEL, no_lines, None, "lines", "invoice has no lines"))
    unknown = lines[(lines["po_number"] != "") & ~lines["po_number"].isin(known_pos)]
    problems.append(pd.DataFrame({
        KEY: unknown[KEY], "line_number": unknown["line_number"], "field": "po_number",
        "reason": [f"{q.where(LABEL, k, n)}: PO {p} is not a known Sage X3 PO"
                   for k, n, p in zip(unknown[KEY], unknown["line_number"], unknown["po_number"],
                                      strict=True)]}, columns=q.columns(KEY)))
    problems.append(q.schema_problems(HEADER_SCHEMA, headers, key=KEY, label=LABEL,
                                      wording=WORDING))
    problems.append(q.schema_problems(LINE_SCHEMA, lines, key=KEY, label=LABEL,
                                      line="line_number", wording=WORDING))
    quarantine = q.combine(KEY, problems)
    held = set(quarantine[KEY])
    stamps = dict(zip(headers[KEY], headers["update_stamp"].replace("", None), strict=True))
    return StagedInvoices(headers[~headers[KEY].isin(held)].reset_index(drop=True),
                          lines[~lines[KEY].isin(held)].reset_index(drop=True),
                          quarantine, stamps)


def _text(series: pd.Series) -> pd.Series:
    return series.astype("string").fillna("").str.strip().astype(object)


def _coerce_headers(df: pd.DataFrame, problems: list) -> pd.DataFrame:
    df = df.copy()
    for column in HEADER_TEXT:
        df[column] = _text(df[column])
    df["invoice_date"] = pd.to_datetime(df["invoice_date"], errors="coerce", format="ISO8601")
    missing = df["invoice_date"].isna()
    problems.append(q.problem_rows(KEY, LABEL, df.loc[missing, KEY], None, "invoice_date",
                                   "invoice_date is missing or not a date"))
    df.loc[missing, "invoice_date"] = pd.Timestamp("2000-01-01")
    return df


def _coerce_lines(df: pd.DataFrame, problems: list) -> pd.DataFrame:
    df = df.copy()
    for column in LINE_TEXT:
        df[column] = _text(df[column])
    for column in ("line_number", "po_line"):
        number = pd.to_numeric(df[column], errors="coerce")
        bad = number.isna() | (number != number.round())
        problems.append(q.problem_rows(KEY, LABEL, df.loc[bad, KEY], df.loc[bad, "line_number"],
                                       column, f"{column} is missing or not a whole number"))
        df[column] = number.fillna(0).astype("int64")
    for column in LINE_NUMBERS:
        values = pd.to_numeric(df[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.fillna(0))
        problems.append(q.problem_rows(KEY, LABEL, df.loc[bad, KEY], df.loc[bad, "line_number"],
                                       column, f"{column} is missing or not a number"))
        df[column] = values.where(~bad, 0.0).astype(float)
    return df
