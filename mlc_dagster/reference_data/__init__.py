"""The `sync_reference_data` job's shared pieces: its settings, schedule and the freshness
rule that lets the PO sync reuse Procore reference data instead of re-reading it each tick."""
