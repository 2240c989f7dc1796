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


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number, got {value!r}") from exc


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


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

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            gl_mapping_path=os.environ.get("MLC_GL_MAPPING_CSV") or sample_mapping_path(),
            project_match=os.environ.get("MLC_PROJECT_MATCH", "project_number"),
            project_map_path=os.environ.get("MLC_PROJECT_MAP_CSV", ""),
            new_commitment_status=os.environ.get("MLC_NEW_COMMITMENT_STATUS", "Draft"),
            inactive_status=os.environ.get("MLC_INACTIVE_STATUS", "Closed"),
            max_pos_per_run=_int("MLC_MAX_POS_PER_RUN", 5000),
            sensor_interval_seconds=_int("MLC_SENSOR_INTERVAL_SECONDS", 30),
            sync_cron=os.environ.get("MLC_SYNC_CRON", "*/15 * * * *"),
            automation_on=_flag("MLC_AUTOMATION_ON"),
            overlap_seconds=_int("MLC_X3_OVERLAP_SECONDS", 120),
            company_tag=os.environ.get("PROCORE_COMPANY_ID", "default"),
            approved_policy=os.environ.get("MLC_APPROVED_POLICY", "change_order"),
            reconcile_cron=os.environ.get("MLC_RECONCILE_CRON", "0 2 * * *"),
        )


def read_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8-sig")
