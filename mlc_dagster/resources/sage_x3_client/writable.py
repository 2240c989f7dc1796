"""What the connector may ever write in X3: suppliers and analytical dimension values.

GL accounts, journals and accounting entries are refused twice: they are not on the
allow-list, and a deny pattern stops them even if the list is extended by mistake.
"""

from __future__ import annotations

import re

from mlc_dagster.resources.sage_x3_client.errors import X3WriteForbidden

# The only X3 REST classes this connector may ever write. Extend in code, deliberately.
WRITABLE_REST_CLASSES = frozenset({"BPSUPPLIER", "CACCE"})
WRITABLE_GRAPHQL_NODES = frozenset({"supplier", "dimension"})
# Belt and braces: even an extended allow-list can never reach the general ledger.
LEDGER_NAMES = re.compile(r"GACC|ACCOUNT|JOU|ENTRY|LEDGER", re.IGNORECASE)


def refuse_unless_writable(kind: str, name: str, writable: frozenset[str]) -> None:
    """Raise X3WriteForbidden unless X3 `kind` ("class", "node") `name` may be written."""
    if name not in writable or LEDGER_NAMES.search(name):
        raise X3WriteForbidden(
            f"refusing to write Sage X3 {kind} {name!r}: only {sorted(writable)} "
            "may be written; GL accounts, journals and accounting entries are never written")
