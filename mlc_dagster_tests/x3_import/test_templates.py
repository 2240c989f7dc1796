"""X3 import files: template layouts, file text, atomic writes, ledger trail, settings."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from mlc_dagster.ledger.store import Change, Ledger
from mlc_dagster.x3_import.files import (
    ExportBatch,
    ExportItem,
    file_name,
    is_stale,
    write_atomically,
    write_batches,
)
from mlc_dagster.x3_import.settings import X3WriteSettings, parse_defaults
from mlc_dagster.x3_import.templates import (
    ImportFileError,
    describe,
    dimension_template,
    problems,
    render,
    supplier_template,
    supplier_update_template,
    yes_no,
)

NOW = datetime(2026, 3, 1, 10, 15, 0, tzinfo=UTC)
SUPPLIER_B = {"BPSNUM": "PC1A", "BPRNAM": "Harbor Crane", "BPRSHO": "Harbor", "BSGCOD": "SUP",
              "ENAFLG": 2, "LAN": "ENG", "TSSCOD(0)": "CON", "ACCCOD": "STD", "VACBPR": "NOR",
              "PTE": "30NET", "BPAADD": "MAIN"}
SUPPLIER_A = {"BPAADD": "MAIN", "BPAADDLIG(0)": "1 Dock Road", "POSCOD": "L3 4AA",
              "CTY": "Liverpool", "CRY": "GB", "TEL(0)": "", "WEB(0)": "ops@harbor.example"}


@pytest.fixture
def ledger(tmp_path):
    store = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield store
    store.dispose()


def test_dimension_file_is_one_semicolon_record_per_value_ending_in_crlf():
    text = render(dimension_template(), [
        [(None, {"DIE": "CCT", "CCE": "01-100", "DES": "General Requirements", "ENAFLG": 2})],
        [(None, {"DIE": "SJB", "CCE": "P1-A", "DES": "Phase A", "ENAFLG": yes_no(False)})]])
    assert text == "CCT;01-100;General Requirements;2\r\nSJB;P1-A;Phase A;1\r\n"


def test_supplier_file_has_a_typed_header_record_then_its_address_in_template_order():
    text = render(supplier_template(), [[("B", SUPPLIER_B), ("A", SUPPLIER_A)]])
    assert text == ("B;PC1A;Harbor Crane;Harbor;SUP;2;ENG;CON;STD;NOR;30NET;MAIN\r\n"
                    "A;MAIN;1 Dock Road;L3 4AA;Liverpool;GB;;ops@harbor.example\r\n")
    assert render(supplier_update_template(), [[("B", {"BPSNUM": "SUP001", "ENAFLG": 1})]]) \
        == "B;SUP001;1\r\n"


@pytest.mark.parametrize("value, words", [
    ("Smith; Jones", "contains the file's separator"),
    ("Line\r\nbreak", "contains the file's separator"),
    ("N" * 31, "is 31 characters, X3 allows 30"),
])
def test_a_value_the_file_cannot_carry_is_refused_never_cut_or_escaped(value, words):
    records = [(None, {"DIE": "CCT", "CCE": "01", "DES": value, "ENAFLG": 2})]
    assert any(words in p for p in problems(dimension_template(), records))
    with pytest.raises(ImportFileError, match=words):
        render(dimension_template(), [records])


def test_unknown_fields_record_types_and_bare_booleans_are_refused():
    template = supplier_template()
    assert "fields NOPE are not in template YMLCBPS" in problems(
        template, [("B", {**SUPPLIER_B, "NOPE": 1})])
    assert problems(template, [("A", SUPPLIER_A)])[0].startswith("an instance must start")
    with pytest.raises(ImportFileError, match="local-menu"):
        render(dimension_template(), [[(None, {"DIE": "C", "CCE": "1", "DES": "d",
                                               "ENAFLG": True})]])


def test_describe_gives_the_gesaoe_set_up_field_by_field():
    text = describe(supplier_template("ZBPS"))
    assert "Template `ZBPS` — object `BPS`" in text and "CR+LF" in text
    assert "| B | 2 | BPSUPPLIER | BPSNUM | 15 |" in text  # position 1 is the record type
    assert "| A | 8 | BPADDRESS | WEB(0) | 80 |" in text


def test_files_appear_whole_under_a_per_run_name_and_are_never_overwritten(tmp_path):
    name = file_name(dimension_template(), NOW, "0123456789abcdef")
    assert name == "YMLCCCE_20260301T101500Z_01234567.txt"
    path = write_atomically(tmp_path / "in", name, b"CCT;1;x;2\r\n")
    assert path.read_bytes() == b"CCT;1;x;2\r\n"
    assert [p.name for p in (tmp_path / "in").iterdir()] == [name]  # no temporary left
    with pytest.raises(FileExistsError):
        write_atomically(tmp_path / "in", name, b"other")
    assert path.read_bytes() == b"CCT;1;x;2\r\n"


def test_every_exported_record_is_pending_in_the_ledger_with_an_export_event_naming_the_file(
        ledger, tmp_path):
    change = Change(entity="dimension", key="CCT~01", status="synced", action="create",
                    reason="CCT~01: 'General'", summary={"code": "01"})
    batch = ExportBatch(dimension_template(), [ExportItem(
        "dimension", "CCT~01", [(None, {"DIE": "CCT", "CCE": "01", "DES": "General",
                                        "ENAFLG": 2})], change)])
    written = write_batches([batch, ExportBatch(supplier_template())], tmp_path, "run-1", ledger,
                            now=NOW)
    assert [(w.template, w.records, w.lines) for w in written] == [("YMLCCCE", 1, 1)]
    assert (tmp_path / "YMLCCCE_20260301T101500Z_run-1.txt").read_bytes() == b"CCT;01;General;2\r\n"
    state = ledger.states("dimension")["CCT~01"]
    assert state.status == "exported"
    assert state.payload["file"] == "YMLCCCE_20260301T101500Z_run-1.txt"
    assert state.payload["at"] == "2026-03-01T10:15:00Z"
    (event,) = ledger.events("dimension", "CCT~01")
    assert event["action"] == "export" and "YMLCCCE_20260301T101500Z_run-1.txt" in event["reason"]
    assert "pending until X3 imports it" in event["reason"]
    assert write_batches([ExportBatch(dimension_template())], tmp_path, "run-2", ledger) == []


def test_a_batch_is_written_once_even_when_the_file_step_runs_again(ledger, tmp_path):
    """The file asset materialised again (or an overlapping run) with the same planned batch:
    no second file, no second export event. A stale export of the same content, planned after
    it, is written again."""
    change = Change(entity="dimension", key="CCT~01", status="synced", action="create",
                    reason="CCT~01: 'General'", content_hash="h1")
    item = ExportItem("dimension", "CCT~01", [(None, {"DIE": "CCT", "CCE": "01", "DES": "General",
                                                     "ENAFLG": 2})], change)
    batch = ExportBatch(dimension_template(), [item], planned_at=NOW)
    assert len(write_batches([batch], tmp_path, "run-1", ledger, now=NOW)) == 1
    later = NOW.replace(minute=16)
    assert write_batches([batch], tmp_path, "run-2", ledger, now=later) == []
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".txt"] == [
        "YMLCCCE_20260301T101500Z_run-1.txt"]
    assert [e["action"] for e in ledger.events("dimension", "CCT~01")] == ["export"]
    replanned = ExportBatch(dimension_template(), [item], planned_at=NOW.replace(day=3))
    (again,) = write_batches([replanned], tmp_path, "run-3", ledger, now=NOW.replace(day=3))
    assert again.records == 1 and len(ledger.events("dimension", "CCT~01")) == 2


def test_stale_means_exported_longer_ago_than_the_pending_window():
    payload = {"at": "2026-03-01T10:15:00Z"}
    assert not is_stale(payload, datetime(2026, 3, 2, 10, 0, tzinfo=UTC), 24)
    assert is_stale(payload, datetime(2026, 3, 2, 10, 16, tzinfo=UTC), 24)
    assert not is_stale({}, datetime(2030, 1, 1, tzinfo=UTC), 24)


def test_settings_default_to_import_files_as_sages_documents_require(monkeypatch, tmp_path):
    for name in ("MLC_X3_SUPPLIER_WRITE", "MLC_X3_DIMENSION_WRITE", "MLC_X3_IMPORT_DIR",
                 "MLC_X3_NEW_SUPPLIER_DEFAULTS", "MLC_X3_DIMENSION_TEMPLATE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    settings = X3WriteSettings.from_env(os.environ)
    assert (settings.supplier_write, settings.dimension_write) == ("import_file", "import_file")
    assert settings.import_dir == tmp_path / "x3_import"
    assert settings.dimension_template.code == "YMLCCCE"
    assert settings.missing_supplier_defaults == ["BSGCOD", "LAN", "TSSCOD(0)", "ACCCOD",
                                                  "VACBPR", "PTE", "BPAADD"]
    monkeypatch.setenv("MLC_X3_DIMENSION_WRITE", "API")
    monkeypatch.setenv("MLC_X3_DIMENSION_TEMPLATE", "zcce")
    monkeypatch.setenv("MLC_X3_NEW_SUPPLIER_DEFAULTS", "bsgcod=SUP, LAN=ENG")
    settings = X3WriteSettings.from_env(os.environ)
    assert settings.dimension_write == "api" and settings.dimension_template.code == "ZCCE"
    assert settings.new_supplier_defaults == {"BSGCOD": "SUP", "LAN": "ENG"}


@pytest.mark.parametrize("name, value, words", [
    ("MLC_X3_SUPPLIER_WRITE", "soap", "MLC_X3_SUPPLIER_WRITE must be one of"),
    ("MLC_X3_NEW_SUPPLIER_DEFAULTS", "CUR=GBP", "unknown field(s) CUR"),
    ("MLC_X3_NEW_SUPPLIER_DEFAULTS", "LAN", "'LAN' is not FIELD=value"),
    ("MLC_X3_DIMENSION_TEMPLATE", "A;B", "must be an X3 template code"),
    ("MLC_X3_SUPPLIER_UPDATE_TEMPLATE", "ymlcbps", "must be different template codes"),
])
def test_bad_settings_name_the_variable(monkeypatch, name, value, words):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        X3WriteSettings.from_env(os.environ)


def test_defaults_parse_keeps_array_indexes():
    assert parse_defaults("TSSCOD(0)=CON,PTE=30NET,") == {"TSSCOD(0)": "CON", "PTE": "30NET"}
