"""Procore reference data the flows read: projects, vendors, cost codes, cost types.

Each reuses its last read while it is recent (defs/reference/freshness.py).
"""

import dagster as dg
import pandas as pd

from mlc_dagster.defs.reference.frames import (
    LINE_ITEM_TYPE_COLUMNS,
    PROJECT_COLUMNS,
    VENDOR_COLUMNS,
    cost_codes_frame,
    frame,
)
from mlc_dagster.defs.reference.freshness import recent_materialization
from mlc_dagster.resources.procore import ProcoreResource
from mlc_dagster.resources.settings import SettingsResource

REFERENCE = {"group_name": "reference", "kinds": {"pandas", "procore"}}


@dg.asset(**REFERENCE)
def procore_projects(context: dg.AssetExecutionContext, procore: ProcoreResource,
                     settings: SettingsResource) -> dg.Output[pd.DataFrame]:
    """Active projects of the company: the targets X3 project codes are matched to."""
    if (reused := recent_materialization(context, settings.get().reference)) is not None:
        return reused
    df = frame(procore.get_client().projects(), PROJECT_COLUMNS)
    return dg.Output(df, metadata={"projects": len(df)})


@dg.asset(**REFERENCE)
def procore_vendors(context: dg.AssetExecutionContext, procore: ProcoreResource,
                    settings: SettingsResource) -> dg.Output[pd.DataFrame]:
    """Company directory vendors; `origin_id` holds the X3 supplier code."""
    if (reused := recent_materialization(context, settings.get().reference)) is not None:
        return reused
    df = frame(procore.get_client().vendors(), VENDOR_COLUMNS)
    return dg.Output(df, metadata={"vendors": len(df),
                                   "linked_to_x3": int(df["origin_id"].notna().sum())})


@dg.asset(**REFERENCE)
def procore_cost_codes(context: dg.AssetExecutionContext, procore: ProcoreResource,
                       settings: SettingsResource, procore_projects: pd.DataFrame
                       ) -> dg.Output[pd.DataFrame]:
    """Project cost codes for every project (one call per project, once per run)."""
    if (reused := recent_materialization(context, settings.get().reference)) is not None:
        return reused
    client = procore.get_client()
    df = cost_codes_frame({int(pid): client.project_cost_codes(int(pid))
                           for pid in procore_projects["id"]})
    return dg.Output(df, metadata={"cost_codes": len(df), "distinct_codes": df["code"].nunique()})


@dg.asset(**REFERENCE)
def procore_line_item_types(context: dg.AssetExecutionContext, procore: ProcoreResource,
                            settings: SettingsResource) -> dg.Output[pd.DataFrame]:
    """Line item types (cost types) of the company."""
    if (reused := recent_materialization(context, settings.get().reference)) is not None:
        return reused
    df = frame(procore.get_client().line_item_types(), LINE_ITEM_TYPE_COLUMNS)
    return dg.Output(df, metadata={"line_item_types": len(df)})
