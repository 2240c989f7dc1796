"""Non-secret settings, read from the environment (documented in README and .env.example).

Secrets never pass through here: resources take them as `dg.EnvVar`s so the UI
shows only the variable name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


def sample_mapping_path() -> str:
    return str(resources.files("mlc_dagster") / "sample_data" / "gl_cost_code_map.csv")


def dagster_home() -> Path:
    """DAGSTER_HOME, else ./.dagster_home: where the default ledger and import files live."""
    return Path(os.environ.get("DAGSTER_HOME") or ".dagster_home")


def env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "a whole number")


def env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def _env_number(name: str, default, parse, wording: str):
    """An optional numeric setting; a bad value names the variable, never a bare ValueError."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return parse(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be {wording}, got {value!r}") from exc


def insecure_loopback_allowed() -> bool:
    """MLC_ALLOW_INSECURE_LOOPBACK: plain http:// to loopback (the local sandboxes) only."""
    return env_flag("MLC_ALLOW_INSECURE_LOOPBACK")


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


WRITE_MODES = ("live", "preview")


def env_write_mode() -> str:
    """MLC_WRITE_MODE: `live` (default) writes; `preview` reads and plans only (go-live sign-off).

    A value that is neither raises, naming the variable: a typo must never silently mean live.
    """
    value = os.environ.get("MLC_WRITE_MODE", "").strip().lower() or "live"
    if value not in WRITE_MODES:
        raise ValueError(f"MLC_WRITE_MODE must be preview or live, got "
                         f"{os.environ['MLC_WRITE_MODE']!r}")
    return value


@dataclass(frozen=True)
class Settings:
    gl_mapping_path: str
    project_match: str
    project_map_path: str
    new_commitment_status: str
    inactive_status: str
    max_pos_per_run: int
    sensor_interval_seconds: int
    sync_cron: str
    automation_on: bool
    overlap_seconds: int
    company_tag: str
    approved_policy: str
    reconcile_cron: str
    write_mode: str = "live"  # MLC_WRITE_MODE: live | preview (see env_write_mode)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            gl_mapping_path=os.environ.get("MLC_GL_MAPPING_CSV") or sample_mapping_path(),
            project_match=os.environ.get("MLC_PROJECT_MATCH", "project_number"),
            project_map_path=os.environ.get("MLC_PROJECT_MAP_CSV", ""),
            new_commitment_status=os.environ.get("MLC_NEW_COMMITMENT_STATUS", "Draft"),
            inactive_status=os.environ.get("MLC_INACTIVE_STATUS", "Closed"),
            max_pos_per_run=env_int("MLC_MAX_POS_PER_RUN", 5000),
            sensor_interval_seconds=env_int("MLC_SENSOR_INTERVAL_SECONDS", 30),
            sync_cron=os.environ.get("MLC_SYNC_CRON", "*/15 * * * *"),
            automation_on=env_flag("MLC_AUTOMATION_ON"),
            overlap_seconds=env_int("MLC_X3_OVERLAP_SECONDS", 120),
            company_tag=os.environ.get("PROCORE_COMPANY_ID", "default"),
            approved_policy=os.environ.get("MLC_APPROVED_POLICY", "change_order"),
            reconcile_cron=os.environ.get("MLC_RECONCILE_CRON", "0 2 * * *"),
            write_mode=env_write_mode(),
        )


def read_text(path: str) -> str:
    """A UTF-8 text file (BOM allowed); other encodings fail naming the line, not a byte offset."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ValueError(f"{path} line {line}: not UTF-8 text (byte {data[exc.start]:#x}); "
                         "save the file as 'CSV UTF-8'") from None
