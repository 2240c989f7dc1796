"""Small helpers shared by assets: metadata tables that render in the Dagster UI."""

from __future__ import annotations

import dagster as dg
import pandas as pd

MAX_TABLE_ROWS = 200


def table_metadata(df: pd.DataFrame, limit: int = MAX_TABLE_ROWS) -> dg.MetadataValue:
    """A markdown table of the first `limit` rows (and how many were left out)."""
    if df is None or not len(df):
        return dg.MetadataValue.md("_none_")
    shown = df.head(limit).astype(str)
    text = shown.to_markdown(index=False)
    if len(df) > limit:
        text += f"\n\n_{len(df) - limit} more rows not shown_"
    return dg.MetadataValue.md(text)
