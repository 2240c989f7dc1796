"""`mlc-dagster preview`: run `preview_sync` in this process and summarise it for a terminal."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd

from mlc_dagster.defs.preview.report import action_counts, plain_table, totals_by_project

JOB = "preview_sync"


@dataclass
class PreviewRun:
    run_id: str
    success: bool
    rows: pd.DataFrame | None = None
    csv_path: str | None = None
    errors: list[str] = field(default_factory=list)


@contextmanager
def _instance():
    """The DAGSTER_HOME instance when set (the run shows in the UI; the folder is created as
    the ledger's default does), else a throwaway one."""
    if os.environ.get("DAGSTER_HOME"):
        Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
        with dg.DagsterInstance.get() as instance:
            yield instance
    else:
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance


def run_preview() -> PreviewRun:
    from mlc_dagster.definitions import defs  # reads the environment: import when asked

    with _instance() as instance:
        # Step logs stay in the run (UI); the terminal shows the summary and any warning.
        result = defs.resolve_job_def(JOB).execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    if not result.success:
        return PreviewRun(result.run_id, False, errors=failure_messages(result))
    csv_path = None
    for event in result.get_asset_materialization_events():
        if event.materialization.asset_key.path[-1] == "sync_preview":
            csv_path = event.materialization.metadata["csv"].value
    return PreviewRun(result.run_id, True, result.output_for_node("sync_preview"), csv_path)


def failure_messages(result) -> list[str]:
    """Each failed step's own error (e.g. Procore's answer), not only "step X failed"."""
    out = []
    for event in result.all_events:
        if not event.is_failure:
            continue
        data = getattr(event, "step_failure_data", None) if event.is_step_failure else None
        error = data.error.message.strip() if data and data.error else ""
        out.append(f"{event.step_key or JOB}: {error or event.message}")
    return out


def summary_text(run: PreviewRun) -> str:
    """Per-project totals and the CSV path, for a terminal."""
    df = run.rows if run.rows is not None else pd.DataFrame()
    counts = {k: v for k, v in action_counts(df).items() if v} if len(df) else {}
    lines = [f"Preview run {run.run_id}: nothing was written to Procore or Sage X3.",
             f"{len(df)} record(s) would change"
             + (": " + ", ".join(f"{n} {a}" for a, n in counts.items()) if counts else "."), ""]
    if len(df):
        table = totals_by_project(df)
        lines += [plain_table(table), ""]
    lines.append(f"CSV for sign-off (every row): {run.csv_path}")
    return "\n".join(lines)
