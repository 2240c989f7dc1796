"""The Procore sandbox's two rate-limit windows with both lengths configurable (issue #15).

A benchmark compresses time for the hourly AND the spike limit together (600 per 3600/C s and
25 per 10/C s), so both window lengths are settings and may be fractions of a second. Over
real HTTP on loopback: each window binds on its own, the headers describe the window closest
to exhaustion, and X-Rate-Limit-Reset stays an integer epoch (as Procore sends it) that never
names a moment before the window really ends.
"""

from __future__ import annotations

import math
import time

from mlc_dagster_tests.sandbox.procore_helpers import (  # noqa: F401 - fixtures
    HTTP,
    api_fixture,
    sandbox_fixture,
    server_fixture,
)

SPIKE_S, HOURLY_S = 1.0, 3.0  # short enough for a test, long enough for a loaded machine


def limits(response) -> tuple[int, str, int, int]:
    """(status, X-Rate-Limit-Limit, -Remaining, -Reset) of one response."""
    reset = response.headers["X-Rate-Limit-Reset"]
    assert reset.isdigit(), f"X-Rate-Limit-Reset must be an integer epoch, got {reset!r}"
    return (response.status_code, response.headers["X-Rate-Limit-Limit"],
            int(response.headers["X-Rate-Limit-Remaining"]), int(reset))


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def test_window_lengths_are_settings_and_take_fractions(sandbox):
    defaults = HTTP.get(f"{sandbox.url}/_sandbox/config").json()
    assert (defaults["hourly_window_seconds"], defaults["spike_window_seconds"]) == (3600, 10)
    sandbox.configure(hourly_window_seconds=60, spike_window_seconds=1 / 6)
    config = HTTP.get(f"{sandbox.url}/_sandbox/config").json()
    assert config["hourly_window_seconds"] == 60.0
    assert math.isclose(config["spike_window_seconds"], 1 / 6)


def test_both_compressed_windows_bind_and_the_headers_show_the_closer_one(sandbox, api):
    sandbox.configure(hourly_limit=6, hourly_window_seconds=HOURLY_S,
                      spike_limit=3, spike_window_seconds=SPIKE_S)
    before = time.time()
    first = api.get("/rest/v1.0/me")
    opened = time.time()  # both windows opened between `before` and now
    # Spike window: 3 calls, then 429. It is the closer one to exhaustion (3 - n < 6 - n).
    seen = [limits(first)] + [limits(api.get("/rest/v1.0/me")) for _ in range(3)]
    assert [s[:3] for s in seen] == [(200, "3", 2), (200, "3", 1), (200, "3", 0), (429, "3", 0)]
    for *_, reset in seen:  # the spike window's end, rounded up to a whole second
        assert math.ceil(before + SPIKE_S) <= reset <= math.ceil(opened + SPIKE_S)
    assert time.time() < before + SPIKE_S, "the machine was too slow for this test"

    # Next spike window: 3 more calls use up the hourly limit of 6 as well.
    sleep_until(opened + SPIKE_S + 0.05)
    second = [limits(api.get("/rest/v1.0/me"))]
    reopened = time.time()  # the second spike window opened before this
    second += [limits(api.get("/rest/v1.0/me")) for _ in range(2)]
    assert [s[:3] for s in second] == [(200, "3", 2), (200, "3", 1), (200, "3", 0)]

    # Spike allowance back, hourly spent: 429, and the headers switch to the hourly window.
    sleep_until(reopened + SPIKE_S + 0.05)
    hourly = limits(api.get("/rest/v1.0/me"))
    assert hourly[:3] == (429, "6", 0)
    assert math.ceil(before + HOURLY_S) <= hourly[3] <= math.ceil(opened + HOURLY_S)
    assert time.time() < before + HOURLY_S, "the machine was too slow for this test"

    # The hourly window ends: calls go through again, with the spike window shown.
    sleep_until(opened + HOURLY_S + 0.05)
    assert limits(api.get("/rest/v1.0/me"))[:3] == (200, "3", 2)


def test_the_hourly_window_is_shown_once_it_has_fewer_calls_left(sandbox, api):
    sandbox.configure(hourly_limit=5, hourly_window_seconds=30.5,
                      spike_limit=4, spike_window_seconds=20.25)
    started = time.time()
    shown = [limits(api.get("/rest/v1.0/me")) for _ in range(5)]
    # spike 3/hourly 4 left -> spike; 2/3 -> spike; 1/2 -> spike; 0/1 -> spike; then
    # the spike window refuses the fifth call (4 allowed) and is still the closer one.
    assert [s[:3] for s in shown] == [(200, "4", 3), (200, "4", 2), (200, "4", 1),
                                      (200, "4", 0), (429, "4", 0)]
    sandbox.configure(hourly_limit=3, spike_limit=10)  # new limits reset both windows
    shown = [limits(api.get("/rest/v1.0/me")) for _ in range(4)]
    assert [s[:3] for s in shown] == [(200, "3", 2), (200, "3", 1), (200, "3", 0), (429, "3", 0)]
    # The hourly window's end (30.5 s after it opened), rounded up: an integer, never early.
    assert all(started + 30.5 <= s[3] <= math.ceil(time.time() + 30.5) for s in shown)
