"""The purchase-order flow's assets: X3 POs staged, mapped to desired commitments through
the accountants' GL -> cost code table, and written to Procore as commitments.

Data path: x3_purchase_orders -> gl_cost_code_mapping + Procore reference data ->
mapped_commitments -> procore_commitments (docs/architecture.md).
"""

from dataclasses import replace

import dagster as dg
import pandas as pd

from mlc_dagster.common.metadata import table_metadata
from mlc_dagster.common.write_mode import ensure_live
from mlc_dagster.defs.purchase_orders.desired import (
    CommitmentRules,
    DesiredCommitments,
    build_desired_commitments,
)
from mlc_dagster.defs.purchase_orders.gl_map import GlMapping, parse_gl_mapping, parse_project_map
from mlc_dagster.defs.purchase_orders.plan import commitment_plan_settings, plan_commitments
from mlc_dagster.defs.purchase_orders.staging import StagedPurchaseOrders, stage_purchase_orders
from mlc_dagster.defs.purchase_orders.writer import ENTITY, CommitmentWriter
from mlc_dagster.ledger.store import RETRIED_STATUSES, Ledger
from mlc_dagster.procore_writes.continuation import hand_over
from mlc_dagster.procore_writes.write_guard import (
    fail_if_unavailable,
    procore_write_asset,
    procore_write_guard,
)
from mlc_dagster.resources.http_core import WaitTooLong
from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.resources.procore import ProcoreResource
from mlc_dagster.resources.sage_x3 import SageX3Resource
from mlc_dagster.resources.settings import SettingsResource
from mlc_dagster.settings import read_text
from mlc_dagster.x3_reads.config import StagingConfig, staging_asset
from mlc_dagster.x3_reads.scope import (
    PO,
    commitment_fingerprint,
    confirm_fingerprint,
    everything_reason,
    mark_planned,
    scope_records,
    select_scope,
)
from mlc_dagster.x3_reads.snapshot import cursor_name, refresh_from_x3


@staging_asset("x3_purchase_orders", "purchase_orders", check="po_quarantine", noun="PO")
def x3_purchase_orders(context: dg.AssetExecutionContext, config: StagingConfig,
                       sage_x3: SageX3Resource, ledger: LedgerResource,
                       settings: SettingsResource):
    """The Sage X3 POs whose plan can have changed (header + lines), validated; bad POs
    quarantined.

    Each run reads only what changed since the last update stamp and merges it into the
    ledger's snapshot, then stages the POs written in the snapshot since the last completed
    plan plus every held, failed, deferred or never planned one (x3_reads/scope.py); all of
    them on a full refresh, in a preview, or before the first completed plan. Mapping widens
    this to every PO when the mapping, Procore reference data, settings or code changed.
    """
    run_settings = settings.get()
    store = ledger.get_ledger()
    client = sage_x3.get_client()
    counts = refresh_from_x3(client, store, PO, x3=run_settings.x3,
                             full_refresh=config.full_refresh,
                             read_details=client.read_purchase_orders, poll_lines=True)
    why = everything_reason(context, full_refresh=config.full_refresh,
                            preview=run_settings.preview)
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


@dg.asset(group_name="purchase_orders", kinds={"csv"})
def gl_cost_code_mapping(settings: SettingsResource) -> dg.Output[GlMapping]:
    """The GL account -> cost code CSV (path: MLC_GL_MAPPING_CSV), parsed and fingerprinted;
    keyed by what MLC_MAPPING_KEY maps PO lines by."""
    run_settings = settings.get()
    path = run_settings.purchase_orders.gl_mapping_path
    try:
        mapping = parse_gl_mapping(read_text(path), source=path,
                                   key=run_settings.x3.names.mapping_key)
    except (OSError, ValueError) as exc:  # MappingError is a ValueError
        raise dg.Failure(f"cannot use the GL mapping: {exc}") from None
    return dg.Output(mapping, metadata={
        "path": path, "rows": len(mapping.table), "fingerprint": mapping.fingerprint,
        "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in mapping.problems) or "_none_"),
        "warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in mapping.warnings) or "_none_"),
    })


@dg.asset(
    group_name="purchase_orders",
    kinds={"pandas"},
    check_specs=[dg.AssetCheckSpec("unmapped_gl_accounts", asset="mapped_commitments",
                                   description="Every GL account used on a PO line has a mapping")],
)
def mapped_commitments(
    context: dg.AssetExecutionContext,
    x3_purchase_orders: StagedPurchaseOrders,
    gl_cost_code_mapping: GlMapping,
    procore_projects: pd.DataFrame,
    procore_vendors: pd.DataFrame,
    procore_cost_codes: pd.DataFrame,
    procore_line_item_types: pd.DataFrame,
    ledger: LedgerResource,
    settings: SettingsResource,
):
    """Desired Procore commitments (headers + line items) for every placeable staged PO; the
    rest held. Every PO of the snapshot when the plan fingerprint (mapping, Procore reference
    data, planning settings, code) differs from the last completed plan's."""
    rules = settings.get().purchase_orders
    map_text = read_text(rules.project_map_path) if rules.by_project_table else ""
    table = parse_project_map(map_text) if rules.by_project_table else {}
    fingerprint = commitment_fingerprint(
        gl_cost_code_mapping.fingerprint, map_text,
        {"projects": procore_projects, "vendors": procore_vendors,
         "cost_codes": procore_cost_codes, "line_item_types": procore_line_item_types},
        (rules.project_match, rules.new_commitment_status, rules.inactive_status,
         rules.approved_policy, rules.adoption))
    store = ledger.get_ledger()
    staged_scope = x3_purchase_orders.scope
    scope = confirm_fingerprint(store, staged_scope, fingerprint)
    staged = x3_purchase_orders
    if scope.everything and staged_scope is not None and not staged_scope.everything:
        staged = stage_purchase_orders(scope_records(store, scope))
    staged = replace(staged, scope=scope)
    desired = build_desired_commitments(
        staged, gl_cost_code_mapping, procore_projects, procore_vendors,
        procore_cost_codes, procore_line_item_types,
        CommitmentRules(project_rule=rules.project_match, project_table=table),
    )
    held = desired.held_reasons()
    context.log.info(f"{len(desired.commitments)} commitments desired, {len(held)} POs held; "
                     f"staged {len(staged.po_numbers)} POs ({scope.describe()})")
    yield dg.Output(desired, metadata={
        "staged_pos": len(staged.po_numbers), "staging_scope": scope.describe(),
        "commitments": len(desired.commitments),
        "line_items": sum(len(c.lines) for c in desired.commitments),
        "held_pos": len(held),
        "held": table_metadata(pd.DataFrame(sorted(held.items()), columns=["po", "reason"])),
    })
    unmapped = desired.unmapped.groupby("gl_account")["po_number"].apply(
        lambda s: ", ".join(sorted(set(s)))).reset_index(name="held_pos")
    yield dg.AssetCheckResult(
        check_name="unmapped_gl_accounts", passed=len(unmapped) == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"unmapped_gl_accounts": len(unmapped), "accounts": table_metadata(unmapped)},
    )


class CommitmentWriteConfig(dg.Config):
    """Run config of the write step (the replay job sets `replay`)."""

    max_pos: int = 0  # 0 = MLC_MAX_POS_PER_RUN; the rest waits for the next run
    replay: bool = False  # only re-send failed and deferred records (or `keys`), nothing else
    keys: list[str] = []  # with replay: these PO numbers only (empty = every failed/deferred PO)


@procore_write_asset(group_name="purchase_orders")
def procore_commitments(context: dg.AssetExecutionContext, config: CommitmentWriteConfig,
                        mapped_commitments: DesiredCommitments, procore: ProcoreResource,
                        ledger: LedgerResource, settings: SettingsResource
                        ) -> dg.MaterializeResult:
    """Write the difference between desired commitments and what the ledger says was written.

    Headers go through `purchase_order_contracts/sync` (one call per project per <=1000 POs),
    lines through one `line_items/sync` per changed PO; removed lines are deleted. Unchanged
    POs cost nothing. Outcomes (synced / held / failed / deferred, with reasons) go to the
    ledger. Plans and writes holding the Procore company's write lock (procore_writes/write_guard.py);
    when Procore is unavailable (the run's circuit breaker opens) the POs not tried are
    recorded `deferred` and the step fails with "Procore unavailable since ...". When the
    rate-limit allowance is used up for longer than it may wait, or MLC_MAX_POS_PER_RUN is
    reached, the rest is deferred too but the step ends green, `continuing`: the next run
    takes over (procore_writes/continuation.py). Progress is logged at least once a minute.
    """
    run_settings = settings.get()
    ensure_live("procore_commitments", run_settings.write_mode)
    rules = run_settings.purchase_orders
    store: Ledger = ledger.get_ledger()
    client = procore.get_client()
    with procore_write_guard(context, store, procore.company_id,
                             run_settings.procore) as (lock, breaker):
        only_keys = None
        if config.replay:
            only_keys = set(config.keys) or set(store.keys_with_status(ENTITY, RETRIED_STATUSES))
            context.log.info(f"replay: {len(only_keys)} record(s) selected")
        try:
            plan = plan_commitments(mapped_commitments, store, client,
                                    commitment_plan_settings(rules), only_keys=only_keys,
                                    replay=config.replay)
        except WaitTooLong as exc:  # a project scan met a used-up allowance: nothing written
            breaker.pause(exc.resume_at, exc.reason)
            handed_over = hand_over(store, breaker, context.run.run_id,
                                    deferred=len(mapped_commitments.commitments), over_limit=0)
            context.log.info(f"commitments: not planned, {breaker.reason()}")
            return dg.MaterializeResult(metadata={**handed_over, "planned": False})
        limit = config.max_pos or rules.max_pos_per_run
        over_limit = plan.writes[limit:]
        plan.writes = plan.writes[:limit]
        adopting = sum(w.action == "adopt" for w in plan.writes)
        context.log.info(f"commitments: {len(plan.writes)} to write ({adopting} adopting a "
                         f"hand-made twin), {len(plan.unchanged)} unchanged, "
                         f"{len(plan.new_holds)} newly held, {len(over_limit)} over "
                         f"MLC_MAX_POS_PER_RUN ({limit}), continued by the next run")
        writer = CommitmentWriter(client, store, context.run.run_id, log=context.log.info,
                                  approved_policy=rules.approved_policy, breaker=breaker,
                                  progress_settings=run_settings.procore.progress)
        outcomes = writer.run(plan)
        writer.defer(over_limit, f"over MLC_MAX_POS_PER_RUN ({limit}): continued by the next run")
        handed_over = hand_over(store, breaker, context.run.run_id,
                                deferred=len(writer.deferred), over_limit=len(over_limit))

    rows = pd.DataFrame([
        {"po": o.key, "action": o.action, "status": o.status, "procore_id": o.procore_id,
         "detail": o.reason or "; ".join(o.changes)} for o in outcomes
    ], columns=["po", "action", "status", "procore_id", "detail"])
    count = rows.groupby(["status", "action"]).size() if len(rows) else pd.Series(dtype=int)
    stats = client.stats
    metadata = {
        "created": int(count.get(("synced", "create"), 0)),
        "updated": int(count.get(("synced", "update"), 0)),
        "inactivated": int(count.get(("synced", "inactivate"), 0)),
        "replayed": int(count.get(("synced", "replay"), 0)),
        "change_orders": int(count.get(("synced", "change_order"), 0)),
        "adopted": int(count.get(("synced", "adopt"), 0)),
        "projects_scanned": len(plan.scans),
        "superseded": len(plan.superseded),
        "unchanged": len(plan.unchanged),
        "held": int((rows["status"] == "held").sum()) if len(rows) else 0,
        "failed": int((rows["status"] == "failed").sum()) if len(rows) else 0,
        "deferred": len(over_limit),  # over MLC_MAX_POS_PER_RUN: continued by the next run
        "deferred_procore_unavailable": 0 if breaker.is_paused else len(writer.deferred),
        "deferred_rate_limit": len(writer.deferred) if breaker.is_paused else 0,
        **handed_over,
        **{k: v for k, v in writer.progress.items() if k not in {"written", "remaining"}},
        "procore_calls": stats.total_calls,
        "procore_429s": stats.rate_limited,
        "rate_limit_wait_seconds": round(stats.waited_seconds, 1),
        "write_lock_wait_seconds": round(lock.waited, 1),
        "pos_touched": table_metadata(rows),
    }
    fail_if_unavailable(breaker, len(writer.deferred), {
        k: v for k, v in metadata.items() if k != "pos_touched"})
    mark_planned(store, ENTITY, mapped_commitments.scope, complete=not config.replay)
    return dg.MaterializeResult(metadata=metadata)
