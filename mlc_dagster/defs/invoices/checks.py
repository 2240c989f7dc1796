"""Reconciliation: per commitment, Procore requisition totals equal Sage X3 invoice totals."""

import dagster as dg
import pandas as pd

from mlc_dagster.common.metadata import table_metadata
from mlc_dagster.defs.invoices.plan import (
    AFTER_SEND,
    ENTITY,
    DesiredRequisitions,
    reconcile_totals,
)
from mlc_dagster.defs.purchase_orders.writer import ENTITY as PO_ENTITY
from mlc_dagster.resources.ledger import LedgerResource


@dg.asset_check(
    asset="procore_requisitions",
    additional_ins={"mapped_requisitions": dg.AssetIn()},
    description="For every commitment, the requisition totals Procore reported equal the "
                "total of the final X3 invoices billing its PO (credit memos are held by "
                "design); invoices changed or deleted in X3 after they were sent are listed",
)
def requisition_totals_match_x3(mapped_requisitions: DesiredRequisitions,
                                ledger: LedgerResource) -> dg.AssetCheckResult:
    store = ledger.get_ledger()
    invoices = store.states(ENTITY)
    pos = set(mapped_requisitions.x3_totals["po_number"]) | {
        po for s in invoices.values() for po in ((s.summary or {}).get("parts") or {})}
    scope = mapped_requisitions.scope
    if scope is not None and scope.covered_pos is not None:
        pos &= scope.covered_pos  # the POs whose invoices this run staged, every one of them
    table = reconcile_totals(mapped_requisitions, invoices, store.states(PO_ENTITY, pos))
    mismatched = table[table["difference"].abs() >= 0.005]
    # Procore keeps synced invoices immutable: these differences wait for a person.
    after_send = pd.DataFrame(sorted((k, s.reason) for k, s in invoices.items()
                                     if s.status == "held" and (s.reason or "").startswith(
                                         AFTER_SEND)), columns=["invoice", "reason"])
    return dg.AssetCheckResult(
        passed=mismatched.empty, severity=dg.AssetCheckSeverity.WARN,
        metadata={"commitments_compared": len(table), "mismatched": len(mismatched),
                  "x3_total": round(float(table["x3_total"].sum()), 2),
                  "procore_total": round(float(table["procore_total"].sum()), 2),
                  "mismatches": table_metadata(mismatched),
                  "changed_after_send": len(after_send),
                  "changed_after_send_invoices": table_metadata(after_send)})
