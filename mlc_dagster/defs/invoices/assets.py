"""Supplier invoices -> Procore requisitions, inside the `sync_sage_x3_to_procore` job.

x3_purchase_invoices (staged, group sage_x3) -> mapped_requisitions (pure, group mapping)
-> procore_requisitions (write, group procore; runs after procore_commitments so that an
invoice syncs in the same run as its PO).
"""

import time
from dataclasses import replace

import dagster as dg
import pandas as pd

from mlc_dagster.common.metadata import table_metadata
from mlc_dagster.common.write_mode import ensure_live
from mlc_dagster.defs.invoices.plan import (
    AFTER_SEND,
    ENTITY,
    DesiredRequisitions,
    build_desired_requisitions,
    plan_requisition_writes,
    preview_requisition_plan,
    requisition_preview_rows,
)
from mlc_dagster.defs.invoices.settings import InvoiceSettings
from mlc_dagster.defs.invoices.staging import StagedInvoices, stage_purchase_invoices
from mlc_dagster.defs.invoices.writer import RequisitionWriter, read_procore_for_preview
from mlc_dagster.defs.purchase_orders.staging import StagedPurchaseOrders, stage_purchase_orders
from mlc_dagster.defs.purchase_orders.writer import ENTITY as PO_ENTITY
from mlc_dagster.ledger.store import RETRIED_STATUSES, Ledger, RecordState
from mlc_dagster.procore_writes.continuation import hand_over
from mlc_dagster.procore_writes.write_guard import (
    fail_if_unavailable,
    procore_write_asset,
    procore_write_guard,
)
from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.resources.procore import ProcoreResource
from mlc_dagster.resources.sage_x3 import SageX3Resource
from mlc_dagster.resources.settings import SettingsResource
from mlc_dagster.x3_reads.config import StagingConfig, staging_asset
from mlc_dagster.x3_reads.scope import (
    INVOICE,
    PO,
    everything_reason,
    invoice_fingerprint,
    invoice_scope_records,
    mark_planned,
    select_scope,
)
from mlc_dagster.x3_reads.snapshot import cursor_name, refresh_from_x3


@staging_asset("x3_purchase_invoices", "invoices", check="invoice_quarantine",
               noun="purchase invoice")
def x3_purchase_invoices(context: dg.AssetExecutionContext, config: StagingConfig,
                         sage_x3: SageX3Resource, ledger: LedgerResource,
                         settings: SettingsResource, x3_purchase_orders: StagedPurchaseOrders):
    """The Sage X3 purchase invoices whose plan can have changed (header + lines), validated;
    bad ones quarantined.

    Delta read by update stamp with overlap, merged into the ledger snapshot. Staged: the
    invoices written in the snapshot since the last completed invoice plan, every held,
    failed, deferred or never planned one, those billing a PO changed since, and every
    invoice billing a PO one of those bills (x3_reads/scope.py); all of them on a full
    refresh, in a preview, before the first completed plan, or when the invoice settings or
    the code changed. Each line must point at a PO that X3 has (valid or quarantined). Runs
    after `x3_purchase_orders`, which brings the PO snapshot up to date.
    """
    run_settings = settings.get()
    store = ledger.get_ledger()
    client = sage_x3.get_client()
    counts = refresh_from_x3(client, store, INVOICE, x3=run_settings.x3,
                             full_refresh=config.full_refresh,
                             read_details=client.read_purchase_invoices)
    scope = select_scope(store, INVOICE,
                         everything_because=everything_reason(
                             context, full_refresh=config.full_refresh,
                             preview=run_settings.preview),
                         fingerprint=invoice_fingerprint(run_settings.invoices))
    records, scope = invoice_scope_records(store, scope)
    known = {key.strip() for key in store.snapshot_keys(PO)}  # valid or quarantined
    staged = replace(stage_purchase_invoices(records, known), scope=scope)
    context.log.info(f"X3 invoices: {counts['read']} read, {counts['changed']} changed; staged "
                     f"{len(records)} ({scope.describe()}): {len(staged.headers)} valid, "
                     f"{len(staged.quarantined)} quarantined")
    yield dg.Output(staged, metadata={
        "x3_records_read": counts["read"], "x3_records_changed": counts["changed"],
        "x3_records_deleted": counts["deleted"], "staged_invoices": len(records),
        "staging_scope": scope.describe(), "valid_invoices": len(staged.headers),
        "valid_lines": len(staged.lines), "quarantined_invoices": len(staged.quarantined),
        "high_water_stamp": store.get_cursor(cursor_name(INVOICE)) or "",
    })
    yield dg.AssetCheckResult(
        check_name="invoice_quarantine", passed=staged.quarantine.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantined_invoices": len(staged.quarantined),
                  # quarantined invoices are held in the ledger: every run stages them again
                  "staging_scope": scope.describe(),
                  "reasons": table_metadata(staged.quarantine)})


@dg.asset(group_name="invoices", kinds={"pandas"})
def mapped_requisitions(context: dg.AssetExecutionContext, x3_purchase_invoices: StagedInvoices,
                        x3_purchase_orders: StagedPurchaseOrders,
                        ledger: LedgerResource) -> dg.Output[DesiredRequisitions]:
    """Desired requisitions of the staged invoices: one per (invoice, PO), amounts per PO
    line; credit memos and invoices not final in Sage X3 held. The POs they bill come from
    the staged POs, else from the snapshot by number (a PO need not have changed for an
    invoice on it to)."""
    staged = x3_purchase_invoices
    pos = x3_purchase_orders
    missing = set(staged.lines["po_number"]) - pos.po_numbers - {""}
    if missing:
        pos = pos.plus(stage_purchase_orders(ledger.get_ledger().snapshot_records(PO, missing)))
    desired = build_desired_requisitions(staged, pos)
    desired.scope = staged.scope  # handed to mark_planned by procore_requisitions
    held = desired.held_reasons()
    scope = staged.scope.describe() if staged.scope is not None else "all"
    context.log.info(f"{len(desired.invoices)} invoices desired, {len(held)} held; staged "
                     f"{len(staged.headers) + len(staged.quarantined)} invoices ({scope}), "
                     f"{len(missing)} PO(s) read from the snapshot for them")
    return dg.Output(desired, metadata={
        "staged_invoices": len(staged.headers) + len(staged.quarantined),
        "staging_scope": scope,
        "pos_read_for_invoices": len(missing),
        "invoices": len(desired.invoices),
        "requisitions": sum(len(i.parts) for i in desired.invoices),
        "held_invoices": len(held),
        "held": table_metadata(pd.DataFrame(sorted(held.items()), columns=["invoice", "reason"])),
    })


class RequisitionWriteConfig(dg.Config):
    max_invoices: int = 0  # 0 = MLC_MAX_INVOICES_PER_RUN; the rest waits for the next run
    replay: bool = False  # only re-send failed and deferred invoices (or `keys`), nothing else
    keys: list[str] = []  # with replay: these invoice numbers only (empty = every failed or
    # deferred one)


@procore_write_asset(group_name="invoices", deps=["procore_commitments"])
def procore_requisitions(context: dg.AssetExecutionContext, config: RequisitionWriteConfig,
                         mapped_requisitions: DesiredRequisitions, procore: ProcoreResource,
                         ledger: LedgerResource, settings: SettingsResource
                         ) -> dg.MaterializeResult:
    """Create the requisitions of final X3 invoices not in Procore yet; never edit one.

    An X3 change to an invoice already in Procore is held with the difference (Procore keeps
    synced invoices immutable). Runs after procore_commitments and reads each PO's commitment
    and line item ids from the ledger, so an invoice waiting for its PO syncs in the run that
    syncs the PO. An invoice already typed into Procore by hand on the commitment (same
    invoice number, same total) is adopted, not created again. Plans and writes holding the
    Procore company's write lock; shares the run's circuit breaker with the commitments step
    (invoices not tried while Procore is unavailable are recorded `deferred`, and the step
    fails with "Procore unavailable since ..."); a pause at the rate limit or the per-run limit
    defers the rest and ends green, `continuing` (procore_writes/continuation.py).
    """
    run_settings = settings.get()
    ensure_live("procore_requisitions", run_settings.write_mode)
    rules = run_settings.invoices
    store = ledger.get_ledger()
    desired = mapped_requisitions
    client = procore.get_client()
    with procore_write_guard(context, store, procore.company_id,
                             run_settings.procore) as (lock, breaker):
        states, po_states, deleted = read_invoice_ledger(store, desired)
        recheck = config.replay or invoicing_recheck_due(store, rules)
        plan = plan_requisition_writes(desired, states, po_states, deleted,
                                       recheck_invoicing=recheck)
        if config.replay:
            only = set(config.keys) or {k for k, s in states.items()
                                        if s.status in RETRIED_STATUSES}
            plan.writes = [w for w in plan.writes if w.invoice.invoice_number in only]
            plan.new_holds, plan.resolved = [], []
        limit = config.max_invoices or rules.max_invoices_per_run
        over_limit = plan.writes[limit:]
        plan.writes = plan.writes[:limit]
        context.log.info(f"requisitions: {len(plan.writes)} invoices to create, "
                         f"{len(plan.unchanged)} unchanged, {len(plan.new_holds)} newly held, "
                         f"{len(over_limit)} over MLC_MAX_INVOICES_PER_RUN ({limit}), "
                         "continued by the next run")
        writer = RequisitionWriter(client, store, context.run.run_id,
                                   create_periods=rules.create_billing_periods,
                                   log=context.log.info, breaker=breaker,
                                   progress_settings=run_settings.procore.progress)
        outcomes = writer.run(plan)
        writer.defer(over_limit, f"over MLC_MAX_INVOICES_PER_RUN ({limit}): continued by the "
                                 "next run")
        handed_over = hand_over(store, breaker, context.run.run_id,
                                deferred=len(writer.deferred), over_limit=len(over_limit))
        if recheck:  # an awaiting invoice this run did not reach is `deferred`: tried next run
            store.set_cursor(RECHECK_CURSOR, f"{time.time():.3f}")
    rows = pd.DataFrame([{"invoice": o.key, "action": o.action, "status": o.status,
                          "requisition_id": o.procore_id,
                          "detail": o.reason or "; ".join(o.changes)} for o in outcomes],
                        columns=["invoice", "action", "status", "requisition_id", "detail"])
    synced = rows[rows["status"] == "synced"]
    metadata = {
        "created": int((synced["action"] == "create").sum()),
        "linked": int((synced["action"] == "link").sum()),  # found by origin_id, not re-created
        "adopted": int((synced["action"] == "adopt").sum()),  # typed by hand before go-live
        "unchanged": len(plan.unchanged),
        # held for invoicing disabled, not re-checked this run (MLC_INVOICING_RECHECK_SECONDS)
        "awaiting_invoicing": len(plan.awaiting_invoicing),
        "held": int((rows["status"] == "held").sum()),
        "held_after_send": int(rows["detail"].str.startswith(AFTER_SEND).sum()),
        "resolved": int((synced["action"] == "resolve").sum()),
        "failed": int((rows["status"] == "failed").sum()),
        "deferred": len(over_limit),  # over MLC_MAX_INVOICES_PER_RUN: continued by the next run
        "deferred_procore_unavailable": 0 if breaker.is_paused else len(writer.deferred),
        "deferred_rate_limit": len(writer.deferred) if breaker.is_paused else 0,
        **handed_over,
        **{k: v for k, v in writer.progress.items() if k not in {"written", "remaining"}},
        "procore_calls": client.stats.total_calls,
        "write_lock_wait_seconds": round(lock.waited, 1),
        "invoices_touched": table_metadata(rows),
    }
    fail_if_unavailable(breaker, len(writer.deferred), {
        k: v for k, v in metadata.items() if k != "invoices_touched"})
    mark_planned(store, ENTITY, mapped_requisitions.scope,
                 complete=not config.replay)
    return dg.MaterializeResult(metadata=metadata)


def read_invoice_ledger(store: Ledger, desired: DesiredRequisitions) -> tuple[
        dict[str, RecordState], dict[str, RecordState], set[str]]:
    """What the invoice step plans from: the invoices' ledger states, the PO ledger states of
    every PO they bill or billed, and the invoices a full read found deleted in X3."""
    deleted = store.deleted_keys(ENTITY)  # found by a full read (the reconcile job)
    states = store.states(ENTITY, [i.invoice_number for i in desired.invoices]
                          + list(desired.held_reasons()) + sorted(deleted))
    pos = {p.po_number for i in desired.invoices for p in i.parts} | {
        po for s in states.values() for po in ((s.summary or {}).get("parts") or {})}
    return states, store.states(PO_ENTITY, pos), deleted


RECHECK_CURSOR = "invoicing_rechecked_at"


def invoicing_recheck_due(store: Ledger, settings: InvoiceSettings) -> bool:
    """Whether this run tries again the invoices held because their commitment refuses
    invoices: at most every MLC_INVOICING_RECHECK_SECONDS (a commitment read each), so that
    a run with nothing to do makes no Procore call. The preview asks the same question."""
    last = store.get_cursor(RECHECK_CURSOR)
    return not last or time.time() - float(last) >= settings.invoicing_recheck_seconds


def preview_invoice_rows(store: Ledger, client, desired: DesiredRequisitions,
                         po_outcomes: dict[str, tuple[str, int | None]],
                         po_projects: dict[str, int], settings: InvoiceSettings) -> list[dict]:
    """The purchase-invoice rows of `preview_sync`: what `procore_requisitions` would record
    in a live run after the commitments step (`po_outcomes`: PO number -> (predicted action,
    commitment id or None); `po_projects`: PO number -> project id). Reads the ledger and
    Procore (GETs only); writes nothing."""
    states, po_states, deleted = read_invoice_ledger(store, desired)
    preview = preview_requisition_plan(desired, states, po_states, po_outcomes, po_projects,
                                       deleted_keys=deleted,
                                       max_invoices=settings.max_invoices_per_run,
                                       recheck_invoicing=invoicing_recheck_due(store, settings))
    reads = read_procore_for_preview(client, preview.plan)
    return requisition_preview_rows(preview, reads,
                                    create_periods=settings.create_billing_periods)
