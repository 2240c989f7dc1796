"""Settings of the purchase-order flow (documented in README and .env.example).

The mapping key (MLC_MAPPING_KEY, MLC_X3_CHART) is read with the X3 names
(`Settings.x3.names.mapping_key`): the X3 client reads lines by it and the mapping CSV is
keyed by it, so both take the one value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from mlc_dagster.common.env import env_int
from mlc_dagster.defs.purchase_orders.adoption import AdoptionRules

PROJECT_MATCH_RULES = ("project_number", "origin_id", "table")
APPROVED_POLICIES = ("change_order", "hold")


def sample_mapping_path() -> str:
    """The GL -> cost code table shipped with the package (MLC_GL_MAPPING_CSV's default)."""
    return str(resources.files("mlc_dagster") / "sample_data" / "gl_cost_code_map.csv")


@dataclass(frozen=True)
class PurchaseOrderSettings:
    gl_mapping_path: str  # MLC_GL_MAPPING_CSV (default: the sample table)
    project_match: str  # MLC_PROJECT_MATCH: project_number | origin_id | table
    project_map_path: str  # MLC_PROJECT_MAP_CSV (with MLC_PROJECT_MATCH=table)
    new_commitment_status: str  # MLC_NEW_COMMITMENT_STATUS
    inactive_status: str  # MLC_INACTIVE_STATUS
    max_pos_per_run: int  # MLC_MAX_POS_PER_RUN: the rest waits for the next run
    approved_policy: str  # MLC_APPROVED_POLICY: change_order | hold
    adoption: AdoptionRules  # MLC_ADOPT*

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PurchaseOrderSettings:
        return cls(
            gl_mapping_path=env.get("MLC_GL_MAPPING_CSV") or sample_mapping_path(),
            project_match=_one_of(env, "MLC_PROJECT_MATCH", "project_number",
                                  PROJECT_MATCH_RULES),
            project_map_path=env.get("MLC_PROJECT_MAP_CSV", ""),
            new_commitment_status=env.get("MLC_NEW_COMMITMENT_STATUS", "Draft"),
            inactive_status=env.get("MLC_INACTIVE_STATUS", "Closed"),
            max_pos_per_run=env_int("MLC_MAX_POS_PER_RUN", 5000, env),
            approved_policy=_one_of(env, "MLC_APPROVED_POLICY", "change_order",
                                    APPROVED_POLICIES),
            adoption=AdoptionRules.from_env(env),
        )

    @property
    def by_project_table(self) -> bool:
        """Whether X3 projects are matched through the MLC_PROJECT_MAP_CSV table."""
        return self.project_match == "table" and bool(self.project_map_path)


def _one_of(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value
