"""Shared fixtures: real sandboxes over HTTP on loopback, and a scratch ledger."""

from __future__ import annotations

import httpx
import pytest

from mlc_dagster.sandbox.server import running_sandboxes, sandbox_env


@pytest.fixture
def sandboxes():
    """Fresh, seeded Procore + Sage X3 sandboxes for one test (small scale, seed 42)."""
    with running_sandboxes(seed=42, scale="small") as handles:
        yield handles


@pytest.fixture
def sandbox_settings(sandboxes, monkeypatch):
    """Environment pointing the connector at the per-test sandboxes."""
    env = sandbox_env(sandboxes["procore"].url, sandboxes["sage_x3"].url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def sandbox_calls(handle, **filters) -> list[dict]:
    """The sandbox call log, read over HTTP like any client would."""
    calls = httpx.get(f"{handle.url}/_sandbox/calls").json()["calls"]
    return [c for c in calls if all(c.get(k) == v for k, v in filters.items())]
