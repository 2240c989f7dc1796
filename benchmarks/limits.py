"""Procore's rate limits as the sandbox enforces them, and the same rule replayed on a call
log: how many calls each window held, and how close a run came to the allowed rate."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimits:
    """What the Procore sandbox enforces: two fixed windows, hourly and spike, each with its
    own limit and length (seconds, may be fractions: time compression)."""

    hourly_limit: int
    spike_limit: int
    spike_window_seconds: float
    description: str
    hourly_window_seconds: float = 3600.0

    def sandbox_config(self) -> dict:
        return {"hourly_limit": self.hourly_limit, "spike_limit": self.spike_limit,
                "spike_window_seconds": self.spike_window_seconds,
                "hourly_window_seconds": self.hourly_window_seconds}

    @property
    def allowed_per_second(self) -> float:
        return min(self.spike_limit / self.spike_window_seconds,
                   self.hourly_limit / self.hourly_window_seconds)

    def windows(self) -> dict[str, tuple[float, int]]:
        """name -> (length s, limit), for replaying the sandbox's windows on a call log."""
        return {"hourly": (self.hourly_window_seconds, self.hourly_limit),
                "spike": (self.spike_window_seconds, self.spike_limit)}


UNLIMITED = RateLimits(10**9, 10**9, 10, "none (latency-bound run)")


def scaled_limits(compression: float, hourly: int = 600, spike: int = 25,
                  spike_window: float = 10, hour: float = 3600) -> RateLimits:
    """The target limits (600/h and 25/10 s) with time compressed `compression` times.

    At 600/h a 5,000-PO backfill needs ~10 h whatever the client does, so the run compresses
    time instead of changing the budget: both windows shrink together and keep their
    limits, 600 calls per 3600/C s (one emulated hour) and 25 per 10/C s. The sandbox sends
    X-Rate-Limit-Reset as an integer epoch, as Procore does, so a compressed window's reset
    can read up to 1 s late (see `compression_check` in scenarios/real_limit.py).
    """
    hour_s, spike_s = hour / compression, spike_window / compression
    return RateLimits(
        hourly_limit=hourly, spike_limit=spike, spike_window_seconds=spike_s,
        hourly_window_seconds=hour_s,
        description=(f"{hourly}/h and {spike}/{spike_window:g}s compressed {compression:g}x in "
                     f"time: {hourly} calls per {hour_s:g} s (= 1 emulated hour) and {spike} "
                     f"per {spike_s:.3g} s"))


def limiter_times(calls: list[dict], latency_ms: float = 0) -> list[float]:
    """When the sandbox's rate limiter counted each call (sorted): the call log stamps a call
    when it ends, the limiter sees it after the injected latency; 429s are not counted."""
    return sorted(c["at"] - (c.get("duration_ms") or 0) / 1000 + latency_ms / 1000
                  for c in calls if c["status"] != 429
                  and (c["path"].startswith("/rest/") or c["path"] == "/oauth/token"))


def window_counts(times: list[float], length: float) -> list[int]:
    """Calls per fixed window, replaying the sandbox's rule: a window opens at the first
    call after the previous one ended (the Procore sandbox's RateLimiter)."""
    windows, start, count = [], None, 0
    for t in times:
        if start is None or t >= start + length:
            if start is not None:
                windows.append(count)
            start, count = t, 0
        count += 1
    if start is not None:
        windows.append(count)
    return windows


def pacing_profile(calls: list[dict], limits: RateLimits, floor_calls: int, wall_s: float,
                   latency_ms: float = 0) -> dict:
    """Calls per rate-limit window (hourly, and the spike window's busiest), replayed on the
    sandbox's call log; the rate floor is the floor's calls at the allowed rate."""
    times = limiter_times(calls, latency_ms)
    hourly = window_counts(times, limits.hourly_window_seconds)
    spike = window_counts(times, limits.spike_window_seconds)
    rate_floor_s = floor_calls / limits.allowed_per_second
    return {
        "window_s": round(limits.hourly_window_seconds, 3), "window_limit": limits.hourly_limit,
        "calls_per_window": hourly, "max_in_a_window": max(hourly, default=0),
        "spike": {"window_s": round(limits.spike_window_seconds, 4),
                  "window_limit": limits.spike_limit, "max_in_a_window": max(spike, default=0)},
        "allowed_calls_per_s": round(limits.allowed_per_second, 3),
        "achieved_calls_per_s": round(len(calls) / wall_s, 3) if wall_s else None,
        "rate_floor_s": round(rate_floor_s, 1),
        "wall_over_rate_floor": round(wall_s / rate_floor_s, 3) if rate_floor_s else None,
        "emulated_hours": round(rate_floor_s / limits.hourly_window_seconds, 2),
    }
