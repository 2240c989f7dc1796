"""The one Definitions object of the ml-connector code location."""


import os

import dagster as dg

from mlc_dagster.dimensions import assets as dimension_assets
from mlc_dagster.invoices import assets as invoice_assets
from mlc_dagster.invoices import checks as invoice_checks
from mlc_dagster.invoices.sensors import x3_purchase_invoice_changes
from mlc_dagster.jobs import (
    preview_sync,
    reconcile,
    replay_failed_transactions,
    sync_reference_data,
    sync_sage_x3_to_procore,
)
from mlc_dagster.mapping import assets as mapping_assets
from mlc_dagster.mapping import checks as mapping_checks
from mlc_dagster.preview import assets as preview_assets
from mlc_dagster.procore import assets as procore_assets
from mlc_dagster.procore.schedules import reconcile_schedule, sync_fallback_schedule
from mlc_dagster.procore.sensors import procore_rate_limit_continuation
from mlc_dagster.reconciliation import assets as reconciliation_assets
from mlc_dagster.reference_data.schedules import sync_reference_data_schedule
from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.resources.procore import ProcoreResource
from mlc_dagster.resources.sage_x3 import SageX3Resource
from mlc_dagster.sage_x3 import assets as sage_x3_assets
from mlc_dagster.sage_x3.sensors import x3_purchase_order_changes
from mlc_dagster.suppliers import assets as supplier_assets


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


defs = dg.Definitions(
    assets=dg.load_assets_from_modules([sage_x3_assets, procore_assets, mapping_assets,
                                        reconciliation_assets, invoice_assets, supplier_assets,
                                        dimension_assets, preview_assets]),
    asset_checks=dg.load_asset_checks_from_modules([mapping_checks, invoice_checks]),
    jobs=[sync_sage_x3_to_procore, replay_failed_transactions, reconcile, sync_reference_data,
          preview_sync],
    sensors=[x3_purchase_order_changes, x3_purchase_invoice_changes,
             procore_rate_limit_continuation],
    schedules=[sync_fallback_schedule, reconcile_schedule, sync_reference_data_schedule],
    resources=build_resources(),
)
