"""Payload helpers every flow uses (pure): origin ids, Procore-safe text and numbers, the
content hash the ledger compares, Procore's per-item error text, and what a writer did with
one record.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

DESCRIPTION_LIMIT = 255
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def contract_origin_id(po_number: str) -> str:
    """The origin_id of the commitment a Sage X3 PO becomes."""
    return f"X3:PO:{po_number}"


def line_origin_id(po_number: str, line_number: int) -> str:
    """The origin_id of a PO line's commitment line item (invoices refer to it too)."""
    return f"X3:PO:{po_number}:{line_number}"


def requisition_origin_id(invoice_number: str, po_number: str) -> str:
    """The origin_id of the requisition an X3 invoice becomes on one PO's commitment."""
    return f"X3:PI:{invoice_number}:{po_number}"


def content_hash(payload) -> str:
    """Stable hash of a payload: the ledger compares it to skip no-op writes."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def clean_text(value: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """Procore-safe free text: no control characters, within the field limit."""
    text = _CONTROL_CHARS.sub(" ", value or "").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def decimal_text(value: float, places: int | None = None) -> str:
    """A number as Procore's decimal string: `places` decimals (money: 2), else at most 6
    with trailing zeros dropped, so an unchanged quantity always hashes the same."""
    if places is not None:
        return f"{value:.{places}f}"
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def error_text(errors) -> str:
    """Procore's per-item `errors` (field -> messages, or a plain text) as one line."""
    if isinstance(errors, dict):
        return "; ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
                         for k, v in errors.items())
    return str(errors)


@dataclass
class WriteOutcome:
    """What a writer did with one record in this run: a row of its step's metadata table.

    `key` is the ledger key (PO number, invoice number, supplier code, vendor id)."""

    entity: str
    key: str
    action: str
    status: str
    procore_id: int | None = None
    reason: str | None = None
    changes: list[str] = field(default_factory=list)

    @property
    def detail(self) -> str:
        """The reason, else the changes made."""
        return self.reason or "; ".join(self.changes)
