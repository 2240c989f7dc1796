"""Everything Dagster loads from this package: one folder per flow, found by
`dg.load_from_defs_folder` (definitions.py), plus the jobs that run them."""
