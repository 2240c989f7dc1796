"""The accountants' GL -> cost code CSV and the X3 -> Procore project match rules."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

import mlc_dagster
from mlc_dagster.defs.purchase_orders.gl_map import (
    GlMapping,
    MappingError,
    match_projects,
    parse_gl_mapping,
    parse_project_map,
    validate_against_procore,
)
from mlc_dagster.resources.sage_x3_client import MappingKey
from mlc_dagster.settings import load_settings

BASIC = (
    "gl_account,cost_code,cost_type\n"
    "601100,01-100,O\n"
    "601200,02-200,S\n"
    "602100,03-100,M\n"
)
SAMPLE_CSV = Path(mlc_dagster.__file__).parent / "sample_data" / "gl_cost_code_map.csv"


def rows(mapping: GlMapping) -> list[tuple]:
    return list(mapping.table[["gl_account", "cost_code", "cost_type", "project"]]
                .itertuples(index=False, name=None))


# --- header ------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "601100,01-100,O\n601200,02-200,S\n",  # data without a header
    "account,code\n601100,01-100\n",
    "gl_account,cost_type\n601100,O\n",  # cost_code column missing
    "gl_account\tcost_code\n601100\t01-100\n",  # tab separated: one unknown column
])
def test_missing_header_is_a_mapping_error_naming_line_1(text):
    with pytest.raises(MappingError) as exc:
        parse_gl_mapping(text, source="map.csv")
    message = str(exc.value)
    assert message.startswith("map.csv line 1:")
    assert "gl_account,cost_code" in message  # tells the user what is expected


def test_missing_header_names_the_missing_columns():
    with pytest.raises(MappingError, match=r"lacks \['cost_code'\]"):
        parse_gl_mapping("gl_account,cost_type\n601100,O\n")


@pytest.mark.parametrize("text", ["", "   \n\n", "\ufeff", "\ufeff\n"])
def test_empty_file_is_a_mapping_error(text):
    with pytest.raises(MappingError, match="is empty"):
        parse_gl_mapping(text, source="map.csv")


def test_mapping_error_is_a_value_error():
    assert issubclass(MappingError, ValueError)


def test_header_is_case_and_space_insensitive():
    mapping = parse_gl_mapping(" GL_Account , Cost_Code ,COST_TYPE\n601100,01-100,O\n")
    assert rows(mapping) == [("601100", "01-100", "O", "")]
    assert mapping.problems == []


def test_cost_type_and_project_columns_are_optional():
    mapping = parse_gl_mapping("gl_account,cost_code\n601100,01-100\n")
    assert rows(mapping) == [("601100", "01-100", "", "")]
    assert list(mapping.table.columns) == ["gl_account", "cost_code", "cost_type", "project",
                                           "line"]


def test_unknown_columns_are_reported_on_line_1_and_ignored():
    mapping = parse_gl_mapping("gl_account,cost_code,notes,owner\n601100,01-100,hello,ann\n")
    assert rows(mapping) == [("601100", "01-100", "", "")]
    assert mapping.problems == []  # a warning, not an error: it must not block writes
    assert mapping.warnings == [
        "mapping CSV line 1: ignoring unknown column(s) ['notes', 'owner']"]


def test_columns_may_come_in_any_order():
    mapping = parse_gl_mapping("cost_type,cost_code,gl_account\nO,01-100,601100\n")
    assert rows(mapping) == [("601100", "01-100", "O", "")]


# --- spreadsheet leniency ----------------------------------------------------------------

def test_bom_is_ignored():
    plain = parse_gl_mapping(BASIC)
    bom = parse_gl_mapping("\ufeff" + BASIC)
    assert rows(bom) == rows(plain)
    assert bom.problems == []
    assert bom.fingerprint == plain.fingerprint


def test_semicolon_delimiter_from_european_excel():
    text = BASIC.replace(",", ";")
    mapping = parse_gl_mapping("\ufeff" + text)
    assert rows(mapping) == rows(parse_gl_mapping(BASIC))
    assert mapping.problems == []


def test_semicolon_file_may_contain_commas_inside_cells():
    mapping = parse_gl_mapping("gl_account;cost_code;cost_type;project\n"
                               "601100;01-100;O;Tower, Phase 1\n")
    assert rows(mapping) == [("601100", "01-100", "O", "Tower, Phase 1")]


def test_crlf_line_endings():
    mapping = parse_gl_mapping(BASIC.replace("\n", "\r\n"))
    assert rows(mapping) == rows(parse_gl_mapping(BASIC))
    assert mapping.table["line"].tolist() == [2, 3, 4]


@pytest.mark.parametrize("cell", [
    "601100",
    " 601100 ",
    "601100.0",  # Excel number formatting
    '="601100"',  # Excel text-formula export, unquoted
    '"=""601100"""',  # the same, CSV-quoted as Excel writes it
    '"601100"',
    '"601100.0"',
])
def test_excel_quirks_in_gl_account_are_undone(cell):
    mapping = parse_gl_mapping(f"gl_account,cost_code\n{cell},01-100\n")
    assert mapping.table["gl_account"].tolist() == ["601100"]
    assert mapping.problems == []


@pytest.mark.parametrize("cell, expected", [
    ("6011.5", "6011.5"),  # a real decimal is not an Excel artefact
    ("ABC.0", "ABC.0"),  # only digits lose a '.0'
    ("0601100", "0601100"),  # leading zeros kept
])
def test_only_excel_artefacts_are_cleaned(cell, expected):
    mapping = parse_gl_mapping(f"gl_account,cost_code\n{cell},01-100\n")
    assert mapping.table["gl_account"].tolist() == [expected]


def test_surrounding_spaces_are_stripped_from_every_cell():
    mapping = parse_gl_mapping("gl_account,cost_code,cost_type,project\n"
                               " 601100 ,  01-100 , O ,  P1001 \n")
    assert rows(mapping) == [("601100", "01-100", "O", "P1001")]


def test_trailing_blank_rows_and_excel_comma_rows_are_skipped():
    mapping = parse_gl_mapping(BASIC + ",,\n,,\n\n   ,  ,  \n")
    assert rows(mapping) == rows(parse_gl_mapping(BASIC))
    assert mapping.problems == []


def test_semicolon_file_with_trailing_semicolon_rows():
    mapping = parse_gl_mapping(BASIC.replace(",", ";") + ";;\n;;\n\n")
    assert rows(mapping) == rows(parse_gl_mapping(BASIC))
    assert mapping.problems == []


def test_trailing_blank_rows_produce_no_problems():
    mapping = parse_gl_mapping(BASIC + ",,\n,,,\n\n  \n")
    assert mapping.problems == []
    assert len(mapping.table) == 3


def test_blank_rows_in_the_middle_keep_true_line_numbers():
    mapping = parse_gl_mapping("gl_account,cost_code\n601100,01-100\n,,\n\n601200,02-200\n")
    assert mapping.table["line"].tolist() == [2, 5]


def test_short_rows_are_padded():
    mapping = parse_gl_mapping("gl_account,cost_code,cost_type,project\n601100,01-100\n")
    assert rows(mapping) == [("601100", "01-100", "", "")]


# --- strictness where mistakes cost money ----------------------------------------------

def test_blank_gl_account_names_the_line():
    mapping = parse_gl_mapping("gl_account,cost_code\n601100,01-100\n,02-200\n601300,03-100\n",
                               source="gl.csv")
    assert mapping.problems == ["gl.csv line 3: gl_account is blank"]
    assert mapping.table["gl_account"].tolist() == ["601100", "601300"]


def test_blank_cost_code_names_the_line_and_the_account():
    mapping = parse_gl_mapping("gl_account,cost_code,cost_type\n601100,01-100,O\n"
                               "601200,  ,S\n", source="gl.csv")
    assert mapping.problems == ["gl.csv line 3: cost_code is blank for GL account 601200"]
    assert mapping.table["gl_account"].tolist() == ["601100"]


def test_excel_blank_formula_counts_as_blank_gl_account():
    mapping = parse_gl_mapping('gl_account,cost_code\n="",01-100\n')
    assert mapping.problems == ["mapping CSV line 2: gl_account is blank"]
    assert mapping.table.empty


def test_duplicate_gl_account_names_both_lines_and_first_wins():
    mapping = parse_gl_mapping("gl_account,cost_code\n601100,01-100\n601200,02-200\n"
                               "601100,09-900\n", source="gl.csv")
    assert mapping.problems == [
        "gl.csv line 4: duplicate GL account 601100 (first mapped on line 2)"]
    assert rows(mapping) == [("601100", "01-100", "", ""), ("601200", "02-200", "", "")]


def test_duplicate_detected_after_excel_cleanup():
    mapping = parse_gl_mapping('gl_account,cost_code\n601100.0,01-100\n="601100",02-200\n')
    assert mapping.problems == [
        "mapping CSV line 3: duplicate GL account 601100 (first mapped on line 2)"]
    assert mapping.table["cost_code"].tolist() == ["01-100"]


def test_duplicate_for_same_project_names_the_project():
    mapping = parse_gl_mapping("gl_account,cost_code,cost_type,project\n"
                               "601100,01-100,O,\n601100,02-200,S,P1001\n601100,03-100,,P1001\n")
    assert mapping.problems == ["mapping CSV line 4: duplicate GL account 601100 for project "
                                "P1001 (first mapped on line 3)"]


def test_same_gl_for_different_projects_is_not_a_duplicate():
    mapping = parse_gl_mapping("gl_account,cost_code,project\n601100,01-100,\n"
                               "601100,02-200,P1001\n601100,03-100,P1002\n")
    assert mapping.problems == []
    assert len(mapping.table) == 3


def test_several_problems_are_all_reported_in_file_order():
    mapping = parse_gl_mapping("gl_account,cost_code,junk\n,01-100,\n601100,,\n"
                               "601200,02-200,\n601200,02-300,\n")
    assert [p.split(":")[0] for p in mapping.problems] == [
        "mapping CSV line 2", "mapping CSV line 3", "mapping CSV line 5"]
    assert [w.split(":")[0] for w in mapping.warnings] == ["mapping CSV line 1"]


# --- per-project overrides ---------------------------------------------------------------

OVERRIDES = (
    "gl_account,cost_code,cost_type,project\n"
    "601100,01-100,O,\n"
    "601200,02-200,S,\n"
    "601100,09-900,L,P1001\n"
    "603100,05-100,M,P1001\n"
)


def cost_codes(text: str, project: str | None, keys=("601100", "601200", "603100")
               ) -> dict[str, str]:
    """Mapping key -> the cost code a line of `project` gets (unmapped keys left out)."""
    lines = pd.DataFrame({"mapping_key": list(keys), "project": [project] * len(keys)})
    mapped = parse_gl_mapping(text).with_cost_codes(lines).dropna(subset=["cost_code"])
    return dict(zip(mapped["mapping_key"], mapped["cost_code"], strict=True))


def test_project_override_wins_over_general_row():
    lines = pd.DataFrame({"mapping_key": ["601100", "601200", "603100"], "project": "P1001"})
    by_key = parse_gl_mapping(OVERRIDES).with_cost_codes(lines).set_index("mapping_key")
    assert by_key.loc["601100", "cost_code"] == "09-900"
    assert by_key.loc["601100", "cost_type"] == "L"
    assert by_key.loc["601200", "cost_code"] == "02-200"  # general row still applies
    assert by_key.loc["603100", "cost_code"] == "05-100"  # project-only row
    assert by_key.index.is_unique


@pytest.mark.parametrize("project", [None, "", "P9999"])
def test_other_projects_only_see_general_rows(project):
    assert cost_codes(OVERRIDES, project) == {"601100": "01-100", "601200": "02-200"}


def test_override_row_order_in_file_does_not_matter():
    lines = OVERRIDES.splitlines()
    reordered = "\n".join([lines[0], lines[3], lines[1], lines[4], lines[2]]) + "\n"
    assert cost_codes(OVERRIDES, "P1001") == cost_codes(reordered, "P1001")


# --- fingerprint -------------------------------------------------------------------------

def test_fingerprint_is_16_hex_chars_and_stable():
    a, b = parse_gl_mapping(BASIC), parse_gl_mapping(BASIC)
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 16
    int(a.fingerprint, 16)


@pytest.mark.parametrize("variant", [
    "\ufeff" + BASIC,
    BASIC.replace(",", ";"),
    BASIC.replace("\n", "\r\n"),
    BASIC + ",,\n,,\n\n",
    BASIC.replace("601100", "601100.0"),
    BASIC.replace("601200", '="601200"'),
    BASIC.replace(",", " , "),
    "gl_account,cost_code,cost_type\n602100,03-100,M\n601100,01-100,O\n601200,02-200,S\n",
    "cost_type,gl_account,cost_code\nO,601100,01-100\nS,601200,02-200\nM,602100,03-100\n",
    BASIC + "601100,99-999,X\n",  # a rejected duplicate doesn't change what is used
], ids=["bom", "semicolon", "crlf", "trailing-blanks", "excel-.0", "excel-formula", "spaces",
        "row-order", "column-order", "rejected-duplicate"])
def test_fingerprint_ignores_presentation(variant):
    assert parse_gl_mapping(variant).fingerprint == parse_gl_mapping(BASIC).fingerprint


@pytest.mark.parametrize("variant", [
    BASIC.replace("01-100", "01-500"),
    BASIC.replace(",O\n", ",E\n"),
    BASIC + "603100,05-100,M\n",
    BASIC.replace("602100,03-100,M\n", ""),
    BASIC.replace("gl_account,cost_code,cost_type", "gl_account,cost_code,cost_type,project")
    + "601100,09-900,L,P1001\n",
], ids=["cost-code", "cost-type", "row-added", "row-removed", "override-added"])
def test_fingerprint_changes_with_content(variant):
    assert parse_gl_mapping(variant).fingerprint != parse_gl_mapping(BASIC).fingerprint


def test_seed_mapping_matches_shipped_sample_and_has_no_problems(seed, seed_mapping):
    sample = parse_gl_mapping(SAMPLE_CSV.read_text(encoding="utf-8"), source=str(SAMPLE_CSV))
    assert sample.problems == [] and seed_mapping.problems == []
    assert sample.fingerprint == seed_mapping.fingerprint
    assert len(sample.table) == 27
    assert not {"619900", "621000", "628800"} & set(sample.table["gl_account"])


# --- validation against Procore ------------------------------------------------------------

def test_seed_mapping_is_valid_against_seed_procore(seed_mapping, seed_frames):
    assert validate_against_procore(seed_mapping, seed_frames.cost_codes,
                                    seed_frames.line_item_types) == []


def test_validate_names_line_account_and_unknown_cost_code(seed_frames):
    mapping = parse_gl_mapping("gl_account,cost_code,cost_type\n601100,01-100,O\n"
                               "601200,99-999,S\n")
    assert validate_against_procore(mapping, seed_frames.cost_codes,
                                    seed_frames.line_item_types) == [
        "line 3: GL account 601200 maps to cost code '99-999', which does not exist in Procore"]


def test_validate_names_line_account_and_unknown_cost_type(seed_frames):
    mapping = parse_gl_mapping("gl_account,cost_code,cost_type\n601100,01-100,O\n"
                               "\n601200,02-200,Z\n")
    assert validate_against_procore(mapping, seed_frames.cost_codes,
                                    seed_frames.line_item_types) == [
        "line 4: GL account 601200 maps to cost type 'Z', which does not exist in Procore"]


def test_validate_reports_both_problems_of_one_row(seed_frames):
    mapping = parse_gl_mapping("gl_account,cost_code,cost_type\n601100,XX,Q\n")
    errors = validate_against_procore(mapping, seed_frames.cost_codes,
                                      seed_frames.line_item_types)
    assert len(errors) == 2
    assert all(e.startswith("line 2: GL account 601100") for e in errors)


def test_blank_cost_type_needs_no_procore_type(seed_frames):
    mapping = parse_gl_mapping("gl_account,cost_code\n601100,01-100\n")
    assert validate_against_procore(mapping, seed_frames.cost_codes,
                                    seed_frames.line_item_types.iloc[:0]) == []


def test_validate_with_empty_procore_frames_flags_every_row():
    mapping = parse_gl_mapping(BASIC)
    empty_codes = pd.DataFrame(columns=["project_id", "id", "code", "full_code", "name"])
    empty_types = pd.DataFrame(columns=["id", "code", "name", "base_type"])
    errors = validate_against_procore(mapping, empty_codes, empty_types)
    assert len(errors) == 6
    assert [e.split(":")[0] for e in errors] == ["line 2"] * 2 + ["line 3"] * 2 + ["line 4"] * 2


# --- explicit project table --------------------------------------------------------------

def test_parse_project_map():
    text = ("\ufeff X3_Project , Procore_Project \nP-A, 562949953500001 \n"
            "P-B,P1002\n,\n   ,  \n")
    assert parse_project_map(text) == {"P-A": "562949953500001", "P-B": "P1002"}


@pytest.mark.parametrize("text, line", [
    ("x3_project,procore_project\nP-A,1\nP-C,\n", 3),
    ("x3_project,procore_project\nP-A,1\nP-A,2\n", 3),
])
def test_project_map_rejects_half_rows_and_duplicates_naming_the_line(text, line):
    with pytest.raises(MappingError, match=f"line {line}"):
        parse_project_map(text)


@pytest.mark.parametrize("text", ["", "x3,procore\nA,1\n", "procore_project,x3_project\n1,A\n"])
def test_project_map_needs_its_header(text):
    with pytest.raises(MappingError, match=r"map\.csv line 1: expected header"):
        parse_project_map(text, source="map.csv")


# --- project matching ------------------------------------------------------------------------

BIG = 562949953421312  # 2**49, a Procore multi-region id


@pytest.fixture
def projects():
    return pd.DataFrame({
        "id": [BIG + 1, BIG + 2, BIG + 3],
        "name": ["Tower", "Depot", "School"],
        "project_number": ["P1001", "P1002", None],
        "origin_id": [None, "X3-P1002", "JOB-7"],
        "active": [True, True, True],
    })


def _ids(series: pd.Series) -> list:
    return [None if (isinstance(v, float) and math.isnan(v)) else int(v) for v in series]


def test_match_by_project_number(projects):
    codes = pd.Series(["P1001", "P1002", "P9999", "JOB-7", ""])
    assert _ids(match_projects(codes, projects, "project_number")) == [
        BIG + 1, BIG + 2, None, None, None]


def test_match_by_origin_id(projects):
    codes = pd.Series(["X3-P1002", "JOB-7", "P1001", "None", "nan"])
    assert _ids(match_projects(codes, projects, "origin_id")) == [
        BIG + 2, BIG + 3, None, None, None]


def test_match_by_table_accepts_ids_and_numbers(projects):
    table = {"OLD-1": str(BIG + 3), "OLD-2": "P1001", "OLD-3": "nope", "OLD-4": "999"}
    codes = pd.Series(["OLD-1", "OLD-2", "OLD-3", "OLD-4", "P1001"])
    assert _ids(match_projects(codes, projects, "table", table)) == [
        BIG + 3, BIG + 1, None, None, None]  # unlisted codes do not fall back to numbers


def test_match_by_table_without_table_matches_nothing(projects):
    assert _ids(match_projects(pd.Series(["P1001"]), projects, "table")) == [None]


def test_match_from_parsed_project_map(projects):
    table = parse_project_map(f"x3_project,procore_project\nLEGACY,{BIG + 2}\n")
    assert _ids(match_projects(pd.Series(["LEGACY"]), projects, "table", table)) == [BIG + 2]


def test_matched_ids_above_2_pow_32_are_exact_even_with_misses(projects):
    result = match_projects(pd.Series(["P1001", "nope", "P1002"]), projects, "project_number")
    assert int(result.iloc[0]) == BIG + 1 and int(result.iloc[2]) == BIG + 2


def test_unknown_match_rule_is_rejected(projects):
    with pytest.raises(ValueError, match="unknown project match rule 'fuzzy'"):
        match_projects(pd.Series(["P1001"]), projects, "fuzzy")


def test_every_seed_project_matches_by_number(seed, seed_frames):
    codes = pd.Series([p["PJTNUM"] for p in seed.x3_projects])
    result = match_projects(codes, seed_frames.projects, "project_number")
    assert result.notna().all()
    assert _ids(result) == [p["id"] for p in seed.projects]


# --- MLC_MAPPING_KEY: GL account or dimension value -------------------------------------------

DIMENSION_KEY = MappingKey.parse("dimension:CST")


def test_a_dimension_keyed_table_is_read_with_a_dimension_key():
    mapping = parse_gl_mapping("dimension,cost_code,cost_type\nC601100,01-100,O\nC602300,03-300,\n",
                               key=DIMENSION_KEY)
    assert mapping.problems == []
    assert mapping.table["gl_account"].tolist() == ["C601100", "C602300"]  # the key column
    assert mapping.key == DIMENSION_KEY and mapping.key.label == "dimension CST"


@pytest.mark.parametrize("text, key, fix", [
    ("gl_account,cost_code\n601100,01-100\n", DIMENSION_KEY, "MLC_MAPPING_KEY=gl_account"),
    ("dimension,cost_code\nC601100,01-100\n", MappingKey(), "MLC_MAPPING_KEY=dimension:<TYPE>"),
])
def test_a_table_keyed_the_other_way_is_refused_naming_the_setting(text, key, fix):
    with pytest.raises(MappingError, match="MLC_MAPPING_KEY") as info:
        parse_gl_mapping(text, source="map.csv", key=key)
    assert fix in str(info.value)


def test_dimension_problems_name_the_dimension():
    mapping = parse_gl_mapping("dimension,cost_code\nC1,01-100\nC1,02-200\n,03-300\n",
                               key=DIMENSION_KEY)
    assert any("duplicate dimension CST C1" in p for p in mapping.problems)
    assert any("dimension is blank" in p for p in mapping.problems)


def test_the_key_is_part_of_the_fingerprint_but_gl_fingerprints_do_not_change():
    gl = parse_gl_mapping("gl_account,cost_code\nC1,01-100\n", key=MappingKey())
    dim = parse_gl_mapping("dimension,cost_code\nC1,01-100\n", key=DIMENSION_KEY)
    assert gl.fingerprint != dim.fingerprint
    assert gl.fingerprint == parse_gl_mapping("gl_account,cost_code\nC1,01-100\n").fingerprint


def test_the_key_comes_from_the_settings():
    key = load_settings({"MLC_MAPPING_KEY": "dimension:CST"}).x3.names.mapping_key
    assert parse_gl_mapping("dimension,cost_code\nC1,01-100\n", key=key).key == DIMENSION_KEY
    with pytest.raises(ValueError, match="MLC_MAPPING_KEY=dimension needs a dimension type"):
        load_settings({"MLC_MAPPING_KEY": "dimension"})
