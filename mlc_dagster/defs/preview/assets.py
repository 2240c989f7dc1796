"""`sync_preview`: what a live run would do to every PO, invoice, vendor and dimension value.

It calls each flow's own planner (the functions the write steps call), so a row's action is
the ledger action the live step would record for that record. It reads the ledger, Procore
and X3 and writes to neither, records no sync event, and exports no X3 import file; its only
output is this materialisation and a CSV under $DAGSTER_HOME/previews.
"""


from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd

from mlc_dagster.defs.dimensions.assets import (
    dimension_preview_rows,
    plan_dimension_step,
    read_x3_dimension_values,
)
from mlc_dagster.defs.dimensions.plan import ENTITY as DIMENSION
from mlc_dagster.defs.dimensions.plan import DesiredDimensions
from mlc_dagster.defs.invoices.assets import preview_invoice_rows
from mlc_dagster.defs.invoices.plan import DesiredRequisitions
from mlc_dagster.defs.preview.report import (
    NOT_WRITTEN,
    action_counts,
    markdown,
    preview_frame,
    to_csv,
    totals_by_action,
    totals_by_project,
)
from mlc_dagster.defs.purchase_orders.desired import DesiredCommitments
from mlc_dagster.defs.purchase_orders.plan import (
    commitment_plan_settings,
    commitment_preview_rows,
    plan_commitments,
)
from mlc_dagster.defs.purchase_orders.writer import CommitmentPlan, CommitmentWrite
from mlc_dagster.defs.suppliers.assets import plan_suppliers
from mlc_dagster.defs.suppliers.plan import supplier_preview_rows
from mlc_dagster.defs.suppliers.staging import StagedSuppliers
from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.resources.procore import ProcoreResource
from mlc_dagster.resources.sage_x3 import SageX3Resource
from mlc_dagster.resources.settings import SettingsResource
from mlc_dagster.x3_import.files import write_atomically

ROWS_SHOWN = 200
CAVEATS = (
    "- A plan cannot know what only a write reveals: a commitment Procore locked (Approved) "
    "since the last sync is listed as `update`; the live run records `change_order` (or "
    "`hold`, MLC_APPROVED_POLICY=hold) once Procore refuses the edit. Procore or X3 refusing a "
    "write (`fail`) shows only in the live run.\n"
    "- Each flow is planned against the systems as they are now: a PO held for a vendor the "
    "reference job (sync_reference_data) is about to create is created by the first PO sync "
    "after it. Preview again after that job if it lists vendor creations.\n"
    "- `defer`: over MLC_MAX_POS_PER_RUN, written by a later run.")
SHOWN_COLUMNS = ["flow", "key", "project", "action", "amount", "detail"]


@dg.asset(group_name="preview", kinds={"pandas", "csv"})
def sync_preview(context: dg.AssetExecutionContext, mapped_commitments: DesiredCommitments,
                 mapped_requisitions: DesiredRequisitions, x3_suppliers: StagedSuppliers,
                 procore_vendor_directory: list[dict],
                 desired_dimension_values: DesiredDimensions, procore_projects: pd.DataFrame,
                 procore: ProcoreResource, sage_x3: SageX3Resource, ledger: LedgerResource,
                 settings: SettingsResource) -> dg.Output[pd.DataFrame]:
    """Every change a live run would make, per PO / invoice / vendor / dimension value, with
    totals per project and a CSV for sign-off; writes nothing to Procore or Sage X3.

    A plan cannot know what only a write reveals: a commitment Procore locked (Approved) since
    the last sync is listed as `update` and the live run records `change_order` or `hold`;
    refusals (`fail`) show only live. Reference data is planned as Procore holds it now: POs
    held for a vendor the reference job is about to create are created after it.
    """
    run_settings = settings.get()
    po_rules, limit = run_settings.purchase_orders, run_settings.purchase_orders.max_pos_per_run
    store, client = ledger.get_ledger(), procore.get_client()
    plan = plan_commitments(mapped_commitments, store, client,
                            commitment_plan_settings(po_rules), record_scans=False)
    deferred = plan.writes[limit:]  # as the write step: a later run's
    plan.writes = plan.writes[:limit]
    rows = commitment_preview_rows(plan) + [deferred_row(w, limit) for w in deferred]
    outcomes = {**po_outcomes(plan), **{w.po_number: (NOT_WRITTEN, None) for w in deferred}}
    rows += preview_invoice_rows(store, client, mapped_requisitions, outcomes,
                                 {c.po_number: c.project_id for c in mapped_commitments.commitments},
                                 run_settings.invoices)
    x3_writes, reference = run_settings.x3_writes, run_settings.reference
    supplier_plan, _ = plan_suppliers(x3_suppliers, procore_vendor_directory, store, x3_writes,
                                      reference.supplier_rules)
    rows += supplier_preview_rows(supplier_plan,
                                  x3_by_file=x3_writes.supplier_write == "import_file")
    rows += dimension_preview_rows(plan_dimension_step(
        desired_dimension_values, store.states(DIMENSION),
        read_x3_dimension_values(sage_x3.get_client()), x3_writes,
        reference.dimension_types, datetime.now(UTC)))

    names = {int(p): str(n) for p, n in zip(procore_projects["id"], procore_projects["name"],
                                            strict=True)}
    df = preview_frame(rows, names)
    path = write_csv(to_csv(df), run_settings.home / "previews", context.run.run_id)
    by_project = totals_by_project(df)
    context.log.info(f"preview: {len(df)} record(s) would change; CSV {path}")
    return dg.Output(df, metadata={
        **action_counts(df),
        "rows": len(df),
        "projects": int((by_project["project_id"] != "").sum()) if len(by_project) else 0,
        "csv": dg.MetadataValue.path(str(path)),
        "by_project": dg.MetadataValue.md(markdown(by_project)),
        "by_action": dg.MetadataValue.md(markdown(totals_by_action(df))),
        "changes": dg.MetadataValue.md(markdown(df, ROWS_SHOWN, SHOWN_COLUMNS)),
        "procore_calls": client.stats.total_calls,
        "write_mode": run_settings.write_mode,
        "caveats": dg.MetadataValue.md(CAVEATS),
    })


def deferred_row(write: CommitmentWrite, limit: int) -> dict:
    """A PO past MLC_MAX_POS_PER_RUN: the live run records nothing for it; a later run writes it."""
    c = write.desired
    return {"flow": "purchase_order", "key": c.po_number, "project_id": c.project_id,
            "action": NOT_WRITTEN, "amount": None,
            "detail": f"over MLC_MAX_POS_PER_RUN ({limit}): {write.action} in a later run"}


def po_outcomes(plan: CommitmentPlan) -> dict[str, tuple[str, int | None]]:
    """PO -> (the action the commitments step would record, its commitment id when known):
    what the invoice plan needs to know about the POs the same run writes."""
    outcomes: dict[str, tuple[str, int | None]] = {}
    for write in plan.writes:
        known = (write.adoption.contract_id if write.adoption is not None
                 else write.state.procore_id if write.state else None)
        outcomes[write.po_number] = (write.action, known)
    for change in plan.new_holds:
        outcomes[change.key] = ("hold", change.procore_id)
    return outcomes


def write_csv(text: str, directory: Path, run_id: str) -> Path:
    """preview-<run id>.csv, complete or absent (the import files' atomic writer); UTF-8 with a
    BOM so a spreadsheet shows names with accents as typed."""
    return write_atomically(directory, f"preview-{run_id}.csv",
                            text.encode("utf-8-sig")).resolve()
