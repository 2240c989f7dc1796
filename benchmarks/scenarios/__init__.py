"""One module per benchmark scenario: how it runs (`bench_<name>`) and what it reports
(`summary_rows`, and `markdown` where it has a section of its own).

backfill, noop and delta share one synced session (benchmarks/suite.py runs them as the
`sync` group); staging, baseline, latency, real_limit and x3_load each start their own.
"""
