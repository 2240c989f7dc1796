"""Query literals and stamps: what reaches a REST `where` or a GraphQL filter."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from mlc_dagster.resources.sage_x3_client import (
    filter_literal,
    graphql_literal,
    parse_stamp,
    where_literal,
)


@pytest.mark.parametrize("value, rendered", [
    ("PO1", "'PO1'"),
    ("O'Brien", "'O''Brien'"),
    ("x' or BPSNUM ne '", "'x'' or BPSNUM ne '''"),
    ("') or (1 eq 1", "''') or (1 eq 1'"),
    ("@2026-01-01@", "'@2026-01-01@'"),
    (42, "42"),
    (Decimal("12.50"), "12.50"),
    (-1.5, "-1.5"),
    (datetime(2026, 1, 5, 8, 0, 7, tzinfo=UTC), "@2026-01-05T08:00:07Z@"),
    (datetime(2026, 1, 5, 8, 0, 7), "@2026-01-05T08:00:07Z@"),
    (date(2026, 1, 5), "@2026-01-05@"),
])
def test_where_literal(value, rendered):
    assert where_literal(value) == rendered


def test_quoted_where_literal_is_always_one_token():
    """However hostile the text, the rendered literal opens and closes exactly once."""
    for text in ["'", "''", "a'b'c", "' or '1' eq '1", "x')--", "'; DROP", "\\'"]:
        rendered = where_literal(text)
        inner = rendered[1:-1]
        assert rendered[0] == rendered[-1] == "'"
        assert "'" not in inner.replace("''", "")
        assert inner.replace("''", "'") == text


@pytest.mark.parametrize("value", [None, True, float("nan"), float("inf"), Decimal("NaN"), ["a"], {"a": 1}])
def test_where_literal_refuses_what_it_cannot_render_safely(value):
    with pytest.raises((TypeError, ValueError)):
        where_literal(value)


@pytest.mark.parametrize("text", [
    "2026-01-05T08:00:07Z@ or 1 eq 1",
    "2026-01-05T08:00:07Z' or '1' eq '1",
    "yesterday", "", "2026-01-05", "2026-13-05T08:00:07Z",
])
def test_stamps_are_validated_before_they_reach_a_query(text):
    with pytest.raises(ValueError):
        parse_stamp(text)


def test_parse_stamp_normalises_to_utc():
    assert parse_stamp("2026-01-05T09:00:07+01:00") == datetime(2026, 1, 5, 8, 0, 7, tzinfo=UTC)
    assert parse_stamp("2026-01-05T08:00:07.123Z").second == 7


@pytest.mark.parametrize("value, rendered", [
    ("PO1", "'PO1'"),
    ("O'Brien", "'O\\'Brien'"),
    ("a\\b", "'a\\\\b'"),
    ("x'}, _id:{_ne:'", "'x\\'}, _id:{_ne:\\''"),
    ("line\nbreak\t\x01", "'line\\nbreak\\t\\u0001'"),
    (["A", "B'"], "['A','B\\'']"),
    (None, "null"), (True, "true"), (7, "7"),
    (datetime(2026, 1, 5, 8, 0, 7, tzinfo=UTC), "'2026-01-05T08:00:07Z'"),
])
def test_filter_literal(value, rendered):
    assert filter_literal(value) == rendered


def test_filter_literal_refuses_non_finite_numbers():
    with pytest.raises(ValueError):
        filter_literal(float("nan"))


def test_graphql_literal_escapes_strings_and_checks_names():
    assert graphql_literal({"code": 'A"B', "isActive": False, "x": None}) == \
        '{code: "A\\"B", isActive: false, x: null}'
    with pytest.raises(ValueError):
        graphql_literal({"code) { _id } evil(": "x"})
