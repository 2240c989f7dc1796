"""Crash safety: the run process SIGKILLed mid-write, and a sensor tick lost mid-flight.

A killed run leaves Procore writes the ledger never heard of (the writer flushes outcomes
to the ledger every 100 POs and at the end). Everything is keyed by `origin_id`, so the
next run must update what exists instead of duplicating it, and end in the fault-free
state with a ledger that agrees with Procore.

Each run is its own OS process executing the job with `execute_in_process` (forked from a
`python -c` server that imported the code location once, to save the import per run); the
test watches the Procore sandbox's call log and SIGKILLs the run process once k writes have
been answered. k is drawn at random (seed printed in the summary; MLC_CRASH_SEED replays it).

The daemon dying mid sensor tick is shown with the sensor's cursor semantics: Dagster stores
a cursor only with a completed tick and launches a run_key once, so re-evaluating from the
stored cursor must request the change again, under the same run_key.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta

import dagster as dg
import pytest

from mlc_dagster_tests.reliability.harness import (
    REPLAY_JOB,
    SYNC_JOB,
    World,
    amend_x3,
    differences,
    inject_x3_po,
    job_names,
    ledger_disagreements,
    report,
    run_errors,
    successful_procore_write,
    unaccounted,
)
from mlc_dagster_tests.sandbox_clients import X3Driver

# The run process. Importing dagster costs seconds per process, so one `python -c` server
# imports the code location once and forks a fresh child per run: each run is still its own
# OS process, SIGKILLed by pid, with the test's environment (settings resolved at run time).
FORK_SERVER = r"""
import json, os, sys
import dagster as dg
from mlc_dagster.definitions import defs
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.environ.clear()
        os.environ.update(request["env"])
        fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        result = defs.resolve_job_def(request["job"]).execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        os._exit(0 if result.success else 1)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"pid": pid, "code": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class RunProcesses:
    """Starts sync runs as separate processes (forked from one pre-imported server)."""

    def __init__(self) -> None:
        from mlc_dagster.sandbox.server import sandbox_env

        # optional EnvVars are bound only for variables set at import: set them all; each
        # run then resolves its values from the test's own environment
        env = {**os.environ, **sandbox_env("http://127.0.0.1:9", "http://127.0.0.1:9")}
        self.server = subprocess.Popen([sys.executable, "-c", FORK_SERVER], env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def start(self, job: str, log: str) -> int:
        self.server.stdin.write(json.dumps({"job": job, "env": dict(os.environ), "log": log}) + "\n")
        self.server.stdin.flush()
        return json.loads(self.server.stdout.readline())["pid"]

    def exit_code(self) -> int:
        return json.loads(self.server.stdout.readline())["code"]

    def close(self) -> None:
        self.server.stdin.close()
        self.server.wait(timeout=30)


@pytest.fixture(scope="module")
def run_processes():
    processes = RunProcesses()
    yield processes
    processes.close()


def _crash_seed() -> int:
    return int(os.environ.get("MLC_CRASH_SEED") or random.SystemRandom().randrange(10**6))


def run_and_kill(world: World, processes: RunProcesses, kill_after: int | None, log_name: str,
                 counts=successful_procore_write, timeout: float = 120) -> int | None:
    """Run the sync job in its own process; SIGKILL it once `kill_after` matching Procore
    calls were answered. Returns the number seen at the kill (None: it finished first)."""
    mark = len(world.calls("procore"))
    log = world.tmp / log_name
    pid = processes.start(SYNC_JOB, str(log))
    deadline = time.monotonic() + timeout
    seen = None
    while True:
        current = sum(1 for c in world.calls("procore")[mark:] if counts(c))
        if kill_after is not None and current >= kill_after:
            os.kill(pid, signal.SIGKILL)
            seen = current
            break
        if not os.path.exists(f"/proc/{pid}") or _zombie(pid):
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("the run process hung")
        time.sleep(0.002)
    code = processes.exit_code()
    if seen is not None:
        assert code == -signal.SIGKILL or code == 0, code
        return seen if code == -signal.SIGKILL else None
    assert code == 0, log.read_text(errors="replace")[-3000:]
    return None


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def _assert_converged(world: World, expected, label: str) -> int:
    state = world.end_state()
    assert not state.duplicates, f"{label}: duplicates {state.duplicates}"
    assert not ledger_disagreements(state), ledger_disagreements(state)
    assert not unaccounted(world, state), unaccounted(world, state)[:10]
    assert not differences(state, expected), differences(state, expected)
    return state.records


@pytest.mark.slow
def test_sigkill_during_writes_several_times_then_clean_run_converges(world, fault_free,
                                                                     run_processes):
    expected = fault_free("small", "seed")
    seed = _crash_seed()
    rng = random.Random(seed)
    # a little latency spreads the ~45 writes over a second, so kills land mid-write
    world.configure("procore", latency_ms=15)
    total = fault_free.writes[("small", "seed", SYNC_JOB, "rest", "import_file")]
    # kill points: two inside the commitment writes (nothing reaches the ledger before the
    # writer's final flush, so the next run redoes them all), one anywhere in the run
    kills = []
    for attempt, top in enumerate((total // 2, total // 2, total - 1)):
        k = rng.randint(1, max(1, top))
        seen = run_and_kill(world, run_processes, k, f"killed-run-{attempt}.log")
        kills.append(seen if seen is not None else f"finished before {k}")
        # between kills: never a duplicate, and the ledger never claims what Procore lacks
        state = world.end_state()
        assert not state.duplicates, (seed, kills, state.duplicates)
        assert not ledger_disagreements(state), (seed, kills, ledger_disagreements(state))
    assert any(isinstance(k, int) for k in kills), "no run was killed mid-write"
    world.configure("procore", latency_ms=0)

    world.sync()
    records = _assert_converged(world, expected, f"crash seed {seed}")
    mark = len(world.calls("procore"))
    world.sync()
    assert world.procore_writes(mark) == [], "the converged state was written again"
    report("crashes", case=f"sigkill-during-seed-sync (seed {seed})", kills=len(kills),
           writes_at_kill=kills, records=records)


def _is_line_delete(call: dict) -> bool:
    # Procore documents the line-item DELETE as 200 with an empty body (the sandbox answers
    # that); any 2xx is a delete done
    return (call["method"] == "DELETE" and "/line_items/" in call["path"]
            and 200 <= (call.get("status") or 0) < 300)


@pytest.mark.slow
def test_sigkill_after_a_line_delete_then_clean_runs_converge(world, fault_free, run_processes):
    expected = fault_free("small", "amend")
    world.sync()
    amend_x3(world)
    seen = run_and_kill(world, run_processes, 1, "killed-after-delete.log",
                        counts=_is_line_delete)
    assert seen == 1, "the amendment run finished before deleting a line"
    state = world.end_state()
    assert not state.duplicates
    # the next ordinary run, a replay and one more run: the PO must have converged by then
    world.sync()
    if REPLAY_JOB in job_names():
        result = world.run(REPLAY_JOB)
        assert result.success, run_errors(result)
    world.sync()
    failed = {k: s.reason for k, s in world.end_state().ledger["purchase_order"].items()
              if s.status == "failed"}
    assert not failed, failed
    records = _assert_converged(world, expected, "kill after a line delete")
    report("crashes", case="sigkill-after-line-delete", kills=1, writes_at_kill=[seen],
           records=records)


# --- the daemon dies during a sensor tick ---------------------------------------------------
# Dagster stores a sensor's cursor only with a completed tick, and drops a run request whose
# run_key was already launched. So a daemon killed mid-tick re-evaluates from the old cursor:
# the change must be requested again (not skipped), under the same run_key (not run twice).

def _tick(instance, cursor, resources):
    from mlc_dagster.sage_x3.sensors import x3_purchase_order_changes

    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
        return x3_purchase_order_changes(ctx)


def _idle_cursor(instance, resources):
    cursor = None
    for _ in range(20):  # the seed fits a few pages: one bounded page per tick
        result = _tick(instance, cursor, resources)
        if not result.run_requests:
            return result.cursor
        cursor = result.cursor
    raise AssertionError("the sensor never went idle")


def _new_po(world: World, number: str) -> None:
    x3 = X3Driver(world.x3.url)
    template = x3.po("PO26000001")
    body = {k: v for k, v in template.items() if not k.startswith("$") and k != "PORDERQ"}
    body.update({"POHNUM": number, "REVNUM": 0, "CLEFLG": 1})
    body["PORDERQ"] = [{k: v for k, v in line.items() if not k.startswith("$")}
                       for line in template["PORDERQ"]]
    x3.create_po(body)


@pytest.mark.slow
def test_sensor_tick_lost_before_its_cursor_is_stored_requests_the_change_again(world):
    from mlc_dagster.definitions import build_resources

    resources = {"sage_x3": build_resources()["sage_x3"]}
    instance = dg.DagsterInstance.ephemeral()
    stored = _idle_cursor(instance, resources)
    world.sync()  # everything seeded is in Procore

    _new_po(world, "PO29990001")
    lost = _tick(instance, stored, resources)  # the daemon dies before storing lost.cursor
    assert len(lost.run_requests) == 1
    again = _tick(instance, stored, resources)  # restarted daemon: same stored cursor
    assert len(again.run_requests) == 1, "the change was skipped after the lost tick"
    assert again.run_requests[0].run_key == lost.run_requests[0].run_key  # launched once
    assert again.run_requests[0].tags["mlc/changed_pos"] == "1"
    assert not _tick(instance, again.cursor, resources).run_requests  # stored: requested once

    # a tick that dies inside the X3 query (X3 down for all retries) stores nothing either
    _new_po(world, "PO29990002")
    world.fault("sage_x3", route=r"GET /api1/x3/erp/SEED/PORDER$", status=503, count=5)
    with pytest.raises(Exception, match="503"):
        _tick(instance, again.cursor, resources)
    world.clear_faults()
    retried = _tick(instance, again.cursor, resources)
    assert len(retried.run_requests) == 1, "the change was skipped after the failed tick"

    mark = len(world.calls("procore"))
    world.sync()  # the requested run
    contracts = world.end_state().contracts
    assert {"X3:PO:PO29990001", "X3:PO:PO29990002"} <= set(contracts)
    assert not world.end_state().duplicates
    assert world.procore_writes(mark), "the requested run wrote nothing"
    report("checks", test="sensor tick lost / failed mid-flight",
           detail="change re-requested from the stored cursor, same run_key; synced once")


@pytest.mark.slow
def test_late_committed_change_inside_the_overlap_is_not_skipped(world):
    """A change committed with a stamp *older* than the high-water mark (a long X3
    transaction) is still read: by the sensor and by the run's own delta read."""
    from mlc_dagster.definitions import build_resources

    resources = {"sage_x3": build_resources()["sage_x3"]}
    instance = dg.DagsterInstance.ephemeral()
    stored = _idle_cursor(instance, resources)
    world.sync()
    _new_po(world, "PO29990010")
    advanced = _tick(instance, stored, resources)
    assert len(advanced.run_requests) == 1
    world.sync()
    # committed now, but stamped 30 s before the newest change the sensor and run have seen
    state = world.x3.state
    with state.lock:
        newest = max(po["UPDDATTIM"] for po in state.x3_purchase_orders)
    late = (datetime.strptime(newest, "%Y-%m-%dT%H:%M:%SZ") - timedelta(seconds=30)
            ).strftime("%Y-%m-%dT%H:%M:%SZ")
    template = next(po for po in world.x3.state.x3_purchase_orders
                    if po["POHNUM"] == "PO26000001")
    record = {k: v for k, v in template.items() if k != "lines"}
    record.update({"POHNUM": "PO29990011", "lines": [dict(x, POHNUM="PO29990011")
                                                     for x in template["lines"]]})
    inject_x3_po(world, record)
    with state.lock:
        po = next(p for p in state.x3_purchase_orders if p["POHNUM"] == "PO29990011")
        po["UPDDATTIM"] = late
        for line in po["lines"]:
            line["UPDDATTIM"] = late
    late_tick = _tick(instance, advanced.cursor, resources)
    assert len(late_tick.run_requests) == 1, "the sensor skipped a late-committed change"
    world.sync()
    assert "X3:PO:PO29990011" in world.end_state().contracts, "the run skipped it"
    report("checks", test="late-committed X3 change (stamp 30 s in the past)",
           detail="requested by the sensor and read by the run (overlap window)")

