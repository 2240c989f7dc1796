"""Ledger changes of one write step, recorded in batches as the step goes.

A crash loses at most one batch of outcomes; the next run plans those records again, and
origin_id keys make re-sending them harmless.
"""

from __future__ import annotations

from mlc_dagster.ledger.store import Change, Ledger


class ChangeBatch:
    def __init__(self, ledger: Ledger, run_id: str | None, every: int = 100) -> None:
        self.ledger = ledger
        self.run_id = run_id
        self.every = every
        self._pending: list[Change] = []

    def add(self, *changes: Change) -> None:
        self._pending.extend(changes)
        if len(self._pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.ledger.apply(self._pending, self.run_id)
            self._pending = []
