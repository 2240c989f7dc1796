"""The commitment plan of a run: ledger diff, then adoption of hand-made twins.

Used by the write step (`procore_commitments`) and by the preview (`preview_sync`), so the
preview shows exactly what the write step would do. The only I/O is reading: the ledger, and
Procore's commitments (once per project, before the first write into it) and the line items of
the twins found; `record_scans=False` (the preview) leaves the ledger untouched.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from mlc_dagster.defs.purchase_orders.adoption import (
    HOLD_PREFIX,
    OUR_ORIGIN_PREFIX,
    SCAN_ENTITY,
    AdoptionRules,
    TwinMatch,
    amounts_equal,
    commitment_total,
    describe,
    header_differences,
    match_twins,
    plan_adoption,
    unclaimed_summary,
    vendor_of,
)
from mlc_dagster.defs.purchase_orders.desired import DesiredCommitments
from mlc_dagster.defs.purchase_orders.settings import PurchaseOrderSettings
from mlc_dagster.defs.purchase_orders.writer import (
    ENTITY,
    LOCKED,
    CommitmentPlan,
    CommitmentWrite,
    plan_commitment_writes,
)
from mlc_dagster.ledger.store import Change, Ledger, RecordState
from mlc_dagster.resources.procore_client import ProcoreError


@dataclass(frozen=True)
class CommitmentPlanSettings:
    new_status: str = "Draft"
    inactive_status: str = "Closed"
    approved_policy: str = "change_order"
    adoption: AdoptionRules = AdoptionRules()


def commitment_plan_settings(settings: PurchaseOrderSettings) -> CommitmentPlanSettings:
    """The planning part of the PO flow's settings (Settings.purchase_orders)."""
    return CommitmentPlanSettings(new_status=settings.new_commitment_status,
                                  inactive_status=settings.inactive_status,
                                  approved_policy=settings.approved_policy,
                                  adoption=settings.adoption)


def plan_commitments(desired: DesiredCommitments, store: Ledger, client,
                     settings: CommitmentPlanSettings, *, only_keys: set[str] | None = None,
                     replay: bool = False, record_scans: bool = True) -> CommitmentPlan:
    """Ledger diff (`plan_commitment_writes`), then creates turned into adoptions or holds."""
    deleted = store.deleted_keys(ENTITY)
    keys = ([c.po_number for c in desired.commitments] + list(desired.held_reasons())
            + sorted(deleted))
    plan = plan_commitment_writes(desired, store.states(ENTITY, keys),
                                  new_status=settings.new_status,
                                  inactive_status=settings.inactive_status,
                                  only_keys=only_keys, replay=replay, deleted_keys=deleted)
    if settings.adoption.enabled:
        adopt_twins(plan, store, client, settings, record_scans=record_scans)
    return plan


def _is_create(write: CommitmentWrite) -> bool:
    return not write.deleted and not (write.state and write.state.procore_id)


def adopt_twins(plan: CommitmentPlan, store: Ledger, client, settings: CommitmentPlanSettings,
                *, record_scans: bool) -> None:
    """Match every PO about to be created with what Procore held in its project."""
    creates: dict[int, list[CommitmentWrite]] = defaultdict(list)
    for write in plan.writes:
        if _is_create(write):
            creates[write.desired.project_id].append(write)
    if not creates:
        return
    scans = store.states(SCAN_ENTITY, [str(p) for p in creates])
    taken = store.procore_ids(ENTITY)
    dropped: set[str] = set()
    for project_id, writes in creates.items():
        scan = scans.get(str(project_id))
        rescan = scan is None or any(
            w.state and w.state.status == "held" and str(w.state.reason or "").startswith(
                HOLD_PREFIX) for w in writes)
        if rescan:
            contracts = client.purchase_order_contracts(project_id)
            if record_scans:
                plan.scans.append(Change(
                    entity=SCAN_ENTITY, key=str(project_id), status="scanned", action="scan",
                    project_id=project_id, summary={"contracts": unclaimed_summary(contracts, set())},
                    reason=f"{len(contracts)} commitment(s) in Procore before the first write",
                    changes={"commitments": len(contracts)}))
        else:
            contracts = (scan.summary or {}).get("contracts", [])
        contracts = [c for c in contracts if int(c["id"]) not in taken
                     or str(c.get("origin_id") or "").startswith(OUR_ORIGIN_PREFIX)]
        contracts = _with_totals(client, project_id, contracts, writes)
        matches = match_twins([w.desired for w in writes], contracts, settings.adoption)
        for write in writes:
            match = matches.get(write.po_number)
            if match is None:
                continue
            if match.outcome != "adopt":
                _hold(plan, write, match.hold_reason())
                dropped.add(write.po_number)
                continue
            try:
                lines = client.contract_line_items(project_id, int(match.contract["id"]))
            except ProcoreError as exc:
                if exc.status == 404:  # the twin was deleted since the scan: create the PO
                    continue
                raise
            if not _adopt(plan, write, match, lines, settings):
                dropped.add(write.po_number)
    plan.writes = [w for w in plan.writes if w.po_number not in dropped]


def _with_totals(client, project_id: int, contracts: list[dict],
                 writes: list[CommitmentWrite]) -> list[dict]:
    """Fill `grand_total` where the listing lacks it (ASSUMPTION that it is always listed:
    docs/api-assumptions.md), for the commitments that could be a vendor/date/total twin."""
    vendors = {w.desired.header.get("vendor_id") for w in writes}
    out = []
    for contract in contracts:
        if contract.get("grand_total") is None and vendor_of(contract) in vendors:
            lines = client.contract_line_items(project_id, int(contract["id"]))
            contract = dict(contract, grand_total=str(sum(
                (Decimal(str(i.get("amount") or 0)) for i in lines), Decimal(0))))
        out.append(contract)
    return out


def _adopt(plan: CommitmentPlan, write: CommitmentWrite, match: TwinMatch, lines: list[dict],
           settings: CommitmentPlanSettings) -> bool:
    """Turn a create into an adoption; False when it must be held instead."""
    c = write.desired
    adoption = plan_adoption(c, match, lines)
    twin = describe(match.contract)
    equal = amounts_equal(c.lines, adoption.pairing)
    if adoption.locked and not equal:
        why = "; ".join(adoption.differences)
        if settings.approved_policy == "hold" or adoption.pairing.extra:
            extra = (" and has line items Sage X3 does not" if adoption.pairing.extra else "")
            _hold(plan, write, f"{HOLD_PREFIX} {LOCKED}: hand-made commitment {twin} is this "
                               f"PO's twin ({adoption.rule}) but it is "
                               f"{match.contract.get('status')}{extra}, and its lines differ "
                               f"from Sage X3: {why}. Nothing approved is rewritten: correct it "
                               "in Procore (a change order, or unlock it) and the next run adopts "
                               "it")
            return False
    write.action = "adopt"
    write.adoption = adoption
    write.send_header = True
    write.status = settings.inactive_status if c.closed else None
    write.changes = [f"adopted hand-made commitment {twin} (rule: {adoption.rule})",
                     *header_differences(c, match.contract)]
    if adoption.locked:
        write.line_updates, write.line_deletes = (list(c.lines) if not equal else []), []
        write.changes.append(
            f"commitment is {match.contract.get('status')}: its schedule of values is locked, "
            "so its line items are linked by id and left as they are"
            + ("" if equal else "; the difference goes on a change order"))
    else:
        write.line_updates = list(c.lines)
        write.line_deletes = [(f"procore:{item['id']}", int(item["id"]))
                              for item in adoption.pairing.extra]
    write.changes.extend(adoption.differences)
    return True


def _hold(plan: CommitmentPlan, write: CommitmentWrite, reason: str) -> None:
    state: RecordState | None = write.state
    if state and state.status == "held" and state.reason == reason:
        return
    c = write.desired
    plan.new_holds.append(Change(
        entity=ENTITY, key=c.po_number, status="held", action="hold", reason=reason,
        procore_id=None, project_id=c.project_id, content_hash=None,
        summary=state.summary if state else None, x3_stamp=c.x3_stamp))


# --- preview rows ------------------------------------------------------------------------------


def commitment_preview_rows(plan: CommitmentPlan) -> list[dict]:
    """One row per PO the write step would touch, with the ledger action it would record."""
    rows = []
    for write in plan.writes:
        c = write.desired
        rows.append({"flow": "purchase_order", "key": c.po_number, "project_id": c.project_id,
                     "action": write.action, "detail": "; ".join(write.changes),
                     "amount": commitment_total(c)})
    for change in plan.new_holds:
        rows.append({"flow": "purchase_order", "key": change.key,
                     "project_id": change.project_id, "action": "hold",
                     "detail": change.reason or "", "amount": None})
    return rows
