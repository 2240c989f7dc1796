"""`run_ping`: every preflight check, one row each, in the order a data engineer reads them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping

from mlc_dagster.preflight import golive
from mlc_dagster.preflight.procore import (
    RateLimitWatch,
    commitments_row,
    connection_rows,
    procore_client,
    procore_fix,
    read_commitments,
    show_one_commitment_each,
)
from mlc_dagster.preflight.report import WARN, PingRow, attempt
from mlc_dagster.preflight.x3 import X3Inventory, x3_preflight


def run_ping(env: Mapping[str, str]) -> list[PingRow]:
    """Settings, both systems' connections and fields, then the go-live checks."""
    rows = [golive.write_mode_row(env)]
    watch = RateLimitWatch()
    client = procore_client(env, watch)
    with contextlib.ExitStack() as stack:
        projects = None
        if isinstance(client, PingRow):
            rows.append(client)
        else:
            stack.enter_context(client)
            connected, projects = connection_rows(client)
            rows += connected
        x3_rows, inventory = x3_preflight(env)
        rows += x3_rows
        if projects is None:
            rows.append(PingRow("procore go-live checks", WARN,
                                "skipped: Procore cannot be read with these settings",
                                "fix the procore rows above and run ping again"))
        else:
            rows += procore_golive_rows(client, env, projects, inventory)
        if watch.latest is not None or projects is not None:
            rows.append(golive.rate_limit_row(watch.latest, time.time()))
    return rows


def procore_golive_rows(client, env: Mapping[str, str], projects: list[dict],
                        inventory: X3Inventory) -> list[PingRow]:
    """Project matching, then what Procore already holds in the matched projects."""
    rows: list[PingRow] = []
    scope = "matched projects"
    if inventory.po_projects is None:
        rows.append(PingRow("project matching", WARN,
                            "not checked: the X3 purchase orders could not be read",
                            "fix the sage x3 purchase_order row above and run ping again"))
        matched = {int(p["id"]): golive.project_label(p) for p in projects
                   if p.get("active") is not False}
        scope = "active projects (X3 projects unknown)"
    else:
        matched = {}

        def match() -> PingRow:
            row, found = golive.project_matching(
                inventory.po_projects, inventory.pos_without_project, projects,
                env.get("MLC_PROJECT_MATCH", "project_number"), _project_table(env))
            matched.update(found)
            return row

        rows.append(attempt("project matching", match, _project_match_fix))
    read, failed = read_commitments(client, matched)
    rows.append(commitments_row(read, failed, scope))
    rows.append(golive.foreign_commitments_row(read))
    rows.append(attempt("other integrations' vendors", lambda: golive.foreign_vendors_row(
        client.vendors(), inventory.supplier_codes), procore_fix))
    rows.append(golive.hand_entered_row(read))
    rows.append(golive.invoicing_row(read))
    rows.append(attempt("change-order tier", lambda: golive.tier_row(
        show_one_commitment_each(client, read), [p.label for p in read if not p.commitments]),
        procore_fix))
    return rows


def _project_table(env: Mapping[str, str]) -> dict[str, str] | None:
    """The explicit X3 -> Procore project table, read only under MLC_PROJECT_MATCH=table."""
    from mlc_dagster.defs.purchase_orders.gl_map import parse_project_map
    from mlc_dagster.settings import read_text

    if env.get("MLC_PROJECT_MATCH", "project_number") != "table":
        return None
    path = env.get("MLC_PROJECT_MAP_CSV", "")
    if not path:
        raise ValueError("MLC_PROJECT_MATCH=table needs MLC_PROJECT_MAP_CSV")
    return parse_project_map(read_text(path), source=path)


def _project_match_fix(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return "MLC_PROJECT_MAP_CSV must name a readable CSV file"
    return ("set MLC_PROJECT_MATCH to a rule named in the message (table: with "
            "MLC_PROJECT_MAP_CSV, header x3_project,procore_project)")

