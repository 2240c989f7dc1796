"""The accountants' GL -> cost code table, and desired commitments built from it."""


import dagster as dg
import pandas as pd

from mlc_dagster.mapping.commitments import (
    CommitmentRules,
    build_desired_commitments,
)
from mlc_dagster.mapping.gl_map import GlMapping, parse_gl_mapping, parse_project_map
from mlc_dagster.sage_x3.staging import StagedPurchaseOrders
from mlc_dagster.settings import Settings, read_text
from mlc_dagster.utils import table_metadata


@dg.asset(group_name="mapping", kinds={"csv"})
def gl_cost_code_mapping() -> dg.Output[GlMapping]:
    """The GL account -> cost code CSV (path: MLC_GL_MAPPING_CSV), parsed and fingerprinted."""
    path = Settings.from_env().gl_mapping_path
    try:
        mapping = parse_gl_mapping(read_text(path), source=path)
    except (OSError, ValueError) as exc:  # MappingError is a ValueError
        raise dg.Failure(f"cannot use the GL mapping: {exc}") from None
    return dg.Output(mapping, metadata={
        "path": path, "rows": len(mapping.table), "fingerprint": mapping.fingerprint,
        "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in mapping.problems) or "_none_"),
        "warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in mapping.warnings) or "_none_"),
    })


@dg.asset(
    group_name="mapping",
    kinds={"pandas"},
    check_specs=[dg.AssetCheckSpec("unmapped_gl_accounts", asset="mapped_commitments",
                                   description="Every GL account used on a PO line has a mapping")],
)
def mapped_commitments(
    context: dg.AssetExecutionContext,
    x3_purchase_orders: StagedPurchaseOrders,
    gl_cost_code_mapping: GlMapping,
    procore_projects: pd.DataFrame,
    procore_vendors: pd.DataFrame,
    procore_cost_codes: pd.DataFrame,
    procore_line_item_types: pd.DataFrame,
):
    """Desired Procore commitments (headers + line items) for every placeable PO; the rest held."""
    settings = Settings.from_env()
    table = parse_project_map(read_text(settings.project_map_path)) if (
        settings.project_match == "table" and settings.project_map_path) else {}
    desired = build_desired_commitments(
        x3_purchase_orders, gl_cost_code_mapping, procore_projects, procore_vendors,
        procore_cost_codes, procore_line_item_types,
        CommitmentRules(project_rule=settings.project_match, project_table=table),
    )
    held = desired.held_reasons()
    context.log.info(f"{len(desired.commitments)} commitments desired, {len(held)} POs held")
    yield dg.Output(desired, metadata={
        "commitments": len(desired.commitments),
        "line_items": sum(len(c.lines) for c in desired.commitments),
        "held_pos": len(held),
        "held": table_metadata(pd.DataFrame(sorted(held.items()), columns=["po", "reason"])),
    })
    unmapped = desired.unmapped.groupby("gl_account")["po_number"].apply(
        lambda s: ", ".join(sorted(set(s)))).reset_index(name="held_pos")
    yield dg.AssetCheckResult(
        check_name="unmapped_gl_accounts", passed=len(unmapped) == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"unmapped_gl_accounts": len(unmapped), "accounts": table_metadata(unmapped)},
    )
