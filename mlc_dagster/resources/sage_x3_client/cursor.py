"""The delta-read cursor: what a poll of X3 has seen, so the next one misses nothing and
repeats nothing. Plain data, serialised into a Dagster sensor cursor."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from mlc_dagster.resources.sage_x3_client.literals import format_stamp, is_stamp, parse_stamp
from mlc_dagster.resources.sage_x3_client.records import record_key


@dataclass
class DeltaCursor:
    """High-water update stamp plus the (key, stamp) pairs already seen inside the overlap.

    Each poll reads from `window_start()` (the high-water stamp minus the overlap) and passes
    every page through `advance()`, which returns only the records not seen before. So
    same-second changes split across pages or polls are read once, and a change committed
    late with an earlier stamp (inside the overlap) is still picked up. Serialises to a
    short JSON string for a Dagster sensor cursor.
    """

    entity: str
    stamp: str | None = None
    overlap_seconds: float = 300.0
    seen: set[tuple[str, str]] = field(default_factory=set)

    def window_start(self, overlap_seconds: float | None = None) -> str | None:
        """Where the next read starts; a given overlap is remembered for pruning."""
        if overlap_seconds is not None:
            self.overlap_seconds = overlap_seconds
        if self.stamp is None:
            return None
        return format_stamp(parse_stamp(self.stamp) - timedelta(seconds=self.overlap_seconds))

    def advance(self, records: Iterable[dict]) -> list[dict]:
        """Record a page of changes; return those not seen before, in order."""
        fresh = []
        for record in records:
            stamp = record.get("update_stamp")
            pair = (record_key(self.entity, record), stamp)
            if pair in self.seen:
                continue
            fresh.append(record)
            if is_stamp(stamp):
                self.seen.add(pair)
                if self.stamp is None or stamp > self.stamp:
                    self.stamp = stamp
        floor = self.window_start()
        if floor is not None:
            self.seen = {pair for pair in self.seen if pair[1] >= floor}
        return fresh

    def to_json(self) -> str:
        by_stamp: dict[str, list[str]] = {}
        for key, stamp in sorted(self.seen):
            by_stamp.setdefault(stamp, []).append(key)
        return json.dumps({"e": self.entity, "s": self.stamp, "o": self.overlap_seconds,
                           "k": dict(sorted(by_stamp.items()))}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> DeltaCursor:
        data = json.loads(text)
        seen = {(key, stamp) for stamp, keys in data.get("k", {}).items() for key in keys}
        return cls(data["e"], data.get("s"), float(data.get("o", 300.0)), seen)
