"""X3 vs Procore comparison (compare.py pure), the report asset and the nightly schedule."""
