"""Mapping checks that must pass before any write (blocking, ERROR)."""


import dagster as dg
import pandas as pd

from mlc_dagster.defs.purchase_orders.gl_map import GlMapping, validate_against_procore


@dg.asset_check(
    asset="gl_cost_code_mapping",
    blocking=True,
    additional_ins={"procore_cost_codes": dg.AssetIn(), "procore_line_item_types": dg.AssetIn()},
    description="No duplicate or blank rows, and every cost code / cost type exists in Procore",
)
def gl_mapping_valid(gl_cost_code_mapping: GlMapping, procore_cost_codes: pd.DataFrame,
                     procore_line_item_types: pd.DataFrame) -> dg.AssetCheckResult:
    errors = list(gl_cost_code_mapping.problems) + validate_against_procore(
        gl_cost_code_mapping, procore_cost_codes, procore_line_item_types)
    return dg.AssetCheckResult(
        passed=not errors, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"errors": dg.MetadataValue.md("\n".join(f"- {e}" for e in errors) or "_none_"),
                  "error_count": len(errors)},
    )
