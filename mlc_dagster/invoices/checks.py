"""Reconciliation: per commitment, Procore requisition totals equal Sage X3 invoice totals."""

import dagster as dg

from mlc_dagster.invoices.requisitions import ENTITY, DesiredRequisitions, reconcile_totals
from mlc_dagster.procore.commitment_sync import ENTITY as PO_ENTITY
from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.utils import table_metadata


@dg.asset_check(
    asset="procore_requisitions",
    additional_ins={"mapped_requisitions": dg.AssetIn()},
    description="For every commitment, the requisition totals Procore reported equal the "
                "total of the X3 invoices billing its PO (credit memos are held by design)",
)
def requisition_totals_match_x3(mapped_requisitions: DesiredRequisitions,
                                ledger: LedgerResource) -> dg.AssetCheckResult:
    store = ledger.get_ledger()
    invoices = store.states(ENTITY)
    pos = set(mapped_requisitions.x3_totals["po_number"]) | {
        po for s in invoices.values() for po in ((s.summary or {}).get("parts") or {})}
    table = reconcile_totals(mapped_requisitions, invoices, store.states(PO_ENTITY, pos))
    mismatched = table[table["difference"].abs() >= 0.005]
    return dg.AssetCheckResult(
        passed=mismatched.empty, severity=dg.AssetCheckSeverity.WARN,
        metadata={"commitments_compared": len(table), "mismatched": len(mismatched),
                  "x3_total": round(float(table["x3_total"].sum()), 2),
                  "procore_total": round(float(table["procore_total"].sum()), 2),
                  "mismatches": table_metadata(mismatched)})
