"""The Procore company write lock (ledger/lock.py) on SQLite and PostgreSQL: one holder at a
time, a bounded wait that names the holder, and release when the holder dies (kill -9).

Two real `dagster job execute` processes contending for it: e2e/test_concurrent_runs.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import dagster as dg
import pytest

from mlc_dagster.ledger import lock as lock_module
from mlc_dagster.ledger.lock import (
    CompanyWriteLock,
    LockTimeout,
    advisory_key,
    lock_file,
)
from mlc_dagster.ledger.store import Ledger
from mlc_dagster.procore_writes.write_guard import company_write_lock
from mlc_dagster_tests.postgres import scratch_database

COMPANY = "4321"


@pytest.fixture(scope="module")
def pg_url():
    """A scratch PostgreSQL database (skipped when unreachable unless MLC_REQUIRE_POSTGRES)."""
    with scratch_database("mlc_lock_test") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def ledger(ledger_url):
    store = Ledger(ledger_url)
    yield store
    store.dispose()


def overlaps(intervals: list[tuple[str, float, float]]) -> list[str]:
    """Pairs of holders whose (start, end) intervals overlap: what the lock must prevent."""
    ordered = sorted(intervals, key=lambda i: i[1])
    return [f"{a} ({a_start:.3f}-{a_end:.3f}) overlaps {b} ({b_start:.3f}-{b_end:.3f})"
            for (a, a_start, a_end), (b, b_start, b_end) in zip(ordered, ordered[1:], strict=False)
            if b_start < a_end]


def contend(ledger_url: str, writers: int = 4, hold: float = 0.15) -> list[tuple]:
    """`writers` threads, each with its own Ledger, take the lock and hold it for `hold` s."""
    intervals, errors = [], []
    barrier = threading.Barrier(writers)

    def work(n: int) -> None:
        store = Ledger(ledger_url)
        try:
            barrier.wait()
            with CompanyWriteLock(store, COMPANY, f"run-{n}", wait_seconds=30,
                                  poll_seconds=0.02):
                start = time.monotonic()
                time.sleep(hold)
                intervals.append((f"run-{n}", start, time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            store.dispose()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(intervals) == writers
    return intervals


def test_one_writer_at_a_time(ledger, ledger_url):
    assert overlaps(contend(ledger_url)) == []
    assert ledger.lock_holder(f"procore_company:{COMPANY}") is None  # released, row cleared


def test_the_overlap_check_sees_writers_when_the_lock_is_broken(ledger, ledger_url, monkeypatch):
    """The check above can fail: with a lock that always says yes, writers overlap."""
    for backend in (lock_module._FileLock, lock_module._AdvisoryLock):
        monkeypatch.setattr(backend, "try_acquire", lambda self: True)
        monkeypatch.setattr(backend, "release", lambda self: None)
    assert overlaps(contend(ledger_url))


def test_a_waiting_writer_names_the_holder_then_gives_up(ledger):
    holder = CompanyWriteLock(ledger, COMPANY, "run-holder")
    holder.acquire()
    try:
        messages: list[str] = []
        waiter = CompanyWriteLock(ledger, COMPANY, "run-waiter", wait_seconds=0.5,
                                  poll_seconds=0.1, log=messages.append)
        started = time.monotonic()
        with pytest.raises(LockTimeout) as raised:
            waiter.acquire()
        assert 0.5 <= time.monotonic() - started < 5
        assert messages and messages[0].startswith(
            f"waiting for the Procore company {COMPANY} write lock held by run run-holder since ")
        assert len(messages) == 1  # announced once while the holder stays the same
        text = str(raised.value)
        assert "write lock is still held by run run-holder since " in text
        assert "MLC_WRITE_LOCK_WAIT_SECONDS=0.5" in text and "wrote nothing" in text
        assert raised.value.holder.run_id == "run-holder"
        assert not waiter.held
        assert getattr(waiter._backend, "conn", None) is None  # no session left open
    finally:
        holder.release()
    other = CompanyWriteLock(ledger, COMPANY, "run-next", wait_seconds=0)
    assert other.acquire() < 1  # free again at once
    other.release()


def test_a_write_step_that_cannot_get_the_lock_fails_without_retries(ledger):
    warnings: list[str] = []
    context = SimpleNamespace(run=SimpleNamespace(run_id="run-late"),
                              log=SimpleNamespace(warning=warnings.append, info=warnings.append))
    with CompanyWriteLock(ledger, COMPANY, "run-first"):
        with pytest.raises(dg.Failure) as raised, company_write_lock(context, ledger, COMPANY,
                                                                     wait_seconds=0.2):
            pytest.fail("the body must not run without the lock")
    failure = raised.value
    assert failure.allow_retries is False
    assert failure.description.startswith(f"the Procore company {COMPANY} write lock is still "
                                           "held by run run-first since ")
    assert failure.metadata["held_by_run"].value == "run-first"
    assert warnings and "held by run run-first" in warnings[0]
    with company_write_lock(context, ledger, COMPANY, 0.2) as lock:  # free now: taken at once
        assert lock.held and lock.holder().run_id == "run-late"
    assert not lock.held


def test_companies_do_not_block_each_other(ledger):
    with CompanyWriteLock(ledger, "1", "run-a", wait_seconds=0):
        with CompanyWriteLock(ledger, "2", "run-b", wait_seconds=0):
            pass


def test_a_step_cannot_take_its_own_lock_twice(ledger):
    lock = CompanyWriteLock(ledger, COMPANY, "run-a", wait_seconds=0)
    with lock, pytest.raises(RuntimeError, match="already held"):
        lock.acquire()


HOLD_AND_SLEEP = """
import sys, time
from mlc_dagster.ledger.store import Ledger
from mlc_dagster.ledger.lock import CompanyWriteLock
CompanyWriteLock(Ledger(sys.argv[1]), sys.argv[2], "run-killed", wait_seconds=0).acquire()
print("held", flush=True)
time.sleep(300)
"""


def test_the_lock_dies_with_its_holder(ledger, ledger_url):
    """kill -9 of the holding process frees the lock at once (the OS drops the flock, the
    server ends the session), while a live holder keeps it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_AND_SLEEP, ledger_url, COMPANY],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LockTimeout) as raised:
            CompanyWriteLock(ledger, COMPANY, "run-b", wait_seconds=0.3,
                             poll_seconds=0.1).acquire()
        assert raised.value.holder.run_id == "run-killed"
        assert raised.value.holder.pid == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    started = time.monotonic()
    lock = CompanyWriteLock(ledger, COMPANY, "run-b", wait_seconds=10, poll_seconds=0.05)
    lock.acquire()
    try:
        assert time.monotonic() - started < 5
        assert lock.holder().run_id == "run-b"  # the dead holder's row is replaced
    finally:
        lock.release()


def test_sqlite_lock_file_sits_next_to_the_database(tmp_path):
    path = lock_file(str(tmp_path / "ledger.sqlite"), "12/34")
    assert path == tmp_path / "ledger.sqlite.procore-company-12_34.lock"


def test_advisory_key_is_a_stable_signed_64_bit_number():
    key = advisory_key(4321)
    assert key == advisory_key("4321") != advisory_key(4322)
    assert -2 ** 63 <= key < 2 ** 63


def test_in_memory_sqlite_gets_a_lock_of_the_process():
    store = Ledger("sqlite://")
    try:
        with CompanyWriteLock(store, COMPANY, "run-a", wait_seconds=0):
            with pytest.raises(LockTimeout):
                CompanyWriteLock(store, COMPANY, "run-b", wait_seconds=0).acquire()
    finally:
        store.dispose()
