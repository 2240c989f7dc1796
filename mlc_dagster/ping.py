"""`mlc-dagster ping`: the go-live preflight; the checks live in `mlc_dagster.preflight`."""

from mlc_dagster.preflight import (
    FAIL,
    OK,
    WARN,
    PingRow,
    exit_code,
    format_report,
    ping_x3,
    run_ping,
)

__all__ = ["FAIL", "OK", "WARN", "PingRow", "exit_code", "format_report", "ping_x3", "run_ping"]
