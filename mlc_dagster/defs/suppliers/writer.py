"""Execute a supplier plan: X3 writes first, then one `vendors/sync` batch; ledger for all.

Order matters for crash safety: an X3 supplier created from a Procore vendor gets a code
derived from the vendor id, so if the run dies before the link-back, the next run finds
that supplier under the vendor's own code and only links it.

With `exports` (MLC_X3_SUPPLIER_WRITE=import_file) nothing is sent to X3: new suppliers and
X3-side changes are queued for the import file (the `x3_supplier_import_file` asset writes
it and records them `exported`). A new supplier is linked back in Procore only once X3 shows
it (the plan then finds it under the vendor's own code); Procore-side changes are written now.
"""

from __future__ import annotations

from collections.abc import Callable

from mlc_dagster.common.payload import WriteOutcome, error_text
from mlc_dagster.defs.suppliers.exports import SupplierExports
from mlc_dagster.defs.suppliers.plan import (
    SUPPLIER,
    VENDOR,
    PairWrite,
    SupplierCreate,
    SupplierPlan,
    create_hash,
    pair_hash,
    procore_view,
)
from mlc_dagster.ledger.batch import ChangeBatch
from mlc_dagster.ledger.store import Change, Ledger
from mlc_dagster.resources.procore_client import ProcoreError
from mlc_dagster.resources.sage_x3_client import SageX3Error
from mlc_dagster.x3_import.files import EXPORT_ACTION, PENDING, export_file


class SupplierWriter:
    def __init__(self, procore, x3, ledger: Ledger, run_id: str | None,
                 log: Callable[[str], None] = lambda _m: None,
                 exports: SupplierExports | None = None) -> None:
        self.procore = procore
        self.x3 = x3
        self.log = log
        self.exports = exports
        self.batch = ChangeBatch(ledger, run_id)
        self.outcomes: list[WriteOutcome] = []

    def run(self, plan: SupplierPlan) -> list[WriteOutcome]:
        self.batch.add(*plan.confirms, *plan.holds)
        self.outcomes += [WriteOutcome(c.entity, c.key, c.action, c.status, c.procore_id, c.reason)
                          for c in plan.confirms + plan.holds]
        ready: list[PairWrite] = []
        for create in plan.creates:
            if self.exports is not None:
                self._export_create(create)
                continue
            try:
                self.x3.create_supplier(create.record)
            except SageX3Error as exc:
                if "already exists" not in str(exc).lower():
                    self._record(VENDOR, str(create.vendor_id), "fail", "failed",
                                 f"X3 supplier create failed: {exc}", create.vendor_id)
                    continue
            self._record(VENDOR, str(create.vendor_id), "create", "synced",
                         create.pair.changes[0], create.vendor_id,
                         summary={"supplier_code": create.code})
            ready.append(create.pair)
        for pair in plan.pairs:
            if pair.x3_fields and self.exports is None:
                try:
                    self.x3.update_supplier(pair.code, pair.x3_fields)
                except SageX3Error as exc:
                    self._fail(pair, f"X3 supplier update failed: {exc}")
                    continue
            ready.append(pair)
        self._sync_vendors(ready)
        self.batch.flush()
        return self.outcomes

    def _sync_vendors(self, pairs: list[PairWrite]) -> None:
        items = [dict(p.vendor_item, origin_id=p.code) for p in pairs if p.vendor_item]
        results: dict[str, dict] = {}
        if items:
            try:
                results = self.procore.sync_vendors(items).by_origin_id()
            except ProcoreError as exc:
                for pair in pairs:
                    if pair.vendor_item:
                        self._fail(pair, f"vendor sync failed: {exc}", exc.request_id)
                pairs = [p for p in pairs if not p.vendor_item]
        for pair in pairs:
            procore_after = pair.procore_after
            if pair.vendor_item:
                entity = results.get(pair.code)
                if entity is None or ("errors" in entity and "id" not in entity):
                    why = error_text(entity["errors"]) if entity else "no result for this item"
                    self._fail(pair, f"Procore rejected the vendor: {why}")
                    continue
                procore_after = procore_view(entity)
                pair.vendor_id = int(entity["id"])
            change = Change(
                entity=SUPPLIER, key=pair.code, status="synced", action=pair.action,
                reason="; ".join(pair.changes), procore_id=pair.vendor_id,
                content_hash=pair_hash(pair.x3_after, procore_after), x3_stamp=pair.x3_stamp,
                summary={"x3": pair.x3_after, "procore": procore_after},
                changes={"summary": pair.changes})
            if self.exports is not None and pair.x3_fields:
                self._export_update(pair, change)
            else:
                if pair.pending_export:  # Procore written; X3 still has to import the file
                    change.status, change.payload = PENDING, pair.pending_export
                    change.reason += (f"; X3 import of {export_file(pair.pending_export)} "
                                      "still pending")
                self.batch.add(change)
                self.outcomes.append(WriteOutcome(SUPPLIER, pair.code, pair.action,
                                                  change.status, change.procore_id,
                                                  change.reason))
            if pair.matched:  # settles any earlier hold on the vendor (e.g. ambiguous)
                self._record(VENDOR, str(pair.vendor_id), "link", "synced",
                             f"linked to X3 supplier {pair.code}", pair.vendor_id,
                             summary={"supplier_code": pair.code})

    def _export_create(self, create: SupplierCreate) -> None:
        reason = (f"X3 supplier {create.code} to be created from Procore vendor "
                  f"{create.vendor_id} ({create.record.get('name')}) by import file; linked "
                  "back in Procore once X3 shows it")
        if create.pair.changes[0].startswith("exported again"):
            reason = f"{create.pair.changes[0]}; {reason}"
        change = Change(entity=VENDOR, key=str(create.vendor_id), status=PENDING,
                        action=EXPORT_ACTION, reason=reason, procore_id=create.vendor_id,
                        content_hash=create_hash(create),
                        summary={"supplier_code": create.code})
        found = self.exports.add_create(VENDOR, str(create.vendor_id), create.record, change)
        if found:
            self._record(VENDOR, str(create.vendor_id), "fail", "failed",
                         "cannot be written to the X3 supplier import file: " + "; ".join(found),
                         create.vendor_id, summary={"supplier_code": create.code})
        else:
            self.outcomes.append(WriteOutcome(VENDOR, str(create.vendor_id), EXPORT_ACTION,
                                              PENDING, create.vendor_id, reason))

    def _export_update(self, pair: PairWrite, change: Change) -> None:
        """The Procore side is written; the X3 side goes to the file (recorded on write)."""
        found = self.exports.add_update(pair.code, pair.x3_fields, pair.x3_after, change)
        if found:
            self._fail(pair, "cannot be written to the X3 supplier import file: "
                       + "; ".join(found))
        else:
            self.outcomes.append(WriteOutcome(SUPPLIER, pair.code, EXPORT_ACTION, PENDING,
                                              change.procore_id, change.reason))

    def _fail(self, pair: PairWrite, reason: str, request_id: str | None = None) -> None:
        self._record(SUPPLIER, pair.code, "fail", "failed", reason, pair.vendor_id,
                     payload={"vendor_item": pair.vendor_item, "x3_fields": pair.x3_fields},
                     request_id=request_id)

    def _record(self, entity: str, key: str, action: str, status: str, reason: str,
                procore_id: int | None, **extra) -> None:
        self.batch.add(Change(entity=entity, key=key, status=status, action=action,
                                    reason=reason, procore_id=procore_id, **extra))
        self.outcomes.append(WriteOutcome(entity, key, action, status, procore_id, reason))
