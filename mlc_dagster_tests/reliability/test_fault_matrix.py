"""Fault matrix: the real sync job under each fault, compared with a fault-free run.

For every case the seeded sync (or, for `amend` cases, the run that carries X3 amendments:
changed quantities, removed and added lines, a closed PO) runs against sandboxes with the
fault armed. Then, whatever the fault:

- no `origin_id` is held by two live Procore records, and every synced ledger record
  points at its commitment with exactly the lines the ledger lists;
- every X3 PO is in the ledger: synced, or held / failed with a reason (when the run got
  as far as the write step), or untouched with zero Procore writes (when it failed before);
- what was synced equals the fault-free run (contracts and line items by origin_id, with
  their amounts, quantities, cost codes, status and vendor);
- after the fault is cleared, a replay of the failed records (when there are any) and an
  ordinary run converge to the fault-free end state, ledger included, and the last run
  writes nothing;
- and, independently of any run of the connector, Procore holds what X3 and the mapping CSV
  say it must (the oracle, mlc_dagster_tests/oracle.py) with no duplicate a user would see
  (mlc_dagster_tests/duplicates.py): after the faulted run, every oracle problem concerns a
  record the ledger says failed; after convergence there is none (`assert_converged`).

Cases are data: a new flow (invoices, suppliers) adds entries with its own routes.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

from mlc_dagster_tests.reliability.harness import (
    REFERENCE_JOB,
    REPLAY_JOB,
    SYNC_JOB,
    CallWatcher,
    amend_x3,
    assert_converged,
    differences,
    fault_on_nth_call,
    job_entities,
    job_names,
    ledger_disagreements,
    open_world,
    report,
    run_errors,
    successful_procore_write,
    unaccounted,
)
from mlc_sandbox import seed as seed_module

PO_WRITES = r"PATCH /rest/v1.0/purchase_order_contracts/"  # header and line-item syncs
HEADER_SYNC = r"PATCH /rest/v1.0/purchase_order_contracts/sync$"
LINE_SYNC = r"PATCH /rest/v1.0/purchase_order_contracts/\d+/line_items/sync$"
LINE_DELETE = r"DELETE /rest/v1.0/purchase_order_contracts/\d+/line_items/\d+$"
X3_QUERY = r"GET /api1/x3/erp/SEED/PORDER$"  # delta read, every page
X3_DETAILS = r"GET /api1/x3/erp/SEED/PORDER\('"  # one PO with its lines
X3_GRAPHQL = r"POST /xtrem/api$"
REQUISITION_CREATE = r"POST /rest/v1.1/requisitions$"  # not idempotent: looked up first
VENDOR_SYNC = r"PATCH /rest/v1.0/vendors/sync$"
# X3 web-API writes: only where the customer made suppliers/dimensions writable (x3_writes=api)
X3_SUPPLIER_CREATE = r"POST /api1/x3/erp/SEED/BPSUPPLIER$"  # not idempotent either
X3_DIMENSION_EDIT = r"PUT /api1/x3/erp/SEED/CACCE\('"


@dataclass(frozen=True)
class FaultCase:
    id: str
    system: str  # where the fault is: procore | sage_x3
    faults: tuple[dict, ...] = ()  # POSTed to /_sandbox/faults
    config: dict = field(default_factory=dict)  # POSTed to /_sandbox/config
    resources: dict = field(default_factory=dict)  # resource overrides for the faulted run
    nth: tuple | None = None  # (route, {n, ...}, fault spec): fail only the n-th matching calls
    during: str | None = None  # revoke_tokens | rotate_secret
    scenario: str = "seed"  # seed: the first sync; amend: the run carrying X3 amendments
    seed: str = "small"
    x3_api: str = "rest"
    # how suppliers/dimension values reach X3: import_file (standard X3) or api (a customer
    # who built writable classes / API operations for them; see harness.open_world)
    x3_writes: str = "import_file"
    job: str = SYNC_JOB  # sync_reference_data for suppliers <-> vendors and dimensions
    # synced: the faulted run already equals the fault-free one;
    # recorded: some POs failed with a reason, the rest equal the fault-free run;
    # run_fails: the run stops before any Procore write (nothing claimed, nothing lost)
    expect: str = "synced"


def _f(route: str, **spec) -> dict:
    return {"route": route, **spec}


CASES = [
    FaultCase("procore-429-storm-retry-after", "procore",
              (_f(LINE_SYNC, status=429, count=3, retry_after=1),)),
    FaultCase("procore-429-storm-retry-after-outlasts-retries", "procore",
              (_f(HEADER_SYNC, status=429, count=4, retry_after=1),),
              resources={"procore": {"max_attempts": 3}}, expect="recorded"),
    FaultCase("procore-429-storm-no-retry-after", "procore",
              (_f(PO_WRITES, status=429, count=4),)),
    # Procore's own limiter (429 with X-Rate-Limit-Reset, no Retry-After): the client's
    # pacing alone keeps under a tight window, so another app of the same company burns
    # the window mid-run
    FaultCase("procore-429-rate-limit-window-exhausted", "procore",
              config={"spike_limit": 25, "spike_window_seconds": 1}, during="noisy_neighbour"),
    FaultCase("procore-503-retry-after", "procore",
              (_f(LINE_SYNC, status=503, count=2, retry_after=1),)),
    FaultCase("procore-500-burst", "procore", (_f(LINE_SYNC, status=500, count=3),)),
    FaultCase("procore-502-burst-outlasts-retries", "procore",
              (_f(LINE_SYNC, status=502, count=2),),
              resources={"procore": {"max_attempts": 2}}, expect="recorded"),
    FaultCase("procore-slower-than-timeout", "procore", (_f(PO_WRITES, delay=1.6, count=2),),
              resources={"procore": {"timeout_seconds": 1.0}}),
    FaultCase("procore-dropped-connections", "procore", (_f(PO_WRITES, drop=True, count=3),)),
    FaultCase("procore-token-expiry-every-2s", "procore",
              config={"token_lifetime_seconds": 2, "latency_ms": 60}),
    FaultCase("procore-token-revoked-mid-run", "procore", during="revoke_tokens"),
    FaultCase("procore-credentials-revoked-mid-run", "procore", during="rotate_secret",
              expect="recorded"),
    FaultCase("x3-5xx", "sage_x3", (_f(X3_QUERY, status=503, count=1),
                                    _f(X3_DETAILS, status=500, count=3))),
    FaultCase("x3-timeouts-and-dropped-connections", "sage_x3",
              (_f(X3_DETAILS, delay=1.6, count=2), _f(X3_QUERY, drop=True, count=1)),
              resources={"sage_x3": {"timeout_seconds": 1.0}}),
    FaultCase("x3-outage-outlasts-retries", "sage_x3", (_f(X3_QUERY, status=503, count=5),),
              expect="run_fails"),
    FaultCase("x3-graphql-5xx", "sage_x3", (_f(X3_GRAPHQL, status=500, count=3),),
              x3_api="graphql"),
    FaultCase("x3-paging-interrupted-page-2-transient", "sage_x3", seed="paged",
              nth=(X3_QUERY, {2}, {"status": 500})),
    FaultCase("x3-paging-interrupted-page-2-outlasts-retries", "sage_x3", seed="paged",
              nth=(X3_QUERY, {2, 3, 4, 5, 6}, {"status": 503}), expect="run_fails"),
    # invoices -> requisitions (same job): creation is a POST, never blindly retried
    FaultCase("procore-requisition-503-retry-after", "procore",
              (_f(REQUISITION_CREATE, status=503, count=2, retry_after=1),)),
    FaultCase("procore-requisition-create-5xx", "procore",
              (_f(REQUISITION_CREATE, status=500, count=2),), expect="recorded"),
    FaultCase("procore-requisition-create-response-lost", "procore",
              (_f(REQUISITION_CREATE, delay=1.6, count=1),),
              resources={"procore": {"timeout_seconds": 1.0}}, expect="recorded"),
    # suppliers <-> vendors and dimension values (the reference-data job)
    FaultCase("reference-procore-vendor-sync-5xx", "procore",
              (_f(VENDOR_SYNC, status=502, count=2),), job=REFERENCE_JOB),
    FaultCase("reference-x3-supplier-create-response-lost", "sage_x3",
              (_f(X3_SUPPLIER_CREATE, delay=1.6, count=1),),
              resources={"sage_x3": {"timeout_seconds": 1.0}}, job=REFERENCE_JOB,
              x3_writes="api", expect="recorded"),
    FaultCase("reference-x3-dimension-write-5xx", "sage_x3",
              (_f(X3_DIMENSION_EDIT, status=500, count=2),), job=REFERENCE_JOB,
              x3_writes="api"),
    FaultCase("amend-procore-5xx-on-updates-and-deletes", "procore",
              (_f(PO_WRITES, status=500, count=2), _f(LINE_DELETE, status=503, count=2)),
              scenario="amend"),
    FaultCase("amend-delete-processed-response-lost", "procore",
              # the first DELETE is processed after 1.3 s, by then the client (1 s timeout)
              # has given up; its retry is held too and times out; the third attempt
              # finds the line already deleted
              (_f(LINE_DELETE, delay=1.3, count=1), _f(LINE_DELETE, delay=1.5, count=1)),
              resources={"procore": {"timeout_seconds": 1.0}}, scenario="amend"),
]

def _params() -> list:
    # no code-location import here: collection must not bind the definitions' import-time
    # settings for the whole session (cases for flows not built yet skip at run time)
    return [pytest.param(case, id=case.id) for case in CASES]


# flows a case needs beyond its job: skipped where the code location doesn't have them yet
NEEDS = {"procore-requisition": "purchase_invoice"}


def _skip_unbuilt(case: FaultCase) -> None:
    if case.job not in job_names():
        pytest.skip(f"no job {case.job} in this code location yet")
    for prefix, entity in NEEDS.items():
        if case.id.startswith(prefix) and entity not in job_entities(case.job):
            pytest.skip(f"the {entity} flow is not in {case.job} yet")


class _During:
    """Mid-run events the fault API can't express: token revocation, secret rotation."""

    def __init__(self, world, what: str | None):
        self.world, self.what, self.watcher = world, what, None
        self.original_secret = seed_module.SANDBOX_CREDENTIALS["procore_client_secret"]

    def __enter__(self):
        state = self.world.procore.state
        if self.what == "revoke_tokens":
            triggers = {n: state.revoke_all_tokens for n in (3, 12, 24)}
        elif self.what == "noisy_neighbour":
            def burst():
                with httpx.Client(base_url=self.world.procore.url) as http:
                    for _ in range(30):  # counted by the limiter before any auth check
                        http.post("/oauth/token", data={"grant_type": "client_credentials"})
            triggers = {n: burst for n in (4, 14)}
        elif self.what == "rotate_secret":
            def rotate():
                seed_module.SANDBOX_CREDENTIALS["procore_client_secret"] = "rotated-elsewhere"
                state.revoke_all_tokens()
            triggers = {10: rotate}
        else:
            return self
        self.watcher = CallWatcher(self.world.procore, triggers, successful_procore_write)
        self.watcher.start()
        return self

    def __exit__(self, *exc):
        if self.watcher is not None:
            self.watcher.stop()
        self.restore()

    def restore(self):
        seed_module.SANDBOX_CREDENTIALS["procore_client_secret"] = self.original_secret

    @property
    def fired(self) -> int:
        return len(self.watcher.fired) if self.watcher else 0


@pytest.mark.slow
@pytest.mark.parametrize("case", _params())
def test_sync_under_fault_matches_fault_free_run_and_converges(case: FaultCase, monkeypatch,
                                                                tmp_path, fault_free):
    _skip_unbuilt(case)
    expected = fault_free(case.seed, case.scenario, case.job, case.x3_api, case.x3_writes)
    with open_world(monkeypatch, tmp_path, case.seed, x3_api=case.x3_api,
                    x3_writes=case.x3_writes) as w:
        if case.scenario == "amend":
            w.sync()
            assert amend_x3(w)
        before = w.end_state()
        marks = {name: len(w.calls(name)) for name in w.handles}

        # --- the faulted run ---------------------------------------------------------------
        for spec in case.faults:
            w.fault(case.system, **spec)
        if case.config:
            w.configure(case.system, **case.config)
        nth_counts = {"hit": 0}
        during = _During(w, case.during)
        with during:
            if case.nth:
                route, which, spec = case.nth
                with fault_on_nth_call(w.handles[case.system], route, which, **spec) as nth_counts:
                    result = w.run(case.job, resources=case.resources)
            else:
                result = w.run(case.job, resources=case.resources)
        # a request held by a `delay` fault is processed after the client gave up on it:
        # let it land before reading the end state (and before counting the next run's writes)
        time.sleep(max([spec.get("delay", 0) for spec in case.faults], default=0))
        state = w.end_state()
        hits = _hits(w, marks, nth_counts["hit"] + during.fired, case)

        assert not state.duplicates, state.duplicates
        assert not ledger_disagreements(state), ledger_disagreements(state)
        failed = {(entity, key) for entity, records in state.ledger.items()
                  for key, s in records.items() if s.status == "failed"}
        if case.expect == "run_fails":
            assert not result.success, "the run was expected to stop before writing"
            assert w.procore_writes(marks["procore"]) == []
            assert state.ledger_view() == before.ledger_view()  # nothing claimed
            if case.scenario == "seed":  # and no X3 high-water mark moved: nothing skipped
                assert _cursors(w) == {}, _cursors(w)
            errors = "\n".join(run_errors(result))
            assert "Sage X3" in errors and ("503" in errors or "500" in errors), errors
            outcome = "failed before any Procore write"
        else:
            assert result.success, run_errors(result)
            assert not unaccounted(w, state, case.job), unaccounted(w, state, case.job)[:10]
            outcome = _outcome(state, case.job)
            if case.expect == "synced":
                assert not failed, {f: state.ledger[f[0]][f[1]].reason for f in failed}
                assert not differences(state, expected), differences(state, expected)
            else:
                assert failed, "expected the fault to outlast the retries for some records"
                synced = {k for k, s in state.ledger.get("purchase_order", {}).items()
                          if s.status == "synced"}
                assert not differences(state, expected, only=synced), differences(
                    state, expected, only=synced)

        # --- fault cleared: the faulted end state against the oracle, then replay and an
        # ordinary run converge --------------------------------------------------------------
        w.clear_faults()
        w.reset_config()
        during.restore()
        assert w.duplicate_problems() == []
        if case.job == SYNC_JOB and case.expect == "synced":
            assert w.oracle_problems() == []
        elif case.job == SYNC_JOB and case.expect == "recorded":
            assert not _beyond_failed(w.oracle_problems(), state, failed)
        if failed and case.job == SYNC_JOB and REPLAY_JOB in job_names():
            replay = w.run(REPLAY_JOB)
            assert replay.success, run_errors(replay)
        mark = {name: len(w.calls(name)) for name in w.handles}
        follow_up = w.run(case.job)
        assert follow_up.success, run_errors(follow_up)
        final = w.end_state()
        assert not final.duplicates, final.duplicates
        assert not ledger_disagreements(final), ledger_disagreements(final)
        assert not unaccounted(w, final, case.job), unaccounted(w, final, case.job)[:10]
        assert not differences(final, expected), differences(final, expected)
        if case.expect == "synced":  # already converged: the follow-up has nothing to write
            assert _writes(w, mark) == [], "the converged state was written again"
        if case.job == SYNC_JOB:
            assert_converged(w)  # the oracle and the duplicate rules, after convergence
        else:  # the reference job writes no commitment: only the duplicate rules apply
            assert w.duplicate_problems() == []

    report("faults", case=case.id, system=case.system, hits=hits, faulted=outcome,
           records=state.records + final.records)


def _beyond_failed(problems: list[str], state, failed: set[tuple[str, str]]) -> list[str]:
    """Oracle problems that name no record the ledger says failed (a failed PO, or a failed
    invoice and its POs): a fault that outlasts the retries may leave those behind, recorded
    for the replay (an invoice of a failed PO waits for it), and nothing else."""
    allowed = {key for entity, key in failed if entity == "purchase_order"}
    for entity, key in failed:
        if entity == "purchase_invoice":
            allowed.add(key)
            allowed.update((state.ledger[entity][key].summary or {}).get("pos") or [])
    named = re.compile(r"(?:PO|invoice) (\S+?):?(?= |$)")
    return [p for p in problems if not set(named.findall(p)) & allowed]


def _hits(w, marks: dict, extra: int, case: FaultCase) -> int:
    """How often the fault fired; a case whose fault never fired tests nothing."""
    calls = {name: w.calls(name)[marks[name]:] for name in w.handles}
    injected = sum(f["hits"] for handle in w.handles.values()
                   for f in httpx.get(f"{handle.url}/_sandbox/faults").json()["faults"])
    refused = sum(c["status"] in (401, 429) and "fault" not in c
                  and c["path"].startswith("/rest/") for c in calls["procore"])
    grants = sum(c["path"] == "/oauth/token" and c["status"] == 200 for c in calls["procore"])
    hits = injected + extra + refused + max(0, grants - 1)
    assert hits, "the fault never fired: the case tests nothing"
    if case.id.startswith("procore-token-expiry"):
        assert grants >= 2, "the token never expired during the run"
    if case.during in ("revoke_tokens", "noisy_neighbour"):
        assert refused, "Procore never refused a call: the case tests nothing"
    return hits


def _outcome(state, job: str) -> str:
    parts = []
    for entity in job_entities(job):
        counts = Counter(s.status for s in state.ledger.get(entity, {}).values())
        text = f"{entity.split('_')[-1]}s {counts['synced']} synced"
        text += "".join(f"/{counts[s]} {s}" for s in ("failed", "held") if counts[s])
        parts.append(text)
    return "; ".join(parts)


def _writes(w, mark: dict) -> list[dict]:
    x3_writes = [c for c in w.calls("sage_x3")[mark["sage_x3"]:]
                 if c["method"] in ("POST", "PUT", "DELETE") and c["path"].startswith("/api1/")]
    return w.procore_writes(mark["procore"]) + x3_writes


def _cursors(w) -> dict:
    import sqlalchemy as sa

    from mlc_dagster.ledger.store import Ledger, cursors

    ledger = Ledger(w.ledger_url)
    try:
        with ledger.engine.connect() as conn:
            return {row.name: row.value for row in conn.execute(sa.select(cursors))}
    finally:
        ledger.dispose()


def test_oracle_problems_beyond_the_failed_records_are_kept():
    """The faulted-run filter lets through only problems naming a failed record."""
    from types import SimpleNamespace

    from mlc_dagster.ledger.store import RecordState

    invoice = RecordState("purchase_invoice", "PI9", "failed", summary={"pos": ["PO3"]})
    state = SimpleNamespace(ledger={"purchase_invoice": {"PI9": invoice}})
    problems = ["PO PO1: line 1000: missing in Procore", "PO PO2: 0 commitments",
                "invoice PI9 (INV-9) on PO PO3: 0 requisition(s), expected 1",
                "unknown: invoice PI7: PO PO1 cannot be judged",
                "invoice PI8 (INV-8) on PO PO4: 0 requisition(s), expected 1"]
    failed = {("purchase_order", "PO1"), ("purchase_invoice", "PI9")}
    assert _beyond_failed(problems, state, failed) == [problems[1], problems[4]]
