"""Execute a supplier plan: X3 writes first, then one `vendors/sync` batch; ledger for all.

Order matters for crash safety: an X3 supplier created from a Procore vendor gets a code
derived from the vendor id, so if the run dies before the link-back, the next run finds
that supplier under the vendor's own code and only links it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlc_dagster.ledger.batch import ChangeBatch
from mlc_dagster.ledger.store import Change, Ledger
from mlc_dagster.procore.commitment_sync import _error_text
from mlc_dagster.resources.procore_client import ProcoreError
from mlc_dagster.resources.sage_x3_client import SageX3Error
from mlc_dagster.suppliers.plan import (
    SUPPLIER,
    VENDOR,
    PairWrite,
    SupplierPlan,
    pair_hash,
    procore_view,
)


@dataclass
class SupplierOutcome:
    entity: str
    key: str
    action: str
    status: str
    detail: str


class SupplierWriter:
    def __init__(self, procore, x3, ledger: Ledger, run_id: str | None,
                 log: Callable[[str], None] = lambda _m: None) -> None:
        self.procore = procore
        self.x3 = x3
        self.log = log
        self.batch = ChangeBatch(ledger, run_id)
        self.outcomes: list[SupplierOutcome] = []

    def run(self, plan: SupplierPlan) -> list[SupplierOutcome]:
        self.batch.add(*plan.holds)
        self.outcomes += [SupplierOutcome(c.entity, c.key, "hold", "held", c.reason or "")
                          for c in plan.holds]
        ready: list[PairWrite] = []
        for create in plan.creates:
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
            if pair.x3_fields:
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
                    why = _error_text(entity["errors"]) if entity else "no result for this item"
                    self._fail(pair, f"Procore rejected the vendor: {why}")
                    continue
                procore_after = procore_view(entity)
                pair.vendor_id = int(entity["id"])
            self.batch.add(Change(
                entity=SUPPLIER, key=pair.code, status="synced", action=pair.action,
                reason="; ".join(pair.changes), procore_id=pair.vendor_id,
                content_hash=pair_hash(pair.x3_after, procore_after), x3_stamp=pair.x3_stamp,
                summary={"x3": pair.x3_after, "procore": procore_after},
                changes={"summary": pair.changes}))
            self.outcomes.append(SupplierOutcome(SUPPLIER, pair.code, pair.action, "synced",
                                                 "; ".join(pair.changes)))
            if pair.matched:  # settles any earlier hold on the vendor (e.g. ambiguous)
                self._record(VENDOR, str(pair.vendor_id), "link", "synced",
                             f"linked to X3 supplier {pair.code}", pair.vendor_id,
                             summary={"supplier_code": pair.code})

    def _fail(self, pair: PairWrite, reason: str, request_id: str | None = None) -> None:
        self._record(SUPPLIER, pair.code, "fail", "failed", reason, pair.vendor_id,
                     payload={"vendor_item": pair.vendor_item, "x3_fields": pair.x3_fields},
                     request_id=request_id)

    def _record(self, entity: str, key: str, action: str, status: str, reason: str,
                procore_id: int | None, **extra) -> None:
        self.batch.add(Change(entity=entity, key=key, status=status, action=action,
                                    reason=reason, procore_id=procore_id, **extra))
        self.outcomes.append(SupplierOutcome(entity, key, action, status, reason))
