"""Procore segments -> X3 dimension values: desired values and the write plan (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pandas as pd

from mlc_dagster.common.payload import content_hash
from mlc_dagster.defs.dimensions.plan import (
    DimensionTypes,
    confirm_exports,
    desired_dimensions,
    plan_dimension_writes,
)
from mlc_dagster.ledger.store import RecordState

TYPES = DimensionTypes()


def frames(standard=(("01-100", "General Requirements"),), project=(), types=(("M", "Materials"),),
           jobs=(("P1001-A", "Phase A"),)):
    def df(rows):
        return pd.DataFrame(list(rows), columns=["code", "name"])
    return df(standard), df(project), df(types), df(jobs)


def states_after(desired, status="synced") -> dict[str, RecordState]:
    return {k: RecordState("dimension", k, status, content_hash=content_hash(v), summary=v,
                           payload={"file": "YMLCCCE_1.txt", "at": "2026-03-01T10:00:00Z"}
                           if status == "exported" else None)
            for k, v in desired.values.items()}


def x3_record(value, **changes) -> dict:
    return {"dimension_type": value["dimension_type"], "code": value["code"],
            "description": value["description"], "active": value["active"], **changes}


def test_each_segment_goes_to_its_configured_dimension_type():
    desired = desired_dimensions(*frames(), DimensionTypes("CC", "CT", "SJ"))
    assert set(desired.values) == {"CC~01-100", "CT~M", "SJ~P1001-A"}
    assert desired.values["CC~01-100"] == {"dimension_type": "CC", "code": "01-100",
                                           "description": "General Requirements", "active": True}


def test_an_empty_type_switches_a_segment_off():
    desired = desired_dimensions(*frames(), DimensionTypes("CCT", "", "SJB"))
    assert {v["dimension_type"] for v in desired.values.values()} == {"CCT", "SJB"}


def test_standard_name_wins_over_projects_and_differences_are_reported():
    project = [("01-100", "Gen Req (site)"), ("01-100", "Gen Req (site)"), ("02-200", "Site A"),
               ("02-200", "Site B"), ("02-200", "Site B")]
    desired = desired_dimensions(*frames(project=project), TYPES)
    assert desired.values["CCT~01-100"]["description"] == "General Requirements"
    assert desired.values["CCT~02-200"]["description"] == "Site B"  # most projects say so
    problems = " ".join(desired.problems["problem"])
    assert "cost code 01-100 has different names" in problems and "'Site A'" in problems


def test_long_descriptions_are_cut_long_codes_refused_blank_codes_skipped():
    desired = desired_dimensions(*frames(standard=[("01-100", "N" * 40), ("9" * 16, "Too long"),
                                                   ("", "No code")]), TYPES)
    assert len(desired.values["CCT~01-100"]["description"]) == 30
    assert "CCT~" + "9" * 16 not in desired.values
    problems = " ".join(desired.problems["problem"])
    assert "longer than 15 characters" in problems and "'No code' has no code" in problems


def test_new_value_is_created_then_unchanged():
    desired = desired_dimensions(*frames(), TYPES)
    plan = plan_dimension_writes(desired, {}, TYPES)
    assert sorted(w.action for w in plan.writes) == ["create", "create", "create"]
    assert plan_dimension_writes(desired, states_after(desired), TYPES).writes == []


def test_renamed_code_updates_the_description():
    before = desired_dimensions(*frames(), TYPES)
    after = desired_dimensions(*frames(standard=[("01-100", "General Conditions")]), TYPES)
    (write,) = plan_dimension_writes(after, states_after(before), TYPES).writes
    assert write.action == "update" and write.value["description"] == "General Conditions"
    assert write.changes == ["description 'General Requirements' -> 'General Conditions'"]


def test_removed_code_is_deactivated_and_comes_back_reactivated():
    before = desired_dimensions(*frames(standard=[("01-100", "A"), ("02-200", "B")]), TYPES)
    after = desired_dimensions(*frames(standard=[("01-100", "A")]), TYPES)
    states = states_after(before)
    (write,) = plan_dimension_writes(after, states, TYPES).writes
    assert (write.key, write.action, write.value["active"]) == ("CCT~02-200", "deactivate", False)
    states["CCT~02-200"] = RecordState("dimension", "CCT~02-200", "synced",
                                       content_hash=content_hash(write.value), summary=write.value)
    assert plan_dimension_writes(after, states, TYPES).writes == []  # deactivated once
    (back,) = plan_dimension_writes(before, states, TYPES).writes
    assert back.action == "reactivate" and back.value["active"] is True


def test_nothing_is_deactivated_when_procore_returns_no_values_for_a_type():
    before = desired_dimensions(*frames(), TYPES)
    empty = desired_dimensions(*frames(standard=[], types=[]), TYPES)
    plan = plan_dimension_writes(empty, states_after(before), TYPES)
    assert [w.action for w in plan.writes] == []
    assert len(plan.refused) == 2 and "not deactivating" in plan.refused[0]


def test_values_of_types_no_longer_configured_are_left_alone():
    before = desired_dimensions(*frames(), TYPES)
    other = DimensionTypes("CC2", "CTY", "SJB")
    plan = plan_dimension_writes(desired_dimensions(*frames(), other), states_after(before), other)
    assert {(w.key, w.action) for w in plan.writes} == {("CC2~01-100", "create")}


# --- by import file: exported values are pending until X3 shows them ------------------------

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_an_exported_value_is_pending_and_never_exported_twice():
    desired = desired_dimensions(*frames(), TYPES)
    plan = plan_dimension_writes(desired, states_after(desired, "exported"), TYPES)
    assert plan.writes == [] and plan.unchanged == []
    assert sorted(plan.pending) == sorted(desired.values)


def test_a_value_changed_again_while_pending_is_exported_with_the_new_content():
    before = desired_dimensions(*frames(), TYPES)
    after = desired_dimensions(*frames(standard=[("01-100", "General Conditions")]), TYPES)
    plan = plan_dimension_writes(after, states_after(before, "exported"), TYPES)
    assert [(w.key, w.value["description"]) for w in plan.writes] == [
        ("CCT~01-100", "General Conditions")]


def test_exported_values_are_confirmed_only_when_x3_shows_what_was_exported():
    desired = desired_dimensions(*frames(), TYPES)
    states = states_after(desired, "exported")
    values = desired.values
    x3 = {"CCT~01-100": x3_record(values["CCT~01-100"]),  # imported
          "CTY~M": x3_record(values["CTY~M"], description="Old name")}  # not yet
    changes = confirm_exports(states, x3, NOW, pending_hours=24)
    assert [(c.key, c.status, c.action) for c in changes] == [("CCT~01-100", "synced", "confirm")]
    assert "after the import of YMLCCCE_1.txt" in changes[0].reason
    assert changes[0].content_hash == states["CCT~01-100"].content_hash
    synced = {k: replace(s, status="synced") for k, s in states.items()}
    assert confirm_exports(synced, x3, NOW, 24) == []  # only exported states are looked at


def test_an_export_x3_never_shows_fails_after_the_pending_window_and_is_exported_again():
    desired = desired_dimensions(*frames(), TYPES)
    states = states_after(desired, "exported")
    later = datetime(2026, 3, 2, 10, 1, tzinfo=UTC)  # 24 h and a minute after the export
    changes = confirm_exports(states, {}, later, pending_hours=24)
    assert {(c.status, c.action) for c in changes} == {("failed", "fail")}
    assert "not seen in X3 24 h after export to YMLCCCE_1.txt" in changes[0].reason
    failed = {c.key: RecordState("dimension", c.key, c.status, content_hash=c.content_hash,
                                 summary=c.summary) for c in changes}
    assert len(plan_dimension_writes(desired, failed, TYPES).writes) == 3
