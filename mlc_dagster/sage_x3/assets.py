"""Staged Sage X3 records: the current state of every X3 PO, kept up to date incrementally."""

from dataclasses import replace
from functools import partial

import dagster as dg

from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.resources.sage_x3 import SageX3Resource
from mlc_dagster.sage_x3.scope import PO, everything_reason, scope_records, select_scope
from mlc_dagster.sage_x3.snapshot import cursor_name, refresh_snapshot, x3_read_concurrency
from mlc_dagster.sage_x3.staging import stage_purchase_orders
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
    """The Sage X3 POs whose plan can have changed (header + lines), validated; bad POs
    quarantined.

    Each run reads only what changed since the last update stamp and merges it into the
    ledger's snapshot, then stages the POs written in the snapshot since the last completed
    plan plus every held, failed, deferred or never planned one (sage_x3/scope.py); all of
    them on a full refresh, in a preview, or before the first completed plan. Mapping widens
    this to every PO when the mapping, Procore reference data, settings or code changed.
    """
    settings = Settings.from_env()
    store = ledger.get_ledger()
    client = sage_x3.get_client()
    counts = refresh_snapshot(client, store, PO,
                              overlap_seconds=settings.overlap_seconds,
                              full_refresh=config.full_refresh,
                              read_details=partial(client.read_purchase_orders,
                                                   max_concurrency=x3_read_concurrency()),
                              poll_lines=True)
    why = everything_reason(context, full_refresh=config.full_refresh)
    scope = select_scope(store, PO, everything_because=why)
    staged = replace(stage_purchase_orders(scope_records(store, scope)), scope=scope)
    context.log.info(f"X3 POs: {counts['read']} read in the window, {counts['changed']} changed "
                     f"({counts['line_changes']} by line stamps only); staged "
                     f"{len(staged.po_numbers)} ({scope.describe()}): "
                     f"{len(staged.headers)} valid, {len(staged.held_po_numbers)} quarantined")
    yield dg.Output(staged, metadata={
        "x3_records_read": counts["read"], "x3_records_changed": counts["changed"],
        "x3_records_deleted": counts["deleted"], "x3_line_only_changes": counts["line_changes"],
        "staged_pos": len(staged.po_numbers), "staging_scope": scope.describe(),
        "valid_pos": len(staged.headers),
        "valid_lines": len(staged.lines), "quarantined_pos": len(staged.held_po_numbers),
        "high_water_stamp": store.get_cursor(cursor_name(PO)) or "",
    })
    yield dg.AssetCheckResult(
        check_name="po_quarantine", passed=len(staged.quarantine) == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantined_pos": len(staged.held_po_numbers),
                  # quarantined POs are held in the ledger, so every run stages them again
                  "staging_scope": scope.describe(),
                  "reasons": table_metadata(staged.quarantine[["po_number", "line_number", "reason"]])},
    )
