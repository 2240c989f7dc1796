"""Two sync runs launched at the same moment on one Dagster instance: two real
`dagster job execute -m mlc_dagster.definitions -j sync_sage_x3_to_procore` processes (the
CLI bypasses the run queue, as a second deployment would), over the demo seed.

The company write lock (ledger/lock.py) makes the second writer wait, log who holds the lock,
and plan from what the first one wrote. Checked the way a user would see it: no two
commitments with one number in a project, no two invoices with one number on a commitment
(mlc_dagster_tests.duplicates), every PO and invoice where a fault-free run puts it (and the
independent oracle), and the write steps of the two runs never writing at the same time
(their ledger events). On the SQLite ledger and on PostgreSQL.

The instance's dagster.yaml is the shipped one with one change: the `procore_api` pool
allows 2 steps at once (docs/production.md shows how an operator raises it). With the shipped
limit of 1, the pool alone already keeps two runs *of one instance* apart, step by step; it
does nothing for two deployments (two instances) writing the same company, which is what a
raised limit reproduces here on one machine.

Procore answers with 25 ms of latency so each writing step takes a few seconds: two
processes started together then reach their write steps well inside each other's window.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from mlc_dagster.ledger.store import Ledger, sync_events
from mlc_dagster_tests.postgres import scratch_database
from mlc_dagster_tests.reliability.harness import (
    SYNC_JOB,
    differences,
    ledger_disagreements,
    open_world,
    take_end_state,
)
from mlc_sandbox.seed import COMPANY_ID, build_seed

DAGSTER = str(Path(sys.executable).with_name("dagster"))
REPO_DAGSTER_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"
RUN_ID = re.compile(r"sync_sage_x3_to_procore - ([0-9a-f]{8}-[0-9a-f-]{27}) - ")
LATENCY_MS = 25
# The same CLI with the lock switched off: what the checks must catch (broken on purpose).
NO_LOCK_CLI = """
import sys
from mlc_dagster.ledger import lock
lock.CompanyWriteLock.acquire = lambda self: 0.0
lock.CompanyWriteLock.release = lambda self: None
from dagster._cli import main
sys.argv[0] = "dagster"
sys.exit(main())
"""


@pytest.fixture(scope="module")
def demo_seed():
    return build_seed(42, "small")


@pytest.fixture(scope="module")
def expected(demo_seed, tmp_path_factory):
    """What one fault-free run writes (the same seed, in this process)."""
    with pytest.MonkeyPatch.context() as mp, open_world(
            mp, tmp_path_factory.mktemp("fault-free"), seed=demo_seed) as world:
        world.sync()
        return world.end_state()


@pytest.fixture
def pg_ledger_url():
    with scratch_database("mlc_concurrent") as url:
        yield url


def launch_two(world, ledger_url: str, *, lock: bool = True) -> list[dict]:
    """Start two `dagster job execute` processes at once on one instance; wait for both."""
    home = world.tmp / "dagster_home"
    home.mkdir(exist_ok=True)
    shipped = REPO_DAGSTER_YAML.read_text()
    assert "  pools:\n    # Steps that call Procore" in shipped and "default_limit: 1" in shipped
    (home / "dagster.yaml").write_text(shipped.replace("default_limit: 1", "default_limit: 2"))
    # a deployment's instance exists before its runs: create its storage once here, or the
    # two processes race to create the SQLite schema (Dagster's own migration, not ours)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
    env = {**os.environ, "DAGSTER_HOME": str(home), "MLC_LEDGER_URL": ledger_url,
           "PYTHONUNBUFFERED": "1"}
    command = ([DAGSTER] if lock else [sys.executable, "-c", NO_LOCK_CLI]) + [
        "job", "execute", "-m", "mlc_dagster.definitions", "-j", SYNC_JOB]
    runs = []
    for n in range(2):
        log = (world.tmp / f"run-{n}.log").open("w")
        runs.append({"log": log, "path": world.tmp / f"run-{n}.log",
                     "proc": subprocess.Popen(command, env=env, stdout=log,
                                              stderr=subprocess.STDOUT, cwd=world.tmp)})
    for run in runs:
        run["code"] = run["proc"].wait(timeout=300)
        run["log"].close()
        run["output"] = run["path"].read_text()
        found = RUN_ID.search(run["output"])
        run["run_id"] = found.group(1) if found else None
    return runs


def write_windows(ledger_url: str) -> dict[tuple[str, str], tuple]:
    """(run id, entity) -> (first, last) time of its ledger events: one write step's span."""
    ledger = Ledger(ledger_url)
    try:
        query = sa.select(sync_events.c.run_id, sync_events.c.entity,
                          sa.func.min(sync_events.c.at), sa.func.max(sync_events.c.at)
                          ).group_by(sync_events.c.run_id, sync_events.c.entity)
        with ledger.engine.connect() as conn:
            return {(run, entity): (first, last) for run, entity, first, last in conn.execute(query)}
    finally:
        ledger.dispose()


def overlapping_steps(windows: dict[tuple[str, str], tuple]) -> list[str]:
    """Write steps of different runs whose spans overlap: two writers at once."""
    spans = sorted(windows.items(), key=lambda item: item[1][0])
    found = []
    for n, ((run_a, entity_a), (_, end_a)) in enumerate(spans):
        for (run_b, entity_b), (start_b, _) in spans[n + 1:]:
            if run_b != run_a and start_b < end_a:
                found.append(f"{entity_b} of run {run_b[:8]} wrote while {entity_a} of run "
                             f"{run_a[:8]} was writing")
    return found


def duplicates(procore_url: str) -> list[str]:
    from mlc_dagster_tests.duplicates import duplicate_problems

    return duplicate_problems(procore_url)


def two_runs(world, ledger_url: str, *, lock: bool = True) -> tuple[list[dict], list[str]]:
    world.configure("procore", latency_ms=LATENCY_MS)
    runs = launch_two(world, ledger_url, lock=lock)
    world.configure("procore", latency_ms=0)
    return runs, overlapping_steps(write_windows(ledger_url))


def check_two_runs(world, ledger_url: str, expected) -> None:
    runs, overlaps = two_runs(world, ledger_url)
    for run in runs:
        assert run["code"] == 0 and run["run_id"], run["output"][-3000:]
    first, second = runs
    waiting = [(run, other) for run, other in ((first, second), (second, first))
               if f"write lock held by run {other['run_id']} since " in run["output"]]
    assert waiting, "neither run waited for the other: the two runs never met at the lock"
    run, other = waiting[0]
    assert (f"waiting for the Procore company {COMPANY_ID} write lock held by run "
            f"{other['run_id']} since ") in run["output"]
    assert overlaps == [], overlaps
    assert duplicates(world.procore.url) == []
    final = take_end_state(world.procore, ledger_url, world.x3)
    assert not final.duplicates and not ledger_disagreements(final)
    assert differences(final, expected) == []  # nothing lost, nothing written twice
    try:
        from mlc_dagster_tests.reliability.harness import assert_converged
    except ImportError:
        return
    assert_converged(world)


def test_two_runs_at_once_on_a_sqlite_ledger(monkeypatch, tmp_path, demo_seed, expected):
    with open_world(monkeypatch, tmp_path, seed=demo_seed) as world:
        check_two_runs(world, world.ledger_url, expected)


@pytest.mark.postgres
def test_two_runs_at_once_on_a_postgres_ledger(monkeypatch, tmp_path, demo_seed, expected,
                                               pg_ledger_url):
    with open_world(monkeypatch, tmp_path, seed=demo_seed,
                    extra_env={"MLC_LEDGER_URL": pg_ledger_url}) as world:
        world.ledger_url = pg_ledger_url
        check_two_runs(world, pg_ledger_url, expected)


def test_the_checks_catch_two_runs_without_the_lock(monkeypatch, tmp_path, demo_seed):
    """Broken on purpose: the same two processes with the lock switched off write at the
    same time, and the overlap check says so."""
    with open_world(monkeypatch, tmp_path, seed=demo_seed) as world:
        runs, overlaps = two_runs(world, world.ledger_url, lock=False)
        seen = duplicates(world.procore.url)
        state = world.end_state()
    print(f"without the lock: {len(overlaps)} overlapping write step(s), {len(seen)} "
          f"duplicate(s) in Procore, ledger {dict(state.statuses())}, invoices "
          f"{dict(state.statuses('purchase_invoice'))}")
    assert all(run["code"] == 0 for run in runs), [r["output"][-2000:] for r in runs]
    assert not any("waiting for the Procore company" in run["output"] for run in runs)
    assert overlaps, "without the lock the two runs' write steps should overlap"


def test_overlap_check_on_made_up_windows():
    t = [time.time() + n for n in range(6)]
    assert overlapping_steps({("a", "purchase_order"): (t[0], t[2]),
                              ("b", "purchase_order"): (t[3], t[4])}) == []
    assert overlapping_steps({("a", "purchase_order"): (t[0], t[3]),
                              ("b", "purchase_order"): (t[2], t[4])}) == [
        "purchase_order of run b wrote while purchase_order of run a was writing"]
    assert overlapping_steps({("a", "purchase_order"): (t[0], t[3]),
                              ("a", "purchase_invoice"): (t[1], t[2])}) == []  # one run
