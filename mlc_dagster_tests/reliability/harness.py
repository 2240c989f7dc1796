"""Machinery shared by the reliability suite: worlds, runs, faults and end states.

A *world* is one test's pair of sandboxes (built from a seed), the environment that points
the connector at them, and a scratch ledger and mapping CSV. Runs go through the real
Dagster jobs (`execute_in_process`, ephemeral instance). End states are read from the
sandboxes' in-memory state, so taking one never shows up in a sandbox call log; they compare
a run with a fault-free run of the same code. What the code itself may get wrong is checked
apart from it: `World.oracle_problems` (mlc_dagster_tests/oracle.py: what X3 and the mapping
CSV say Procore must hold, read over both APIs) and `World.duplicate_problems`
(mlc_dagster_tests/duplicates.py: duplicates as a user sees them, never by origin_id), both
through `assert_converged(world)` after every clean run that follows a fault, crash or bad
input. They read over HTTP, so their calls do show in the call logs (GETs only).

Extending to a new flow: the end state already fingerprints Procore contracts, line items,
requisitions, vendors and change orders by `origin_id`, the X3 suppliers and dimension
values the connector writes, and every ledger entity. Add the entity's X3 keys to `X3_KEYS`,
the asset that writes it to `WRITER_ASSET`, and a ledger-vs-Procore check to `AGREEMENT`;
fault cases are then data entries in test_fault_matrix.py.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import sqlalchemy as sa

from mlc_dagster.ledger.store import Ledger, RecordState, sync_records
from mlc_dagster.settings import sample_mapping_path
from mlc_sandbox.controls import Fault
from mlc_sandbox.seed import SeedData, build_seed
from mlc_sandbox.server import running_sandboxes, sandbox_env

SYNC_JOB = "sync_sage_x3_to_procore"
REPLAY_JOB = "replay_failed_transactions"
REFERENCE_JOB = "sync_reference_data"
WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}

# Seeds: `small` keeps every run around a second; `paged` has more POs than one X3 REST
# page (200), so a fault can land on the second page of a delta read.
SEEDS = {
    "small": {"seed": 42, "scale": "small", "projects": 4, "pos_per_project": 8},
    "paged": {"seed": 42, "scale": "small", "projects": 3, "pos_per_project": 67,
              "lines_per_po": 1},
}


@functools.cache
def seed_data(kind: str = "small") -> SeedData:
    args = dict(SEEDS[kind])
    return build_seed(args.pop("seed"), args.pop("scale"), **args)


# --- what the suite reports at the end (see conftest.pytest_terminal_summary) --------

# "oracle": one row per oracle / duplicate check (World.oracle_problems, duplicate_problems)
REPORT: dict[str, list] = {"faults": [], "crashes": [], "generated": [], "checks": [],
                           "oracle": []}


def report(kind: str, **row: Any) -> None:
    REPORT[kind].append(row)


# --- running jobs ---------------------------------------------------------------------

def resource_run_config(overrides: dict[str, dict] | None = None) -> dict:
    """Run config for every resource, built from `build_resources()` *now*.

    Two reasons not to rely on the `defs` object imported once per process: (1) it binds
    non-secret settings (MLC_PROCORE_*, MLC_ALLOW_INSECURE_LOOPBACK, SAGE_X3_API) at import,
    so whichever test imported it first decides them for the whole session; (2) run config
    that names one field of a resource replaces the whole bound config (fields left out fall
    back to the class defaults, e.g. login_url -> https://login.procore.com), so an override
    must carry every field. Secrets stay `{"env": NAME}` references, never values.
    """
    from mlc_dagster.definitions import build_resources

    overrides = overrides or {}
    config: dict[str, dict] = {}
    for name, resource in build_resources().items():
        values: dict[str, Any] = {}
        for field_name in type(resource).model_fields:
            value = getattr(resource, field_name)
            if isinstance(value, dg.EnvVar):
                values[field_name] = {"env": value.env_var_name}
            elif value is not None:
                values[field_name] = value
        values.update(overrides.get(name, {}))
        config[name] = {"config": values}
    return {"resources": config}


def job_names() -> set[str]:
    from mlc_dagster.definitions import defs

    return {job.name for job in defs.jobs}


def run_job(job_name: str = SYNC_JOB, *, resources: dict | None = None, ops: dict | None = None,
            instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """Execute a job of the code location in this process; never raises on failure."""
    from mlc_dagster.definitions import defs

    job = defs.resolve_job_def(job_name)
    run_config = resource_run_config(resources)
    if ops:
        run_config["ops"] = ops
    elif job_name == REPLAY_JOB:
        run_config["ops"] = {"procore_commitments": {"config": {"replay": True, "keys": []}}}
    return job.execute_in_process(instance=instance or dg.DagsterInstance.ephemeral(),
                                  raise_on_error=False, run_config=run_config)


def run_errors(result: dg.ExecuteInProcessResult) -> list[str]:
    """Failure messages of a run, with the underlying error texts."""
    texts = []
    for event in result.all_events:
        if not event.is_failure:
            continue
        text = event.message or ""
        error = getattr(event.event_specific_data, "error", None)
        if error is not None:
            text += "\n" + error.to_string()
        texts.append(text)
    return texts


# --- worlds -----------------------------------------------------------------------------

@dataclass
class World:
    handles: dict
    env: dict[str, str]
    ledger_url: str
    mapping: Path
    tmp: Path
    seed_kind: str = "small"
    x3_api: str = "rest"
    # the oracle's own copy of the mapping: a test that breaks the connector's mapping on
    # purpose (`mapping`) leaves what the oracle expects untouched
    oracle_mapping: Path | None = None

    @property
    def procore(self):
        return self.handles["procore"]

    @property
    def x3(self):
        return self.handles["sage_x3"]

    def run(self, job_name: str = SYNC_JOB, **kwargs) -> dg.ExecuteInProcessResult:
        return run_job(job_name, **kwargs)

    def sync(self, **kwargs) -> dg.ExecuteInProcessResult:
        result = run_job(SYNC_JOB, **kwargs)
        assert result.success, run_errors(result)
        return result

    # sandbox controls, over HTTP like any client
    def fault(self, system: str, **spec) -> None:
        httpx.post(f"{self.handles[system].url}/_sandbox/faults", json=spec).raise_for_status()

    def configure(self, system: str, **config) -> None:
        httpx.post(f"{self.handles[system].url}/_sandbox/config", json=config).raise_for_status()

    def clear_faults(self) -> None:
        for handle in self.handles.values():
            httpx.delete(f"{handle.url}/_sandbox/faults").raise_for_status()

    def reset_config(self) -> None:
        self.configure("procore", token_lifetime_seconds=5400, hourly_limit=3600,
                       spike_limit=1000, spike_window_seconds=10, latency_ms=0)
        self.configure("sage_x3", latency_ms=0)

    def calls(self, system: str = "procore") -> list[dict]:
        controls = self.handles[system].controls
        with controls._lock:
            return list(controls.calls)

    def procore_writes(self, since: int = 0) -> list[dict]:
        return [c for c in self.calls("procore")[since:]
                if c["method"] in WRITE_METHODS and c["path"].startswith("/rest/")]

    def x3_po_numbers(self) -> set[str]:
        state = self.x3.state
        with state.lock:
            return {po["POHNUM"] for po in state.x3_purchase_orders}

    def end_state(self) -> EndState:
        return take_end_state(self.procore, self.ledger_url, self.x3)

    def oracle_problems(self) -> list[str]:
        """What Procore holds against what X3 + the mapping CSV say (mlc_dagster_tests.oracle):
        problems, then what the oracle cannot decide (`unknown: ...`). Counted in REPORT."""
        from mlc_dagster_tests.oracle import oracle_report

        result = oracle_report(self.procore.url, self.x3.url, self.oracle_mapping or self.mapping,
                               x3_api=self.x3_api)
        report("oracle", test=_current_test(), check="oracle", **dict(result.counts),
               problems=len(result.problems), unknown=len(result.unknown))
        return result.all()

    def duplicate_problems(self) -> list[str]:
        """Duplicates as a user sees them in Procore (mlc_dagster_tests.duplicates)."""
        from mlc_dagster_tests.duplicates import duplicate_report

        result = duplicate_report(self.procore.url)
        report("oracle", test=_current_test(), check="duplicates", **dict(result.counts),
               problems=len(result.problems))
        return result.problems


def _current_test() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0].rsplit("::", 1)[-1]


# What a customer who writes suppliers and dimension values through X3's web APIs has built
# (MLC_X3_*_WRITE=api): writable classes/representations (REST) and API operations
# (GraphQL). Standard X3 has neither, so by default the connector writes import files.
X3_WEB_API_WRITE_SETUP = {"writable_classes": ["BPSUPPLIER", "CACCE"],
                          "api_operations": ["dimension", "supplier"]}


@contextmanager
def open_world(monkeypatch, tmp_path: Path, seed_kind: str = "small", *, x3_api: str = "rest",
               x3_writes: str = "import_file", seed: SeedData | None = None,
               extra_env: dict | None = None) -> Iterator[World]:
    """Fresh sandboxes from a seed, the connector pointed at them, a scratch ledger.

    `x3_writes`: how suppliers and dimension values reach X3 (import_file | api); `api`
    also sets the sandbox X3 up as a customer who made them writable."""
    with running_sandboxes(seed_data=seed or seed_data(seed_kind)) as handles:
        env = sandbox_env(handles["procore"].url, handles["sage_x3"].url, x3_api)
        env.update({"MLC_X3_SUPPLIER_WRITE": x3_writes, "MLC_X3_DIMENSION_WRITE": x3_writes})
        if x3_writes == "api":
            httpx.post(f"{handles['sage_x3'].url}/_sandbox/x3/settings",
                       json=X3_WEB_API_WRITE_SETUP).raise_for_status()
        ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
        mapping = tmp_path / "gl_map.csv"
        mapping.write_text(Path(sample_mapping_path()).read_text(encoding="utf-8"),
                           encoding="utf-8")
        oracle_mapping = tmp_path / "gl_map.oracle.csv"
        oracle_mapping.write_text(mapping.read_text(encoding="utf-8"), encoding="utf-8")
        env.update({"MLC_LEDGER_URL": ledger_url, "DAGSTER_HOME": str(tmp_path),
                    "MLC_GL_MAPPING_CSV": str(mapping)})
        env.update(extra_env or {})
        for name in ("MLC_PROCORE_TIMEOUT_SECONDS", "MLC_PROCORE_MAX_ATTEMPTS",
                     "MLC_PROCORE_MAX_WAIT_SECONDS", "MLC_MAX_POS_PER_RUN"):
            if name not in env:
                monkeypatch.delenv(name, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield World(handles, env, ledger_url, mapping, tmp_path, seed_kind, x3_api,
                    oracle_mapping)


# --- faults beyond the /_sandbox/faults API -----------------------------------------------

@contextmanager
def fault_on_nth_call(handle, route: str, nth: set[int], **spec) -> Iterator[dict]:
    """Fail only the n-th matching calls (1-based), e.g. the second page of a paged read.

    `/_sandbox/faults` always hits the *first* matching calls, and pages of one query share
    their path; so this wraps the test's own sandbox controls: the same `Fault` objects and
    middleware, armed by a counter. Yields {"seen": matching calls so far, "hit": faults}.
    """
    controls = handle.controls
    original = controls.take_fault
    probe = Fault(route=route)
    counts = {"seen": 0, "hit": 0}

    def take_fault(method: str, path: str):
        fault = original(method, path)
        if fault is not None or not probe.matches(method, path):
            return fault
        counts["seen"] += 1
        if counts["seen"] in nth:
            counts["hit"] += 1
            return Fault(route=route, **spec)
        return None

    controls.take_fault = take_fault
    try:
        yield counts
    finally:
        del controls.take_fault


class CallWatcher(threading.Thread):
    """Fires actions when the sandbox has answered the n-th matching call (tests only)."""

    def __init__(self, handle, triggers: dict[int, Callable[[], None]],
                 matches: Callable[[dict], bool]) -> None:
        super().__init__(daemon=True, name="call-watcher")
        self.handle = handle
        self.triggers = dict(sorted(triggers.items()))
        self.matches = matches
        self.fired: list[int] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        controls = self.handle.controls
        while not self._stop_event.is_set() and self.triggers:
            with controls._lock:
                seen = sum(1 for c in controls.calls if self.matches(c))
            for at in [n for n in self.triggers if n <= seen]:
                self.triggers.pop(at)()
                self.fired.append(at)
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def successful_procore_write(call: dict) -> bool:
    return (call["method"] in WRITE_METHODS and call["path"].startswith("/rest/")
            and call.get("status") is not None and 200 <= call["status"] < 300)


# --- end states -----------------------------------------------------------------------------

_VOLATILE = {"id", "created_at", "updated_at", "deleted_at", "position"}
# Ledger entities whose content hash is the same in any sandbox built from the same seed
# (PO payloads carry only seeded ids); an invoice's payload names the commitment id Procore
# allocated, which depends on the order of creation.
PORTABLE_HASHES = {"purchase_order"}


def _num(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return format(Decimal(str(value)).normalize(), "f")
    except InvalidOperation:
        return str(value)


def _generic(record: dict) -> dict:
    kept = {k: v for k, v in record.items() if not k.startswith("_") and k not in _VOLATILE
            and not (k.endswith("_id") and isinstance(v, int))}
    return json.loads(json.dumps(kept, default=str, sort_keys=True))


@dataclass
class EndState:
    """What a sync leaves behind, keyed so two sandboxes' states can be compared."""

    contracts: dict[str, dict]  # contract origin_id -> fingerprint
    lines: dict[str, dict]  # line origin_id -> fingerprint (with its contract's origin_id)
    others: dict[str, dict[str, dict]]  # vendors / requisitions / change-order packages and lines by origin_id
    duplicates: list[str]  # origin_ids held by more than one live Procore record
    contract_ids: dict[str, int]  # contract origin_id -> Procore id
    ledger: dict[str, dict[str, RecordState]]  # entity -> key -> state
    x3: dict[str, dict[str, dict]] = field(default_factory=dict)  # what we write to X3
    ids: dict[str, dict[str, int]] = field(default_factory=dict)  # table -> origin_id -> id

    @property
    def records(self) -> int:
        return (len(self.contracts) + len(self.lines) + sum(map(len, self.others.values()))
                + sum(map(len, self.ledger.values())) + sum(map(len, self.x3.values())))

    def ledger_view(self) -> dict[str, dict[str, tuple]]:
        """Comparable ledger content: status, (for holds) the reason, and the content hash
        where it holds no id that Procore allocated (`PORTABLE_HASHES`)."""
        return {entity: {key: (s.status, s.reason if s.status == "held" else None,
                               s.content_hash if entity in PORTABLE_HASHES else None)
                         for key, s in states.items()}
                for entity, states in self.ledger.items()}

    def statuses(self, entity: str = "purchase_order") -> Counter:
        return Counter(s.status for s in self.ledger.get(entity, {}).values())


_X3_VOLATILE = {"UPDDATTIM", "CREDATTIM"}


def x3_written_state(x3_handle) -> dict[str, dict[str, dict]]:
    """The X3 records the connector may write (suppliers, dimension values), by key."""
    if x3_handle is None:
        return {}
    state = x3_handle.state
    with state.lock:
        return {
            "suppliers": {s["BPSNUM"]: _x3_fields(s) for s in state.x3_suppliers},
            "dimensions": {f"{d['DIE']}~{d['CCE']}": _x3_fields(d) for d in state.x3_dimensions},
        }


def _x3_fields(record: dict) -> dict:
    return json.loads(json.dumps({k: v for k, v in record.items() if k not in _X3_VOLATILE},
                                 default=str, sort_keys=True))


def take_end_state(procore_handle, ledger_url: str, x3_handle=None) -> EndState:
    st = procore_handle.state
    with st.lock:
        projects = {p["id"]: p for p in st.projects.all()}
        contracts, contract_ids, origin_of = {}, {}, {}
        counts: Counter = Counter()
        for c in st.contracts.all():
            vendor = st.vendors.get(c.get("vendor_id"))
            origin = c.get("origin_id")
            counts[origin] += 1
            origin_of[c["id"]] = origin
            contract_ids[origin] = c["id"]
            contracts[origin] = {
                "project": projects.get(c["_project_id"], {}).get("project_number"),
                "number": c.get("number"), "title": c.get("title"), "status": c.get("status"),
                "vendor": vendor.get("origin_id") if vendor else None,
                "contract_date": c.get("contract_date"),
                "accounting_method": c.get("accounting_method"),
            }
        lines = {}
        for line in st.line_items.all():
            if line["_contract_id"] not in origin_of:
                continue  # lines of a deleted contract
            code = st.cost_codes.get(line.get("cost_code_id"), include_deleted=True)
            kind = st.line_item_types.get(line.get("line_item_type_id"))
            origin = line.get("origin_id")
            counts[origin] += 1
            lines[origin] = {
                "contract": origin_of[line["_contract_id"]], "description": line.get("description"),
                "quantity": _num(line.get("quantity")), "unit_cost": _num(line.get("unit_cost")),
                "amount": _num(line.get("amount")), "uom": line.get("uom"),
                "cost_code": code["code"] if code else None,
                "cost_type": kind["code"] if kind else None,
            }
        others: dict[str, dict[str, dict]] = {}
        ids: dict[str, dict[str, int]] = {"contracts": dict(contract_ids)}
        for name in ("vendors", "requisitions", "packages", "pco_lines"):
            table = getattr(st, name, None)
            rows = table.all() if table is not None else []
            others[name], ids[name] = {}, {}
            for row in rows:
                if row.get("origin_id") is None:
                    continue
                counts[f"{name}:{row['origin_id']}"] += 1
                others[name][str(row["origin_id"])] = _generic(row)
                ids[name][str(row["origin_id"])] = row["id"]
    duplicates = sorted(str(k) for k, n in counts.items() if k is not None and n > 1)
    return EndState(contracts, lines, others, duplicates, contract_ids, ledger_states(ledger_url),
                    x3_written_state(x3_handle), ids)


def ledger_states(ledger_url: str) -> dict[str, dict[str, RecordState]]:
    ledger = Ledger(ledger_url)
    try:
        with ledger.engine.connect() as conn:
            entities = [row[0] for row in conn.execute(sa.select(sync_records.c.entity).distinct())]
        return {entity: ledger.states(entity) for entity in sorted(entities)}
    finally:
        ledger.dispose()


def differences(actual: EndState, expected: EndState, *, only: set[str] | None = None,
                limit: int = 25) -> list[str]:
    """Human-readable differences; `only` restricts contracts/lines to those PO numbers."""
    out: list[str] = []

    def keep(origin: str) -> bool:
        return only is None or origin.split(":")[2] in only

    def compare(what: str, a: dict, e: dict) -> None:
        for key in sorted(set(a) | set(e), key=str):
            if a.get(key) != e.get(key):
                out.append(f"{what} {key}: got {a.get(key)!r}, fault-free run has {e.get(key)!r}")

    compare("contract", {k: v for k, v in actual.contracts.items() if keep(k)},
            {k: v for k, v in expected.contracts.items() if keep(k)})
    compare("line", {k: v for k, v in actual.lines.items() if keep(k)},
            {k: v for k, v in expected.lines.items() if keep(k)})
    if only is None:
        for name in sorted(set(actual.others) | set(expected.others)):
            compare(name, actual.others.get(name, {}), expected.others.get(name, {}))
        for name in sorted(set(actual.x3) | set(expected.x3)):
            compare(f"X3 {name}", actual.x3.get(name, {}), expected.x3.get(name, {}))
        a_ledger, e_ledger = actual.ledger_view(), expected.ledger_view()
        for entity in sorted(set(a_ledger) | set(e_ledger)):
            compare(f"ledger {entity}", a_ledger.get(entity, {}), e_ledger.get(entity, {}))
    if actual.duplicates:
        out.append(f"duplicates in Procore: {actual.duplicates[:10]}")
    return out[:limit]


def check_po_agreement(state: EndState) -> list[str]:
    """Every synced PO: its commitment exists under that id, with the lines the ledger lists."""
    problems = []
    lines_of: dict[str, set[str]] = {}
    for origin, line in state.lines.items():
        lines_of.setdefault(line["contract"], set()).add(origin)
    for key, record in state.ledger.get("purchase_order", {}).items():
        if record.status != "synced":
            continue
        origin = f"X3:PO:{key}"
        if state.contract_ids.get(origin) != record.procore_id:
            problems.append(f"PO {key}: ledger says commitment {record.procore_id}, Procore has "
                            f"{state.contract_ids.get(origin)}")
            continue
        listed = set((record.summary or {}).get("lines", {}))
        if listed != lines_of.get(origin, set()):
            problems.append(f"PO {key}: ledger lists {len(listed)} line(s), Procore has "
                            f"{len(lines_of.get(origin, set()))}")
    return problems


def check_invoice_agreement(state: EndState) -> list[str]:
    """Every synced invoice: each requisition the ledger names exists under that id."""
    problems = []
    requisitions = state.ids.get("requisitions", {})
    for key, record in state.ledger.get("purchase_invoice", {}).items():
        if record.status != "synced":
            continue
        for po, part in ((record.summary or {}).get("parts") or {}).items():
            if part.get("id") is not None and requisitions.get(part.get("origin_id")) != part["id"]:
                problems.append(f"invoice {key}, PO {po}: ledger says requisition {part['id']}, "
                                f"Procore has {requisitions.get(part.get('origin_id'))}")
    return problems


def check_supplier_agreement(state: EndState) -> list[str]:
    """Every synced supplier: the vendor the ledger names carries the supplier code."""
    vendors = state.ids.get("vendors", {})
    return [f"supplier {key}: ledger says vendor {r.procore_id}, Procore has {vendors.get(key)}"
            for key, r in state.ledger.get("supplier", {}).items()
            if r.status == "synced" and r.procore_id is not None
            and vendors.get(key) != r.procore_id]


# entity -> agreement check between the ledger and Procore (add new flows here)
AGREEMENT: dict[str, Callable[[EndState], list[str]]] = {
    "purchase_order": check_po_agreement,
    "purchase_invoice": check_invoice_agreement,
    "supplier": check_supplier_agreement,
}


def ledger_disagreements(state: EndState) -> list[str]:
    return [p for entity, check in AGREEMENT.items() if entity in state.ledger
            for p in check(state)]


def _x3_keys(attr: str, key: str) -> Callable[[World], set[str]]:
    def keys(world: World) -> set[str]:
        state = world.x3.state
        with state.lock:
            return {str(r[key]) for r in getattr(state, attr)}
    return keys


# entity -> the X3 keys every run that reached the write step must account for
X3_KEYS: dict[str, Callable[[World], set[str]]] = {
    "purchase_order": _x3_keys("x3_purchase_orders", "POHNUM"),
    "purchase_invoice": _x3_keys("x3_purchase_invoices", "NUM"),
    "supplier": _x3_keys("x3_suppliers", "BPSNUM"),
}
# entity -> the asset that writes it; an entity counts for a job that selects that asset
WRITER_ASSET = {"purchase_order": "procore_commitments",
                "purchase_invoice": "procore_requisitions",
                "supplier": "supplier_vendor_sync"}


def job_entities(job: str) -> list[str]:
    """The entities a job of this code location writes (flows not built yet are left out)."""
    from mlc_dagster.definitions import defs

    selected = {k.to_user_string()
                for k in defs.resolve_job_def(job).asset_layer.selected_asset_keys}
    return [entity for entity, asset in WRITER_ASSET.items() if asset in selected]


def unaccounted(world: World, state: EndState, job: str = SYNC_JOB) -> list[str]:
    """X3 records with no ledger record, and non-synced records without a reason."""
    problems = []
    for entity in job_entities(job):
        keys_of = X3_KEYS[entity]
        records = state.ledger.get(entity, {})
        for key in sorted(keys_of(world)):
            record = records.get(key)
            if record is None:
                problems.append(f"{entity} {key}: not in the ledger")
            elif record.status != "synced" and not (record.reason or "").strip():
                problems.append(f"{entity} {key}: {record.status} without a reason")
            elif record.status not in {"synced", "held", "failed"}:
                problems.append(f"{entity} {key}: unexpected status {record.status}")
    return problems


# --- X3 helpers -------------------------------------------------------------------------------

def x3_client(world: World, api: str = "rest"):
    from mlc_dagster.resources.sage_x3_client import SageX3GraphQLClient, SageX3RestClient
    from mlc_sandbox.seed import SANDBOX_CREDENTIALS as C

    if api == "graphql":
        return SageX3GraphQLClient(world.x3.url, C["x3_endpoint"], jwt_client_id=C["x3_jwt_client_id"],
                                   jwt_secret=C["x3_jwt_secret"], jwt_user=C["x3_jwt_user"])
    return SageX3RestClient(world.x3.url, C["x3_endpoint"], C["x3_user"], C["x3_password"])


def x3_rest(world: World) -> httpx.Client:
    from mlc_sandbox.seed import SANDBOX_CREDENTIALS as C

    return httpx.Client(base_url=f"{world.x3.url}/api1/x3/erp/{C['x3_endpoint']}",
                        auth=(C["x3_user"], C["x3_password"]))


def inject_x3_po(world: World, record: dict) -> None:
    """Put a PO straight into the X3 sandbox's state, for values its REST API refuses.

    The record uses X3 column names like the seed (lines under "lines"); it gets a fresh
    UPDDATTIM so the next delta read picks it up.
    """
    state = world.x3.state
    with state.lock:
        now = state.now_stamp()
        record = dict(record, CREDATTIM=now, UPDDATTIM=now)
        record["lines"] = [dict(line, UPDDATTIM=now) for line in record.get("lines") or []]
        state.x3_purchase_orders.append(record)



# --- amendments: updates, line removals and a close, for faults on the update path ---------

def syncable_pos(seed: SeedData) -> list[dict]:
    """Seed POs the fault-free sync writes (mapped GL accounts, supplier with a vendor)."""
    from mlc_sandbox.seed import UNMAPPED_GL_ACCOUNTS

    vendors = {v["origin_id"] for v in seed.vendors if v.get("origin_id")}
    return [po for po in seed.x3_purchase_orders if po["BPSNUM"] in vendors
            and not any(line["ACC"] in UNMAPPED_GL_ACCOUNTS for line in po["lines"])]


def amend_x3(world: World) -> dict[str, str]:
    """Deterministic X3 edits through the REST API: lines removed, quantities changed, a line
    added, a PO closed. Returns PO number -> what changed."""
    from mlc_dagster_tests.sandbox_clients import X3Driver

    x3 = X3Driver(world.x3.url)
    multi = [po["POHNUM"] for po in syncable_pos(seed_data(world.seed_kind))
             if len(po["lines"]) >= 3 and po["CLEFLG"] == 1]
    single = [po["POHNUM"] for po in syncable_pos(seed_data(world.seed_kind))
              if po["CLEFLG"] == 1 and po["POHNUM"] not in multi[:3]]
    done = {}
    for number in multi[:3]:
        po = x3.po(number)
        first, last = po["PORDERQ"][0], po["PORDERQ"][-1]
        x3.edit_po(number, {"REVNUM": po["REVNUM"] + 1, "PORDERQ": [
            {"POPLIN": first["POPLIN"], "QTYUOM": str(Decimal(first["QTYUOM"]) + 1)},
            {"POPLIN": last["POPLIN"], "$delete": True}]})
        done[number] = "line removed, quantity changed"
    added = single[0]
    po = x3.po(added)
    first = po["PORDERQ"][0]
    line = {k: v for k, v in first.items() if not k.startswith("$") and k != "LINAMT"}
    line.update({"POPLIN": 99000, "QTYUOM": "2", "NETPRI": "12.50"})  # X3 computes LINAMT
    # the new line's account and dimensions go where X3 keeps them: PORDERC, CPTANALIN
    analytics = {member: [{**next(e for e in po[member] if e[key] == first["POPLIN"]),
                           key: 99000}]
                 for member, key in (("PORDERC", "POPLIN"), ("CPTANALIN", "VCRLIN"))}
    x3.edit_po(added, {"PORDERQ": [line], **analytics})
    done[added] = "line added"
    x3.edit_po(single[1], {"CLEFLG": 2})
    done[single[1]] = "closed"
    return done


# --- the independent oracle and duplicates as a user sees them --------------------------------

def assert_converged(world: World) -> None:
    """Procore holds what X3 + the mapping CSV say it must, with no user-visible duplicate,
    and the ledger agrees with Procore. Raises AssertionError listing every problem.

    Call after the clean run that follows a fault, a crash or bad input."""
    problems = world.oracle_problems() + world.duplicate_problems()
    problems += ledger_disagreements(world.end_state())
    assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:50])
