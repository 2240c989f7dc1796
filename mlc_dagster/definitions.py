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
from mlc_dagster.resources.settings import SettingsResource
from mlc_dagster.settings import Settings, current_settings, load_settings


def _optional_secret(name: str) -> dg.EnvVar | None:
    """An EnvVar reference when the secret is set, else None (optional credentials). Only
    whether it is set is read here; Dagster reads the value when a run starts."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def build_resources(settings: Settings | None = None) -> dict:
    """The resources, secrets as `dg.EnvVar`s. `settings` (default: read now) gives the one
    non-secret value bound here, the X3 endpoint; the rest is read when a run starts."""
    settings = settings or load_settings()
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
            endpoint=settings.x3.endpoint,
            user=_optional_secret("SAGE_X3_USER"),
            password=_optional_secret("SAGE_X3_PASSWORD"),
            jwt_client_id=_optional_secret("SAGE_X3_JWT_CLIENT_ID"),
            jwt_secret=_optional_secret("SAGE_X3_JWT_SECRET"),
            jwt_user=_optional_secret("SAGE_X3_JWT_USER"),
        ),
        # url "": MLC_LEDGER_URL when the run starts, else SQLite under DAGSTER_HOME
        # (ledger/store.py default_ledger_url, the one place that reads it: it may hold a password)
        "ledger": LedgerResource(),
        "settings": SettingsResource(),
    }


defs = dg.Definitions.merge(
    dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
    dg.Definitions(resources=build_resources(current_settings())),
)
