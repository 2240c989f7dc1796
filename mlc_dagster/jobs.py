"""Jobs by name, as users launch them from the UI or the sensors and schedules do."""


import dagster as dg

from mlc_dagster.settings import Settings

# Runs carrying the same company tag queue behind each other (see dagster.yaml), so two
# runs never write to the same Procore company at once.
COMPANY_TAG = "mlc/procore_company"

sync_sage_x3_to_procore = dg.define_asset_job(
    name="sync_sage_x3_to_procore",
    selection=dg.AssetSelection.groups("sage_x3", "procore_reference", "mapping", "procore"),
    description="Sage X3 purchase orders -> Procore commitments (staging, mapping, writes).",
    tags={COMPANY_TAG: Settings.from_env().company_tag},
    # One process per run: the graph is nearly linear and a subprocess per step costs
    # ~10 s each on a small machine, which would blow the "PO in Procore within 60 s" bar.
    executor_def=dg.in_process_executor,
)
