"""Numeric settings from the environment: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import pytest

from mlc_dagster.settings import env_float, env_int


def test_numeric_settings_default_parse_and_name_the_variable_when_bad(monkeypatch):
    monkeypatch.delenv("MLC_TEST_NUMBER", raising=False)
    assert env_int("MLC_TEST_NUMBER", 7) == 7 and env_float("MLC_TEST_NUMBER", 1.5) == 1.5
    monkeypatch.setenv("MLC_TEST_NUMBER", " 42 ")
    assert env_int("MLC_TEST_NUMBER", 7) == 42 and env_float("MLC_TEST_NUMBER", 1.5) == 42.0
    monkeypatch.setenv("MLC_TEST_NUMBER", "2.5")
    with pytest.raises(ValueError, match=r"MLC_TEST_NUMBER must be a whole number, got '2.5'"):
        env_int("MLC_TEST_NUMBER", 7)
    assert env_float("MLC_TEST_NUMBER", 1.5) == 2.5
    monkeypatch.setenv("MLC_TEST_NUMBER", "lots")
    with pytest.raises(ValueError, match=r"MLC_TEST_NUMBER must be a number, got 'lots'"):
        env_float("MLC_TEST_NUMBER", 1.5)
