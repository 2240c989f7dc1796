"""`mlc-dagster ping`: the go-live preflight a data engineer runs before the first sync
against a customer's real Procore and Sage X3.

One row per check, each ok / warn / fail with the fix; a failing check never stops the
others, and when Procore cannot be reached its data checks are skipped with one row. Exit 1
on any failure; warnings alone exit 0 (they say what the first sync will hold or adopt).

- settings: MLC_WRITE_MODE (preview | live);
- Procore: token, company access, projects visible;
- Sage X3: each entity answers, every configured representation / field exists;
- project matching: X3 projects used by POs vs the company's active projects, by the sync's
  own rule (MLC_PROJECT_MATCH, MLC_PROJECT_MAP_CSV);
- in the matched projects: other integrations' origin_ids on commitments (and on vendors),
  hand-entered commitments (no origin_id: adoption candidates), subcontractor invoicing
  disabled, the change-order tier;
- the rate-limit allowance from the X-Rate-Limit-* headers of the last Procore response.

Read-only, and modest in calls: Procore gets GETs only (plus the OAuth token POST): the
company list, the projects, the vendors, one commitment list per matched project (all pages)
and at most one commitment Show per project for the tier. X3 gets queries only: one page of
each entity, all pages of the purchase orders and suppliers, and one record's `$details` for
the field checks (GraphQL: the entity queries themselves validate the configured names).
Secrets are never printed: error texts come from the clients, which redact them.
"""

from mlc_dagster.preflight.report import FAIL, OK, WARN, PingRow, exit_code, format_report
from mlc_dagster.preflight.run import run_ping
from mlc_dagster.preflight.x3 import ping_x3

__all__ = ["FAIL", "OK", "WARN", "PingRow", "exit_code", "format_report", "ping_x3", "run_ping"]
