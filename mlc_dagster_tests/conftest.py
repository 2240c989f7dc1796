"""Shared fixtures: real sandboxes over HTTP on loopback, and a scratch ledger."""

from __future__ import annotations

import copy

import httpx
import pytest

from mlc_dagster.defs.purchase_orders.desired import build_desired_commitments
from mlc_dagster.defs.purchase_orders.gl_map import parse_gl_mapping
from mlc_dagster.defs.purchase_orders.staging import stage_purchase_orders
from mlc_dagster.settings import sample_mapping_path
from mlc_dagster_tests.records import canonical_po, procore_frames
from mlc_sandbox.seed import build_seed
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

# --- Session-wide seeded inputs for the unit tests (built once: the seed is deterministic) ---








@pytest.fixture(scope="session")
def seed():
    return build_seed(42, "small")


@pytest.fixture(scope="session")
def _seed_records(seed):
    return [canonical_po(po) for po in seed.x3_purchase_orders]


@pytest.fixture
def seed_records(_seed_records):
    """Canonical PO records of the seed; a private copy per test, free to mutate."""
    return copy.deepcopy(_seed_records)


@pytest.fixture(scope="session")
def seed_mapping(seed):
    return parse_gl_mapping(seed.mapping_csv)


@pytest.fixture(scope="session")
def _seed_frames(seed):
    return procore_frames(seed)


@pytest.fixture
def seed_frames(_seed_frames):
    """Procore reference frames of the seed; copied per test."""
    return _seed_frames.copy()


@pytest.fixture(scope="session")
def seed_staged(_seed_records):
    return stage_purchase_orders(copy.deepcopy(_seed_records))


@pytest.fixture(scope="session")
def seed_desired(seed_staged, seed_mapping, _seed_frames):
    return build_desired_commitments(seed_staged, seed_mapping, *_seed_frames.args())
