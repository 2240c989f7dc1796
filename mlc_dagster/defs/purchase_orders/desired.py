"""Desired Procore commitments from staged Sage X3 purchase orders (pure functions).

Data in, payloads out: no I/O here. Lookups (project, vendor, GL -> cost code,
cost code id, cost type id) are DataFrame merges, so thousands of POs map in
well under a second. A PO with any line that cannot be placed is held whole,
with one reason per problem.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

import pandas as pd

from mlc_dagster.defs.purchase_orders.gl_map import GlMapping, match_projects
from mlc_dagster.defs.purchase_orders.staging import StagedPurchaseOrders
from mlc_dagster.x3_reads.scope import StagingScope

DESCRIPTION_LIMIT = 255
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def contract_origin_id(po_number: str) -> str:
    return f"X3:PO:{po_number}"


def line_origin_id(po_number: str, line_number: int) -> str:
    return f"X3:PO:{po_number}:{line_number}"


def content_hash(payload) -> str:
    """Stable hash of a payload: the ledger compares it to skip no-op writes."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class CommitmentRules:
    """User-configurable rules for building commitments."""

    project_rule: str = "project_number"
    project_table: dict[str, str] = field(default_factory=dict)
    accounting_method: str = "unit"


@dataclass
class DesiredCommitment:
    po_number: str
    project_id: int
    project_code: str
    x3_stamp: str
    revision: int
    closed: bool
    header: dict  # purchase_order_contract fields, without status
    lines: list[dict]  # line item payloads, keyed by origin_id

    @property
    def header_hash(self) -> str:
        return content_hash({"header": self.header, "closed": self.closed})

    @property
    def line_hashes(self) -> dict[str, str]:
        return {line["origin_id"]: content_hash(line) for line in self.lines}

    @property
    def hash(self) -> str:
        return content_hash({"h": self.header_hash, "l": sorted(self.line_hashes.items())})


@dataclass
class DesiredCommitments:
    commitments: list[DesiredCommitment]
    holds: pd.DataFrame  # po_number, x3_stamp, reason
    unmapped: pd.DataFrame  # gl_account (the unmapped mapping key), po_number
    # Which POs these are (x3_reads/scope.py): the write step hands it to `mark_planned`.
    scope: StagingScope | None = None

    def held_reasons(self) -> dict[str, str]:
        grouped = self.holds.groupby("po_number", sort=True)["reason"]
        return {po: "; ".join(dict.fromkeys(reasons)) for po, reasons in grouped}


def clean_text(value: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """Procore-safe free text: no control characters, within the field limit."""
    text = _CONTROL_CHARS.sub(" ", value or "").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decimal(value: float, places: int | None = None) -> str:
    if places is not None:
        return f"{value:.{places}f}"
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def build_desired_commitments(
    staged: StagedPurchaseOrders,
    mapping: GlMapping,
    projects: pd.DataFrame,
    vendors: pd.DataFrame,
    cost_codes: pd.DataFrame,
    line_item_types: pd.DataFrame,
    rules: CommitmentRules | None = None,
) -> DesiredCommitments:
    rules = rules or CommitmentRules()
    headers = staged.headers.copy()
    lines = staged.lines.merge(
        headers[["po_number", "project_code"]].rename(columns={"project_code": "po_project"}),
        on="po_number", how="inner",
    )
    holds: list[pd.DataFrame] = [
        staged.quarantine.groupby("po_number", as_index=False)["reason"].first()
        if len(staged.quarantine) else pd.DataFrame(columns=["po_number", "reason"])
    ]

    # Project
    headers["project_id"] = match_projects(headers["project_code"], projects, rules.project_rule,
                                           rules.project_table)
    unknown = headers[headers["project_id"].isna()]
    holds.append(pd.DataFrame({
        "po_number": unknown["po_number"],
        "reason": [f"project {p or '(blank)'} has no Procore project (match rule: "
                   f"{rules.project_rule})" for p in unknown["project_code"]],
    }))

    # Vendor: supplier code == vendor origin_id, and the vendor must be active.
    active = vendors[vendors["is_active"].fillna(True).astype(bool)] if len(vendors) else vendors
    linked = active[active["origin_id"].notna()] if len(active) else active
    vendor_ids = dict(zip(linked.get("origin_id", []), linked.get("id", []), strict=False))
    headers["vendor_id"] = headers["supplier_code"].map(vendor_ids)
    no_vendor = headers[headers["vendor_id"].isna()]
    holds.append(pd.DataFrame({
        "po_number": no_vendor["po_number"],
        "reason": [f"supplier {s} is not an active Procore vendor (no vendor with origin_id {s})"
                   for s in no_vendor["supplier_code"]],
    }))

    # Mapping key (GL account or dimension value, MLC_MAPPING_KEY) -> cost code: project
    # override first, then the general row. The table's `gl_account` column holds the key.
    label = mapping.key.label
    short = "GL" if mapping.key.kind == "gl_account" else label
    if "mapping_key" not in lines:
        lines["mapping_key"] = lines["gl_account"]
    table = mapping.table.rename(columns={"gl_account": "mapping_key"})
    general = table[table["project"] == ""][["mapping_key", "cost_code", "cost_type"]]
    override = table[table["project"] != ""][["mapping_key", "project", "cost_code", "cost_type"]]
    lines = lines.merge(general, on="mapping_key", how="left")
    if len(override):
        lines = lines.merge(override.rename(columns={"project": "po_project"}),
                            on=["mapping_key", "po_project"], how="left", suffixes=("", "_override"))
        has_override = lines["cost_code_override"].notna()
        lines.loc[has_override, "cost_code"] = lines.loc[has_override, "cost_code_override"]
        lines.loc[has_override, "cost_type"] = lines.loc[has_override, "cost_type_override"]
        lines = lines.drop(columns=["cost_code_override", "cost_type_override"])
    unmapped = lines[lines["cost_code"].isna()]
    holds.append(pd.DataFrame({
        "po_number": unmapped["po_number"],
        "reason": [f"line {n}: {label} {g} has no cost code mapping"
                   for n, g in zip(unmapped["line_number"], unmapped["mapping_key"], strict=True)],
    }))

    # Cost code id within the PO's Procore project; cost type id company-wide.
    lines = lines.merge(headers[["po_number", "project_id"]], on="po_number", how="left")
    # A code can exist more than once in a project (e.g. once per sub job); the project-level
    # one (listed first by Procore, lowest id) is the one a PO line books to.
    code_ids = cost_codes.sort_values("id").drop_duplicates(["project_id", "code"])[
        ["project_id", "code", "id"]].rename(columns={"code": "cost_code", "id": "cost_code_id"}
                                             ) if len(cost_codes) else pd.DataFrame(
        columns=["project_id", "cost_code", "cost_code_id"])
    lines = lines.merge(code_ids, on=["project_id", "cost_code"], how="left")
    missing_code = lines[lines["cost_code"].notna() & lines["project_id"].notna()
                         & lines["cost_code_id"].isna()]
    holds.append(pd.DataFrame({
        "po_number": missing_code["po_number"],
        "reason": [f"line {n}: cost code {c} ({short} {g}) does not exist in Procore project {p}"
                   for n, c, g, p in zip(missing_code["line_number"], missing_code["cost_code"],
                                         missing_code["mapping_key"], missing_code["po_project"],
                                         strict=True)],
    }))
    typed = line_item_types[line_item_types["code"].notna()] if len(line_item_types) else line_item_types
    type_ids = dict(zip(typed.get("code", []), typed.get("id", []), strict=False))
    lines["cost_type"] = lines["cost_type"].fillna("")
    lines["line_item_type_id"] = lines["cost_type"].map(type_ids)
    bad_type = lines[(lines["cost_type"] != "") & lines["line_item_type_id"].isna()]
    holds.append(pd.DataFrame({
        "po_number": bad_type["po_number"],
        "reason": [f"line {n}: cost type {t} does not exist in Procore"
                   for n, t in zip(bad_type["line_number"], bad_type["cost_type"], strict=True)],
    }))

    all_holds = pd.concat([h for h in holds if len(h)], ignore_index=True) if any(
        len(h) for h in holds) else pd.DataFrame(columns=["po_number", "reason"])
    held = set(all_holds["po_number"])
    stamps = dict(zip(headers["po_number"], headers["update_stamp"], strict=True))
    if len(staged.quarantine):
        stamps.update({po: None for po in staged.quarantine["po_number"] if po not in stamps})
    all_holds["x3_stamp"] = all_holds["po_number"].map(stamps)

    commitments = _payloads(headers[~headers["po_number"].isin(held)],
                            lines[~lines["po_number"].isin(held)], rules)
    # `gl_account` of the report holds the unmapped key (an account or a dimension value).
    unmapped_report = (unmapped[["mapping_key", "po_number"]].rename(
        columns={"mapping_key": "gl_account"}).drop_duplicates().reset_index(drop=True))
    return DesiredCommitments(commitments, all_holds.reset_index(drop=True), unmapped_report,
                              staged.scope)


def _payloads(headers: pd.DataFrame, lines: pd.DataFrame, rules: CommitmentRules
              ) -> list[DesiredCommitment]:
    lines = lines.sort_values(["po_number", "line_number"])
    line_payloads: dict[str, list[dict]] = {}
    for row in lines.itertuples(index=False):
        payload = {
            "origin_id": line_origin_id(row.po_number, row.line_number),
            "description": clean_text(row.description or row.item_code or ""),
            "quantity": _decimal(row.quantity),
            "unit_cost": _decimal(row.unit_price),
            "amount": _decimal(row.amount, 2),
            "uom": row.uom,
            "cost_code_id": int(row.cost_code_id),
        }
        if pd.notna(row.line_item_type_id):
            payload["line_item_type_id"] = int(row.line_item_type_id)
        line_payloads.setdefault(row.po_number, []).append(payload)

    all_lines_closed = lines.groupby("po_number")["closed"].all().to_dict()
    result = []
    for row in headers.itertuples(index=False):
        header = {
            "origin_id": contract_origin_id(row.po_number),
            "origin_code": row.po_number,
            "number": row.po_number,
            "title": clean_text(row.reference or f"Sage X3 PO {row.po_number}", 200),
            "vendor_id": int(row.vendor_id),
            "accounting_method": rules.accounting_method,
            "contract_date": row.order_date.date().isoformat(),
            "origin_data": json.dumps({"revision": int(row.revision), "site": row.site}),
        }
        result.append(DesiredCommitment(
            po_number=row.po_number, project_id=int(row.project_id), project_code=row.project_code,
            x3_stamp=row.update_stamp, revision=int(row.revision),
            closed=bool(row.closed or all_lines_closed.get(row.po_number, False)),
            header=header, lines=line_payloads.get(row.po_number, []),
        ))
    return result
