"""Session-wide seeded inputs for the unit tests (built once: the seed is deterministic)."""

from __future__ import annotations

import copy

import pytest

from mlc_dagster.defs.purchase_orders.desired import build_desired_commitments
from mlc_dagster.defs.purchase_orders.gl_map import parse_gl_mapping
from mlc_dagster.defs.purchase_orders.staging import stage_purchase_orders
from mlc_sandbox.seed import build_seed

from .helpers import canonical_po, procore_frames


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
