"""Procore cost codes, cost types and sub jobs -> Sage X3 dimension values (sync_reference_data).

Project cost codes and cost types come from the procore_reference assets (the same reads
the PO sync uses); the standard cost code list and sub jobs are read here.
"""

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from mlc_dagster.common.metadata import table_metadata
from mlc_dagster.common.payload import content_hash
from mlc_dagster.common.write_mode import ensure_live
from mlc_dagster.defs.dimensions.plan import (
    ENTITY,
    DesiredDimensions,
    DimensionPlan,
    DimensionTypes,
    confirm_exports,
    desired_dimensions,
    dimension_key,
    import_records,
    matches_x3,
    plan_dimension_writes,
)
from mlc_dagster.defs.reference.frames import frame
from mlc_dagster.ledger.batch import ChangeBatch
from mlc_dagster.ledger.store import Change, RecordState
from mlc_dagster.procore_writes.write_guard import company_write_lock
from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.resources.procore import ProcoreResource
from mlc_dagster.resources.sage_x3 import SageX3Resource
from mlc_dagster.resources.sage_x3_client import SageX3Error
from mlc_dagster.resources.settings import SettingsResource
from mlc_dagster.x3_import.assets import import_file_asset
from mlc_dagster.x3_import.files import EXPORT_ACTION, PENDING, ExportBatch, ExportItem
from mlc_dagster.x3_import.settings import X3WriteSettings
from mlc_dagster.x3_import.templates import problems

GROUP = {"group_name": "dimensions"}


@dg.asset(**GROUP, kinds={"pandas", "procore"})
def procore_standard_cost_codes(procore: ProcoreResource) -> dg.Output[pd.DataFrame]:
    """Codes of every standard cost code list of the company (full code, name)."""
    client = procore.get_client()
    company = {"company_id": client.company_id}
    rows = [dict(code, list_id=code_list["id"])
            for code_list in client.list_all("/rest/v1.0/standard_cost_code_lists", company)
            for code in client.list_all("/rest/v1.0/standard_cost_codes", dict(
                company, standard_cost_code_list_id=code_list["id"]))]
    df = frame(rows, ["list_id", "id", "code", "full_code", "name"])
    df["code"] = df["full_code"].fillna(df["code"])
    return dg.Output(df, metadata={"standard_cost_codes": len(df)})


@dg.asset(**GROUP, kinds={"pandas", "procore"})
def procore_sub_jobs(procore: ProcoreResource, procore_projects: pd.DataFrame
                     ) -> dg.Output[pd.DataFrame]:
    """Sub jobs of every project (one call per project)."""
    client = procore.get_client()
    rows = [dict(job, project_id=int(pid)) for pid in procore_projects["id"]
            for job in client.list_all("/rest/v1.0/sub_jobs", {"project_id": int(pid)})]
    df = frame(rows, ["project_id", "id", "code", "name"])
    return dg.Output(df, metadata={"sub_jobs": len(df)})


@dg.asset(**GROUP, kinds={"pandas"})
def desired_dimension_values(procore_standard_cost_codes: pd.DataFrame,
                             procore_cost_codes: pd.DataFrame,
                             procore_line_item_types: pd.DataFrame,
                             procore_sub_jobs: pd.DataFrame, settings: SettingsResource
                             ) -> dg.Output[DesiredDimensions]:
    """The X3 dimension values Procore's segments call for (MLC_X3_DIMENSION_*)."""
    desired = desired_dimensions(procore_standard_cost_codes, procore_cost_codes,
                                 procore_line_item_types, procore_sub_jobs,
                                 settings.get().reference.dimension_types)
    return dg.Output(desired, metadata={
        "values": len(desired.values), **{f"type_{t}": n for t, n in desired.sources.items()},
        "problems": table_metadata(desired.problems)})


@dataclass
class DimensionStep:
    """What the dimension write step records and sends, decided before it writes anything."""

    confirmed: list[Change]  # earlier exports X3 now shows (synced) or still lacks (failed)
    plan: DimensionPlan
    recorded: list[Change]  # by file: X3 already holds it, or no import record possible
    exports: ExportBatch  # by file: recorded `exported` once the file asset writes them
    to_send: list[Change]  # api: one X3 write each


def plan_dimension_step(desired: DesiredDimensions, states: dict[str, RecordState],
                        x3_values: dict[str, dict], settings: X3WriteSettings,
                        types: DimensionTypes, now: datetime) -> DimensionStep:
    """Pure: the step's plan from the ledger and what X3 holds (`x3_values`, read by file mode;
    the preview reads it in api mode too, where a create X3 already has becomes an update, as
    the upsert records it). Used by the write step and the preview alike."""
    by_file = settings.dimension_write == "import_file"
    confirmed = confirm_exports(states, x3_values, now, settings.pending_hours) if by_file else []
    states = {**states, **{c.key: replace(states[c.key], status=c.status) for c in confirmed}}
    plan = plan_dimension_writes(desired, states, types)
    recorded, to_send = [], []
    exports = ExportBatch(settings.dimension_template)
    for write in plan.writes:
        value = write.value
        change = Change(entity=ENTITY, key=write.key, status="synced", action=write.action,
                        reason="; ".join(write.changes), content_hash=content_hash(value),
                        summary=value, changes={"summary": write.changes})
        if not by_file:
            if write.action == "create" and write.key in x3_values:
                change.action = "update"
            to_send.append(change)
        elif matches_x3(value, x3_values.get(write.key)):
            change.reason += "; X3 already holds it"
            recorded.append(change)
        elif found := problems(exports.template, import_records(value)):
            recorded.append(replace(
                change, status="failed", action="fail", content_hash=None,
                reason="cannot be written to an X3 import file: " + "; ".join(found)))
        else:  # recorded `exported` by the file asset once the file is written
            exports.items.append(ExportItem(ENTITY, write.key, import_records(value), change))
    return DimensionStep(confirmed, plan, recorded, exports, to_send)


def read_x3_dimension_values(client) -> dict[str, dict]:
    """What X3 holds now, by dimension key (one full read of the dimension values)."""
    return {dimension_key(r["dimension_type"], r["code"]): r
            for page in client.read_all("dimension") for r in page}


def dimension_preview_rows(step: DimensionStep) -> list[dict]:
    """One row per dimension value the write step would record, with its ledger action."""
    rows = [(c.key, c.action, c.reason) for c in step.confirmed + step.recorded + step.to_send]
    rows += [(item.key, EXPORT_ACTION, f"{item.change.reason}; to the X3 import file "
                                        f"(template {step.exports.template.code})")
             for item in step.exports.items]
    return [{"flow": ENTITY, "key": key, "project_id": None, "action": action,
             "detail": detail or "", "amount": None} for key, action, detail in rows]


@dg.asset(**GROUP, kinds={"sage_x3"})
def x3_dimension_values(context: dg.AssetExecutionContext,
                        desired_dimension_values: DesiredDimensions, sage_x3: SageX3Resource,
                        ledger: LedgerResource, settings: SettingsResource
                        ) -> dg.Output[list[ExportBatch]]:
    """Create/update the X3 dimension values that differ from the ledger; deactivate removed
    ones. Values this connector never created are never touched.

    MLC_X3_DIMENSION_WRITE=import_file (default): the values go to an X3 import file (the
    `x3_dimension_import_file` asset writes it) and stay `exported` until a read of X3 shows
    them; `api`: written through the web API (needs a writable CACCE class or a GESAPIOPE
    operation on the dimension node: standard X3 has neither). Plans and writes holding the
    Procore company's write lock (procore_writes/write_guard.py), like every write step."""
    run_settings = settings.get()
    ensure_live("x3_dimension_values", run_settings.write_mode)
    x3_writes = run_settings.x3_writes
    store = ledger.get_ledger()
    client = sage_x3.get_client()
    batch = ChangeBatch(store, context.run.run_id)
    # no Procore resource here: the company is PROCORE_COMPANY_ID as the settings read it
    with company_write_lock(context, store, run_settings.procore.company_id,
                            run_settings.procore.write_lock_wait_seconds) as lock:
        # what X3 holds now (file mode): confirms earlier exports, skips values already there
        x3_values = (read_x3_dimension_values(client)
                     if x3_writes.dimension_write == "import_file" else {})
        step = plan_dimension_step(desired_dimension_values, store.states(ENTITY), x3_values,
                                   x3_writes, run_settings.reference.dimension_types,
                                   datetime.now(UTC))
        batch.add(*step.confirmed)
        batch.flush()
        plan = step.plan
        context.log.info(f"dimensions: {len(plan.writes)} to write, {len(plan.unchanged)} "
                         f"unchanged, {len(plan.pending)} waiting for X3 to import")
        for why in plan.refused:
            context.log.warning(why)
        sent = [_send(client, change) for change in step.to_send]
        batch.add(*sent, *step.recorded)
        batch.flush()
    rows = [{"value": c.key, "action": c.action, "status": c.status, "detail": c.reason}
            for c in step.confirmed + sent + step.recorded]
    rows += [{"value": item.key, "action": EXPORT_ACTION, "status": PENDING,
              "detail": item.change.reason} for item in step.exports.items]
    table = pd.DataFrame(rows, columns=["value", "action", "status", "detail"])
    count = table[table["status"] == "synced"].groupby("action").size()
    return dg.Output([step.exports], metadata={
        "write_mode": x3_writes.dimension_write,
        **{action: int(count.get(action, 0)) for action in
           ("create", "update", "reactivate", "deactivate", "confirm")},
        "to_export": len(step.exports.items), "waiting_for_x3_import": len(plan.pending),
        "unchanged": len(plan.unchanged), "failed": int((table["status"] == "failed").sum()),
        "deactivation_refused": len(plan.refused),
        "write_lock_wait_seconds": round(lock.waited, 1), "touched": table_metadata(table)})


def _send(client, change: Change) -> Change:
    """One dimension value through the web API; the change as recorded (a create X3 already
    had is an update; a refusal a failure)."""
    value = change.summary
    try:
        outcome = client.upsert_dimension(value["dimension_type"], value["code"],
                                          value["description"], value["active"])
    except SageX3Error as exc:
        return Change(entity=ENTITY, key=change.key, status="failed", action="fail",
                      reason=f"X3 dimension write failed: {exc}", payload=value,
                      changes=change.changes)
    if change.action == "create" and outcome != "created":
        return replace(change, action="update")
    return change


x3_dimension_import_file = import_file_asset(
    "x3_dimension_import_file", "dimensions", "x3_dimension_values", "dimension values (CACCE)")
