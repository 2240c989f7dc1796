"""Procore's hourly and spike rate-limit windows, as the sandbox counts them."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from mlc_sandbox.controls import SandboxConfig


@dataclass
class _Window:
    length: float
    limit: int
    start: float
    count: int = 0


class RateLimiter:
    """Procore's two fixed windows, hourly and spike, read live from SandboxConfig.

    A window opens at the first request after the previous one ended, so tests never
    straddle a boundary by accident. Changing any limit or window length resets both
    counters. Both lengths are configurable (`hourly_window_seconds`, default 3600, and
    `spike_window_seconds`, default 10) and may be fractions of a second, so a benchmark
    can compress time for both limits together.

    `X-Rate-Limit-Reset` stays an integer epoch, as Procore sends it
    (procore/documentation plan_your_app/rate_limiting.md): the end of the shown window
    rounded up. With a compressed window the header can therefore name a moment up to 1 s
    after the window really ends, and a client that waits for it waits up to 1 s longer
    than it had to.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: tuple | None = None
        self._windows: list[_Window] = []

    def take(self, config: SandboxConfig) -> tuple[bool, dict[str, str]]:
        settings = (config.hourly_limit, config.spike_limit, config.spike_window_seconds,
                    config.hourly_window_seconds)
        now = time.time()
        with self._lock:
            if settings != self._settings:
                self._settings = settings
                # Spike first: it is reported when both are equally close to exhaustion.
                self._windows = [_Window(config.spike_window_seconds, config.spike_limit, now),
                                 _Window(config.hourly_window_seconds, config.hourly_limit, now)]
            for window in self._windows:
                if now >= window.start + window.length:
                    window.start, window.count = now, 0
            allowed = all(w.count < w.limit for w in self._windows)
            if allowed:
                for window in self._windows:
                    window.count += 1
            shown = min(self._windows, key=lambda w: w.limit - w.count)
            headers = {
                "X-Rate-Limit-Limit": str(shown.limit),
                "X-Rate-Limit-Remaining": str(max(0, shown.limit - shown.count)),
                "X-Rate-Limit-Reset": str(math.ceil(shown.start + shown.length)),
            }
        return allowed, headers
