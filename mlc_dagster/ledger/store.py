"""The sync ledger: per-record state, an append-only event log, and the X3 snapshot.

SQLAlchemy Core over SQLite (default, under DAGSTER_HOME) or PostgreSQL (production,
same server as Dagster's storage). Three kinds of data live here:

- `sync_records`: one row per synced record (e.g. one PO): Procore id, hash of what
  was last written, status (synced / held / failed / superseded / deferred), the payload
  we meant to send when it failed (for replay) and a summary used for before -> after
  diffs. This row is overwritten as the record moves on.
- `sync_events`: append-only history. No code path updates or deletes an event.
- `x3_snapshot`: the last known state of every X3 record, kept up to date from
  delta polls, so each run can compute the desired Procore state without
  re-reading all of Sage X3.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mlc_dagster.common.env import dagster_home

metadata = sa.MetaData()


def _record_identity(*, primary_key: bool) -> tuple[sa.Column, sa.Column]:
    """`entity` + `key`, a record's identity: one definition for every table naming records."""
    options = {"primary_key": True} if primary_key else {"nullable": False}
    return (sa.Column("entity", sa.String(40), **options),
            sa.Column("key", sa.String(200), **options))


sync_records = sa.Table(
    "mlc_sync_records",
    metadata,
    *_record_identity(primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("procore_id", sa.BigInteger),
    sa.Column("project_id", sa.BigInteger),
    sa.Column("content_hash", sa.String(64)),
    sa.Column("x3_stamp", sa.String(32)),
    sa.Column("reason", sa.Text),
    sa.Column("payload", sa.JSON),
    sa.Column("summary", sa.JSON),
    sa.Column("run_id", sa.String(64)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_mlc_sync_records_status", "entity", "status"),
)

sync_events = sa.Table(
    "mlc_sync_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.String(64)),
    *_record_identity(primary_key=False),
    sa.Column("action", sa.String(30), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("changes", sa.JSON),
    sa.Column("procore_request_id", sa.String(100)),
    sa.Index("ix_mlc_sync_events_record", "entity", "key", "id"),
    sa.Index("ix_mlc_sync_events_run", "run_id"),
)

x3_snapshot = sa.Table(
    "mlc_x3_snapshot",
    metadata,
    *_record_identity(primary_key=True),
    sa.Column("update_stamp", sa.String(32)),
    sa.Column("record", sa.JSON, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

cursors = sa.Table(
    "mlc_cursors",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Who holds a company write lock (ledger/lock.py): for the waiting run's message only; the
# lock itself is a PostgreSQL advisory lock or a file lock, which dies with its holder.
write_locks = sa.Table(
    "mlc_write_locks",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("run_id", sa.String(64)),
    sa.Column("pid", sa.Integer),
    sa.Column("host", sa.String(255)),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
)

# deferred: not tried because Procore was unavailable (the circuit breaker opened); picked
# up by the next run and by replay like a failed record, with no per-record error.
STATUSES = ("synced", "held", "failed", "superseded", "deferred")
RETRIED_STATUSES = ("failed", "deferred")  # what the replay job re-sends


def default_ledger_url() -> str:
    """MLC_LEDGER_URL, else a SQLite file under DAGSTER_HOME (or ./.dagster_home)."""
    url = os.environ.get("MLC_LEDGER_URL")
    if url:
        return url
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(home / 'mlc_ledger.sqlite').resolve()}"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RecordFields:
    """A record's columns in `sync_records`: what a RecordState reads, what a Change writes."""

    entity: str
    key: str
    status: str
    procore_id: int | None = None
    project_id: int | None = None
    content_hash: str | None = None
    x3_stamp: str | None = None
    reason: str | None = None
    payload: Any = None
    summary: Any = None

    def record_row(self) -> dict[str, Any]:
        """These columns by name (the run id and the time are the writer's to add)."""
        return {name: getattr(self, name) for name in RECORD_COLUMNS}


RECORD_COLUMNS = tuple(f.name for f in fields(RecordFields))


@dataclass
class RecordState(RecordFields):
    """A record as the ledger holds it, with the run that wrote it last."""

    run_id: str | None = None


@dataclass(kw_only=True)
class Change(RecordFields):
    """One ledger write: the new state of a record plus the event that explains it."""

    action: str
    changes: Any = None
    request_id: str | None = None
    keep_state: bool = False  # True: only append the event


class Ledger:
    """Thin data-access layer; every method is one short transaction."""

    def __init__(self, url: str | None = None, *, echo: bool = False) -> None:
        self.url = url or default_ledger_url()
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine = sa.create_engine(self.url, **kwargs)
        if self.url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        _create_tables(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    # --- record state -----------------------------------------------------------------
    def states(self, entity: str, keys: Iterable[str] | None = None) -> dict[str, RecordState]:
        query = sa.select(sync_records).where(sync_records.c.entity == entity)
        if keys is not None:
            keys = list(keys)
            if not keys:
                return {}
            result: dict[str, RecordState] = {}
            with self.engine.connect() as conn:
                for chunk in _chunks(keys, 500):
                    rows = conn.execute(query.where(sync_records.c.key.in_(chunk)))
                    result.update({r.key: _state(r) for r in rows})
            return result
        with self.engine.connect() as conn:
            return {r.key: _state(r) for r in conn.execute(query)}

    def keys_with_status(self, entity: str, statuses: Iterable[str]) -> list[str]:
        query = sa.select(sync_records.c.key).where(
            sync_records.c.entity == entity, sync_records.c.status.in_(list(statuses))
        ).order_by(sync_records.c.key)
        with self.engine.connect() as conn:
            return [row.key for row in conn.execute(query)]

    def procore_ids(self, entity: str) -> set[int]:
        """The Procore ids the ledger holds for `entity` (one column, not every state)."""
        query = sa.select(sync_records.c.procore_id).where(
            sync_records.c.entity == entity, sync_records.c.procore_id.is_not(None))
        with self.engine.connect() as conn:
            return {int(row.procore_id) for row in conn.execute(query)}

    def apply(self, changes: Iterable[Change], run_id: str | None) -> int:
        """Write new states and append their events atomically. Returns events written."""
        changes = list(changes)
        if not changes:
            return 0
        now = _now()
        # One row per record: PostgreSQL refuses an upsert naming the same key twice.
        latest = {(c.entity, c.key): c for c in changes if not c.keep_state}
        state_rows = [{**c.record_row(), "run_id": run_id, "updated_at": now}
                      for c in latest.values()]
        event_rows = [
            {
                "at": now, "run_id": run_id, "entity": c.entity, "key": c.key, "action": c.action,
                "status": c.status, "reason": c.reason, "changes": c.changes,
                "procore_request_id": c.request_id,
            }
            for c in changes
        ]
        with self.engine.begin() as conn:
            for chunk in _chunks(state_rows, 500):
                conn.execute(_upsert(conn, sync_records, chunk, ["entity", "key"]))
            for chunk in _chunks(event_rows, 1000):
                conn.execute(sync_events.insert(), chunk)
        return len(event_rows)

    # --- audit trail ------------------------------------------------------------------
    def events(self, entity: str, key: str) -> list[dict]:
        query = (
            sa.select(sync_events)
            .where(sync_events.c.entity == entity, sync_events.c.key == key)
            .order_by(sync_events.c.id)
        )
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def events_for_run(self, run_id: str) -> list[dict]:
        query = sa.select(sync_events).where(sync_events.c.run_id == run_id).order_by(sync_events.c.id)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    # --- X3 snapshot -----------------------------------------------------------------
    def upsert_snapshot(self, entity: str, records: list[dict], key_field: str,
                        stamp_field: str = "update_stamp") -> int:
        if not records:
            return 0
        now = _now()
        rows = [
            {"entity": entity, "key": str(r[key_field]), "update_stamp": r.get(stamp_field),
             "record": r, "deleted": False, "updated_at": now}
            for r in records
        ]
        with self.engine.begin() as conn:
            for chunk in _chunks(rows, 500):
                conn.execute(_upsert(conn, x3_snapshot, chunk, ["entity", "key"]))
        return len(rows)

    def mark_deleted(self, entity: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        with self.engine.begin() as conn:
            for chunk in _chunks(keys, 500):
                conn.execute(
                    x3_snapshot.update()
                    .where(x3_snapshot.c.entity == entity, x3_snapshot.c.key.in_(chunk))
                    .values(deleted=True, updated_at=_now())
                )

    def snapshot(self, entity: str, *, include_deleted: bool = False) -> Iterator[dict]:
        query = sa.select(x3_snapshot.c.record, x3_snapshot.c.deleted).where(
            x3_snapshot.c.entity == entity
        ).order_by(x3_snapshot.c.key)
        if not include_deleted:
            query = query.where(x3_snapshot.c.deleted.is_(False))
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                record = row.record if isinstance(row.record, dict) else json.loads(row.record)
                yield record

    def snapshot_stamps(self, entity: str) -> dict[str, str | None]:
        """Key -> update stamp of every live snapshot record (to skip unchanged re-reads)."""
        query = sa.select(x3_snapshot.c.key, x3_snapshot.c.update_stamp).where(
            x3_snapshot.c.entity == entity, x3_snapshot.c.deleted.is_(False))
        with self.engine.connect() as conn:
            return {row.key: row.update_stamp for row in conn.execute(query)}

    def deleted_keys(self, entity: str) -> set[str]:
        """Keys of records a full read no longer found in X3."""
        query = sa.select(x3_snapshot.c.key).where(
            x3_snapshot.c.entity == entity, x3_snapshot.c.deleted.is_(True))
        with self.engine.connect() as conn:
            return {row.key for row in conn.execute(query)}

    def snapshot_keys(self, entity: str) -> set[str]:
        query = sa.select(x3_snapshot.c.key).where(
            x3_snapshot.c.entity == entity, x3_snapshot.c.deleted.is_(False))
        with self.engine.connect() as conn:
            return {row.key for row in conn.execute(query)}

    # --- incremental staging (x3_reads/scope.py): which records can have changed -------------
    def snapshot_records(self, entity: str, keys: Iterable[str]) -> list[dict]:
        """The live snapshot records of `keys`, in key order; unknown or deleted keys are
        left out."""
        keys = sorted(set(keys))
        records: list[dict] = []
        with self.engine.connect() as conn:
            for chunk in _chunks(keys, 500):
                query = sa.select(x3_snapshot.c.record).where(
                    x3_snapshot.c.entity == entity, x3_snapshot.c.key.in_(chunk),
                    x3_snapshot.c.deleted.is_(False)).order_by(x3_snapshot.c.key)
                records += [row.record if isinstance(row.record, dict) else json.loads(row.record)
                            for row in conn.execute(query)]
        return records

    def snapshot_changed_keys(self, entity: str, since: datetime, *,
                              include_deleted: bool = False) -> set[str]:
        """Keys of the snapshot rows written after `since`: merged from an X3 read, or marked
        deleted by a full read (both stamp `updated_at`)."""
        query = sa.select(x3_snapshot.c.key).where(
            x3_snapshot.c.entity == entity, x3_snapshot.c.updated_at > since)
        if not include_deleted:
            query = query.where(x3_snapshot.c.deleted.is_(False))
        with self.engine.connect() as conn:
            return {row.key for row in conn.execute(query)}

    def unsettled_snapshot_keys(self, entity: str) -> set[str]:
        """Live snapshot keys whose ledger state is anything but `synced`: held, failed,
        deferred (and any status added later). Their outcome can change without an X3
        change, so the next plan must see them again."""
        joined = x3_snapshot.join(sync_records, sa.and_(
            sync_records.c.entity == x3_snapshot.c.entity,
            sync_records.c.key == x3_snapshot.c.key))
        query = sa.select(x3_snapshot.c.key).select_from(joined).where(
            x3_snapshot.c.entity == entity, x3_snapshot.c.deleted.is_(False),
            sync_records.c.status != "synced")
        with self.engine.connect() as conn:
            return {row.key for row in conn.execute(query)}

    def unrecorded_snapshot_keys(self, entity: str) -> set[str]:
        """Live snapshot keys with no ledger state at all: never planned (e.g. left over by a
        per-run limit, or read by a run that crashed before its write step)."""
        joined = x3_snapshot.outerjoin(sync_records, sa.and_(
            sync_records.c.entity == x3_snapshot.c.entity,
            sync_records.c.key == x3_snapshot.c.key))
        query = sa.select(x3_snapshot.c.key).select_from(joined).where(
            x3_snapshot.c.entity == entity, x3_snapshot.c.deleted.is_(False),
            sync_records.c.key.is_(None))
        with self.engine.connect() as conn:
            return {row.key for row in conn.execute(query)}

    def snapshot_keys_with_line_value(self, entity: str, field_name: str,
                                      values: Iterable[str]) -> set[str]:
        """Live snapshot keys of the records with a line whose `field_name` (trimmed text) is
        one of `values`, e.g. the invoices billing some POs. Filtered in SQL (SQLite JSON1,
        PostgreSQL json functions): no record is parsed in Python."""
        values = sorted({str(v) for v in values})
        if not values:
            return set()
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            sql = ("SELECT DISTINCT s.key FROM mlc_x3_snapshot AS s, "
                   "json_each(s.record, '$.lines') AS line "
                   "WHERE s.entity = :entity AND s.deleted = 0 "
                   "AND json_type(s.record, '$.lines') = 'array' AND line.type = 'object' "
                   "AND trim(CAST(CASE WHEN line.type = 'object' "
                   "THEN json_extract(line.value, :path) END AS TEXT)) IN :values")
            params = {"path": f"$.{field_name}"}
        elif dialect == "postgresql":
            sql = ("SELECT DISTINCT s.key FROM mlc_x3_snapshot AS s, "
                   "json_array_elements(CASE WHEN json_typeof(s.record -> 'lines') = 'array' "
                   "THEN s.record -> 'lines' ELSE '[]'::json END) AS line "
                   "WHERE s.entity = :entity AND NOT s.deleted "
                   "AND json_typeof(line) = 'object' "
                   "AND trim(line ->> :field) IN :values")
            params = {"field": field_name}
        else:
            raise RuntimeError(f"ledger supports SQLite and PostgreSQL, not {dialect}")
        query = sa.text(sql).bindparams(sa.bindparam("values", expanding=True))
        keys: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks(values, 500):
                rows = conn.execute(query, {"entity": entity, "values": chunk, **params})
                keys.update(row.key for row in rows)
        return keys

    # --- company write locks: who holds one (ledger/lock.py) -----------------------------
    def set_lock_holder(self, name: str, run_id: str | None, pid: int, host: str) -> datetime:
        since = _now()
        with self.engine.begin() as conn:
            conn.execute(_upsert(conn, write_locks, [{"name": name, "run_id": run_id, "pid": pid,
                                                      "host": host, "since": since}], ["name"]))
        return since

    def lock_holder(self, name: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(write_locks).where(write_locks.c.name == name)).first()
        return dict(row._mapping) if row is not None else None

    def clear_lock_holder(self, name: str, run_id: str | None, pid: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(write_locks.delete().where(
                write_locks.c.name == name, write_locks.c.pid == pid,
                write_locks.c.run_id.is_(None) if run_id is None
                else write_locks.c.run_id == run_id))

    # --- cursors -----------------------------------------------------------------------
    def get_cursor(self, name: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(cursors.c.value).where(cursors.c.name == name)).scalar()

    def set_cursor(self, name: str, value: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(_upsert(conn, cursors, [{"name": name, "value": value,
                                                  "updated_at": _now()}], ["name"]))


def _create_tables(engine: sa.Engine, attempts: int = 5) -> None:
    """create_all, tolerating another process creating the same tables at the same moment
    (two runs starting on a fresh ledger): the loser retries, and then finds them."""
    for attempt in range(1, attempts + 1):
        try:
            metadata.create_all(engine)
            return
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
            if attempt == attempts:
                raise
            time.sleep(0.2 * attempt)


def _state(row) -> RecordState:
    return RecordState(**{name: getattr(row, name) for name in RECORD_COLUMNS},
                       run_id=row.run_id)


def _upsert(conn, table: sa.Table, rows: list[dict], keys: list[str]):
    """INSERT ... ON CONFLICT DO UPDATE for SQLite and PostgreSQL alike."""
    dialect = conn.dialect.name
    insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(dialect)
    if insert is None:
        raise RuntimeError(f"ledger supports SQLite and PostgreSQL, not {dialect}")
    stmt = insert(table).values(rows)
    updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    return stmt.on_conflict_do_update(index_elements=keys, set_=updates)


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
