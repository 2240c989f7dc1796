"""Supplier invoices -> Procore requisitions, inside the `sync_sage_x3_to_procore` job.

x3_purchase_invoices (staged, group sage_x3) -> mapped_requisitions (pure, group mapping)
-> procore_requisitions (write, group procore; runs after procore_commitments so that an
invoice syncs in the same run as its PO).
"""

import dagster as dg
import pandas as pd

from mlc_dagster.invoices.requisitions import (
    AFTER_SEND,
    ENTITY,
    DesiredRequisitions,
    build_desired_requisitions,
    plan_requisition_writes,
    preview_requisition_plan,
    requisition_preview_rows,
)
from mlc_dagster.invoices.settings import InvoiceSettings
from mlc_dagster.invoices.staging import StagedInvoices, stage_purchase_invoices
from mlc_dagster.invoices.writer import RequisitionWriter, read_procore_for_preview
from mlc_dagster.ledger.store import RETRIED_STATUSES, Ledger, RecordState
from mlc_dagster.preview.mode import ensure_live
from mlc_dagster.procore.commitment_sync import ENTITY as PO_ENTITY
from mlc_dagster.procore.write_guard import company_write_lock, fail_if_unavailable, run_breaker
from mlc_dagster.resources.http_core import WaitTooLong
from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.resources.procore import ProcoreResource
from mlc_dagster.resources.sage_x3 import SageX3Resource
from mlc_dagster.sage_x3.assets import StagingConfig
from mlc_dagster.sage_x3.snapshot import cursor_name, refresh_snapshot
from mlc_dagster.sage_x3.staging import StagedPurchaseOrders
from mlc_dagster.settings import Settings
from mlc_dagster.utils import table_metadata


@dg.asset(
    group_name="sage_x3",
    kinds={"pandas", "sage_x3"},
    check_specs=[dg.AssetCheckSpec("invoice_quarantine", asset="x3_purchase_invoices",
                                   description="Every X3 purchase invoice passes validation")],
)
def x3_purchase_invoices(context: dg.AssetExecutionContext, config: StagingConfig,
                         sage_x3: SageX3Resource, ledger: LedgerResource,
                         x3_purchase_orders: StagedPurchaseOrders):
    """Every Sage X3 purchase invoice (header + lines), validated; bad ones quarantined.

    Delta read by update stamp with overlap, merged into the ledger snapshot; each line
    must point at a PO that X3 has (valid or quarantined).
    """
    store = ledger.get_ledger()
    client = sage_x3.get_client()
    counts = refresh_snapshot(client, store, "purchase_invoice",
                              overlap_seconds=Settings.from_env().overlap_seconds,
                              full_refresh=config.full_refresh,
                              read_details=client.read_purchase_invoices)
    known = set(x3_purchase_orders.headers["po_number"]) | x3_purchase_orders.held_po_numbers
    staged = stage_purchase_invoices(list(store.snapshot("purchase_invoice")), known)
    context.log.info(f"X3 invoices: {counts['read']} read, {counts['changed']} changed; "
                     f"{len(staged.headers)} valid, {len(staged.quarantined)} quarantined")
    yield dg.Output(staged, metadata={
        "x3_records_read": counts["read"], "x3_records_changed": counts["changed"],
        "x3_records_deleted": counts["deleted"], "valid_invoices": len(staged.headers),
        "valid_lines": len(staged.lines), "quarantined_invoices": len(staged.quarantined),
        "high_water_stamp": store.get_cursor(cursor_name("purchase_invoice")) or "",
    })
    yield dg.AssetCheckResult(
        check_name="invoice_quarantine", passed=staged.quarantine.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantined_invoices": len(staged.quarantined),
                  "reasons": table_metadata(staged.quarantine)})


@dg.asset(group_name="mapping", kinds={"pandas"})
def mapped_requisitions(context: dg.AssetExecutionContext, x3_purchase_invoices: StagedInvoices,
                        x3_purchase_orders: StagedPurchaseOrders) -> dg.Output[DesiredRequisitions]:
    """Desired requisitions: one per (invoice, PO), amounts per PO line; credit memos and
    invoices not final in Sage X3 held."""
    desired = build_desired_requisitions(x3_purchase_invoices, x3_purchase_orders)
    held = desired.held_reasons()
    context.log.info(f"{len(desired.invoices)} invoices desired, {len(held)} held")
    return dg.Output(desired, metadata={
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


@dg.asset(
    group_name="procore",
    kinds={"procore"},
    pool="procore_api",
    deps=["procore_commitments"],
    retry_policy=dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL,
                                jitter=dg.Jitter.PLUS_MINUS),
)
def procore_requisitions(context: dg.AssetExecutionContext, config: RequisitionWriteConfig,
                         mapped_requisitions: DesiredRequisitions, procore: ProcoreResource,
                         ledger: LedgerResource) -> dg.MaterializeResult:
    """Create the requisitions of final X3 invoices not in Procore yet; never edit one.

    An X3 change to an invoice already in Procore is held with the difference (Procore keeps
    synced invoices immutable). Runs after procore_commitments and reads each PO's commitment
    and line item ids from the ledger, so an invoice waiting for its PO syncs in the run that
    syncs the PO. An invoice already typed into Procore by hand on the commitment (same
    invoice number, same total) is adopted, not created again. Plans and writes holding the
    Procore company's write lock; shares the run's circuit breaker with the commitments step
    (invoices not tried while Procore is unavailable are recorded `deferred`, and the step
    fails with "Procore unavailable since ...").
    """
    ensure_live("procore_requisitions")
    settings = InvoiceSettings.from_env()
    store = ledger.get_ledger()
    desired = mapped_requisitions
    client = procore.get_client()
    breaker = run_breaker(context.run.run_id)
    with company_write_lock(context, store, procore.company_id) as lock:
        states, po_states, deleted = read_invoice_ledger(store, desired)
        plan = plan_requisition_writes(desired, states, po_states, deleted)
        if config.replay:
            only = set(config.keys) or {k for k, s in states.items()
                                        if s.status in RETRIED_STATUSES}
            plan.writes = [w for w in plan.writes if w.invoice.invoice_number in only]
            plan.new_holds, plan.resolved = [], []
        limit = config.max_invoices or settings.max_invoices_per_run
        deferred = max(0, len(plan.writes) - limit)
        plan.writes = plan.writes[:limit]
        context.log.info(f"requisitions: {len(plan.writes)} invoices to create, "
                         f"{len(plan.unchanged)} unchanged, {len(plan.new_holds)} newly held, "
                         f"{deferred} deferred to the next run")
        writer = RequisitionWriter(client, store, context.run.run_id,
                                   create_periods=settings.create_billing_periods,
                                   log=context.log.info, breaker=breaker)
        try:
            outcomes = writer.run(plan)
        except WaitTooLong as exc:
            writer.batch.flush()
            raise dg.RetryRequested(max_retries=5,
                                    seconds_to_wait=min(exc.seconds, 3600)) from None
    rows = pd.DataFrame([{"invoice": o.invoice_number, "action": o.action, "status": o.status,
                          "requisition_id": o.procore_id,
                          "detail": o.reason or "; ".join(o.changes)} for o in outcomes],
                        columns=["invoice", "action", "status", "requisition_id", "detail"])
    synced = rows[rows["status"] == "synced"]
    metadata = {
        "created": int((synced["action"] == "create").sum()),
        "linked": int((synced["action"] == "link").sum()),  # found by origin_id, not re-created
        "adopted": int((synced["action"] == "adopt").sum()),  # typed by hand before go-live
        "unchanged": len(plan.unchanged),
        "held": int((rows["status"] == "held").sum()),
        "held_after_send": int(rows["detail"].str.startswith(AFTER_SEND).sum()),
        "resolved": int((synced["action"] == "resolve").sum()),
        "failed": int((rows["status"] == "failed").sum()),
        "deferred": deferred,  # over MLC_MAX_INVOICES_PER_RUN: planned again by the next run
        "deferred_procore_unavailable": len(writer.deferred),
        "procore_calls": client.stats.total_calls,
        "write_lock_wait_seconds": round(lock.waited, 1),
        "invoices_touched": table_metadata(rows),
    }
    fail_if_unavailable(breaker, len(writer.deferred), {
        k: v for k, v in metadata.items() if k != "invoices_touched"})
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


def preview_invoice_rows(store: Ledger, client, desired: DesiredRequisitions,
                         po_outcomes: dict[str, tuple[str, int | None]],
                         po_projects: dict[str, int]) -> list[dict]:
    """The purchase-invoice rows of `preview_sync`: what `procore_requisitions` would record
    in a live run after the commitments step (`po_outcomes`: PO number -> (predicted action,
    commitment id or None); `po_projects`: PO number -> project id). Reads the ledger and
    Procore (GETs only); writes nothing."""
    settings = InvoiceSettings.from_env()
    states, po_states, deleted = read_invoice_ledger(store, desired)
    preview = preview_requisition_plan(desired, states, po_states, po_outcomes, po_projects,
                                       deleted_keys=deleted,
                                       max_invoices=settings.max_invoices_per_run)
    reads = read_procore_for_preview(client, preview.plan)
    return requisition_preview_rows(preview, reads,
                                    create_periods=settings.create_billing_periods)
