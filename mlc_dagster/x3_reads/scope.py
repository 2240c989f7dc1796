"""Which X3 records a sync run stages: only those whose plan can differ from the last one.

A run used to stage, validate, map and plan every PO and invoice of the ledger's snapshot;
with nothing changed that is seconds of work that ends in "unchanged" for each. Planning
treats a record absent from the desired state as untouched, so a run may stage a subset
as long as that subset holds every record whose plan can differ from the last completed
plan:

1. records whose snapshot row was written since then (an X3 change merged, or a deletion
   found by a full read: both stamp the row's `updated_at`);
2. records whose ledger state is not a settled `synced` (held, failed, deferred...): their
   outcome can change without any X3 change (a retry, a reference-data fix);
3. snapshot records with no ledger state at all (never planned: a per-run limit, a crash);
4. for invoices, also those billing a PO changed since, and every invoice billing a PO one
   of them bills (the PO's supplier and lines decide holds; per-PO X3 totals stay whole);
5. everything, when there is no completed plan yet, on a full refresh (reconcile), in a
   preview, or when the *plan fingerprint* differs: the mapping CSV (and project map),
   the Procore reference data, the planning settings, or the connector's code changed.

The "planned through" mark (a ledger cursor per entity: the time the run began reading the
snapshot, and the fingerprint it planned with) only moves at the end of the write step,
after every outcome is in the ledger (`mark_planned`): a run that stops anywhere before
re-stages the same records next time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pandas as pd

from mlc_dagster.ledger.store import Ledger

PO = "purchase_order"
INVOICE = "purchase_invoice"
ANALYSES = ("sync_preview", "reconciliation_report")  # assets that need every record planned


def planned_cursor(entity: str) -> str:
    return f"planned:{entity}"


@dataclass(frozen=True)
class PlannedThrough:
    """The last completed plan of an entity: it saw every snapshot row written before
    `staged_at`, planned with `fingerprint` (component -> digest)."""

    staged_at: datetime
    fingerprint: Mapping[str, str]


@dataclass(frozen=True)
class StagingScope:
    """What one run stages for one entity, and why; carried from staging to the write step,
    which hands it back to `mark_planned`."""

    entity: str
    staged_at: datetime  # taken before the snapshot was read: the next run reads rows after it
    everything: bool
    why: str = ""  # everything: the reason
    since: datetime | None = None  # the last completed plan's staged_at (None: everything)
    fingerprint: Mapping[str, str] | None = None  # None until known (POs: at mapping)
    changed: frozenset[str] = frozenset()  # written in the snapshot since
    unsettled: frozenset[str] = frozenset()  # held / failed / deferred in the ledger
    unrecorded: frozenset[str] = frozenset()  # in the snapshot, never in the ledger
    billing_changed: frozenset[str] = frozenset()  # invoices billing a PO changed since
    siblings: frozenset[str] = frozenset()  # invoices billing a PO a staged invoice bills
    # invoices: the POs all of whose invoices are staged (None = every PO, i.e. everything)
    covered_pos: frozenset[str] | None = None

    @property
    def keys(self) -> frozenset[str] | None:
        """The keys to stage; None = every snapshot record."""
        if self.everything:
            return None
        return (self.changed | self.unsettled | self.unrecorded | self.billing_changed
                | self.siblings)

    def describe(self) -> str:
        """One line for run metadata: `all: <why>` or `changed only: <counts per reason>`."""
        if self.everything:
            return f"all: {self.why}"
        seen: set[str] = set()
        parts = []
        for keys, label in ((self.changed, "changed in X3"),
                            (self.unsettled, "held/failed/deferred"),
                            (self.unrecorded, "not planned yet"),
                            (self.billing_changed, "billing a changed PO"),
                            (self.siblings, "sharing a PO with those")):
            fresh = keys - seen
            seen |= keys
            if fresh or label in ("changed in X3", "held/failed/deferred"):
                parts.append(f"{len(fresh)} {label}")
        return "changed only: " + ", ".join(parts)


# --- the planned-through mark ----------------------------------------------------------------


def read_planned(store: Ledger, entity: str) -> PlannedThrough | None:
    """The entity's last completed plan; None when there is none (or it cannot be read)."""
    text = store.get_cursor(planned_cursor(entity))
    if not text:
        return None
    try:
        value = json.loads(text)
        staged_at = datetime.fromisoformat(value["staged_at"])
        fingerprint = {str(k): str(v) for k, v in dict(value["fingerprint"]).items()}
    except (ValueError, KeyError, TypeError):
        return None
    if staged_at.tzinfo is None:
        staged_at = staged_at.replace(tzinfo=UTC)
    return PlannedThrough(staged_at, fingerprint)


def mark_planned(store: Ledger, entity: str, scope: StagingScope | None, *,
                 complete: bool = True) -> bool:
    """Record that every record of `scope` is planned and its outcome is in the ledger.

    Call as the write step's last statement, after its outcomes are flushed, and with
    `complete=False` when the step planned less than the scope (a replay, records cut by a
    per-run limit without a ledger state): the mark then stays, and the next run stages the
    same records again. Never moves the mark backwards. True when it moved.
    """
    if scope is None or not complete or scope.fingerprint is None or scope.entity != entity:
        return False
    current = read_planned(store, entity)
    if current is not None and current.staged_at > scope.staged_at:
        return False
    store.set_cursor(planned_cursor(entity), json.dumps({
        "staged_at": scope.staged_at.isoformat(), "fingerprint": dict(scope.fingerprint)},
        sort_keys=True))
    return True


# --- choosing the scope ----------------------------------------------------------------------


def select_scope(store: Ledger, entity: str, *, everything_because: str | None = None,
                 fingerprint: Mapping[str, str] | None = None,
                 now: datetime | None = None) -> StagingScope:
    """The records of `entity` this run stages. Call after merging the X3 delta into the
    snapshot and before reading it: `staged_at` is taken here.

    `everything_because`: a reason to stage everything found by the caller (full refresh,
    preview). `fingerprint`: the plan fingerprint when known now (None: checked later with
    `confirm_fingerprint`).
    """
    staged_at = now or datetime.now(UTC)
    planned = read_planned(store, entity)
    base = StagingScope(entity, staged_at, True, fingerprint=fingerprint)
    if everything_because:
        return dataclasses.replace(base, why=everything_because)
    if planned is None:
        return dataclasses.replace(base, why="no completed plan yet")
    if fingerprint is not None and dict(fingerprint) != dict(planned.fingerprint):
        return dataclasses.replace(base, why=_what_changed(planned.fingerprint, fingerprint))
    return dataclasses.replace(
        base, everything=False, since=planned.staged_at,
        changed=frozenset(store.snapshot_changed_keys(entity, planned.staged_at)),
        unsettled=frozenset(store.unsettled_snapshot_keys(entity)),
        unrecorded=frozenset(store.unrecorded_snapshot_keys(entity)))


def confirm_fingerprint(store: Ledger, scope: StagingScope | None,
                        fingerprint: Mapping[str, str]) -> StagingScope:
    """`scope` with the plan fingerprint now known; widened to everything when it differs
    from the last completed plan's (then the caller stages the whole snapshot)."""
    if scope is None:  # staged by something that does not choose a scope: all of it
        return StagingScope(PO, datetime.now(UTC), True, why="staged without a scope")
    scope = dataclasses.replace(scope, fingerprint=dict(fingerprint))
    if scope.everything:
        return scope
    planned = read_planned(store, scope.entity)
    if planned is None:
        return dataclasses.replace(scope, everything=True, why="no completed plan yet")
    if dict(planned.fingerprint) != dict(fingerprint):
        return dataclasses.replace(scope, everything=True,
                                   why=_what_changed(planned.fingerprint, fingerprint))
    return scope


def everything_reason(context, *, full_refresh: bool, preview: bool) -> str | None:
    """Why this run must stage every record whatever changed, or None: a full refresh (the
    reconcile job), MLC_WRITE_MODE=preview (`preview`: the run's Settings.preview), or a run
    that materialises an asset reporting on every record (the preview's plan, the
    reconciliation report)."""
    if full_refresh:
        return "full refresh"
    if preview:
        return "preview (MLC_WRITE_MODE=preview) plans everything"
    try:
        selected = {key.path[-1] for key in context.job_def.asset_layer.selected_asset_keys}
    except AttributeError:  # not an asset job: nothing downstream to judge
        selected = set()
    wanting = sorted(selected & set(ANALYSES))
    if wanting:
        return f"{', '.join(wanting)} reports on every record"
    return None


def _what_changed(before: Mapping[str, str], after: Mapping[str, str]) -> str:
    names = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return f"{', '.join(names)} changed since the last plan"


# --- reading the scope -----------------------------------------------------------------------


def scope_records(store: Ledger, scope: StagingScope) -> list[dict]:
    """The snapshot records the scope stages (live ones only)."""
    if scope.everything:
        return list(store.snapshot(scope.entity))
    return store.snapshot_records(scope.entity, scope.keys or ())


def invoice_scope_records(store: Ledger, scope: StagingScope
                          ) -> tuple[list[dict], StagingScope]:
    """The invoice records to stage, and the scope widened by the invoices a PO links them to:
    those billing a PO written in the snapshot since the last invoice plan (the PO's supplier
    and lines decide whether an invoice is held), then every invoice billing a PO that one of
    those bills, so that the X3 total per PO (reconciliation) and the hand-entered invoices
    already claimed on a commitment (adoption) are seen whole."""
    if scope.everything:
        return list(store.snapshot(INVOICE)), scope
    changed_pos = store.snapshot_changed_keys(PO, scope.since, include_deleted=True)
    billing = frozenset(store.snapshot_keys_with_line_value(INVOICE, "po_number", changed_pos))
    scope = dataclasses.replace(scope, billing_changed=billing)
    records = store.snapshot_records(INVOICE, scope.keys or ())
    billed = billed_po_numbers(records)
    siblings = frozenset(store.snapshot_keys_with_line_value(INVOICE, "po_number", billed)
                         - (scope.keys or frozenset()))
    records = sorted(records + store.snapshot_records(INVOICE, siblings),
                     key=lambda r: str(r.get("invoice_number")))
    return records, dataclasses.replace(scope, siblings=siblings, covered_pos=frozenset(billed))


def billed_po_numbers(records: Iterable[dict]) -> set[str]:
    """The PO numbers on the lines of invoice records, trimmed as staging trims them."""
    return {str(line.get("po_number")).strip() for record in records
            for line in (record.get("lines") or []) if isinstance(line, dict)
            and line.get("po_number") is not None and str(line.get("po_number")).strip()}


# --- the plan fingerprint --------------------------------------------------------------------


def commitment_fingerprint(mapping_fingerprint: str, project_map_text: str,
                           reference: Mapping[str, pd.DataFrame], settings: object
                           ) -> dict[str, str]:
    """What the PO plan depends on besides the PO itself: the mapping (GL CSV, project
    map), the Procore reference frames it looks up, the planning settings (their repr), and
    the connector's code."""
    return {
        "mapping": _digest(mapping_fingerprint, project_map_text),
        "Procore reference data": _digest(*(f"{name}:{frame_digest(reference[name])}"
                                            for name in sorted(reference))),
        "settings": _digest(repr(settings)),
        "code": code_version(),
    }


def invoice_fingerprint(settings: object) -> dict[str, str]:
    """What the invoice plan depends on besides the invoice and its POs' X3 data (which
    `invoice_scope_records` follows): the invoice settings and the connector's code."""
    return {"settings": _digest(repr(settings)), "code": code_version()}


def frame_digest(df: pd.DataFrame | None) -> str:
    """A digest of a reference frame's content, independent of the order rows came in."""
    if df is None:
        return "none"
    ordered = df.sort_values("id", kind="mergesort") if "id" in df.columns else df
    ordered = ordered.reset_index(drop=True)
    head = f"{list(map(str, ordered.columns))}|{[str(t) for t in ordered.dtypes]}|{len(ordered)}"
    try:
        body = pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes()
    except TypeError:  # a cell pandas cannot hash (a list, a dict): hash its text form
        body = ordered.to_csv(index=False).encode()
    return _digest(head, body)


@cache
def code_version() -> str:
    """A digest of the connector's Python sources, computed once per process: a new
    release (or a hot fix) may plan differently, so its first run plans everything."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _digest(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else str(part).encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:16]

