"""The accountants' GL -> cost code table, and desired commitments built from it."""


from dataclasses import replace

import dagster as dg
import pandas as pd

from mlc_dagster.mapping.commitments import (
    CommitmentRules,
    build_desired_commitments,
)
from mlc_dagster.mapping.gl_map import GlMapping, parse_gl_mapping, parse_project_map
from mlc_dagster.procore.adoption import AdoptionRules
from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.sage_x3.scope import (
    commitment_fingerprint,
    confirm_fingerprint,
    scope_records,
)
from mlc_dagster.sage_x3.staging import StagedPurchaseOrders, stage_purchase_orders
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
    ledger: LedgerResource,
):
    """Desired Procore commitments (headers + line items) for every placeable staged PO; the
    rest held. Every PO of the snapshot when the plan fingerprint (mapping, Procore reference
    data, planning settings, code) differs from the last completed plan's."""
    settings = Settings.from_env()
    by_table = settings.project_match == "table" and bool(settings.project_map_path)
    map_text = read_text(settings.project_map_path) if by_table else ""
    table = parse_project_map(map_text) if by_table else {}
    fingerprint = commitment_fingerprint(
        gl_cost_code_mapping.fingerprint, map_text,
        {"projects": procore_projects, "vendors": procore_vendors,
         "cost_codes": procore_cost_codes, "line_item_types": procore_line_item_types},
        (settings.project_match, settings.new_commitment_status, settings.inactive_status,
         settings.approved_policy, AdoptionRules.from_env()))
    store = ledger.get_ledger()
    staged_scope = x3_purchase_orders.scope
    scope = confirm_fingerprint(store, staged_scope, fingerprint)
    staged = x3_purchase_orders
    if scope.everything and staged_scope is not None and not staged_scope.everything:
        staged = stage_purchase_orders(scope_records(store, scope))
    staged = replace(staged, scope=scope)
    desired = build_desired_commitments(
        staged, gl_cost_code_mapping, procore_projects, procore_vendors,
        procore_cost_codes, procore_line_item_types,
        CommitmentRules(project_rule=settings.project_match, project_table=table),
    )
    held = desired.held_reasons()
    context.log.info(f"{len(desired.commitments)} commitments desired, {len(held)} POs held; "
                     f"staged {len(staged.po_numbers)} POs ({scope.describe()})")
    yield dg.Output(desired, metadata={
        "staged_pos": len(staged.po_numbers), "staging_scope": scope.describe(),
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
