"""Procore reference data as DataFrames (pure shaping of API lists)."""

from __future__ import annotations

import pandas as pd

PROJECT_COLUMNS = ["id", "name", "project_number", "origin_id", "active"]
VENDOR_COLUMNS = ["id", "name", "origin_id", "origin_code", "is_active"]
COST_CODE_COLUMNS = ["project_id", "id", "code", "full_code", "name"]
LINE_ITEM_TYPE_COLUMNS = ["id", "code", "name", "base_type"]


def frame(records: list[dict], columns: list[str], **extra) -> pd.DataFrame:
    df = pd.DataFrame.from_records(records)
    for column in columns:
        if column not in df:
            df[column] = extra.get(column)
    return df[columns].reset_index(drop=True)


def cost_codes_frame(by_project: dict[int, list[dict]]) -> pd.DataFrame:
    parts = [frame(codes, COST_CODE_COLUMNS, project_id=project_id)
             for project_id, codes in by_project.items()]
    if not parts:
        return pd.DataFrame(columns=COST_CODE_COLUMNS)
    df = pd.concat(parts, ignore_index=True)
    # `code` is the segment; the mapping names the full code where codes are tiered.
    df["code"] = df["full_code"].fillna(df["code"])
    return df
