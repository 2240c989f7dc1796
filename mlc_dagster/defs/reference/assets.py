"""Procore reference data the flows read: projects, vendors, cost codes, cost types.

One step, `procore_reference_data`, produces the four lists as four assets: each is reused
from its last read while that is recent (defs/reference/freshness.py), else read from
Procore. One step rather than four because a run that changes nothing reuses all of them,
and Dagster's cost per step is most of what such a run spends. A job selecting some of the
lists gets only those (the step is subsettable); cost codes are read per project, so their
projects are read (or reused) with them.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from mlc_dagster.defs.reference.frames import (
    LINE_ITEM_TYPE_COLUMNS,
    PROJECT_COLUMNS,
    VENDOR_COLUMNS,
    cost_codes_frame,
    frame,
)
from mlc_dagster.defs.reference.freshness import last_reference_run_at, recent_materialization
from mlc_dagster.resources.procore import ProcoreResource
from mlc_dagster.resources.procore_client import ProcoreClient
from mlc_dagster.resources.settings import SettingsResource


@dataclass(frozen=True)
class ReferenceList:
    """One Procore list: how to read it (given the lists read before it) and what to report."""

    description: str
    read: Callable[[ProcoreClient, dict[str, pd.DataFrame]], pd.DataFrame]
    metadata: Callable[[pd.DataFrame], dict]
    needs: tuple[str, ...] = ()


def _project_cost_codes(client: ProcoreClient, read: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return cost_codes_frame({int(pid): client.project_cost_codes(int(pid))
                             for pid in read["procore_projects"]["id"]})


# In dependency order: a list comes after the lists it needs.
REFERENCE_LISTS = {
    "procore_projects": ReferenceList(
        "Active projects of the company: the targets X3 project codes are matched to.",
        lambda client, _: frame(client.projects(), PROJECT_COLUMNS),
        lambda df: {"projects": len(df)}),
    "procore_vendors": ReferenceList(
        "Company directory vendors; `origin_id` holds the X3 supplier code.",
        lambda client, _: frame(client.vendors(), VENDOR_COLUMNS),
        lambda df: {"vendors": len(df), "linked_to_x3": int(df["origin_id"].notna().sum())}),
    "procore_cost_codes": ReferenceList(
        "Project cost codes for every project (one call per project, once per run).",
        _project_cost_codes,
        lambda df: {"cost_codes": len(df), "distinct_codes": df["code"].nunique()},
        needs=("procore_projects",)),
    "procore_line_item_types": ReferenceList(
        "Line item types (cost types) of the company.",
        lambda client, _: frame(client.line_item_types(), LINE_ITEM_TYPE_COLUMNS),
        lambda df: {"line_item_types": len(df)}),
}


def lists_to_produce(selected: set[str]) -> list[str]:
    """The selected lists and those they need, in dependency order."""
    wanted = set(selected)
    for name in reversed(REFERENCE_LISTS):
        if name in wanted:
            wanted |= set(REFERENCE_LISTS[name].needs)
    return [name for name in REFERENCE_LISTS if name in wanted]


@dg.multi_asset(
    outs={name: dg.AssetOut(description=spec.description, is_required=False,
                            kinds={"pandas", "procore"})
          for name, spec in REFERENCE_LISTS.items()},
    internal_asset_deps={name: {dg.AssetKey(need) for need in spec.needs}
                         for name, spec in REFERENCE_LISTS.items()},
    group_name="reference",
    can_subset=True,
)
def procore_reference_data(context: dg.AssetExecutionContext, procore: ProcoreResource,
                           settings: SettingsResource) -> Iterator[dg.Output]:
    """Each selected list: its recent value reused, or read from Procore."""
    reuse = settings.get().reference
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    produced: dict[str, pd.DataFrame] = {}
    reference_run_at = last_reference_run_at(context.instance)
    for name in lists_to_produce(selected):
        output = recent_materialization(context, reuse, dg.AssetKey(name), reference_run_at)
        if output is None:
            spec = REFERENCE_LISTS[name]
            value = spec.read(procore.get_client(), produced)
            output = dg.Output(value, output_name=name, metadata=spec.metadata(value))
        produced[name] = output.value
        if name in selected:
            yield output
