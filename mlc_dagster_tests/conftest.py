"""Shared fixtures: real sandboxes over HTTP on loopback, and a scratch ledger."""

from __future__ import annotations

import httpx
import pytest

from mlc_dagster.settings import sample_mapping_path
from mlc_sandbox.server import running_sandboxes, sandbox_env


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


@pytest.fixture
def sync_env(sandbox_settings, tmp_path, monkeypatch):
    """Per-test ledger, DAGSTER_HOME and a writable copy of the GL mapping CSV."""
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    monkeypatch.setenv("MLC_LEDGER_URL", ledger_url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    mapping = tmp_path / "gl_map.csv"
    mapping.write_text(open(sample_mapping_path()).read())
    monkeypatch.setenv("MLC_GL_MAPPING_CSV", str(mapping))
    return {"ledger_url": ledger_url, "mapping": mapping}
