"""Keep the ledger's snapshot of one Sage X3 entity current by delta reads.

The same pattern as the PO snapshot (`sage_x3/assets.py`), for any entity the X3 client
knows: read what changed since the stored high-water stamp minus an overlap window, skip
records whose stamp the snapshot already has, fetch details (lines) only where the list
view lacks them, merge, and move the stamp forward. A full refresh also marks records
that X3 no longer returns as deleted.
"""

from __future__ import annotations

from collections.abc import Callable

from mlc_dagster.ledger.store import Ledger
from mlc_dagster.resources.sage_x3_client import CANONICAL_KEYS, DeltaCursor


def cursor_name(entity: str) -> str:
    return f"x3:{entity}:stamp"


def refresh_snapshot(client, ledger: Ledger, entity: str, *, overlap_seconds: int,
                     full_refresh: bool = False,
                     read_details: Callable[[list[str]], list[dict]] | None = None
                     ) -> dict[str, int]:
    """Merge the X3 records of `entity` changed since the stored stamp into the snapshot.

    `read_details(keys)` fetches full records (with lines) for list-view records that
    lack them; entities without lines pass None. Returns read/changed/deleted counts.
    """
    key = CANONICAL_KEYS[entity][0]
    name = cursor_name(entity)
    stored = ledger.get_cursor(name)
    since = None if full_refresh else DeltaCursor(entity, stored, overlap_seconds).window_start()
    listed = [record for page in client.changed(entity, since) for record in page]
    known = ledger.snapshot_stamps(entity)
    changed = [r for r in listed if known.get(str(r[key])) != r.get("update_stamp")]
    missing = [r[key] for r in changed if "lines" not in r] if read_details else []
    details = {r[key]: r for r in read_details(missing)} if missing else {}
    ledger.upsert_snapshot(entity, [details.get(r[key], r) for r in changed], key)
    gone: set[str] = set()
    if full_refresh:
        gone = set(known) - {str(r[key]) for r in listed}
        ledger.mark_deleted(entity, gone)
    newest = max((r["update_stamp"] for r in listed if r.get("update_stamp")), default=None)
    if newest and (stored is None or newest > stored):
        ledger.set_cursor(name, newest)
    return {"read": len(listed), "changed": len(changed), "deleted": len(gone)}
