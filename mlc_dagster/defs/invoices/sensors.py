"""New or changed X3 supplier invoices request a sync run, as PO changes do.

Without it an invoice waits for the next PO change or the fallback schedule (15 min).
"""

from mlc_dagster.x3_reads.sensors import x3_change_sensor

x3_purchase_invoice_changes = x3_change_sensor(
    "purchase_invoice", name="x3_purchase_invoice_changes", trigger="x3_invoice_changes",
    noun="purchase invoice", count_tag="mlc/changed_invoices")
