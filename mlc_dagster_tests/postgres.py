"""A scratch PostgreSQL database per test module, on the machine's server (127.0.0.1:5432).

Skipped when the server is unreachable, except with MLC_REQUIRE_POSTGRES set (CI), where an
unreachable server fails the test instead: CI never skips the PostgreSQL variants.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """Create `<prefix>_<random>`, yield its URL, drop it afterwards (connections forced out)."""
    admin = sa.create_engine(f"{PG_SERVER}/test", isolation_level="AUTOCOMMIT",
                             connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        message = (f"PostgreSQL at 127.0.0.1:5432 is unreachable ({exc.orig}); start it with "
                   "`pg_ctlcluster --skip-systemctl-redirect <version> main start`")
        if os.environ.get("MLC_REQUIRE_POSTGRES"):
            pytest.fail(message + " (MLC_REQUIRE_POSTGRES is set: CI never skips these)")
        pytest.skip(message)
    name = f"{prefix}_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
