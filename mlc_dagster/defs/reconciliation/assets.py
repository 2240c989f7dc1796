"""Nightly proof that X3 and Procore agree: a report per project and a failing check."""

import dagster as dg
import pandas as pd

from mlc_dagster.common.metadata import table_metadata
from mlc_dagster.defs.invoices.plan import ENTITY as INVOICE_ENTITY
from mlc_dagster.defs.invoices.plan import sent_parts
from mlc_dagster.defs.purchase_orders.desired import DesiredCommitments
from mlc_dagster.defs.purchase_orders.writer import ENTITY
from mlc_dagster.defs.reconciliation.compare import (
    FAILING,
    UNMATCHED,
    compare_commitments,
    cost_code_differences,
    summarise,
    unmatched_requisitions,
)
from mlc_dagster.ledger.store import Change
from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.resources.procore import ProcoreResource
from mlc_dagster.resources.settings import SettingsResource


class ReconcileConfig(dg.Config):
    # Re-send our version of drifted / missing commitments on the next sync. Off by
    # default: a manual edit in Procore is reported for a person to decide.
    auto_heal: bool = False


@dg.asset(
    group_name="reconciliation",
    kinds={"pandas", "procore"},
    deps=["procore_commitments"],
    check_specs=[dg.AssetCheckSpec(
        "commitments_reconciled", asset="reconciliation_report",
        description="Every synced PO has its commitment with X3's amount and vendor; no orphans")],
)
def reconciliation_report(context: dg.AssetExecutionContext, config: ReconcileConfig,
                          mapped_commitments: DesiredCommitments,
                          procore_projects: pd.DataFrame, procore_cost_codes: pd.DataFrame,
                          procore: ProcoreResource, ledger: LedgerResource,
                          settings: SettingsResource):
    """Per PO: in sync / held / deleted / drift / missing / orphan, with both amounts; and what
    is still unmatched on either side (hand-made commitments no PO adopted, POs not in Procore)."""
    inactive_status = settings.get().purchase_orders.inactive_status
    client, store = procore.get_client(), ledger.get_ledger()
    contracts = [dict(c, project_id=int(pid)) for pid in procore_projects["id"]
                 for c in client.purchase_order_contracts(int(pid))]
    states = store.states(ENTITY)
    report = compare_commitments(mapped_commitments, states, contracts,
                                 store.deleted_keys(ENTITY), inactive_status)
    linked = {int(part["id"]) for state in store.states(INVOICE_ENTITY).values()
              for part in sent_parts(state).values()}
    requisitions = [dict(r, project_id=int(pid)) for pid in procore_projects["id"]
                    for r in client.requisitions(int(pid), per_page=1000)]
    hand_invoices = unmatched_requisitions(requisitions, linked, contracts)
    if len(hand_invoices):
        report = pd.concat([report, hand_invoices], ignore_index=True)

    code_of = dict(zip(procore_cost_codes["id"], procore_cost_codes["code"], strict=False))
    wanted = {c.po_number: c for c in mapped_commitments.commitments}
    by_origin = {c.get("origin_id"): c for c in contracts}
    drifted = report.index[(report["status"] == "drift") & report["po_number"].isin(list(wanted))]
    for i in drifted:  # line-level detail only where totals already differ
        po = report.at[i, "po_number"]
        contract = by_origin[wanted[po].header["origin_id"]]
        lines = client.contract_line_items(contract["project_id"], contract["id"])
        extra = cost_code_differences(wanted[po].lines, lines, code_of)
        report.at[i, "detail"] = "; ".join([report.at[i, "detail"], *extra])

    failing = report[report["status"].isin(FAILING)]
    if config.auto_heal and len(failing):
        store.apply([_heal(states[po]) for po in failing["po_number"] if po in states],
                    context.run.run_id)
        context.log.info(f"auto-heal: {len(failing)} record(s) will be re-sent on the next sync")
    yield dg.Output(report, metadata={
        "pos_checked": len(report),
        **{status: int((report["status"] == status).sum())
           for status in ("in_sync", "held", "deleted", *FAILING, *UNMATCHED)},
        "by_project": table_metadata(summarise(report)),
    })
    yield dg.AssetCheckResult(
        check_name="commitments_reconciled", passed=not len(failing),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"differences": len(failing), "list": table_metadata(failing)},
    )


def _heal(state) -> Change:
    """Forget what we wrote, so the next sync re-sends header and every line by origin_id."""
    summary = dict(state.summary or {})
    summary["header_hash"] = None
    summary["lines"] = {o: dict(info, hash=None) for o, info in summary.get("lines", {}).items()}
    return Change(entity=ENTITY, key=state.key, status="failed", action="reconcile",
                  reason="reconcile found a difference in Procore: our version will be re-sent",
                  procore_id=state.procore_id, project_id=state.project_id, content_hash=None,
                  x3_stamp=state.x3_stamp, summary=summary)
