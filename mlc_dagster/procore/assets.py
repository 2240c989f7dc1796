"""Procore reference data (read) and Procore commitments (the write step).

Reference assets reuse their last read while it is recent (reference_data/freshness.py).
"""


import dagster as dg
import pandas as pd

from mlc_dagster.ledger.store import RETRIED_STATUSES, Ledger
from mlc_dagster.mapping.commitments import DesiredCommitments
from mlc_dagster.preview.mode import ensure_live
from mlc_dagster.procore.commitment_sync import ENTITY, CommitmentWriter
from mlc_dagster.procore.continuation import hand_over
from mlc_dagster.procore.planning import commitment_plan_settings, plan_commitments
from mlc_dagster.procore.reference import (
    LINE_ITEM_TYPE_COLUMNS,
    PROJECT_COLUMNS,
    VENDOR_COLUMNS,
    cost_codes_frame,
    frame,
)
from mlc_dagster.procore.write_guard import company_write_lock, fail_if_unavailable, run_breaker
from mlc_dagster.reference_data.freshness import recent_materialization
from mlc_dagster.resources.http_core import WaitTooLong
from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.resources.procore import ProcoreResource
from mlc_dagster.sage_x3.scope import mark_planned
from mlc_dagster.settings import Settings
from mlc_dagster.utils import table_metadata

REFERENCE = {"group_name": "procore_reference", "kinds": {"pandas", "procore"}}


@dg.asset(**REFERENCE)
def procore_projects(context: dg.AssetExecutionContext, procore: ProcoreResource
                     ) -> dg.Output[pd.DataFrame]:
    """Active projects of the company: the targets X3 project codes are matched to."""
    if (reused := recent_materialization(context)) is not None:
        return reused
    df = frame(procore.get_client().projects(), PROJECT_COLUMNS)
    return dg.Output(df, metadata={"projects": len(df)})


@dg.asset(**REFERENCE)
def procore_vendors(context: dg.AssetExecutionContext, procore: ProcoreResource
                    ) -> dg.Output[pd.DataFrame]:
    """Company directory vendors; `origin_id` holds the X3 supplier code."""
    if (reused := recent_materialization(context)) is not None:
        return reused
    df = frame(procore.get_client().vendors(), VENDOR_COLUMNS)
    return dg.Output(df, metadata={"vendors": len(df),
                                   "linked_to_x3": int(df["origin_id"].notna().sum())})


@dg.asset(**REFERENCE)
def procore_cost_codes(context: dg.AssetExecutionContext, procore: ProcoreResource,
                       procore_projects: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Project cost codes for every project (one call per project, once per run)."""
    if (reused := recent_materialization(context)) is not None:
        return reused
    client = procore.get_client()
    df = cost_codes_frame({int(pid): client.project_cost_codes(int(pid))
                           for pid in procore_projects["id"]})
    return dg.Output(df, metadata={"cost_codes": len(df), "distinct_codes": df["code"].nunique()})


@dg.asset(**REFERENCE)
def procore_line_item_types(context: dg.AssetExecutionContext, procore: ProcoreResource
                            ) -> dg.Output[pd.DataFrame]:
    """Line item types (cost types) of the company."""
    if (reused := recent_materialization(context)) is not None:
        return reused
    df = frame(procore.get_client().line_item_types(), LINE_ITEM_TYPE_COLUMNS)
    return dg.Output(df, metadata={"line_item_types": len(df)})


class CommitmentWriteConfig(dg.Config):
    """Run config of the write step (the replay job sets `replay`)."""

    max_pos: int = 0  # 0 = MLC_MAX_POS_PER_RUN; the rest waits for the next run
    replay: bool = False  # only re-send failed and deferred records (or `keys`), nothing else
    keys: list[str] = []  # with replay: these PO numbers only (empty = every failed/deferred PO)


@dg.asset(
    group_name="procore",
    kinds={"procore"},
    pool="procore_api",
    retry_policy=dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL,
                                jitter=dg.Jitter.PLUS_MINUS),
)
def procore_commitments(context: dg.AssetExecutionContext, config: CommitmentWriteConfig,
                        mapped_commitments: DesiredCommitments, procore: ProcoreResource,
                        ledger: LedgerResource) -> dg.MaterializeResult:
    """Write the difference between desired commitments and what the ledger says was written.

    Headers go through `purchase_order_contracts/sync` (one call per project per <=1000 POs),
    lines through one `line_items/sync` per changed PO; removed lines are deleted. Unchanged
    POs cost nothing. Outcomes (synced / held / failed / deferred, with reasons) go to the
    ledger. Plans and writes holding the Procore company's write lock (procore/write_guard.py);
    when Procore is unavailable (the run's circuit breaker opens) the POs not tried are
    recorded `deferred` and the step fails with "Procore unavailable since ...". When the
    rate-limit allowance is used up for longer than it may wait, or MLC_MAX_POS_PER_RUN is
    reached, the rest is deferred too but the step ends green, `continuing`: the next run
    takes over (procore/continuation.py). Progress is logged at least once a minute.
    """
    ensure_live("procore_commitments")
    settings = Settings.from_env()
    store: Ledger = ledger.get_ledger()
    client = procore.get_client()
    breaker = run_breaker(context.run.run_id)
    with company_write_lock(context, store, procore.company_id) as lock:
        only_keys = None
        if config.replay:
            only_keys = set(config.keys) or set(store.keys_with_status(ENTITY, RETRIED_STATUSES))
            context.log.info(f"replay: {len(only_keys)} record(s) selected")
        try:
            plan = plan_commitments(mapped_commitments, store, client,
                                    commitment_plan_settings(settings), only_keys=only_keys,
                                    replay=config.replay)
        except WaitTooLong as exc:  # a project scan met a used-up allowance: nothing written
            breaker.pause(exc.resume_at, exc.reason)
            handed_over = hand_over(store, breaker, context.run.run_id,
                                    deferred=len(mapped_commitments.commitments), over_limit=0)
            context.log.info(f"commitments: not planned, {breaker.reason()}")
            return dg.MaterializeResult(metadata={**handed_over, "planned": False})
        limit = config.max_pos or settings.max_pos_per_run
        over_limit = plan.writes[limit:]
        plan.writes = plan.writes[:limit]
        adopting = sum(w.action == "adopt" for w in plan.writes)
        context.log.info(f"commitments: {len(plan.writes)} to write ({adopting} adopting a "
                         f"hand-made twin), {len(plan.unchanged)} unchanged, "
                         f"{len(plan.new_holds)} newly held, {len(over_limit)} over "
                         f"MLC_MAX_POS_PER_RUN ({limit}), continued by the next run")
        writer = CommitmentWriter(client, store, context.run.run_id, log=context.log.info,
                                  approved_policy=settings.approved_policy, breaker=breaker)
        outcomes = writer.run(plan)
        writer.defer(over_limit, f"over MLC_MAX_POS_PER_RUN ({limit}): continued by the next run")
        handed_over = hand_over(store, breaker, context.run.run_id,
                                deferred=len(writer.deferred), over_limit=len(over_limit))

    rows = pd.DataFrame([
        {"po": o.po_number, "action": o.action, "status": o.status, "procore_id": o.procore_id,
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
