"""Jobs by name, as users launch them from the UI or the sensors and schedules do."""


import dagster as dg

from mlc_dagster.defs.reference.assets import REFERENCE_LISTS
from mlc_dagster.settings import current_settings

# Runs carrying the same company tag queue behind each other (see dagster.yaml), so two
# runs never write to the same Procore company at once.
COMPANY_TAG = "mlc/procore_company"

# Each job names its assets: moving an asset to another folder or group never changes which
# job runs it (test_definitions pins every job's asset set).
PO_SYNC = dg.AssetSelection.assets(
    *REFERENCE_LISTS,  # all four Procore reference lists
    "x3_purchase_orders", "gl_cost_code_mapping", "mapped_commitments", "procore_commitments",
    "x3_purchase_invoices", "mapped_requisitions", "procore_requisitions",
)
RECONCILIATION = dg.AssetSelection.assets("reconciliation_report")
REFERENCE_SYNC = dg.AssetSelection.assets(
    "procore_projects", "procore_cost_codes", "procore_line_item_types",
    "x3_suppliers", "procore_vendor_directory", "supplier_vendor_sync", "x3_supplier_import_file",
    "procore_standard_cost_codes", "procore_sub_jobs", "desired_dimension_values",
    "x3_dimension_values", "x3_dimension_import_file",
)


def company_job(name: str, selection: dg.AssetSelection, description: str, *,
                config: dict | None = None, tags: dict[str, str] | None = None):
    """A job tagged with the Procore company (PROCORE_COMPANY_ID), so its runs queue behind
    the company's other runs, and run in one process: the graph is nearly linear and a
    subprocess per step costs ~10 s each on a small machine, which would blow the "PO in
    Procore within 60 s" bar."""
    return dg.define_asset_job(
        name=name, selection=selection, description=description, config=config,
        tags={COMPANY_TAG: current_settings().procore.company_id, **(tags or {})},
        executor_def=dg.in_process_executor)


sync_sage_x3_to_procore = company_job(
    "sync_sage_x3_to_procore", PO_SYNC,
    "Sage X3 purchase orders -> Procore commitments (staging, mapping, writes).")

replay_failed_transactions = company_job(
    "replay_failed_transactions", PO_SYNC,
    "Re-send failed records once the cause is fixed: all failed POs and invoices, or the PO / "
    "invoice numbers listed in each step's `keys`. A record amended in X3 since it failed is "
    "sent in its newer version; the stale payload is recorded as superseded.",
    config={"ops": {"procore_commitments": {"config": {"replay": True, "keys": []}},
                    "procore_requisitions": {"config": {"replay": True, "keys": []}}}},
    tags={"mlc/replay": "true"})

reconcile = company_job(
    "reconcile", PO_SYNC | RECONCILIATION,
    "Full read of X3 POs and invoices (inactivates the commitments of deleted POs, holds "
    "invoices deleted after they were sent), then compares every synced PO with its Procore "
    "commitment: report + failing check.",
    config={"ops": {"x3_purchase_orders": {"config": {"full_refresh": True}},
                    "x3_purchase_invoices": {"config": {"full_refresh": True}},
                    "reconciliation_report": {"config": {"auto_heal": False}}}})

sync_reference_data = company_job(
    "sync_reference_data", REFERENCE_SYNC,
    "Suppliers <-> Procore vendors both ways, and Procore cost codes, cost types and sub jobs "
    "-> Sage X3 dimension values. Hourly (MLC_REFERENCE_CRON) and on demand.")

# The preview job: `sync_preview` and what it reads (staging, Procore reference data, mapping,
# suppliers and dimension values as desired), never a write step: selected upstream of the
# plan asset, so an asset added to a write group does not join it (test_preview pins the set).
PREVIEW = dg.AssetSelection.assets("sync_preview").upstream()

# Queued with the writing runs: a plan made while a sync writes would be out of date.
preview_sync = company_job(
    "preview_sync", PREVIEW,
    "Go-live preview: reads X3 and Procore, plans every flow (POs, invoices, vendors, dimension "
    "values) and writes nothing; the plan is the sync_preview asset (tables in its metadata, "
    "CSV for sign-off). `mlc-dagster preview` runs it.",
    tags={"mlc/preview": "true"})
