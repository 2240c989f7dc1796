"""One Dagster asset per import-file kind, downstream of the asset that planned its records.

The upstream asset (supplier_vendor_sync, x3_dimension_values) outputs `ExportBatch`es; the
file asset writes them to MLC_X3_IMPORT_DIR and records each exported record in the ledger.
Materialisation metadata: the file paths, records per file and template codes.
"""

import dagster as dg
import pandas as pd

from mlc_dagster.common.metadata import table_metadata
from mlc_dagster.common.write_mode import ensure_live
from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.resources.settings import SettingsResource
from mlc_dagster.x3_import.files import ExportBatch, write_batches
from mlc_dagster.x3_import.templates import describe


def import_file_asset(name: str, group: str, upstream: str, what: str) -> dg.AssetsDefinition:
    @dg.asset(name=name, group_name=group, kinds={"sage_x3", "file"},
              ins={"batches": dg.AssetIn(upstream)},
              description=f"Sage X3 import file(s) for {what}, written to MLC_X3_IMPORT_DIR for "
                          "X3's Imports function (GIMPOBJ) or its batch task IMPORT; every "
                          "record stays `exported` in the ledger until X3 shows it.")
    def _asset(context: dg.AssetExecutionContext, batches: list[ExportBatch],
               ledger: LedgerResource, settings: SettingsResource) -> dg.MaterializeResult:
        run_settings = settings.get()
        ensure_live(name, run_settings.write_mode)
        import_dir = run_settings.x3_writes.import_dir
        written = write_batches(batches, import_dir, context.run.run_id, ledger.get_ledger())
        for f in written:
            context.log.info(f"X3 import file {f.path}: {f.records} records "
                             f"(template {f.template})")
        table = pd.DataFrame([vars(f) for f in written],
                             columns=["path", "template", "records", "lines"])
        return dg.MaterializeResult(metadata={
            "paths": dg.MetadataValue.json([f.path for f in written]),
            "rows": sum(f.records for f in written),
            "template_codes": ", ".join(f.template for f in written) or "-",
            "files": table_metadata(table),
            "import_dir": str(import_dir),
            "templates_to_set_up": dg.MetadataValue.md(
                "\n\n".join(describe(b.template) for b in batches)
                or "_none: this object is written through the web API_"),
        })

    return _asset
