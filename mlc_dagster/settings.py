"""The connector's settings: one typed object read from the environment by `load_settings`.

Every variable is documented in README and .env.example. Each flow owns its section (its
`settings.py`); the connection, automation and write-mode sections live here. A bad value
raises a ValueError naming the variable, so a typo fails at load instead of meaning a default.

Where they are read (docs/architecture.md, "Where settings come from"):
- `current_settings()`: once per process, when Dagster loads the definitions (job tags, sensor
  intervals, crons, default statuses);
- `SettingsResource` (resources/settings.py): once per run, when the run starts; every step of
  the run gets the same object and hands the sections down to pure functions;
- sensors and schedules call `load_settings()` once per tick; the Procore and Sage X3
  resources once per client (a run or a tick).

Secrets never pass through here: resources take them as `dg.EnvVar`s so the UI shows only the
variable name. So does the ledger URL (it may carry a password): `ledger/store.py`
`default_ledger_url` is the one place that reads MLC_LEDGER_URL.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlc_dagster.common.env import dagster_home, env_flag, env_float, env_int
from mlc_dagster.defs.invoices.settings import InvoiceSettings
from mlc_dagster.defs.purchase_orders.settings import PurchaseOrderSettings
from mlc_dagster.defs.purchase_orders.settings import (
    sample_mapping_path as sample_mapping_path,  # the default MLC_GL_MAPPING_CSV
)
from mlc_dagster.defs.reference.settings import DEFAULT_SYNC_CRON, ReferenceSettings
from mlc_dagster.ledger.lock import DEFAULT_WAIT_SECONDS
from mlc_dagster.resources.breaker import BreakerSettings
from mlc_dagster.resources.sage_x3_client import X3Names, names_from_env
from mlc_dagster.x3_import.settings import X3WriteSettings

WRITE_MODES = ("live", "preview")
X3_APIS = ("rest", "graphql")
DEFAULT_X3_READ_CONCURRENCY = 4


def env_write_mode(env: Mapping[str, str] = os.environ) -> str:
    """MLC_WRITE_MODE: `live` (default) writes; `preview` reads and plans only (go-live sign-off).

    A value that is neither raises, naming the variable: a typo must never silently mean live.
    """
    value = (env.get("MLC_WRITE_MODE") or "").strip().lower() or "live"
    if value not in WRITE_MODES:
        raise ValueError(f"MLC_WRITE_MODE must be preview or live, got {env['MLC_WRITE_MODE']!r}")
    return value


@dataclass(frozen=True)
class AutomationSettings:
    """When runs start by themselves (the reference job's cron is in ReferenceSettings)."""

    on: bool  # MLC_AUTOMATION_ON: sensors and schedules start RUNNING
    sensor_interval_seconds: int  # MLC_SENSOR_INTERVAL_SECONDS
    sync_cron: str  # MLC_SYNC_CRON: the PO sync's fallback schedule
    reconcile_cron: str  # MLC_RECONCILE_CRON

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AutomationSettings:
        return cls(on=env_flag("MLC_AUTOMATION_ON", env),
                   sensor_interval_seconds=env_int("MLC_SENSOR_INTERVAL_SECONDS", 30, env),
                   sync_cron=env.get("MLC_SYNC_CRON", DEFAULT_SYNC_CRON),
                   reconcile_cron=env.get("MLC_RECONCILE_CRON", "0 2 * * *"))


@dataclass(frozen=True)
class ProgressSettings:
    """How a long write step reports progress (procore_writes/continuation.py, Progress)."""

    every_seconds: float = 60.0  # MLC_PROGRESS_LOG_SECONDS
    hourly_allowance: int = 600  # MLC_PROCORE_HOURLY_LIMIT: the ETA never beats it


@dataclass(frozen=True)
class ProcoreSettings:
    """The Procore client's tuning and what the write steps share (lock, breaker, progress)."""

    # PROCORE_COMPANY_ID, "default" when unset: the job tag that queues a company's runs,
    # and the write lock of steps without the Procore resource
    company_id: str
    timeout_seconds: float  # MLC_PROCORE_TIMEOUT_SECONDS
    max_attempts: int  # MLC_PROCORE_MAX_ATTEMPTS
    max_wait_seconds: float  # MLC_PROCORE_MAX_WAIT_SECONDS: longer waits hand over
    write_lock_wait_seconds: float  # MLC_WRITE_LOCK_WAIT_SECONDS
    breaker: BreakerSettings  # MLC_PROCORE_BREAKER_*
    progress: ProgressSettings

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProcoreSettings:
        return cls(
            company_id=env.get("PROCORE_COMPANY_ID", "default"),
            timeout_seconds=env_float("MLC_PROCORE_TIMEOUT_SECONDS", 30.0, env),
            max_attempts=env_int("MLC_PROCORE_MAX_ATTEMPTS", 6, env),
            max_wait_seconds=env_float("MLC_PROCORE_MAX_WAIT_SECONDS", 120.0, env),
            write_lock_wait_seconds=env_float("MLC_WRITE_LOCK_WAIT_SECONDS",
                                              DEFAULT_WAIT_SECONDS, env),
            breaker=BreakerSettings.from_env(env),
            progress=ProgressSettings(
                every_seconds=env_float("MLC_PROGRESS_LOG_SECONDS", 60.0, env),
                hourly_allowance=env_int("MLC_PROCORE_HOURLY_LIMIT", 600, env)),
        )


@dataclass(frozen=True)
class X3Settings:
    """How Sage X3 is read: transport, names, and the delta reads' window and concurrency."""

    api: str  # SAGE_X3_API: rest | graphql
    endpoint: str  # SAGE_X3_ENDPOINT: the Syracuse endpoint (folder)
    timeout_seconds: float  # MLC_X3_TIMEOUT_SECONDS
    names: X3Names  # MLC_MAPPING_KEY, MLC_X3_CHART and the MLC_X3_* name overrides
    overlap_seconds: int  # MLC_X3_OVERLAP_SECONDS
    # MLC_X3_READ_CONCURRENCY: detail reads (REST, one per changed document) in flight at
    # once. X3 web-service pools are small: raise it only if the pool has room.
    read_concurrency: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> X3Settings:
        api = env.get("SAGE_X3_API", "rest")
        if api not in X3_APIS:
            raise ValueError(f"SAGE_X3_API must be 'rest' or 'graphql', got {api!r}")
        concurrency = env_int("MLC_X3_READ_CONCURRENCY", DEFAULT_X3_READ_CONCURRENCY, env)
        if concurrency < 1:
            raise ValueError(f"MLC_X3_READ_CONCURRENCY must be at least 1, got {concurrency}")
        return cls(api=api, endpoint=env.get("SAGE_X3_ENDPOINT", "SEED"),
                   timeout_seconds=env_float("MLC_X3_TIMEOUT_SECONDS", 60.0, env),
                   names=names_from_env(env),
                   overlap_seconds=env_int("MLC_X3_OVERLAP_SECONDS", 120, env),
                   read_concurrency=concurrency)


@dataclass(frozen=True)
class Settings:
    home: Path  # DAGSTER_HOME, else ./.dagster_home: default ledger, import files, previews
    write_mode: str  # MLC_WRITE_MODE: live | preview (env_write_mode)
    allow_insecure_loopback: bool  # MLC_ALLOW_INSECURE_LOOPBACK: plain http:// to loopback
    automation: AutomationSettings
    procore: ProcoreSettings
    x3: X3Settings
    purchase_orders: PurchaseOrderSettings
    invoices: InvoiceSettings
    reference: ReferenceSettings
    x3_writes: X3WriteSettings

    @property
    def preview(self) -> bool:
        """MLC_WRITE_MODE=preview: nothing is written (common/write_mode.py)."""
        return self.write_mode == "preview"


def load_settings(env: Mapping[str, str] = os.environ) -> Settings:
    """Every setting, parsed and checked; the first bad value raises, naming its variable."""
    return Settings(
        home=dagster_home(env),
        write_mode=env_write_mode(env),
        allow_insecure_loopback=env_flag("MLC_ALLOW_INSECURE_LOOPBACK", env),
        automation=AutomationSettings.from_env(env),
        procore=ProcoreSettings.from_env(env),
        x3=X3Settings.from_env(env),
        purchase_orders=PurchaseOrderSettings.from_env(env),
        invoices=InvoiceSettings.from_env(env),
        reference=ReferenceSettings.from_env(env),
        x3_writes=X3WriteSettings.from_env(env),
    )


@functools.cache
def current_settings() -> Settings:
    """The settings the definitions are built with (job tags, sensor intervals, crons, default
    statuses): read once per process, when Dagster loads the code location. Code that runs in
    a run or a tick reads its own at its start (SettingsResource, `load_settings`), so a
    changed environment reaches the next run without a reload."""
    return load_settings()


def read_text(path: str) -> str:
    """A UTF-8 text file (BOM allowed); other encodings fail naming the line, not a byte offset."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ValueError(f"{path} line {line}: not UTF-8 text (byte {data[exc.start]:#x}); "
                         "save the file as 'CSV UTF-8'") from None
