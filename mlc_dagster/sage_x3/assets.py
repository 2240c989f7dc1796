"""Staged Sage X3 records: the current state of every X3 PO, kept up to date incrementally."""


import dagster as dg

from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.resources.sage_x3 import SageX3Resource
from mlc_dagster.sage_x3.snapshot import cursor_name, refresh_snapshot
from mlc_dagster.sage_x3.staging import StagedPurchaseOrders, stage_purchase_orders
from mlc_dagster.settings import Settings
from mlc_dagster.utils import table_metadata


class StagingConfig(dg.Config):
    full_refresh: bool = False  # re-read every PO from X3 (also finds POs deleted in X3)


@dg.asset(
    group_name="sage_x3",
    kinds={"pandas", "sage_x3"},
    check_specs=[dg.AssetCheckSpec("po_quarantine", asset="x3_purchase_orders",
                                   description="Every X3 PO passes validation")],
)
def x3_purchase_orders(context: dg.AssetExecutionContext, config: StagingConfig,
                       sage_x3: SageX3Resource, ledger: LedgerResource):
    """Every open and closed Sage X3 PO (header + lines), validated; bad POs quarantined.

    Each run reads only what changed since the last update stamp and merges it into
    the ledger's snapshot, then stages the whole snapshot so downstream can compute
    the desired Procore state (and retry held POs without any change in X3).
    """
    settings = Settings.from_env()
    store = ledger.get_ledger()
    client = sage_x3.get_client()
    counts = refresh_snapshot(client, store, "purchase_order",
                              overlap_seconds=settings.overlap_seconds,
                              full_refresh=config.full_refresh,
                              read_details=client.read_purchase_orders, poll_lines=True)
    staged: StagedPurchaseOrders = stage_purchase_orders(list(store.snapshot("purchase_order")))
    context.log.info(f"X3 POs: {counts['read']} read in the window, {counts['changed']} changed "
                     f"({counts['line_changes']} by line stamps only); "
                     f"{len(staged.headers)} valid, {len(staged.held_po_numbers)} quarantined")
    yield dg.Output(staged, metadata={
        "x3_records_read": counts["read"], "x3_records_changed": counts["changed"],
        "x3_records_deleted": counts["deleted"], "x3_line_only_changes": counts["line_changes"],
        "valid_pos": len(staged.headers),
        "valid_lines": len(staged.lines), "quarantined_pos": len(staged.held_po_numbers),
        "high_water_stamp": store.get_cursor(cursor_name("purchase_order")) or "",
    })
    yield dg.AssetCheckResult(
        check_name="po_quarantine", passed=len(staged.quarantine) == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantined_pos": len(staged.held_po_numbers),
                  "reasons": table_metadata(staged.quarantine[["po_number", "line_number", "reason"]])},
    )
