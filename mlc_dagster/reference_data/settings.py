"""Settings of the reference-data job (suppliers <-> vendors, cost codes -> X3 dimensions)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from mlc_dagster.dimensions.plan import DimensionTypes
from mlc_dagster.settings import env_int
from mlc_dagster.suppliers.plan import SupplierRules


@dataclass(frozen=True)
class ReferenceSettings:
    cron: str  # MLC_REFERENCE_CRON
    max_age_seconds: int  # MLC_REFERENCE_MAX_AGE_SECONDS: PO sync reuses younger reads; 0 = never
    supplier_rules: SupplierRules
    dimension_types: DimensionTypes

    @classmethod
    def from_env(cls) -> ReferenceSettings:
        return cls(
            cron=os.environ.get("MLC_REFERENCE_CRON") or "0 * * * *",
            max_age_seconds=env_int("MLC_REFERENCE_MAX_AGE_SECONDS", 600),
            supplier_rules=SupplierRules(
                contact_owner=(os.environ.get("MLC_VENDOR_CONTACT_OWNER") or "x3").lower(),
                code_prefix=os.environ.get("MLC_X3_NEW_SUPPLIER_PREFIX", "PC")),
            # Set but empty switches a segment off; unset uses the default type.
            dimension_types=DimensionTypes(
                cost_code=os.environ.get("MLC_X3_DIMENSION_COST_CODE", "CCT").strip(),
                cost_type=os.environ.get("MLC_X3_DIMENSION_COST_TYPE", "CTY").strip(),
                sub_job=os.environ.get("MLC_X3_DIMENSION_SUB_JOB", "SJB").strip()),
        )
