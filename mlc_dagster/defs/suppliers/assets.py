"""Suppliers <-> vendors, in the `sync_reference_data` job.

x3_suppliers (staged X3 suppliers) + procore_vendor_directory (every Procore vendor, active
and inactive) -> supplier_vendor_sync (plan against the ledger, write X3 then Procore)
-> x3_supplier_import_file (MLC_X3_SUPPLIER_WRITE=import_file: the X3 side as import files).
"""

from dataclasses import replace

import dagster as dg
import pandas as pd

from mlc_dagster.common.metadata import table_metadata
from mlc_dagster.common.write_mode import ensure_live
from mlc_dagster.defs.suppliers.exports import SupplierExports
from mlc_dagster.defs.suppliers.plan import (
    SUPPLIER,
    VENDOR,
    SupplierPlan,
    SupplierRules,
    plan_supplier_sync,
)
from mlc_dagster.defs.suppliers.staging import StagedSuppliers, stage_suppliers
from mlc_dagster.defs.suppliers.writer import SupplierWriter
from mlc_dagster.ledger.store import Ledger
from mlc_dagster.procore_writes.write_guard import company_write_lock
from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.resources.procore import ProcoreResource
from mlc_dagster.resources.sage_x3 import SageX3Resource
from mlc_dagster.resources.settings import SettingsResource
from mlc_dagster.x3_import.assets import import_file_asset
from mlc_dagster.x3_import.files import EXPORT_ACTION, PENDING, ExportBatch
from mlc_dagster.x3_import.settings import X3WriteSettings
from mlc_dagster.x3_reads.config import StagingConfig, staging_asset
from mlc_dagster.x3_reads.snapshot import cursor_name, refresh_from_x3

GROUP = {"group_name": "suppliers"}


@staging_asset("x3_suppliers", "suppliers", check="supplier_quarantine", noun="supplier")
def x3_suppliers(context: dg.AssetExecutionContext, config: StagingConfig,
                 sage_x3: SageX3Resource, ledger: LedgerResource, settings: SettingsResource):
    """Every Sage X3 supplier, validated; delta read by update stamp into the ledger snapshot."""
    store = ledger.get_ledger()
    counts = refresh_from_x3(sage_x3.get_client(), store, "supplier", x3=settings.get().x3,
                             full_refresh=config.full_refresh)
    staged = stage_suppliers(list(store.snapshot("supplier")))
    context.log.info(f"X3 suppliers: {counts['read']} read, {counts['changed']} changed; "
                     f"{len(staged.suppliers)} valid, {len(staged.reasons())} quarantined")
    yield dg.Output(staged, metadata={
        "x3_records_read": counts["read"], "x3_records_changed": counts["changed"],
        "valid_suppliers": len(staged.suppliers), "quarantined_suppliers": len(staged.reasons()),
        "high_water_stamp": store.get_cursor(cursor_name("supplier")) or ""})
    yield dg.AssetCheckResult(
        check_name="supplier_quarantine", passed=staged.quarantine.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantined_suppliers": len(staged.reasons()),
                  "reasons": table_metadata(staged.quarantine)})


@dg.asset(**GROUP, kinds={"procore"})
def procore_vendor_directory(procore: ProcoreResource) -> dg.Output[list[dict]]:
    """Every company vendor, active and inactive, once each.

    The OAS says `GET /vendors` returns "all Vendors associated with a Company"; the inactive
    listing is read as well in case a company's `/vendors` leaves them out, and merged by id.
    """
    client = procore.get_client()
    listed = client.vendors() + client.list_all(
        f"/rest/v1.0/companies/{client.company_id}/vendors/inactive")
    vendors = list({int(v["id"]): v for v in reversed(listed)}.values())
    return dg.Output(vendors, metadata={
        "vendors": len(vendors), "inactive": sum(v.get("is_active") is False for v in vendors),
        "linked_to_x3": sum(bool(v.get("origin_id")) for v in vendors)})


@dg.asset(**GROUP, kinds={"procore", "sage_x3"}, pool="procore_api",
          check_specs=[dg.AssetCheckSpec(
              "no_ambiguous_vendor_matches", asset="supplier_vendor_sync",
              description="No X3 supplier matches several Procore vendors or the reverse")])
def supplier_vendor_sync(context: dg.AssetExecutionContext, x3_suppliers: StagedSuppliers,
                         procore_vendor_directory: list[dict], procore: ProcoreResource,
                         sage_x3: SageX3Resource, ledger: LedgerResource,
                         settings: SettingsResource):
    """Bring suppliers and vendors in step both ways; write only what differs from the ledger.

    X3 suppliers become vendors (vendors/sync keyed by origin_id = supplier code); Procore-only
    vendors become X3 suppliers and are linked back; pre-existing look-alikes are linked, and
    ambiguous ones listed, never merged. The X3 side goes to an import file by default
    (MLC_X3_SUPPLIER_WRITE=import_file; output for x3_supplier_import_file) and is `exported`
    until X3 shows it; `api` writes it through the web API (needs a writable class or a
    GESAPIOPE operation: standard X3 suppliers, function GESBPS, are read-only there).
    Plans and writes holding the Procore company's write lock (procore_writes/write_guard.py).
    """
    run_settings = settings.get()
    ensure_live("supplier_vendor_sync", run_settings.write_mode)
    store = ledger.get_ledger()
    x3_writes = run_settings.x3_writes
    with company_write_lock(context, store, procore.company_id,
                            run_settings.procore.write_lock_wait_seconds) as lock:
        plan, exports = plan_suppliers(x3_suppliers, procore_vendor_directory, store, x3_writes,
                                       run_settings.reference.supplier_rules)
        context.log.info(f"suppliers: {len(plan.pairs)} pairs to write, {len(plan.creates)} X3 "
                         f"suppliers to create, {len(plan.unchanged)} unchanged, "
                         f"{len(plan.holds)} newly held, {len(plan.pending)} waiting for X3 "
                         "import")
        outcomes = SupplierWriter(procore.get_client(), sage_x3.get_client(), store,
                                  context.run.run_id, log=context.log.info,
                                  exports=exports).run(plan)
    rows = pd.DataFrame([dict(vars(o), detail=o.detail) for o in outcomes],
                        columns=["entity", "key", "action", "status", "detail"])
    synced = rows[rows["status"] == "synced"]
    count = synced.groupby(["entity", "action"]).size()
    batches: list[ExportBatch] = exports.batches() if exports is not None else []
    yield dg.Output(batches, metadata={
        "write_mode": x3_writes.supplier_write,
        "vendors_created": int(count.get((SUPPLIER, "create"), 0)),
        "x3_suppliers_created": int(count.get((VENDOR, "create"), 0)),
        "linked": int(count.get((SUPPLIER, "link"), 0)),
        "updated": int(count.get((SUPPLIER, "update"), 0)),
        "confirmed_in_x3": len(plan.confirms),
        "to_export": int(((rows["status"] == PENDING) & (rows["action"] == EXPORT_ACTION)).sum()),
        "waiting_for_x3_import": len(plan.pending),
        "unchanged": len(plan.unchanged),
        "held": int((rows["status"] == "held").sum()),
        "failed": int((rows["status"] == "failed").sum()),
        "write_lock_wait_seconds": round(lock.waited, 1),
        "touched": table_metadata(rows)})
    yield dg.AssetCheckResult(
        check_name="no_ambiguous_vendor_matches", passed=plan.ambiguous.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"ambiguous_groups": len(plan.ambiguous),
                  "to_decide": table_metadata(plan.ambiguous)})


def plan_suppliers(x3_suppliers: StagedSuppliers, vendors: list[dict], store: Ledger,
                   settings: X3WriteSettings, rules: SupplierRules
                   ) -> tuple[SupplierPlan, SupplierExports | None]:
    """The supplier plan as the write step makes it (the preview calls it too, so its rows
    are what the write step would do), and the import-file queue when X3 is written by file.
    `rules`: MLC_VENDOR_CONTACT_OWNER, MLC_X3_NEW_SUPPLIER_PREFIX (ReferenceSettings)."""
    exports = None
    if settings.supplier_write == "import_file":
        missing = settings.missing_supplier_defaults
        rules = replace(rules, x3_contact_writable=False, pending_hours=settings.pending_hours,
                        x3_create_problem=(
                            f"set MLC_X3_NEW_SUPPLIER_DEFAULTS ({', '.join(missing)} missing): X3 "
                            "needs them to create a supplier by import (template BPS)"
                            if missing else ""))
        exports = SupplierExports(settings.supplier_template, settings.supplier_update_template,
                                  settings.new_supplier_defaults)
    plan = plan_supplier_sync(x3_suppliers.suppliers, x3_suppliers.reasons(), vendors,
                              store.states(SUPPLIER), store.states(VENDOR), rules,
                              x3_suppliers.stamps)
    return plan, exports


x3_supplier_import_file = import_file_asset(
    "x3_supplier_import_file", "suppliers", "supplier_vendor_sync",
    "new suppliers and supplier changes (BPS)")
