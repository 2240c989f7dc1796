"""Benchmarks for ml-connector (`python benchmarks/run.py --help`); not part of the package.

run.py the command line; suite.py which scenarios run together and in which process;
scenarios/ one module per scenario (how it runs, what it reports); harness.py the sandboxes
and the real job in-process; calls.py call logs; limits.py rate limits and their replay;
floor.py the fewest calls possible; machine.py memory, CPU and versions; report.py and
report_rows.py the results files; config.py a run's settings. dagster_dev.py and
procore_watcher.py serve the change-latency scenario; pacing_probe.py and readme_table.py
are scripts of their own.
"""
