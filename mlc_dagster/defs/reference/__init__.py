"""Procore reference data every flow reads (projects, vendors, cost codes, cost types), the
freshness rule that lets the PO sync reuse a recent read, and the sync_reference_data
schedule."""
