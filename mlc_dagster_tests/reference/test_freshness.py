"""The reference-data reuse window follows the fallback schedule (issue #15, part 2).

Before, the PO sync reused Procore reference data for 600 s while the fallback schedule ran
every 900 s, so every fallback run re-read it (about 24 calls at 20 projects). The window is
now derived from MLC_SYNC_CRON plus a margin. These tests judge reuse on an injected clock,
not with sleeps.
"""

import time

import dagster as dg
import pandas as pd
import pytest

from mlc_dagster.defs.reference import freshness
from mlc_dagster.defs.reference.freshness import READ_AT, reuse_refusal
from mlc_dagster.defs.reference.settings import (
    DEFAULT_SYNC_CRON,
    ReferenceSettings,
    cron_longest_gap_seconds,
    reuse_window_seconds,
)
from mlc_dagster.settings import load_settings

T0 = 1_800_000_000.0  # any instant: the rule only looks at differences


def test_default_window_is_the_fallback_gap_plus_half():
    settings = ReferenceSettings.from_env({})
    assert settings.max_age_seconds == 900 + 450  # */15 -> 900 s, plus half a gap
    assert settings.max_read_age_seconds == 3600 + 1800  # the hourly reference job's gap
    assert ReferenceSettings.from_env({"MLC_SYNC_CRON": "*/5 * * * *"}).max_age_seconds == 450
    assert ReferenceSettings.from_env({"MLC_SYNC_CRON": "0 2 * * *"}).max_age_seconds == 129600
    # An explicit setting wins; the read cap never drops below it.
    explicit = ReferenceSettings.from_env({"MLC_REFERENCE_MAX_AGE_SECONDS": "7200"})
    assert (explicit.max_age_seconds, explicit.max_read_age_seconds) == (7200, 7200)
    assert ReferenceSettings.from_env({"MLC_REFERENCE_MAX_AGE_SECONDS": ""}).max_age_seconds \
        == 1350  # set but empty (.env.example): the derived default
    with pytest.raises(ValueError, match="MLC_REFERENCE_MAX_AGE_SECONDS"):
        ReferenceSettings.from_env({"MLC_REFERENCE_MAX_AGE_SECONDS": "ten minutes"})


def test_default_sync_cron_is_the_fallback_schedules_default(monkeypatch):
    monkeypatch.delenv("MLC_SYNC_CRON", raising=False)
    assert DEFAULT_SYNC_CRON == load_settings().automation.sync_cron


def test_the_settings_read_the_process_environment(monkeypatch):
    monkeypatch.setenv("MLC_SYNC_CRON", "*/30 * * * *")
    monkeypatch.delenv("MLC_REFERENCE_MAX_AGE_SECONDS", raising=False)
    assert load_settings().reference.max_age_seconds == 2700


@pytest.mark.parametrize(("cron", "gap"), [
    ("*/15 * * * *", 900), ("0 * * * *", 3600), ("@hourly", 3600), ("0 2 * * *", 86400),
    ("0 9,17 * * *", 16 * 3600),
    ("*/10 8-17 * * 1-5", (2 * 24 + 14) * 3600 + 10 * 60),  # Fri 17:50 -> Mon 08:00
    ("0 0 1 * *", 31 * 86400), ("30 6 * * mon", 7 * 86400),
])
def test_cron_gap_is_the_longest_time_between_ticks(cron, gap):
    assert cron_longest_gap_seconds(cron) == gap


def test_an_unreadable_cron_counts_as_the_default_gap():
    assert cron_longest_gap_seconds("0 0 L * *") is None
    assert reuse_window_seconds("0 0 L * *") == 1350  # too short at worst: reads, never stale


def test_a_fallback_run_900s_after_the_last_read_reuses_it():
    settings = ReferenceSettings.from_env({})
    assert reuse_refusal(T0 + 900, T0, T0, settings) is None
    # ... also when it starts late, queued behind another run ...
    assert reuse_refusal(T0 + 1300, T0, T0, settings) is None
    # ... but not after a missed tick.
    assert "reuse window is 1350s" in reuse_refusal(T0 + 1800, T0, T0, settings)


def test_the_old_600s_window_fails_the_same_fallback_run():
    old = ReferenceSettings.from_env({"MLC_REFERENCE_MAX_AGE_SECONDS": "600"})
    assert "reuse window is 600s" in reuse_refusal(T0 + 900, T0, T0, old)


def test_runs_passing_a_read_on_never_make_it_older_than_the_read_cap():
    settings = ReferenceSettings.from_env({})
    read_at, last_at = T0, T0
    reused = 0
    for tick in range(1, 12):  # a fallback run every 900 s, each reusing the last one
        now = T0 + 900 * tick
        if reuse_refusal(now, last_at, read_at, settings) is None:
            reused += 1
        else:
            assert "the oldest reused is 5400s" in reuse_refusal(now, last_at, read_at, settings)
            read_at = now  # read afresh
        last_at = now
    assert reused == 10  # 11 fallback runs: one fresh read (at 5,400 s), 10 reuses


def test_reuse_off():
    off = ReferenceSettings.from_env({"MLC_REFERENCE_MAX_AGE_SECONDS": "0"})
    assert reuse_refusal(T0 + 1, T0, T0, off) == "reuse is off (MLC_REFERENCE_MAX_AGE_SECONDS=0)"


def test_a_dagster_asset_reuses_across_a_fallback_gap_on_a_moved_clock(tmp_path, monkeypatch):
    """The rule wired into Dagster: the latest materialisation, its read time passed on."""
    monkeypatch.delenv("MLC_REFERENCE_MAX_AGE_SECONDS", raising=False)
    monkeypatch.delenv("MLC_SYNC_CRON", raising=False)
    reads = []

    @dg.asset
    def reference_list(context: dg.AssetExecutionContext) -> dg.Output[pd.DataFrame]:
        if (reused := freshness.recent_materialization(
                context, load_settings().reference, context.asset_key)) is not None:
            return reused
        reads.append(1)
        return dg.Output(pd.DataFrame({"id": [1, 2]}))

    io = {"io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path))}
    with dg.instance_for_test() as instance:
        def run(later: float) -> dict:
            monkeypatch.setattr(freshness, "clock", lambda: time.time() + later)
            result = dg.materialize([reference_list], instance=instance, resources=io)
            event = result.get_asset_materialization_events()[0]
            return event.step_materialization_data.materialization.metadata

        run(0)
        first = instance.get_latest_materialization_event(dg.AssetKey("reference_list"))
        reused = run(900)  # the next fallback tick
        assert len(reads) == 1 and "reused_from_run" in reused
        assert reused[READ_AT].value == pytest.approx(first.timestamp)
        assert reused["age_seconds"].value >= 900
        run(1400)  # a missed tick: read again
        assert len(reads) == 2
