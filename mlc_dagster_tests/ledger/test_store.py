"""The sync ledger on SQLite and PostgreSQL: states, the append-only event log, snapshot, cursors."""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from mlc_dagster.ledger.store import Change, Ledger, RecordState, metadata
from mlc_dagster_tests.postgres import scratch_database

BIG = 562949953421312  # 2**49, Procore multi-region ids
HUGE = 2 ** 62 + 7
PO = "purchase_order"


# --- backends -------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg_url():
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    with scratch_database("mlc_ledger_test") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    return request.param


@pytest.fixture
def ledger_url(backend, request, tmp_path):
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    url = request.getfixturevalue("pg_url")
    engine = sa.create_engine(url)
    metadata.drop_all(engine)  # every test starts from empty tables
    engine.dispose()
    return url


@pytest.fixture
def ledger(ledger_url):
    store = Ledger(ledger_url)
    yield store
    store.dispose()


def change(key="PO1", status="synced", action="create", **fields) -> Change:
    return Change(entity=PO, key=key, status=status, action=action, **fields)


# --- record state -------------------------------------------------------------------------------------

def test_apply_and_states_round_trip(ledger):
    payload = {"header": {"title": "Béton ✓", "vendor_id": HUGE}, "line_updates": [{"id": BIG}]}
    summary = {"lines": {"X3:PO:PO1:1000": {"id": HUGE, "hash": "ab" * 32}}, "closed": False}
    written = ledger.apply([change(
        reason="created with 1 line(s)", procore_id=HUGE, project_id=BIG + 1,
        content_hash="f" * 64, x3_stamp="2026-01-05T08:00:07Z", payload=payload,
        summary=summary, changes={"summary": ["created"]}, request_id="req-1")], "run-1")
    assert written == 1
    assert ledger.states(PO) == {"PO1": RecordState(
        entity=PO, key="PO1", status="synced", procore_id=HUGE, project_id=BIG + 1,
        content_hash="f" * 64, x3_stamp="2026-01-05T08:00:07Z", reason="created with 1 line(s)",
        payload=payload, summary=summary, run_id="run-1")}


def test_ids_above_2_pow_32_are_exact(ledger):
    ids = [2 ** 32 + 1, BIG, HUGE, 2 ** 63 - 1]
    ledger.apply([change(f"PO{n}", procore_id=i, project_id=i) for n, i in enumerate(ids)], "r")
    states = ledger.states(PO)
    assert [states[f"PO{n}"].procore_id for n in range(len(ids))] == ids
    assert all(type(s.procore_id) is int for s in states.values())


def test_apply_overwrites_the_state(ledger):
    ledger.apply([change(status="failed", action="fail", reason="boom", payload={"a": 1},
                         procore_id=BIG)], "run-1")
    ledger.apply([change(status="synced", action="update", content_hash="h", summary={"b": 2},
                         procore_id=BIG)], "run-2")
    state = ledger.states(PO)["PO1"]
    assert (state.status, state.reason, state.payload, state.summary, state.run_id) == (
        "synced", None, None, {"b": 2}, "run-2")


def test_keep_state_only_appends_the_event(ledger):
    ledger.apply([change(status="failed", action="fail", reason="boom")], "run-1")
    written = ledger.apply([change(status="superseded", action="supersede", keep_state=True,
                                   reason="X3 moved on")], "run-2")
    assert written == 1
    assert ledger.states(PO)["PO1"].status == "failed"
    assert [e["status"] for e in ledger.events(PO, "PO1")] == ["failed", "superseded"]


def test_apply_nothing_is_a_no_op(ledger):
    assert ledger.apply([], "r") == 0
    assert ledger.states(PO) == {}


def test_states_by_key_and_entity(ledger):
    ledger.apply([change(f"PO{n:04d}") for n in range(1200)], "r")
    ledger.apply([Change(entity="invoice", key="PO0001", status="held", action="hold")], "r")
    assert len(ledger.states(PO)) == 1200
    wanted = [f"PO{n:04d}" for n in range(0, 1200, 2)] + ["NOPE"]
    assert set(ledger.states(PO, wanted)) == set(wanted) - {"NOPE"}  # chunked IN lists
    assert ledger.states(PO, []) == {}
    assert ledger.states(PO, iter(["PO0001"]))["PO0001"].status == "synced"
    assert ledger.states("invoice")["PO0001"].status == "held"


def test_keys_with_status(ledger):
    ledger.apply([change("B", "failed", "fail"), change("A", "failed", "fail"),
                  change("C", "held", "hold"), change("D")], "r")
    assert ledger.keys_with_status(PO, ["failed"]) == ["A", "B"]
    assert ledger.keys_with_status(PO, iter(["held", "failed"])) == ["A", "B", "C"]
    assert ledger.keys_with_status(PO, []) == []
    assert ledger.keys_with_status("invoice", ["failed"]) == []


def test_procore_ids_are_the_ids_held_for_an_entity(ledger):
    ledger.apply([change("A", procore_id=HUGE), change("B", "held", "hold"),
                  change("C", procore_id=7)], "r")
    assert ledger.procore_ids(PO) == {HUGE, 7}
    assert ledger.procore_ids("invoice") == set()


def test_long_keys_and_unicode_reasons(ledger):
    key = "K" * 200
    ledger.apply([change(key, reason="✓ " * 5000)], "r")
    assert ledger.states(PO)[key].reason == "✓ " * 5000


def test_same_key_twice_in_one_apply_last_wins(ledger):
    written = ledger.apply([change(status="failed", action="fail", reason="first"),
                            change(status="synced", action="update", reason="second")], "r")
    assert written == 2
    assert ledger.states(PO)["PO1"].reason == "second"
    assert [e["reason"] for e in ledger.events(PO, "PO1")] == ["first", "second"]


# --- events ---------------------------------------------------------------------------------------

def test_events_are_append_only_and_ordered(ledger):
    ledger.apply([change(action="create", reason="one")], "run-1")
    first = ledger.events(PO, "PO1")
    ledger.apply([change(status="failed", action="fail", reason="two", request_id="req-2")],
                 "run-2")
    ledger.apply([change(action="update", reason="three", changes={"summary": ["x"]})], "run-3")
    events = ledger.events(PO, "PO1")
    assert [(e["action"], e["status"], e["reason"], e["run_id"]) for e in events] == [
        ("create", "synced", "one", "run-1"), ("fail", "failed", "two", "run-2"),
        ("update", "synced", "three", "run-3")]
    assert events[0] == first[0]  # history is never rewritten
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert all(a["at"] <= b["at"] for a, b in zip(events, events[1:], strict=False))
    assert events[1]["procore_request_id"] == "req-2"
    assert events[2]["changes"] == {"summary": ["x"]}
    assert set(events[0]) == {"id", "at", "run_id", "entity", "key", "action", "status", "reason",
                              "changes", "procore_request_id"}


def test_events_keep_batch_order_and_separate_records(ledger):
    ledger.apply([change("PO2", reason="a"), change("PO1", reason="b"), change("PO2", "held",
                  "hold", reason="c", keep_state=True)], "r")
    assert [e["reason"] for e in ledger.events(PO, "PO2")] == ["a", "c"]
    assert [e["reason"] for e in ledger.events(PO, "PO1")] == ["b"]
    assert ledger.events(PO, "PO3") == [] and ledger.events("invoice", "PO1") == []


def test_events_for_run(ledger):
    ledger.apply([change("PO1", reason="1"), change("PO2", reason="2")], "run-a")
    ledger.apply([change("PO3", reason="3")], "run-b")
    ledger.apply([change("PO1", action="update", reason="4")], "run-a")
    ledger.apply([change("PO4", reason="no run")], None)
    assert [(e["key"], e["reason"]) for e in ledger.events_for_run("run-a")] == [
        ("PO1", "1"), ("PO2", "2"), ("PO1", "4")]
    assert [e["key"] for e in ledger.events_for_run("run-b")] == ["PO3"]
    assert ledger.events_for_run("run-z") == []
    assert ledger.states(PO)["PO4"].run_id is None


def test_large_batches_are_written_atomically(ledger):
    written = ledger.apply([change(f"PO{n:05d}", reason=str(n)) for n in range(1200)], "big")
    assert written == 1200
    assert len(ledger.events_for_run("big")) == 1200
    assert len(ledger.states(PO)) == 1200


# --- X3 snapshot --------------------------------------------------------------------------------------

def po_record(number: str, stamp: str, **extra) -> dict:
    return {"po_number": number, "update_stamp": stamp, "supplier_code": "SUP001",
            "lines": [{"line_number": 1000, "description": "Béton ✓", "amount": "10.00"}], **extra}


def test_snapshot_upsert_stamps_and_order(ledger):
    assert ledger.upsert_snapshot(PO, [], "po_number") == 0
    records = [po_record("PO2", "2026-01-02T00:00:00Z"), po_record("PO1", "2026-01-01T00:00:00Z")]
    assert ledger.upsert_snapshot(PO, records, "po_number") == 2
    assert list(ledger.snapshot(PO)) == [records[1], records[0]]  # ordered by key
    assert ledger.snapshot_stamps(PO) == {"PO1": "2026-01-01T00:00:00Z",
                                          "PO2": "2026-01-02T00:00:00Z"}
    changed = po_record("PO1", "2026-01-03T00:00:00Z", supplier_code="SUP002")
    ledger.upsert_snapshot(PO, [changed], "po_number")
    assert list(ledger.snapshot(PO))[0] == changed
    assert ledger.snapshot_stamps(PO)["PO1"] == "2026-01-03T00:00:00Z"
    assert ledger.snapshot_keys(PO) == {"PO1", "PO2"}
    assert list(ledger.snapshot("invoice")) == []


def test_snapshot_keys_are_text_and_stamp_field_configurable(ledger):
    ledger.upsert_snapshot("supplier", [{"code": 17, "changed": "2026-01-01T00:00:00Z"}], "code",
                           stamp_field="changed")
    assert ledger.snapshot_stamps("supplier") == {"17": "2026-01-01T00:00:00Z"}
    ledger.upsert_snapshot("supplier", [{"code": 18}], "code")
    assert ledger.snapshot_stamps("supplier")["18"] is None


def test_mark_deleted_hides_and_upsert_revives(ledger):
    ledger.upsert_snapshot(PO, [po_record(f"PO{n}", f"2026-01-0{n}T00:00:00Z")
                                for n in range(1, 4)], "po_number")
    ledger.mark_deleted(PO, ["PO2", "NOPE"])
    ledger.mark_deleted(PO, [])
    assert [r["po_number"] for r in ledger.snapshot(PO)] == ["PO1", "PO3"]
    assert [r["po_number"] for r in ledger.snapshot(PO, include_deleted=True)] == [
        "PO1", "PO2", "PO3"]
    assert set(ledger.snapshot_stamps(PO)) == {"PO1", "PO3"}
    assert ledger.snapshot_keys(PO) == {"PO1", "PO3"}
    assert ledger.deleted_keys(PO) == {"PO2"}
    ledger.upsert_snapshot(PO, [po_record("PO2", "2026-02-01T00:00:00Z")], "po_number")
    assert ledger.snapshot_keys(PO) == {"PO1", "PO2", "PO3"}
    assert ledger.deleted_keys(PO) == set()


def test_mark_deleted_many_keys(ledger):
    ledger.upsert_snapshot(PO, [po_record(f"PO{n:04d}", None) for n in range(1100)], "po_number")
    ledger.mark_deleted(PO, (f"PO{n:04d}" for n in range(1, 1100)))
    assert ledger.snapshot_keys(PO) == {"PO0000"}
    assert len(ledger.deleted_keys(PO)) == 1099


# --- cursors ------------------------------------------------------------------------------------------

def test_cursors(ledger):
    assert ledger.get_cursor("x3:purchase_order:stamp") is None
    ledger.set_cursor("x3:purchase_order:stamp", "2026-01-05T08:00:00Z")
    ledger.set_cursor("x3:supplier:stamp", "2026-01-01T00:00:00Z")
    ledger.set_cursor("x3:purchase_order:stamp", "2026-01-05T09:00:00Z")
    assert ledger.get_cursor("x3:purchase_order:stamp") == "2026-01-05T09:00:00Z"
    assert ledger.get_cursor("x3:supplier:stamp") == "2026-01-01T00:00:00Z"
    long_value = '{"stamp": "2026", "seen": [' + ",".join(['"k"'] * 5000) + "]}"
    ledger.set_cursor("json", long_value)
    assert ledger.get_cursor("json") == long_value


def test_reopening_the_ledger_keeps_everything(ledger_url):
    first = Ledger(ledger_url)
    first.apply([change(procore_id=BIG)], "r")
    first.set_cursor("c", "v")
    first.dispose()
    second = Ledger(ledger_url)  # create_all on an existing schema is harmless
    try:
        assert second.states(PO)["PO1"].procore_id == BIG
        assert second.get_cursor("c") == "v"
        assert len(second.events(PO, "PO1")) == 1
    finally:
        second.dispose()


# --- the event log is append-only: no statement of the API rewrites it -----------------------

EXERCISED = {"apply", "states", "keys_with_status", "procore_ids", "events", "events_for_run",
             "upsert_snapshot",
             "mark_deleted", "snapshot", "snapshot_stamps", "snapshot_keys", "deleted_keys",
             "get_cursor", "set_cursor", "dispose", "set_lock_holder", "lock_holder",
             "clear_lock_holder", "snapshot_records", "snapshot_changed_keys",
             "unsettled_snapshot_keys", "unrecorded_snapshot_keys", "snapshot_keys_with_line_value"}


def test_no_ledger_method_updates_or_deletes_events(ledger):
    public = {name for name, _ in inspect.getmembers(Ledger, inspect.isfunction)
              if not name.startswith("_")}
    assert public <= EXERCISED, (f"new Ledger method(s) {sorted(public - EXERCISED)}: "
                                 "exercise them in this test too")
    statements: list[str] = []

    @sa.event.listens_for(ledger.engine, "before_cursor_execute")
    def capture(_conn, _cursor, statement, _params, _context, _executemany):
        statements.append(" ".join(statement.split()))

    for run in range(3):
        ledger.apply([change("PO1", "failed", "fail", reason=f"try {run}", payload={"n": run}),
                      change("PO2", "synced", "update", summary={"n": run})], f"run-{run}")
        ledger.apply([change("PO1", "superseded", "supersede", keep_state=True)], f"run-{run}")
    ledger.states(PO)
    ledger.states(PO, ["PO1"])
    ledger.keys_with_status(PO, ["failed"])
    ledger.procore_ids(PO)
    ledger.events(PO, "PO1")
    ledger.events_for_run("run-1")
    ledger.upsert_snapshot(PO, [po_record("PO1", "s1"), po_record("PO2", "s1")], "po_number")
    ledger.upsert_snapshot(PO, [po_record("PO1", "s2")], "po_number")
    ledger.mark_deleted(PO, ["PO2"])
    list(ledger.snapshot(PO))
    list(ledger.snapshot(PO, include_deleted=True))
    ledger.snapshot_stamps(PO)
    ledger.snapshot_keys(PO)
    ledger.deleted_keys(PO)
    ledger.snapshot_records(PO, ["PO1", "PO2"])
    ledger.snapshot_changed_keys(PO, datetime(2000, 1, 1, tzinfo=UTC), include_deleted=True)
    ledger.unsettled_snapshot_keys(PO)
    ledger.unrecorded_snapshot_keys(PO)
    ledger.snapshot_keys_with_line_value(PO, "po_number", ["PO1"])
    ledger.set_cursor("c", "1")
    ledger.set_cursor("c", "2")
    ledger.get_cursor("c")
    ledger.set_lock_holder("procore_company:1", "run-1", 123, "host")
    assert ledger.lock_holder("procore_company:1")["run_id"] == "run-1"
    ledger.clear_lock_holder("procore_company:1", "run-1", 123)

    touching_events = [s for s in statements if re.search(r"\bmlc_sync_events\b", s)]
    assert any(s.upper().startswith("INSERT INTO MLC_SYNC_EVENTS") for s in touching_events)
    assert any(s.upper().startswith("UPDATE MLC_X3_SNAPSHOT") for s in statements), \
        "the listener must see UPDATEs (mark_deleted issues one)"
    rewriting = [s for s in touching_events
                 if re.match(r"(UPDATE|DELETE|REPLACE|TRUNCATE|DROP|ALTER|MERGE)\b", s, re.I)
                 or re.search(r"\bON CONFLICT\b|\bOR REPLACE\b", s, re.I)]
    assert rewriting == []
    assert len(ledger.events(PO, "PO1")) == 6
