"""Which records a run stages (x3_reads/scope.py) and the ledger queries behind it, on SQLite
and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from mlc_dagster.ledger.store import Change, Ledger, metadata
from mlc_dagster.settings import load_settings
from mlc_dagster.x3_reads import scope as sc
from mlc_dagster_tests.postgres import scratch_database

PO, INV = sc.PO, sc.INVOICE
FP = {"mapping": "m1", "code": "c1"}


@pytest.fixture(scope="session")
def pg_url():
    with scratch_database("mlc_scope_test") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    else:
        url = request.getfixturevalue("pg_url")
        engine = sa.create_engine(url)
        metadata.drop_all(engine)
        engine.dispose()
    store = Ledger(url)
    yield store
    store.dispose()


def po(number: str, stamp: str = "2024-01-01T00:00:00Z") -> dict:
    return {"po_number": number, "update_stamp": stamp, "lines": [{"line_number": 1}]}


def invoice(number: str, *pos, stamp: str = "2024-01-01T00:00:00Z") -> dict:
    return {"invoice_number": number, "update_stamp": stamp,
            "lines": [{"line_number": i + 1, "po_number": p} for i, p in enumerate(pos)]}


def record(store: Ledger, entity: str, key: str, status: str) -> None:
    store.apply([Change(entity=entity, key=key, status=status, action="test")], "run")


def tick() -> datetime:
    """A moment strictly between two ledger writes."""
    moment = datetime.now(UTC)
    while datetime.now(UTC) <= moment:
        pass
    return moment


# --- ledger queries -------------------------------------------------------------------------------

def test_changed_keys_are_rows_written_after_the_moment_including_deletions(ledger):
    ledger.upsert_snapshot(PO, [po("A"), po("B"), po("C")], "po_number")
    since = tick()
    ledger.upsert_snapshot(PO, [po("B", "2024-02-01T00:00:00Z")], "po_number")
    ledger.mark_deleted(PO, ["C"])
    assert ledger.snapshot_changed_keys(PO, since) == {"B"}
    assert ledger.snapshot_changed_keys(PO, since, include_deleted=True) == {"B", "C"}
    assert ledger.snapshot_changed_keys(PO, tick()) == set()
    assert ledger.snapshot_changed_keys(INV, since) == set()


def test_unsettled_and_unrecorded_keys(ledger):
    ledger.upsert_snapshot(PO, [po(k) for k in "ABCDEF"], "po_number")
    for key, status in zip("ABCD", ("synced", "held", "failed", "deferred"), strict=True):
        record(ledger, PO, key, status)
    record(ledger, PO, "GONE", "held")  # held, never in the snapshot: nothing to stage
    record(ledger, PO, "F", "failed")  # failed, then deleted in X3: planned as a deletion
    record(ledger, INV, "E", "held")  # another entity's state does not count
    ledger.mark_deleted(PO, ["F"])
    assert ledger.unsettled_snapshot_keys(PO) == {"B", "C", "D"}
    assert ledger.unrecorded_snapshot_keys(PO) == {"E"}


def test_snapshot_records_by_key_leave_out_unknown_and_deleted(ledger):
    ledger.upsert_snapshot(PO, [po("A"), po("B"), po("C")], "po_number")
    ledger.mark_deleted(PO, ["C"])
    records = ledger.snapshot_records(PO, ["C", "B", "Z", "A"])
    assert [r["po_number"] for r in records] == ["A", "B"]
    assert ledger.snapshot_records(PO, []) == []


def test_invoices_billing_pos_are_found_in_sql_whatever_the_line_shape(ledger):
    odd = [{"invoice_number": "NOLINES", "update_stamp": "s"},
           {"invoice_number": "OBJ", "update_stamp": "s", "lines": {"po_number": "P1"}},
           {"invoice_number": "SCALARS", "update_stamp": "s", "lines": ["P1", 3, None]},
           {"invoice_number": "NULLPO", "update_stamp": "s", "lines": [{"po_number": None}]},
           {"invoice_number": "NUM", "update_stamp": "s", "lines": [{"po_number": 42}]}]
    ledger.upsert_snapshot(INV, [invoice("I1", "P1"), invoice("I2", "P2", " P1 "),
                                 invoice("I3", "P3"), invoice("I4", "P1'; --"),
                                 invoice("I5", "Pé"), *odd], "invoice_number")
    ledger.upsert_snapshot(PO, [{"po_number": "X", "lines": [{"po_number": "P1"}]}], "po_number")
    ledger.mark_deleted(INV, ["I3"])
    assert ledger.snapshot_keys_with_line_value(INV, "po_number", ["P1"]) == {"I1", "I2"}
    assert ledger.snapshot_keys_with_line_value(INV, "po_number", ["P3"]) == set()  # deleted
    assert ledger.snapshot_keys_with_line_value(INV, "po_number", ["P1'; --", "Pé"]) == {
        "I4", "I5"}
    assert ledger.snapshot_keys_with_line_value(INV, "po_number", ["42"]) == {"NUM"}
    assert ledger.snapshot_keys_with_line_value(INV, "po_number", []) == set()
    many = [f"P{i}" for i in range(1200)]  # more values than one statement takes
    assert ledger.snapshot_keys_with_line_value(INV, "po_number", many) == {"I1", "I2", "I3"} - {
        "I3"}


# --- choosing the scope ---------------------------------------------------------------------------

def test_nothing_planned_yet_stages_everything_and_mark_planned_needs_a_fingerprint(ledger):
    scope = sc.select_scope(ledger, PO)
    assert scope.everything and scope.keys is None
    assert scope.describe() == "all: no completed plan yet"
    assert not sc.mark_planned(ledger, PO, scope)  # fingerprint not known yet
    assert sc.read_planned(ledger, PO) is None
    assert sc.mark_planned(ledger, PO, sc.confirm_fingerprint(ledger, scope, FP))
    planned = sc.read_planned(ledger, PO)
    assert planned.staged_at == scope.staged_at and planned.fingerprint == FP


def test_after_a_completed_plan_only_changed_unsettled_and_unrecorded_records(ledger):
    ledger.upsert_snapshot(PO, [po(k) for k in "ABCD"], "po_number")
    for key in "ABC":
        record(ledger, PO, key, "synced")
    first = sc.confirm_fingerprint(ledger, sc.select_scope(ledger, PO), FP)
    assert sc.mark_planned(ledger, PO, first)
    ledger.upsert_snapshot(PO, [po("A", "2024-03-01T00:00:00Z")], "po_number")
    record(ledger, PO, "B", "held")

    scope = sc.confirm_fingerprint(ledger, sc.select_scope(ledger, PO), FP)
    assert not scope.everything
    assert (scope.changed, scope.unsettled, scope.unrecorded) == ({"A"}, {"B"}, {"D"})
    assert scope.keys == {"A", "B", "D"}
    assert scope.describe() == ("changed only: 1 changed in X3, 1 held/failed/deferred, "
                                "1 not planned yet")
    assert [r["po_number"] for r in sc.scope_records(ledger, scope)] == ["A", "B", "D"]


def test_a_different_fingerprint_or_a_full_refresh_stage_everything(ledger):
    ledger.upsert_snapshot(PO, [po("A")], "po_number")
    record(ledger, PO, "A", "synced")
    assert sc.mark_planned(ledger, PO, sc.confirm_fingerprint(ledger, sc.select_scope(ledger, PO),
                                                              FP))
    changed = sc.confirm_fingerprint(ledger, sc.select_scope(ledger, PO), {**FP, "mapping": "m2"})
    assert changed.everything and changed.describe() == "all: mapping changed since the last plan"
    assert changed.fingerprint == {**FP, "mapping": "m2"}
    known = sc.select_scope(ledger, PO, fingerprint={"code": "c2", "mapping": "m1"})
    assert known.everything and known.why == "code changed since the last plan"
    refresh = sc.select_scope(ledger, PO, everything_because="full refresh", fingerprint=FP)
    assert refresh.everything and refresh.describe() == "all: full refresh"
    same = sc.select_scope(ledger, PO, fingerprint=FP)
    assert not same.everything and same.keys == frozenset()
    assert [r["po_number"] for r in sc.scope_records(ledger, refresh)] == ["A"]


def test_the_mark_moves_only_when_complete_and_never_backwards(ledger):
    early = sc.confirm_fingerprint(ledger, sc.select_scope(ledger, PO), FP)
    late = sc.confirm_fingerprint(ledger, sc.select_scope(ledger, PO), FP)
    assert late.staged_at > early.staged_at
    assert not sc.mark_planned(ledger, PO, late, complete=False)  # e.g. a replay
    assert not sc.mark_planned(ledger, PO, None)
    assert not sc.mark_planned(ledger, INV, late)  # another entity's scope
    assert sc.read_planned(ledger, PO) is None
    assert sc.mark_planned(ledger, PO, late)
    assert not sc.mark_planned(ledger, PO, early)
    assert sc.read_planned(ledger, PO).staged_at == late.staged_at
    ledger.set_cursor(sc.planned_cursor(PO), "not json")
    assert sc.read_planned(ledger, PO) is None  # unreadable: plan everything
    assert sc.select_scope(ledger, PO).everything


def test_invoice_scope_follows_changed_pos_and_completes_every_po_it_bills(ledger):
    ledger.upsert_snapshot(PO, [po(k) for k in ("P1", "P2", "P3", "P4")], "po_number")
    ledger.upsert_snapshot(INV, [invoice("I1", "P1"), invoice("I2", "P1", "P2"),
                                 invoice("I3", "P2"), invoice("I4", "P3"), invoice("I5", "P4"),
                                 invoice("I6", "P4")], "invoice_number")
    for key in ("I1", "I2", "I3", "I4", "I5", "I6"):
        record(ledger, INV, key, "synced")
    first = sc.select_scope(ledger, INV, fingerprint=FP)
    assert sc.mark_planned(ledger, INV, first)

    ledger.upsert_snapshot(PO, [po("P3", "2024-04-01T00:00:00Z")], "po_number")  # I4 bills it
    record(ledger, INV, "I1", "held")  # I1 bills P1, so does I2; I2 bills P2, so does I3
    scope = sc.select_scope(ledger, INV, fingerprint=FP)
    records, scope = sc.invoice_scope_records(ledger, scope)
    assert sorted(r["invoice_number"] for r in records) == ["I1", "I2", "I4"]
    assert scope.unsettled == {"I1"} and scope.billing_changed == {"I4"}
    assert scope.siblings == {"I2"}
    # every invoice billing P1 and P3 is staged: their X3 totals are whole; P2's are not
    assert scope.covered_pos == {"P1", "P3"}
    assert scope.describe() == ("changed only: 0 changed in X3, 1 held/failed/deferred, "
                                "1 billing a changed PO, 1 sharing a PO with those")

    everything = sc.select_scope(ledger, INV, everything_because="full refresh")
    records, same = sc.invoice_scope_records(ledger, everything)
    assert len(records) == 6 and same is everything and same.covered_pos is None


def test_a_deleted_po_brings_its_invoices(ledger):
    ledger.upsert_snapshot(PO, [po("P1")], "po_number")
    ledger.upsert_snapshot(INV, [invoice("I1", "P1")], "invoice_number")
    record(ledger, INV, "I1", "synced")
    assert sc.mark_planned(ledger, INV, sc.select_scope(ledger, INV, fingerprint=FP))
    ledger.mark_deleted(PO, ["P1"])
    records, scope = sc.invoice_scope_records(ledger, sc.select_scope(ledger, INV, fingerprint=FP))
    assert [r["invoice_number"] for r in records] == ["I1"] and scope.billing_changed == {"I1"}


# --- the plan fingerprint -------------------------------------------------------------------------

def test_frame_digest_follows_content_not_row_order():
    frame = pd.DataFrame({"id": [2, 1, 3], "origin_id": ["B", None, "C"],
                          "is_active": [True, True, False]})
    same = frame.iloc[[2, 0, 1]]
    assert sc.frame_digest(frame) == sc.frame_digest(same)
    renamed = frame.assign(origin_id=["B", "A", "C"])
    assert sc.frame_digest(frame) != sc.frame_digest(renamed)
    assert sc.frame_digest(frame) != sc.frame_digest(frame.iloc[:2])
    odd = pd.DataFrame({"id": [1], "tags": [["a"]]})  # unhashable cells still digest
    assert sc.frame_digest(odd) != sc.frame_digest(odd.assign(tags=[["b"]]))
    assert sc.frame_digest(None) == "none"


def test_commitment_fingerprint_names_each_part():
    frames = {"vendors": pd.DataFrame({"id": [1], "origin_id": ["S1"]})}
    base = sc.commitment_fingerprint("abc", "", frames, ("project_number", "Draft"))
    assert set(base) == {"mapping", "Procore reference data", "settings", "code"}
    assert base == sc.commitment_fingerprint("abc", "", frames, ("project_number", "Draft"))
    other_vendor = {"vendors": pd.DataFrame({"id": [1, 2], "origin_id": ["S1", "S2"]})}
    changes = {
        "mapping": sc.commitment_fingerprint("abd", "", frames, ("project_number", "Draft")),
        "Procore reference data": sc.commitment_fingerprint("abc", "", other_vendor,
                                                            ("project_number", "Draft")),
        "settings": sc.commitment_fingerprint("abc", "", frames, ("project_number", "Approved")),
    }
    for part, fingerprint in changes.items():
        assert [k for k in base if base[k] != fingerprint[k]] == [part]
    assert sc.commitment_fingerprint("abc", "X,1", frames, ("project_number", "Draft")
                                     )["mapping"] != base["mapping"]  # the project map
    assert sc.code_version() == sc.code_version() and len(sc.code_version()) == 16


def test_read_concurrency_setting():
    assert load_settings({}).x3.read_concurrency == 4
    assert load_settings({"MLC_X3_READ_CONCURRENCY": "2"}).x3.read_concurrency == 2
    for bad in ("0", "many"):
        with pytest.raises(ValueError, match="MLC_X3_READ_CONCURRENCY"):
            load_settings({"MLC_X3_READ_CONCURRENCY": bad})


def test_scope_describe_counts_each_key_once():
    now = datetime.now(UTC)
    scope = sc.StagingScope(PO, now, False, since=now - timedelta(minutes=5),
                            changed=frozenset({"A", "B"}), unsettled=frozenset({"B", "C"}))
    assert scope.keys == {"A", "B", "C"}
    assert scope.describe() == "changed only: 2 changed in X3, 1 held/failed/deferred"
