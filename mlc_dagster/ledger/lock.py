"""One writer per Procore company at a time: a lock the writing steps hold while they write.

The run queue (dagster.yaml: one run per `mlc/procore_company` tag) keeps queued runs apart,
but a run launched from the CLI, or by a second deployment by mistake, bypasses it. Two
writers planning from the same ledger at once would both send what neither has recorded yet.
So every write step takes this lock before it reads the ledger to plan, and lets it go when
its outcomes are flushed; the step that waits plans afterwards, from what the first one wrote.

- PostgreSQL: a session advisory lock, `pg_try_advisory_lock(key)`, the key a 64-bit hash of
  the company id, on a dedicated connection (no pool, autocommit, so never idle in a
  transaction) kept open for the step. The server drops it when that connection ends, so a
  killed worker never leaves it behind.
- SQLite: an exclusive `flock` on a file next to the database
  (`<ledger>.procore-company-<id>.lock`). The OS drops it when the holding process dies
  (kill -9 and OOM included), as PostgreSQL does for its connection; no heartbeat and no
  clock-based takeover that could steal the lock from a slow but live holder. SQLite needs
  every process on one host anyway (its own locking needs a local file system), so a local
  file lock reaches every process that can open the ledger. An in-memory database gets a
  lock of this process.

Who holds the lock (run id, since, pid, host) is written to `mlc_write_locks` for the
message of the run that waits; that row is information only, never the lock.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from mlc_dagster.ledger.store import Ledger

DEFAULT_WAIT_SECONDS = 600.0
REPORT_EVERY_SECONDS = 60.0


def lock_name(company_id: str | int) -> str:
    return f"procore_company:{company_id}"


def advisory_key(company_id: str | int) -> int:
    """A signed 64-bit key for pg_advisory_lock, stable across processes and versions."""
    digest = hashlib.blake2b(f"mlc_dagster:{lock_name(company_id)}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


@dataclass(frozen=True)
class LockHolder:
    run_id: str | None
    since: datetime | None
    pid: int | None = None
    host: str | None = None

    def describe(self) -> str:
        since = f" since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else ""
        where = f" (pid {self.pid} on {self.host})" if self.pid else ""
        return f"run {self.run_id or '(not a Dagster run)'}{since}{where}"


class LockTimeout(Exception):
    """The lock stayed with another writer for the whole wait."""

    def __init__(self, company_id: str | int, holder: LockHolder | None, waited: float,
                 wait_seconds: float) -> None:
        self.company_id, self.holder, self.waited = company_id, holder, waited
        who = holder.describe() if holder else "another writer (no holder recorded)"
        super().__init__(
            f"the Procore company {company_id} write lock is still held by {who} after "
            f"{waited:.0f}s (MLC_WRITE_LOCK_WAIT_SECONDS={wait_seconds:g}): another run is "
            "writing to this company. This step wrote nothing and stops; the next run picks "
            "up whatever is still to do")


class CompanyWriteLock:
    """`with CompanyWriteLock(ledger, company_id, run_id):` - waits up to `wait_seconds`
    (logging who holds it), raises `LockTimeout` after that."""

    def __init__(self, ledger: Ledger, company_id: str | int, run_id: str | None, *,
                 wait_seconds: float = DEFAULT_WAIT_SECONDS, poll_seconds: float = 1.0,
                 log: Callable[[str], None] = lambda _m: None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.ledger = ledger
        self.company_id = company_id
        self.run_id = run_id
        self.name = lock_name(company_id)
        self.wait_seconds = max(0.0, wait_seconds)
        self.poll_seconds = poll_seconds
        self.log = log
        self.clock = clock
        self.sleep = sleep
        self.waited = 0.0
        self._backend = _backend_for(ledger, company_id)
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def holder(self) -> LockHolder | None:
        """Who took the lock last, as recorded (None if nobody did)."""
        row = self.ledger.lock_holder(self.name)
        if row is None:
            return None
        return LockHolder(row["run_id"], row["since"], row["pid"], row["host"])

    def acquire(self) -> float:
        """Take the lock; returns the seconds waited for it. Raises LockTimeout."""
        if self._held:
            raise RuntimeError(f"the {self.name} write lock is already held by this step")
        started = self.clock()
        announced, reported = None, None
        try:
            while not self._backend.try_acquire():
                now = self.clock()
                waited = now - started
                holder = self.holder()
                if waited >= self.wait_seconds:
                    raise LockTimeout(self.company_id, holder, waited, self.wait_seconds)
                if (holder != announced or reported is None
                        or now - reported >= REPORT_EVERY_SECONDS):
                    who = holder.describe() if holder else "another writer (no holder recorded)"
                    self.log(f"waiting for the Procore company {self.company_id} write lock "
                             f"held by {who} (waited {waited:.0f}s, at most "
                             f"{self.wait_seconds:g}s)")
                    announced, reported = holder, now
                self.sleep(min(self.poll_seconds, max(0.0, self.wait_seconds - waited)))
        except BaseException:
            self._backend.close()  # not held: only let go of what waiting opened
            raise
        self._held = True
        try:
            self.ledger.set_lock_holder(self.name, self.run_id, os.getpid(), socket.gethostname())
        except BaseException:
            self.release()
            raise
        self.waited = self.clock() - started
        return self.waited

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        try:
            self.ledger.clear_lock_holder(self.name, self.run_id, os.getpid())
        finally:
            self._backend.release()

    def __enter__(self) -> CompanyWriteLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


# --- backends: one try, and a release ----------------------------------------------------

def _backend_for(ledger: Ledger, company_id: str | int):
    url = ledger.engine.url
    if url.get_backend_name() == "postgresql":
        return _AdvisoryLock(url, advisory_key(company_id))
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file::memory:"):
            return _FileLock(lock_file(database, company_id))
        return _ProcessLock(f"{id(ledger.engine)}:{lock_name(company_id)}")
    raise RuntimeError(f"the ledger supports SQLite and PostgreSQL, not {url.get_backend_name()}")


def lock_file(database: str, company_id: str | int) -> Path:
    """The SQLite ledger's lock file for one company, next to the database file."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", str(company_id))
    return Path(f"{Path(database).resolve()}.procore-company-{safe}.lock")


class _AdvisoryLock:
    """pg_try_advisory_lock on a connection of its own (no pool): closing it ends the session,
    which drops the lock whatever happened before."""

    def __init__(self, url: sa.URL, key: int) -> None:
        self.key = key
        self.engine = sa.create_engine(url, poolclass=NullPool)
        self.conn: sa.Connection | None = None

    def try_acquire(self) -> bool:
        if self.conn is None:
            self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        got = self.conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"),
                                {"key": self.key}).scalar()
        return bool(got)

    def release(self) -> None:
        conn = self.conn
        if conn is None:
            return
        try:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
        finally:
            self.close()

    def close(self) -> None:
        """End the session (which drops any lock it holds) and the engine."""
        conn, self.conn = self.conn, None
        try:
            if conn is not None:
                conn.close()
        finally:
            self.engine.dispose()


class _FileLock:
    """flock(LOCK_EX | LOCK_NB) on a file next to the SQLite database; the OS drops it when
    the descriptor is closed, including by the death of the process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        fcntl = _fcntl()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return True

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            _fcntl().flock(fd, _fcntl().LOCK_UN)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Nothing stays open between tries."""


def _fcntl():
    try:
        import fcntl
    except ImportError:  # Windows
        raise RuntimeError("the SQLite ledger's write lock needs fcntl (Linux, macOS); on "
                           "other systems use a PostgreSQL ledger (MLC_LEDGER_URL)") from None
    return fcntl


_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


class _ProcessLock:
    """An in-memory SQLite ledger exists in one process only: a lock of that process."""

    def __init__(self, name: str) -> None:
        with _PROCESS_LOCKS_GUARD:
            self.lock = _PROCESS_LOCKS.setdefault(name, threading.Lock())

    def try_acquire(self) -> bool:
        return self.lock.acquire(blocking=False)

    def release(self) -> None:
        self.lock.release()

    def close(self) -> None:
        """Nothing stays open between tries."""
