"""Benchmarks for ml-connector (`python benchmarks/run.py --help`); not part of the package."""
