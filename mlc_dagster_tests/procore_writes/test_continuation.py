"""Hand-over between bounded runs (procore_writes/continuation.py) and the breaker's pause."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mlc_dagster.ledger.store import Ledger
from mlc_dagster.procore_writes.continuation import (
    Progress,
    continuation_run_request,
    hand_over,
    lead_seconds,
    read_continuation,
    waiting_for_allowance,
)
from mlc_dagster.resources.breaker import BreakerSettings, CircuitBreaker
from mlc_dagster.resources.http_core import RateWindow
from mlc_dagster.resources.procore import NOT_BEFORE_TAG, not_before
from mlc_dagster.settings import ProgressSettings

NOW = 1_780_000_000.0


@pytest.fixture
def store(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    yield ledger
    ledger.dispose()


def paused_breaker(until: float = NOW + 3000) -> CircuitBreaker:
    breaker = CircuitBreaker(BreakerSettings())
    breaker.pause(datetime.fromtimestamp(until, UTC), "procore: rate-limit allowance used up")
    return breaker


def test_a_pause_stops_writers_without_opening_the_breaker():
    breaker = paused_breaker()
    assert breaker.stopped and breaker.is_paused and not breaker.is_open
    assert breaker.reason().startswith("Procore rate limit: allowance used up, continuing in the "
                                       "next run from ")
    for n in range(3):  # an outage during a pause still opens it, and then that is the story
        breaker.failure(f"PO{n}", "503")
    assert breaker.is_open and not breaker.is_paused
    assert breaker.reason().startswith("Procore unavailable since ")


def test_a_paused_step_records_a_continuation_the_sensor_turns_into_a_tagged_run(store):
    metadata = hand_over(store, paused_breaker(), "run-1", deferred=40, over_limit=0,
                         clock=lambda: NOW)
    assert metadata["continuing"] is True and metadata["remaining"] == 40
    continuation = read_continuation(store)
    assert continuation.after == NOW + 3000 and continuation.run_id == "run-1"

    assert continuation_run_request(store, NOW, lead=60) is None
    assert waiting_for_allowance(store, NOW, lead=60).startswith(
        "Procore's rate-limit allowance is used up until ")
    request = continuation_run_request(store, NOW + 2940, lead=60)  # one lead early
    assert not_before(request.tags) == pytest.approx(NOW + 3000)
    assert request.tags["mlc/trigger"] == "continuation" and NOT_BEFORE_TAG in request.tags
    assert request.run_key == continuation_run_request(store, NOW + 2999, lead=60).run_key
    assert waiting_for_allowance(store, NOW + 2940, lead=60) is None


def test_the_second_write_step_of_a_run_adds_to_its_continuation(store):
    breaker = paused_breaker()
    hand_over(store, breaker, "run-1", deferred=40, over_limit=0, clock=lambda: NOW)
    hand_over(store, breaker, "run-1", deferred=12, over_limit=0, clock=lambda: NOW)
    assert read_continuation(store).remaining == 52


def test_a_finished_run_clears_an_earlier_runs_continuation_only(store):
    hand_over(store, paused_breaker(), "run-1", deferred=40, over_limit=0, clock=lambda: NOW)
    idle = CircuitBreaker(BreakerSettings())
    assert hand_over(store, idle, "run-2", deferred=0, over_limit=0) == {"continuing": False}
    assert read_continuation(store) is None
    assert continuation_run_request(store, NOW + 10_000, lead=60) is None


def test_records_over_the_per_run_limit_continue_at_once(store):
    idle = CircuitBreaker(BreakerSettings())
    metadata = hand_over(store, idle, "run-1", deferred=0, over_limit=7, clock=lambda: NOW)
    assert metadata["remaining"] == 7
    assert continuation_run_request(store, NOW, lead=0) is not None


def test_the_lead_stays_well_under_the_steps_wait_cap():
    assert lead_seconds(120) == 60
    assert lead_seconds(3600) == 60
    assert lead_seconds(2) == 1


class Client:
    def __init__(self, window: RateWindow | None, calls: int) -> None:
        self.rate_window = window
        self.stats = type("Stats", (), {"total_calls": calls})()


def test_progress_reports_at_most_once_per_interval_with_window_and_eta():
    clock = {"now": NOW}
    lines: list[str] = []
    client = Client(RateWindow(600, 143, NOW + 1800), calls=1200)
    progress = Progress("commitments", 4715, lines.append, client,
                        settings=ProgressSettings(every_seconds=60, hourly_allowance=600),
                        clock=lambda: clock["now"])
    clock["now"] += 30
    progress.tick(600)
    assert lines == []
    clock["now"] += 31
    progress.tick(1200)
    assert len(lines) == 1
    assert lines[0].startswith("commitments: 1,200 of 4,715 written, 3,515 to go; rate limit: "
                               "143 of 600 calls left until ")
    facts = progress.facts(1200, clock["now"])
    # 1 call per PO; 1,200 POs in 61 s is far faster than 600/h allows: the ETA follows 600/h
    eta = datetime.strptime(facts["eta"], "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
    assert (eta.timestamp() - clock["now"]) / 3600 == pytest.approx(3515 / 600, abs=0.01)


def test_progress_has_no_eta_before_anything_was_written():
    progress = Progress("requisitions", 10, lambda _m: None, None,
                        settings=ProgressSettings(every_seconds=60), clock=lambda: NOW)
    assert "eta" not in progress.facts(0) and progress.facts(0)["remaining"] == 10


def test_a_pause_takes_the_epoch_a_wait_too_long_names():
    by_epoch = CircuitBreaker(BreakerSettings())
    by_epoch.pause(NOW + 3000, "procore: rate-limit allowance used up")
    assert by_epoch.paused_until == paused_breaker().paused_until
    by_epoch.pause(NOW + 10, "later, shorter")  # never moves back; the first cause stays
    assert by_epoch.paused_until == paused_breaker().paused_until
    assert "(procore: rate-limit allowance used up)" in by_epoch.reason()
