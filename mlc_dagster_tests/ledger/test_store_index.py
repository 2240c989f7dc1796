"""The audit query must stay an index lookup however large the event log grows."""

import sqlalchemy as sa

from mlc_dagster.ledger.store import Ledger, sync_events


def test_record_history_query_uses_the_record_index(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    query = (sa.select(sync_events)
             .where(sync_events.c.entity == "purchase_order", sync_events.c.key == "PO1")
             .order_by(sync_events.c.id))
    sql = str(query.compile(ledger.engine, compile_kwargs={"literal_binds": True}))
    with ledger.engine.connect() as conn:
        plan = " ".join(str(row) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "ix_mlc_sync_events_record" in plan, plan
    assert "SCAN mlc_sync_events" not in plan.replace("USING INDEX", "")
