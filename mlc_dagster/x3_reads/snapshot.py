"""Keep the ledger's snapshot of one Sage X3 entity current by delta reads.

The same pattern as the PO snapshot (`defs/purchase_orders/assets.py`), for any entity the X3 client
knows: read what changed since the stored high-water stamp minus an overlap window, skip
records whose stamp the snapshot already has, fetch details (lines) only where the list
view lacks them, merge, and move the stamp forward. A full refresh also marks records
that X3 no longer returns as deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from mlc_dagster.ledger.store import Ledger
from mlc_dagster.resources.sage_x3_client import CANONICAL_KEYS, DeltaCursor
from mlc_dagster.settings import X3Settings


def cursor_name(entity: str) -> str:
    return f"x3:{entity}:stamp"


def line_cursor_name(entity: str) -> str:
    return f"x3:{entity}:line_stamp"


def refresh_from_x3(client, ledger: Ledger, entity: str, *, x3: X3Settings, full_refresh: bool,
                    read_details: Callable[..., list[dict]] | None = None,
                    poll_lines: bool = False) -> dict[str, int]:
    """`refresh_snapshot` as a staging step runs it, with the run's X3 settings: the overlap
    window (MLC_X3_OVERLAP_SECONDS), and `read_details(keys, max_concurrency=...)` reading
    `x3.read_concurrency` documents at a time (MLC_X3_READ_CONCURRENCY)."""
    details = partial(read_details, max_concurrency=x3.read_concurrency) if read_details else None
    return refresh_snapshot(client, ledger, entity, overlap_seconds=x3.overlap_seconds,
                            full_refresh=full_refresh, read_details=details, poll_lines=poll_lines)


def refresh_snapshot(client, ledger: Ledger, entity: str, *, overlap_seconds: int,
                     full_refresh: bool = False,
                     read_details: Callable[[list[str]], list[dict]] | None = None,
                     poll_lines: bool = False) -> dict[str, int]:
    """Merge the X3 records of `entity` changed since the stored stamp into the snapshot.

    `read_details(keys)` fetches full records (with lines) for list-view records that
    lack them; entities without lines pass None. With `poll_lines`, documents whose *lines*
    were stamped since the stored line stamp are re-read too, even when their header stamp
    did not move (undocumented in X3 whether it does). Returns read/changed/deleted counts.
    """
    key = CANONICAL_KEYS[entity][0]
    name = cursor_name(entity)
    stored = ledger.get_cursor(name)
    since = None if full_refresh else DeltaCursor(entity, stored, overlap_seconds).window_start()
    listed = [record for page in client.changed(entity, since) for record in page]
    known = ledger.snapshot_stamps(entity)
    changed = [r for r in listed
               if _is_changed(r, known.get(str(r[key])), completed=read_details is not None)]
    poll_lines = poll_lines and read_details is not None
    line_newest, forced = _changed_by_lines(client, ledger, entity, overlap_seconds, known,
                                            poll_lines)
    forced -= {str(r[key]) for r in changed}
    missing = [r[key] for r in changed if "lines" not in r] if read_details else []
    missing += sorted(forced)
    details = {r[key]: r for r in read_details(missing)} if missing else {}
    merged = [details.get(r[key], r) for r in changed]
    merged += [details[k] for k in sorted(forced) if k in details]
    ledger.upsert_snapshot(entity, merged, key)
    gone: set[str] = set()
    if full_refresh:
        gone = set(known) - {str(r[key]) for r in listed}
        ledger.mark_deleted(entity, gone)
    newest = max((r["update_stamp"] for r in listed if r.get("update_stamp")), default=None)
    if newest and (stored is None or newest > stored):
        ledger.set_cursor(name, newest)
    if poll_lines:
        line_name = line_cursor_name(entity)
        current = ledger.get_cursor(line_name)
        candidate = line_newest or (newest if current is None else None)
        if candidate and (current is None or candidate > current):
            ledger.set_cursor(line_name, candidate)
    return {"read": len(listed), "changed": len(merged), "deleted": len(gone),
            "line_changes": len(forced)}


def _is_changed(record: dict, held: str | None, *, completed: bool) -> bool:
    """Whether a listed record differs from the snapshot's copy, by update stamp.

    A list-view record that details complete (REST `$query`: no lines) carries only its
    header stamp, while the snapshot holds the newest of its header and line stamps (the
    client's `_finish`). A header stamp older than that is the copy already held: counting
    it as changed would re-read the document's details on every run while its header stays
    inside the overlap window.
    """
    stamp = record.get("update_stamp")
    if stamp == held:
        return False
    return not (completed and "lines" not in record and isinstance(stamp, str)
                and isinstance(held, str) and stamp < held)


def _changed_by_lines(client, ledger: Ledger, entity: str, overlap_seconds: int,
                      known: dict[str, str | None], enabled: bool) -> tuple[str | None, set[str]]:
    """(newest line stamp read, keys of documents with a line stamped after the stamp the
    snapshot holds for them: the newest of header and line stamps when last read).

    The first time there is no line stamp: every document's details are being read by this
    very run, so the line query is skipped and the line stamp starts at the header stamp.
    """
    if not enabled:
        return None, set()
    stored = ledger.get_cursor(line_cursor_name(entity))
    if stored is None:
        return None, set()
    since = DeltaCursor(entity, stored, overlap_seconds).window_start()
    key = CANONICAL_KEYS[entity][0]
    rows = [row for page in client.changed_line_documents(entity, since) for row in page]
    newest = max((r["update_stamp"] for r in rows if r.get("update_stamp")), default=None)
    forced = {str(r[key]) for r in rows if r.get(key) and r.get("update_stamp")
              and (known.get(str(r[key])) is None or r["update_stamp"] > known[str(r[key])])}
    return newest, forced
