"""The dimension write step's decisions before it writes (`plan_dimension_step`), and the preview
rows made from them: each row's action is the one the step records."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from mlc_dagster.defs.dimensions.assets import dimension_preview_rows, plan_dimension_step
from mlc_dagster.defs.dimensions.plan import desired_dimensions
from mlc_dagster.x3_import.settings import X3WriteSettings
from mlc_dagster_tests.dimensions.test_plan import TYPES, frames, states_after, x3_record

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def settings(monkeypatch, mode: str) -> X3WriteSettings:
    monkeypatch.setenv("MLC_X3_DIMENSION_WRITE", mode)
    return X3WriteSettings.from_env(os.environ)


def actions(step) -> dict[str, str]:
    return {row["key"]: row["action"] for row in dimension_preview_rows(step)}


def test_by_file_new_values_are_exported_and_values_x3_holds_are_recorded_as_is(monkeypatch):
    desired = desired_dimensions(*frames(), TYPES)
    held = desired.values["CCT~01-100"]
    step = plan_dimension_step(desired, {}, {"CCT~01-100": x3_record(held)},
                               settings(monkeypatch, "import_file"), TYPES, NOW)
    assert actions(step) == {"CCT~01-100": "create", "CTY~M": "export", "SJB~P1001-A": "export"}
    assert [i.key for i in step.exports.items] == ["CTY~M", "SJB~P1001-A"] and not step.to_send
    assert "X3 already holds it" in step.recorded[0].reason


def test_by_file_an_export_x3_now_shows_is_confirmed_and_not_planned_again(monkeypatch):
    desired = desired_dimensions(*frames(), TYPES)
    states = states_after(desired, "exported")
    shown = {k: x3_record(v) for k, v in desired.values.items()}
    step = plan_dimension_step(desired, states, shown, settings(monkeypatch, "import_file"),
                               TYPES, NOW)
    assert set(actions(step).values()) == {"confirm"} and not step.plan.writes


@pytest.mark.parametrize("in_x3, action", [(False, "create"), (True, "update")])
def test_by_api_a_create_x3_already_has_is_predicted_as_the_update_the_upsert_records(
        monkeypatch, in_x3, action):
    desired = desired_dimensions(*frames(types=(), jobs=()), TYPES)
    value = desired.values["CCT~01-100"]
    x3 = {"CCT~01-100": x3_record(value, description="Old")} if in_x3 else {}
    step = plan_dimension_step(desired, {}, x3, settings(monkeypatch, "api"), TYPES, NOW)
    assert actions(step) == {"CCT~01-100": action}
    assert [c.key for c in step.to_send] == ["CCT~01-100"] and not step.exports.items
