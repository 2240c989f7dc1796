"""LedgerResource: where the sync ledger lives (SQLite under DAGSTER_HOME by default)."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from mlc_dagster.ledger.store import Ledger, default_ledger_url


class LedgerResource(dg.ConfigurableResource):
    """`url` is a SQLAlchemy URL (postgresql+psycopg2://... in production); empty = default."""

    url: str = ""

    _ledger: Ledger | None = PrivateAttr(default=None)

    def get_ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(self.url or default_ledger_url())
        return self._ledger

    def teardown_after_execution(self, context) -> None:
        if self._ledger is not None:
            self._ledger.dispose()
            self._ledger = None
