"""DeltaCursor: every change read exactly once across pages and polls."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from mlc_dagster.resources.sage_x3_client import DeltaCursor


def po(number: str, stamp: str) -> dict:
    return {"po_number": number, "update_stamp": stamp}


def test_first_poll_reads_everything_and_sets_the_high_water_mark():
    cursor = DeltaCursor("purchase_order", overlap_seconds=60)
    assert cursor.window_start() is None
    page = [po("A", "2026-01-05T08:00:00Z"), po("B", "2026-01-05T08:00:05Z")]
    assert cursor.advance(page) == page
    assert cursor.stamp == "2026-01-05T08:00:05Z"
    assert cursor.window_start() == "2026-01-05T07:59:05Z"


def test_same_second_records_across_pages_and_polls_are_read_exactly_once():
    cursor = DeltaCursor("purchase_order", overlap_seconds=0)
    # Poll 1 ends on a page boundary inside one second; C (same second) is committed after.
    assert len(cursor.advance([po("A", "2026-01-05T08:00:10Z")])) == 1
    assert len(cursor.advance([po("B", "2026-01-05T08:00:10Z")])) == 1
    since = cursor.window_start()
    assert since == "2026-01-05T08:00:10Z"  # >= the high-water second, not > it
    poll_2 = [po("A", "2026-01-05T08:00:10Z"), po("B", "2026-01-05T08:00:10Z"),
              po("C", "2026-01-05T08:00:10Z")]
    assert cursor.advance(poll_2) == [po("C", "2026-01-05T08:00:10Z")]
    assert cursor.advance(poll_2) == []


def test_a_late_commit_inside_the_overlap_is_picked_up_and_nothing_is_repeated():
    cursor = DeltaCursor("purchase_order", overlap_seconds=300)
    cursor.advance([po("A", "2026-01-05T08:00:00Z"), po("B", "2026-01-05T08:05:00Z")])
    since = cursor.window_start()
    assert since == "2026-01-05T08:00:00Z"
    # D was stamped 08:03 but its transaction committed after the first poll.
    poll = [po("A", "2026-01-05T08:00:00Z"), po("D", "2026-01-05T08:03:00Z"),
            po("B", "2026-01-05T08:05:00Z")]
    assert cursor.advance(poll) == [po("D", "2026-01-05T08:03:00Z")]
    # A changed again: a new stamp is a new change.
    assert cursor.advance([po("A", "2026-01-05T08:06:00Z")]) == [po("A", "2026-01-05T08:06:00Z")]


def test_seen_pairs_older_than_the_window_are_pruned_and_the_cursor_round_trips():
    cursor = DeltaCursor("gl_account", overlap_seconds=60)
    cursor.advance([{"chart": "SEED", "account": "601100", "update_stamp": "2026-01-05T08:00:00Z"},
                    {"chart": "SEED", "account": "601200", "update_stamp": "2026-01-05T09:00:00Z"},
                    {"chart": "SEED", "account": "601300", "update_stamp": "2026-01-05T09:00:00Z"}])
    assert cursor.seen == {("SEED~601200", "2026-01-05T09:00:00Z"), ("SEED~601300", "2026-01-05T09:00:00Z")}
    text = cursor.to_json()
    assert len(text) < 150
    assert DeltaCursor.from_json(text) == cursor


def test_records_with_unusable_stamps_are_passed_on_but_not_tracked():
    cursor = DeltaCursor("purchase_order")
    assert cursor.advance([po("A", None), po("B", "garbage")]) == [po("A", None), po("B", "garbage")]
    assert cursor.stamp is None and cursor.seen == set()


def test_polling_a_changing_store_yields_every_change_exactly_once():
    """Randomised: commits land late (up to 60 s back-dated), several share a second, pages
    cut anywhere; with a 120 s overlap every (key, stamp) change is delivered once."""
    rng = random.Random(7)
    base = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC).timestamp()
    store: dict[str, str] = {}
    produced: set[tuple[str, str]] = set()
    delivered: list[tuple[str, str]] = []
    cursor = DeltaCursor("purchase_order", overlap_seconds=120)
    now = base
    for _poll in range(60):
        for _ in range(rng.randint(0, 8)):
            key = f"PO{rng.randint(1, 40)}"
            stamp_at = now - rng.choice([0, 0, 0, 1, 5, 30, 60])
            stamp = datetime.fromtimestamp(int(stamp_at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if store.get(key, "") < stamp:
                store[key] = stamp
                produced.add((key, stamp))
        since = cursor.window_start()
        rows = sorted(((s, k) for k, s in store.items() if since is None or s >= since))
        size = rng.randint(1, 5)
        for start in range(0, len(rows), size):
            page = [po(k, s) for s, k in rows[start:start + size]]
            delivered += [(r["po_number"], r["update_stamp"]) for r in cursor.advance(page)]
        cursor = DeltaCursor.from_json(cursor.to_json())  # as a sensor would store it
        now += rng.choice([1, 2, 10, 30])
    assert len(delivered) == len(set(delivered))
    # Every change still current in the store was delivered (older ones were overwritten).
    assert {(k, s) for k, s in store.items()} <= set(delivered)
    assert set(delivered) <= produced
