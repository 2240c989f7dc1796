"""The one Definitions object of the ml-connector code location.

Every asset, check, job, sensor and schedule lives in a module under `defs/` (one folder per
flow) and is found there by `dg.load_from_defs_folder`; this file adds the resources. The
folder is found through `dg.toml` next to this file, so the same load works from a source
checkout and from an installed wheel (which has no pyproject.toml).
"""

import os
from pathlib import Path

import dagster as dg

from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.resources.procore import ProcoreResource
from mlc_dagster.resources.sage_x3 import SageX3Resource


def _optional_env(name: str):
    """An EnvVar reference when the variable is set, else None (optional settings)."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def build_resources() -> dict:
    return {
        "procore": ProcoreResource(
            login_url=dg.EnvVar("PROCORE_LOGIN_URL"),
            api_url=dg.EnvVar("PROCORE_API_URL"),
            client_id=dg.EnvVar("PROCORE_CLIENT_ID"),
            client_secret=dg.EnvVar("PROCORE_CLIENT_SECRET"),
            company_id=dg.EnvVar("PROCORE_COMPANY_ID"),
        ),
        "sage_x3": SageX3Resource(
            url=dg.EnvVar("SAGE_X3_URL"),
            endpoint=os.environ.get("SAGE_X3_ENDPOINT", "SEED"),
            user=_optional_env("SAGE_X3_USER"),
            password=_optional_env("SAGE_X3_PASSWORD"),
            jwt_client_id=_optional_env("SAGE_X3_JWT_CLIENT_ID"),
            jwt_secret=_optional_env("SAGE_X3_JWT_SECRET"),
            jwt_user=_optional_env("SAGE_X3_JWT_USER"),
        ),
        "ledger": LedgerResource(url=_optional_env("MLC_LEDGER_URL") or ""),
    }


defs = dg.Definitions.merge(
    dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
    dg.Definitions(resources=build_resources()),
)
