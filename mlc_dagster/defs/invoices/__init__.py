"""Sage X3 supplier invoices -> Procore requisitions (subcontractor invoices) on the
commitment of their PO: staging.py, plan.py (pure payloads and decisions), writer.py, and
the assets, check and sensor Dagster loads."""
