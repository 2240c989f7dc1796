"""Crash safety: the run process SIGKILLed at distinct write points, and a sensor tick lost
mid-flight.

A killed run leaves writes the ledger never heard of: the writers record outcomes in batches
(CommitmentWriter flushes every `flush_every` = 100 POs, ChangeBatch every 100 records, and at
the end). Everything is keyed by `origin_id`, so the next run must update what exists instead
of duplicating it.

A *kill point* is (scenario, step, k). The scenario prepares a fresh world and names the run
that is killed (`SCENARIOS`): the first sync of the paged seed (3 projects x 67 POs: more POs
than one flush, plus the invoice step), amendments (line removals, a line added, a close),
amendments to Approved commitments (change orders), and the reference-data job writing
suppliers and dimension values through X3's web API. The step names which answered writes
count (`STEPS`: header sync, line syncs, line deletes, change orders, requisition creates,
vendor sync, X3 writes, or any write). The run process is SIGKILLed from inside the
sandbox's call log the moment the k-th such write has been answered, before the sandbox
serves another request, so a point is the same write every time it is replayed.

After each kill: no user-visible duplicate and no ledger-Procore disagreement; then a clean
run, `assert_converged` (the independent oracle, duplicates as a user sees them, the ledger
agreeing with Procore), every X3 record accounted for, the same end state as the scenario's
fault-free run, and one more run that writes nothing.

CI runs the fixed points of `CI_POINTS` (a few minutes). The nightly soak (`make soak`, i.e.
MLC_SOAK=1) draws >= 20 distinct points from the fault-free runs' own write counts; the draw's
seed is printed in the summary and `MLC_CRASH_SEED=<seed> make soak` replays it, and
`MLC_KILL_POINTS=seed/line_sync#150,amend/line_delete#1` runs exactly those points.

The daemon dying mid sensor tick is shown with the sensor's cursor semantics: Dagster stores
a cursor only with a completed tick and launches a run_key once, so re-evaluating from the
stored cursor must request the change again, under the same run_key.
"""

from __future__ import annotations

import inspect
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from mlc_dagster.defs.purchase_orders.writer import CommitmentWriter
from mlc_dagster.ledger.store import Ledger, sync_records
from mlc_dagster_tests.reliability.harness import (
    REFERENCE_JOB,
    SYNC_JOB,
    EndState,
    World,
    amend_x3,
    assert_converged,
    check_invoice_agreement,
    check_supplier_agreement,
    differences,
    inject_x3_po,
    open_world,
    report,
    run_errors,
    seed_data,
    unaccounted,
)
from mlc_dagster_tests.sandbox_clients import ProcoreReader, X3Driver

# --- the run process ----------------------------------------------------------------------
# Importing dagster costs seconds per process, so one `python -c` server imports the code
# location once and forks a fresh child per run: each run is still its own OS process,
# SIGKILLed by pid, with the test's environment and resources built from it at run time
# (harness.resource_run_config: SAGE_X3_API and friends are bound when `defs` is imported).
FORK_SERVER = r"""
import json, os, sys
import dagster as dg
from mlc_dagster.definitions import defs
from mlc_dagster_tests.reliability.harness import resource_run_config
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
            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
            run_config=resource_run_config())
        os._exit(0 if result.success else 1)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"pid": pid, "code": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class RunProcesses:
    """Starts job runs as separate processes (forked from one pre-imported server)."""

    def __init__(self) -> None:
        from mlc_sandbox.server import sandbox_env

        # optional EnvVars are bound only for variables set at import: set them all; each
        # run then resolves its values from the test's own environment
        env = {**os.environ, **sandbox_env("http://127.0.0.1:9", "http://127.0.0.1:9")}
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        self.server = subprocess.Popen([sys.executable, "-c", FORK_SERVER], env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def start(self, job: str, log: Path) -> int:
        self.server.stdin.write(json.dumps({"job": job, "env": dict(os.environ),
                                            "log": str(log)}) + "\n")
        self.server.stdin.flush()
        line = self.server.stdout.readline()
        assert line, "the run server died"
        return json.loads(line)["pid"]

    def wait(self, pid: int, timeout: float) -> tuple[int, bool]:
        """The run's exit code, and whether it had to be killed for hanging."""
        hung = threading.Event()

        def kill_hung() -> None:
            hung.set()
            _kill(pid)

        timer = threading.Timer(timeout, kill_hung)
        timer.start()
        try:
            return json.loads(self.server.stdout.readline())["code"], hung.is_set()
        finally:
            timer.cancel()

    def close(self) -> None:
        self.server.stdin.close()
        self.server.wait(timeout=30)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def run_processes():
    processes = RunProcesses()
    yield processes
    processes.close()


# --- steps: which answered writes a kill point counts ---------------------------------------

@dataclass(frozen=True)
class Step:
    name: str
    systems: tuple[str, ...]  # sandboxes whose call logs count
    route: str  # regex over "METHOD path" of the writes

    def matches(self, call: dict) -> bool:
        status = call.get("status") or 0
        return (200 <= status < 300 and call["system"] in self.systems
                and re.fullmatch(self.route, f"{call['method']} {call['path']}") is not None)


_CONTRACTS = r"/rest/v1\.0/purchase_order_contracts"
STEPS = {s.name: s for s in (
    Step("header_sync", ("procore",), rf"PATCH {_CONTRACTS}/sync"),
    Step("line_sync", ("procore",), rf"PATCH {_CONTRACTS}/\d+/line_items/sync"),
    Step("line_delete", ("procore",), rf"DELETE {_CONTRACTS}/\d+/line_items/\d+"),
    Step("contract_update", ("procore",), rf"PATCH {_CONTRACTS}/\d+"),
    Step("change_order", ("procore",),
         r"POST /rest/v1\.0/(change_order_packages|potential_change_orders)"
         r"|PATCH /rest/v1\.0/potential_change_orders/\d+/line_items/sync"
         r"|(POST|PATCH) /rest/v1\.0/.*commitment_change_orders.*"),
    Step("requisition", ("procore",), r"POST /rest/v1\.1/requisitions"),
    Step("vendor_sync", ("procore",), r"PATCH /rest/v1\.0/vendors/sync"),
    Step("x3_write", ("sage_x3",), r"(POST|PUT|DELETE) /api1/.*"),
    # any write either system answered, in the order it was answered
    Step("any", ("procore", "sage_x3"), r"(POST|PATCH|PUT|DELETE) /(rest|api1)/.*"),
)}
SPECIFIC = [name for name in STEPS if name != "any"]


def step_of(call: dict) -> str:
    """The specific step a write belongs to ("other" for a write no step names)."""
    return next((name for name in SPECIFIC if STEPS[name].matches(call)), "other")


# --- scenarios: the world before the killed run, and which job it is ------------------------

def _sync_then_amend(world: World) -> None:
    world.sync()
    amend_x3(world)


def approve_and_amend(world: World, count: int = 4) -> list[str]:
    """Sync, then, as a project manager would, approve `count` commitments of single-tier
    projects in Procore, and raise each one's first line quantity in X3 (a new revision):
    the next run carries each amendment as a change order. Returns the POs."""
    world.sync()
    tiered = set(seed_data(world.seed_kind).change_order_tiers)
    procore, x3 = ProcoreReader(world.procore.url), X3Driver(world.x3.url)
    done = []
    for contract in sorted(procore.contracts(), key=lambda c: str(c.get("origin_id"))):
        po_number = str(contract.get("origin_code") or "")
        if (len(done) == count or contract["project_id"] in tiered
                or not str(contract.get("origin_id") or "").startswith("X3:PO:")
                or contract.get("status") != "Draft"):
            continue
        po = x3.po(po_number)
        if po["CLEFLG"] != 1:
            continue
        response = procore.http.patch(f"/rest/v1.0/purchase_order_contracts/{contract['id']}",
                                      json={"project_id": contract["project_id"],
                                            "purchase_order_contract": {"status": "Approved"}})
        assert response.status_code == 200, response.text
        line = po["PORDERQ"][0]
        x3.edit_po(po_number, {"REVNUM": po["REVNUM"] + 1, "PORDERQ": [
            {"POPLIN": line["POPLIN"], "QTYUOM": str(Decimal(line["QTYUOM"]) + 3)}]})
        done.append(po_number)
    assert len(done) == count, f"only {len(done)} commitment(s) could be approved"
    return done


@dataclass(frozen=True)
class Scenario:
    name: str
    seed_kind: str
    job: str  # the job that is killed
    steps: tuple[str, ...]  # the steps its killed run writes
    prepare: Callable[[World], object] = lambda world: None
    x3_writes: str = "import_file"
    what: str = ""


SCENARIOS = {s.name: s for s in (
    Scenario("seed", "paged", SYNC_JOB, ("header_sync", "line_sync", "requisition", "any"),
             what="first sync of 3 projects x 67 POs (more than one ledger flush) + invoices"),
    Scenario("amend", "small", SYNC_JOB, ("line_delete", "line_sync", "header_sync", "any"),
             prepare=_sync_then_amend,
             what="X3 amendments: lines removed, quantities changed, a line added, a PO closed"),
    Scenario("change_order", "small", SYNC_JOB, ("change_order", "line_sync", "any"),
             prepare=approve_and_amend,
             what="amendments to 4 commitments a project manager approved: change orders"),
    Scenario("reference", "small", REFERENCE_JOB, ("vendor_sync", "x3_write", "any"),
             x3_writes="api",
             what="reference data: vendors, suppliers and dimension values via X3's web API"),
)}


# --- the fault-free run of each scenario: its writes in order, and its end state ---------

@dataclass
class Census:
    writes: list[str]  # the step of every answered write of the fault-free run, in order
    state: EndState  # after that run
    synced: Counter  # ledger records per entity the fault-free run leaves synced

    def count(self, step: str) -> int:
        return len(self.writes) if step == "any" else self.writes.count(step)

    def position(self, step: str, k: int) -> int:
        """1-based position among all writes of the k-th write of `step`."""
        if step == "any":
            return k
        positions = [i for i, s in enumerate(self.writes, start=1) if s == step]
        return positions[k - 1]


def answered_writes(world: World, marks: dict[str, int]) -> list[dict]:
    calls = [c for system in ("procore", "sage_x3")
             for c in world.calls(system)[marks.get(system, 0):] if STEPS["any"].matches(c)]
    return sorted(calls, key=lambda c: c["at"])


def call_marks(world: World) -> dict[str, int]:
    return {system: len(world.calls(system)) for system in ("procore", "sage_x3")}


def ledger_runs(world: World) -> dict[tuple[str, str], str | None]:
    """(entity, key) -> the run that last recorded the record."""
    return {(entity, key): s.run_id for entity, states in world.end_state().ledger.items()
            for key, s in states.items()}


def synced_since(world: World, before: dict[tuple[str, str], str | None]) -> Counter:
    """Synced outcomes, per entity, recorded since `before` (by the run in between)."""
    return Counter(entity for entity, states in world.end_state().ledger.items()
                   for key, s in states.items()
                   if s.status == "synced" and before.get((entity, key), "-") != s.run_id)


def partly_flushed(flushed: Counter, complete: Counter) -> list[str]:
    """Entities the killed run left with some outcomes recorded and others not."""
    return [entity for entity, n in flushed.items() if 0 < n < complete.get(entity, 0)]


def ledger_ids_missing_in_procore(state: EndState) -> list[str]:
    """Right after a kill the ledger may lag behind Procore (a line deleted or added by the
    killed run), never the reverse: each id it records synced must exist in Procore."""
    problems = [f"PO {key}: ledger says commitment {r.procore_id}, Procore has "
                f"{state.contract_ids.get(f'X3:PO:{key}')}"
                for key, r in state.ledger.get("purchase_order", {}).items()
                if r.status == "synced" and r.procore_id is not None
                and state.contract_ids.get(f"X3:PO:{key}") != r.procore_id]
    return problems + check_invoice_agreement(state) + check_supplier_agreement(state)


@pytest.fixture(scope="module")
def census(tmp_path_factory) -> Callable[[str], Census]:
    """The fault-free run of a scenario, once per module."""
    cache: dict[str, Census] = {}

    def get(name: str) -> Census:
        if name not in cache:
            scenario = SCENARIOS[name]
            with pytest.MonkeyPatch.context() as mp, open_world(
                    mp, tmp_path_factory.mktemp(f"census-{name}"), scenario.seed_kind,
                    x3_writes=scenario.x3_writes) as w:
                scenario.prepare(w)
                marks = call_marks(w)
                before = ledger_runs(w)
                result = w.run(scenario.job)
                assert result.success, run_errors(result)
                writes = [step_of(c) for c in answered_writes(w, marks)]
                state = w.end_state()
                assert not unaccounted(w, state, scenario.job), unaccounted(w, state)[:10]
                if scenario.job == SYNC_JOB:
                    assert_converged(w)  # the fault-free run itself agrees with the oracle
                cache[name] = Census(writes, state, synced_since(w, before))
        return cache[name]

    return get


# --- kill points --------------------------------------------------------------------------

# CommitmentWriter's flush size, read from its signature (there is no setting for it)
FLUSH_EVERY = inspect.signature(CommitmentWriter.__init__).parameters["flush_every"].default


@dataclass(frozen=True)
class KillPoint:
    scenario: str
    step: str
    k: int  # kill once the k-th write of `step` was answered

    @property
    def id(self) -> str:
        return f"{self.scenario}/{self.step}#{self.k}"

    @classmethod
    def parse(cls, text: str) -> KillPoint:
        match = re.fullmatch(r"(\w+)/(\w+)#(\d+)", text.strip())
        assert match and match[1] in SCENARIOS and match[2] in STEPS, f"bad kill point {text!r}"
        return cls(match[1], match[2], int(match[3]))


# CI: fixed points, each resolved against the fault-free run's counts
CI_POINTS = [
    ("seed", "header_sync", "first"),  # one project's headers in Procore, no line yet
    ("seed", "line_sync", "before_flush"),  # lines written, no outcome recorded yet
    ("seed", "line_sync", "after_flush"),  # 100 outcomes recorded, the rest not
    ("seed", "requisition", "middle"),  # the invoice step, half its requisitions created
    ("amend", "line_delete", "first"),
    ("change_order", "change_order", "middle"),
    ("reference", "x3_write", "middle"),
]


def resolve(scenario: str, step: str, where: str, counts: Census) -> KillPoint:
    n = counts.count(step)
    if where in ("before_flush", "after_flush"):
        assert n > FLUSH_EVERY + 1, (f"{scenario}: {n} {step} writes, not more than the ledger "
                                     f"flush size {FLUSH_EVERY}: use a larger seed")
    k = {"first": 1, "middle": (n + 1) // 2, "before_flush": FLUSH_EVERY // 2,
         "after_flush": FLUSH_EVERY + (n - FLUSH_EVERY) // 2}[where]
    assert 1 <= k <= n, (scenario, step, where, n)
    return KillPoint(scenario, step, k)


def draw_soak_points(rng: random.Random, census: Callable[[str], Census],
                     per_step: int) -> list[KillPoint]:
    """`per_step` random points per (scenario, step), two more line syncs after a partial
    flush, then one point per distinct write (two steps can name the same write)."""
    drawn: list[KillPoint] = []
    for scenario in SCENARIOS.values():
        counts = census(scenario.name)
        for step in scenario.steps:
            n = counts.count(step)
            drawn += [KillPoint(scenario.name, step, k)
                      for k in sorted(rng.sample(range(1, n + 1), min(per_step, n)))]
            if step == "line_sync" and n > FLUSH_EVERY + 1:
                drawn += [KillPoint(scenario.name, step, k) for k in
                          rng.sample(range(FLUSH_EVERY + 1, n + 1), 2)]
    return distinct_points(drawn, census)


def distinct_points(points: list[KillPoint], census: Callable[[str], Census]) -> list[KillPoint]:
    seen, out = set(), []
    for point in points:
        where = (point.scenario, census(point.scenario).position(point.step, point.k))
        if where not in seen:
            seen.add(where)
            out.append(point)
    return out


class KillSwitch:
    """SIGKILLs the run process from inside the sandboxes' call logs when the k-th write of
    a step has been answered (the sandbox records a call after answering it, in its serving
    thread, so the process dies before the sandbox serves its next request)."""

    def __init__(self, world: World, step: Step, k: int) -> None:
        self.world, self.step, self.k = world, step, k
        self.pid: int | None = None
        self.seen = 0
        self.fired: dict | None = None  # the write at which the process was killed
        self._lock = threading.Lock()

    def _hook(self, original: Callable[[dict], None]) -> Callable[[dict], None]:
        def record(call: dict) -> None:
            original(call)
            if not self.step.matches(call):
                return
            with self._lock:
                self.seen += 1
                if self.seen == self.k and self.fired is None:
                    self.fired = call
                    if self.pid is not None:
                        _kill(self.pid)
        return record

    @contextmanager
    def armed(self) -> Iterator[KillSwitch]:
        controls = [self.world.handles[s].controls for s in self.step.systems]
        for c in controls:
            c.record = self._hook(c.record)
        try:
            yield self
        finally:
            for c in controls:
                del c.record

    def started(self, pid: int) -> None:
        with self._lock:
            self.pid = pid
            if self.fired is not None:  # reached before the pid was known (never in practice)
                _kill(pid)


@dataclass
class Killed:
    at: dict | None  # the answered write at the kill; None: the run finished first
    flushed: Counter  # ledger records per entity the killed run left synced


def run_and_kill(world: World, processes: RunProcesses, job: str, point: KillPoint,
                 log: Path, timeout: float = 180) -> Killed:
    before = ledger_runs(world)
    switch = KillSwitch(world, STEPS[point.step], point.k)
    with switch.armed():
        pid = processes.start(job, log)
        switch.started(pid)
        code, hung = processes.wait(pid, timeout)
    assert not hung, f"{point.id}: the run hung\n" + log.read_text(errors="replace")[-3000:]
    if switch.fired is None:
        assert code == 0, log.read_text(errors="replace")[-3000:]
    else:
        assert code in (-signal.SIGKILL, 0), code
    return Killed(switch.fired if code == -signal.SIGKILL else None,
                  synced_since(world, before))


# Known gap (connector finding, issue #16): the supplier writer records "X3 supplier created
# from Procore vendor V" (ledger entity `vendor`) only at its final flush. A run killed after
# the vendor sync linked V leaves no such record, and the next run sees an ordinary linked
# pair: Procore, X3 and the `supplier` records converge, but the audit trail never shows the
# creation. Tolerated here only in that exact shape (V linked in Procore), and reported.
_VENDOR_AUDIT_GAP = re.compile(r"ledger vendor (\d+): got None, fault-free run has \('synced'")


def audit_gaps(diffs: list[str], state: EndState) -> list[str]:
    linked = set(state.ids.get("vendors", {}).values())  # vendors carrying a supplier code
    return [d for d in diffs if (m := _VENDOR_AUDIT_GAP.match(d)) and int(m[1]) in linked]


def converged(world: World, point: KillPoint) -> None:
    try:
        assert_converged(world)
    except AssertionError as exc:
        raise AssertionError(f"{point.id}: {exc}") from None


def crash_and_recover(point: KillPoint, processes: RunProcesses, census: Callable[[str], Census],
                      tmp: Path) -> dict:
    """One kill point end to end; returns the report row. Raises AssertionError naming the
    point on any problem."""
    scenario = SCENARIOS[point.scenario]
    expected = census(point.scenario)
    tmp.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp, open_world(mp, tmp, scenario.seed_kind,
                                                        x3_writes=scenario.x3_writes) as w:
        scenario.prepare(w)
        killed = run_and_kill(w, processes, scenario.job, point, tmp / "killed-run.log")
        assert killed.at is not None, (
            f"{point.id}: the run finished before the kill point (the fault-free run answers "
            f"{expected.count(point.step)} {point.step} write(s))")
        # right after the kill: nothing doubled, the ledger claims nothing Procore lacks
        assert not w.duplicate_problems(), (point.id, w.duplicate_problems())
        missing = ledger_ids_missing_in_procore(w.end_state())
        assert not missing, (point.id, missing)

        result = w.run(scenario.job)  # the clean run
        assert result.success, (point.id, run_errors(result))
        if scenario.job == SYNC_JOB:
            converged(w, point)  # first the checks written apart from the connector
        state = w.end_state()
        assert not unaccounted(w, state, scenario.job), (point.id, unaccounted(w, state)[:10])
        diffs = differences(state, expected.state, limit=10_000)
        gaps = audit_gaps(diffs, state)
        assert not [d for d in diffs if d not in gaps], (point.id, diffs[:25])
        if scenario.job != SYNC_JOB:
            w.sync()  # the oracle states what the PO sync must leave in Procore
            converged(w, point)

        marks = call_marks(w)
        w.sync() if scenario.job == SYNC_JOB else w.run(scenario.job)
        again = answered_writes(w, marks)
        assert not again, (point.id, "the converged state was written again",
                           [f"{c['method']} {c['path']}" for c in again[:5]])
        records = w.end_state().records
    return {"case": point.id, "scenario": point.scenario, "step": point.step, "k": point.k,
            "position": expected.position(point.step, point.k),
            "write": f"{killed.at['method']} {re.sub(r'/[0-9]+', '/{id}', killed.at['path'])}",
            "at_step": step_of(killed.at), "flushed": sum(killed.flushed.values()),
            "partial_flush": partly_flushed(killed.flushed, expected.synced), "records": records,
            "audit_gaps": gaps}


@pytest.mark.slow
@pytest.mark.parametrize("scenario, step, where",
                         [pytest.param(*p, id=f"{p[0]}-{p[1]}-{p[2]}") for p in CI_POINTS])
def test_sigkill_at_a_write_point_then_a_clean_run_converges(run_processes, census, tmp_path,
                                                             scenario, step, where):
    point = resolve(scenario, step, where, census(scenario))
    row = crash_and_recover(point, run_processes, census, tmp_path)
    if where == "after_flush":  # the kill landed with some PO outcomes recorded, some not
        assert row["partial_flush"] == ["purchase_order"] and row["flushed"] >= FLUSH_EVERY, row
    if where == "before_flush":
        assert row["flushed"] == 0, row
    report("crashes", **row)


# --- the checks above fail when the connector is broken on purpose -------------------------

@pytest.mark.slow
def test_a_writer_that_forgets_what_the_killed_run_created_is_caught(run_processes, census,
                                                                    tmp_path, monkeypatch):
    """The clean run's invoice writer no longer sees the requisitions Procore holds (as if
    it trusted only the ledger): it re-creates what the killed run created; the recovery
    checks must report the doubled invoices."""
    from mlc_dagster.defs.invoices.writer import RequisitionWriter

    counts = census("seed")  # computed with the real connector, before breaking it
    point = resolve("seed", "requisition", "middle", counts)
    monkeypatch.setattr(RequisitionWriter, "_list_busy_projects", lambda self, writes: None)
    monkeypatch.setattr(RequisitionWriter, "_listing",
                        lambda self, project_id, commitment_id:
                        self._listings.setdefault(commitment_id, []))
    with pytest.raises(AssertionError) as caught:
        crash_and_recover(point, run_processes, census, tmp_path)
    text = str(caught.value)
    # reported by the independent checks: duplicates as a user sees them and the oracle
    assert text.startswith(f"{point.id}: ") and "requisition" in text.lower(), text[:2000]
    report("checks", test="crash recovery vs a writer that re-POSTs invoices",
           detail=f"caught at {text.splitlines()[0]} {text.splitlines()[1][:80]}")


def test_ledger_ids_missing_in_procore_reports_a_ledger_ahead_of_procore(world):
    world.sync()
    assert ledger_ids_missing_in_procore(world.end_state()) == []
    ledger = Ledger(world.ledger_url)
    try:
        key = next(k for k, s in ledger.states("purchase_order").items() if s.status == "synced")
        with ledger.engine.begin() as conn:
            conn.execute(sync_records.update().where(
                (sync_records.c.entity == "purchase_order") & (sync_records.c.key == key))
                .values(procore_id=999_999_999))
    finally:
        ledger.dispose()
    problems = ledger_ids_missing_in_procore(world.end_state())
    assert [p for p in problems if p.startswith(f"PO {key}: ledger says commitment 999999999")], \
        problems


def test_the_tolerated_audit_gap_is_only_a_missing_record_of_a_linked_vendor():
    state = EndState({}, {}, {}, [], {}, {}, ids={"vendors": {"SUP041": 5}})
    gap = "ledger vendor 5: got None, fault-free run has ('synced', None, None)"
    others = ["ledger vendor 6: got None, fault-free run has ('synced', None, None)",  # unlinked
              "ledger vendor 5: got ('failed', None, None), fault-free run has ('synced', None, "
              "None)",
              "ledger supplier 5: got None, fault-free run has ('synced', None, None)"]
    assert audit_gaps([gap, *others], state) == [gap]


def test_partly_flushed_names_only_entities_with_some_outcomes_recorded():
    complete = Counter({"purchase_order": 197, "purchase_invoice": 46})
    assert partly_flushed(Counter({"purchase_order": 100}), complete) == ["purchase_order"]
    assert partly_flushed(Counter({"purchase_order": 197}), complete) == []
    assert partly_flushed(Counter(), complete) == []


def _soak_seed() -> int:
    return int(os.environ.get("MLC_CRASH_SEED") or random.SystemRandom().randrange(10**6))


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(not (os.environ.get("MLC_SOAK") or os.environ.get("MLC_KILL_POINTS")),
                    reason="nightly soak: make soak (MLC_SOAK=1) or MLC_KILL_POINTS=...")
def test_soak_sigkill_at_many_distinct_write_points(run_processes, census, tmp_path):
    """>= 20 distinct write points (MLC_SOAK_PER_STEP per scenario step, default 3), each
    killed, recovered and checked; every failure is collected with its replay line."""
    seed = _soak_seed()
    drawn = not os.environ.get("MLC_KILL_POINTS")
    if not drawn:
        points = [KillPoint.parse(p) for p in os.environ["MLC_KILL_POINTS"].split(",")]
    else:
        points = draw_soak_points(random.Random(seed), census,
                                  int(os.environ.get("MLC_SOAK_PER_STEP", "3")))
        assert len(points) >= 20, f"only {len(points)} distinct write points drawn"
    failures = []
    for n, point in enumerate(points):
        try:
            row = crash_and_recover(point, run_processes, census, tmp_path / f"point-{n:03d}")
            report("crashes", **({"soak_seed": seed} if drawn else {}), **row)
        except AssertionError as exc:
            failures.append(f"{point.id}: {str(exc)[:1500]}\n  replay: MLC_KILL_POINTS="
                            f"{point.id} .venv/bin/pytest -p no:cacheprovider "
                            f"mlc_dagster_tests/reliability/test_crash_safety.py -k soak")
    origin = f"seed {seed} (replay: MLC_CRASH_SEED={seed} make soak)" if drawn else \
        f"MLC_KILL_POINTS={os.environ['MLC_KILL_POINTS']}"
    report("checks", test="crash soak",
           detail=f"{origin}: {len(points)} distinct write points, {len(failures)} failed")
    assert not failures, f"crash soak {origin}:\n" + "\n".join(failures)


# --- the daemon dies during a sensor tick ---------------------------------------------------
# Dagster stores a sensor's cursor only with a completed tick, and drops a run request whose
# run_key was already launched. So a daemon killed mid-tick re-evaluates from the old cursor:
# the change must be requested again (not skipped), under the same run_key (not run twice).

def _tick(instance, cursor, resources):
    from mlc_dagster.defs.purchase_orders.sensors import x3_purchase_order_changes

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

    resources = {name: build_resources()[name] for name in ("sage_x3", "ledger")}
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

    resources = {name: build_resources()[name] for name in ("sage_x3", "ledger")}
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

