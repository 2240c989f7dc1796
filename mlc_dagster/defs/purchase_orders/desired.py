"""Desired Procore commitments from staged Sage X3 purchase orders (pure functions).

Data in, payloads out: no I/O here. Lookups (project, vendor, mapping key -> cost code,
cost code id, cost type id) are DataFrame merges, so thousands of POs map in
well under a second. A PO with any line that cannot be placed is held whole,
with one reason per problem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from mlc_dagster.common.payload import (
    clean_text,
    content_hash,
    contract_origin_id,
    decimal_text,
    line_origin_id,
)
from mlc_dagster.defs.purchase_orders.gl_map import GlMapping, match_projects
from mlc_dagster.defs.purchase_orders.staging import StagedPurchaseOrders
from mlc_dagster.x3_reads.scope import StagingScope

HOLD_COLUMNS = ["po_number", "reason"]


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


def build_desired_commitments(
    staged: StagedPurchaseOrders,
    mapping: GlMapping,
    projects: pd.DataFrame,
    vendors: pd.DataFrame,
    cost_codes: pd.DataFrame,
    line_item_types: pd.DataFrame,
    rules: CommitmentRules | None = None,
) -> DesiredCommitments:
    """Place every PO (project, vendor) and line (cost code, cost type) in Procore; a PO
    with any problem is held with one reason per problem, in the order of the steps."""
    rules = rules or CommitmentRules()
    headers = staged.headers.copy()
    lines = _po_lines(staged.lines, headers)
    headers["project_id"] = match_projects(headers["project_code"], projects, rules.project_rule,
                                           rules.project_table)
    headers["vendor_id"] = headers["supplier_code"].map(_active_vendor_ids(vendors))
    lines = mapping.with_cost_codes(lines, project="po_project")  # project override first
    lines = _with_cost_code_ids(lines, headers, cost_codes)
    lines = _with_line_item_type_ids(lines, line_item_types)

    holds = _stamped(staged, headers, [
        _quarantine_holds(staged.quarantine),
        _no_project_holds(headers, rules.project_rule),
        _no_vendor_holds(headers),
        _unmapped_holds(lines, mapping),
        _missing_cost_code_holds(lines, mapping),
        _unknown_cost_type_holds(lines),
    ])
    held = set(holds["po_number"])
    commitments = _payloads(headers[~headers["po_number"].isin(held)],
                            lines[~lines["po_number"].isin(held)], rules)
    return DesiredCommitments(commitments, holds, _unmapped_report(lines), staged.scope)


# --- lookups: each adds the Procore ids one step needs -----------------------------------

def _po_lines(lines: pd.DataFrame, headers: pd.DataFrame) -> pd.DataFrame:
    """Staged lines with their PO's X3 project (`po_project`) and their mapping key (the GL
    account, unless staging set a dimension value: MLC_MAPPING_KEY)."""
    lines = lines.merge(
        headers[["po_number", "project_code"]].rename(columns={"project_code": "po_project"}),
        on="po_number", how="inner",
    )
    if "mapping_key" not in lines:
        lines["mapping_key"] = lines["gl_account"]
    return lines


def _active_vendor_ids(vendors: pd.DataFrame) -> dict:
    """Supplier code -> Procore vendor id: the supplier code is the vendor's origin_id, and
    only an active vendor counts."""
    active = vendors[vendors["is_active"].fillna(True).astype(bool)] if len(vendors) else vendors
    linked = active[active["origin_id"].notna()] if len(active) else active
    return dict(zip(linked.get("origin_id", []), linked.get("id", []), strict=False))


def _with_cost_code_ids(lines: pd.DataFrame, headers: pd.DataFrame,
                        cost_codes: pd.DataFrame) -> pd.DataFrame:
    """Each line's PO `project_id` and the id of its cost code within that project."""
    lines = lines.merge(headers[["po_number", "project_id"]], on="po_number", how="left")
    if len(cost_codes):
        # A code can exist more than once in a project (e.g. once per sub job); the
        # project-level one (listed first by Procore, lowest id) is the one a PO line books to.
        code_ids = cost_codes.sort_values("id").drop_duplicates(["project_id", "code"])[
            ["project_id", "code", "id"]].rename(columns={"code": "cost_code",
                                                          "id": "cost_code_id"})
    else:
        code_ids = pd.DataFrame(columns=["project_id", "cost_code", "cost_code_id"])
    return lines.merge(code_ids, on=["project_id", "cost_code"], how="left")


def _with_line_item_type_ids(lines: pd.DataFrame, line_item_types: pd.DataFrame
                             ) -> pd.DataFrame:
    """Each line's cost type (blank: none) and its company-wide line item type id."""
    typed = (line_item_types[line_item_types["code"].notna()] if len(line_item_types)
             else line_item_types)
    type_ids = dict(zip(typed.get("code", []), typed.get("id", []), strict=False))
    return lines.assign(cost_type=lines["cost_type"].fillna(""),
                        line_item_type_id=lambda df: df["cost_type"].map(type_ids))


# --- hold reasons: one frame (po_number, reason) per rule ---------------------------------

def _holds(po_numbers: pd.Series, reasons: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"po_number": po_numbers, "reason": reasons})


def _quarantine_holds(quarantine: pd.DataFrame) -> pd.DataFrame:
    """A PO staging refused: its first reason."""
    if not len(quarantine):
        return pd.DataFrame(columns=HOLD_COLUMNS)
    return quarantine.groupby("po_number", as_index=False)["reason"].first()


def _no_project_holds(headers: pd.DataFrame, rule: str) -> pd.DataFrame:
    unknown = headers[headers["project_id"].isna()]
    return _holds(unknown["po_number"],
                  [f"project {p or '(blank)'} has no Procore project (match rule: {rule})"
                   for p in unknown["project_code"]])


def _no_vendor_holds(headers: pd.DataFrame) -> pd.DataFrame:
    no_vendor = headers[headers["vendor_id"].isna()]
    return _holds(no_vendor["po_number"],
                  [f"supplier {s} is not an active Procore vendor (no vendor with origin_id {s})"
                   for s in no_vendor["supplier_code"]])


def _unmapped_holds(lines: pd.DataFrame, mapping: GlMapping) -> pd.DataFrame:
    unmapped = lines[lines["cost_code"].isna()]
    return _holds(unmapped["po_number"],
                  [f"line {n}: {mapping.key.label} {g} has no cost code mapping"
                   for n, g in zip(unmapped["line_number"], unmapped["mapping_key"], strict=True)])


def _missing_cost_code_holds(lines: pd.DataFrame, mapping: GlMapping) -> pd.DataFrame:
    """A mapped cost code that the PO's Procore project does not have."""
    short = "GL" if mapping.key.kind == "gl_account" else mapping.key.label
    missing = lines[lines["cost_code"].notna() & lines["project_id"].notna()
                    & lines["cost_code_id"].isna()]
    return _holds(missing["po_number"],
                  [f"line {n}: cost code {c} ({short} {g}) does not exist in Procore project {p}"
                   for n, c, g, p in zip(missing["line_number"], missing["cost_code"],
                                         missing["mapping_key"], missing["po_project"],
                                         strict=True)])


def _unknown_cost_type_holds(lines: pd.DataFrame) -> pd.DataFrame:
    unknown = lines[(lines["cost_type"] != "") & lines["line_item_type_id"].isna()]
    return _holds(unknown["po_number"],
                  [f"line {n}: cost type {t} does not exist in Procore"
                   for n, t in zip(unknown["line_number"], unknown["cost_type"], strict=True)])


def _stamped(staged: StagedPurchaseOrders, headers: pd.DataFrame,
             holds: list[pd.DataFrame]) -> pd.DataFrame:
    """All hold reasons in one frame, each with its PO's X3 stamp (None for a PO that only
    quarantine knows)."""
    found = [h for h in holds if len(h)]
    all_holds = (pd.concat(found, ignore_index=True) if found
                 else pd.DataFrame(columns=HOLD_COLUMNS))
    stamps = dict(zip(headers["po_number"], headers["update_stamp"], strict=True))
    if len(staged.quarantine):
        stamps.update({po: None for po in staged.quarantine["po_number"] if po not in stamps})
    all_holds["x3_stamp"] = all_holds["po_number"].map(stamps)
    return all_holds.reset_index(drop=True)


def _unmapped_report(lines: pd.DataFrame) -> pd.DataFrame:
    """Unmapped keys and their POs; the report's `gl_account` column holds the key (an
    account or a dimension value)."""
    unmapped = lines[lines["cost_code"].isna()]
    return (unmapped[["mapping_key", "po_number"]].rename(columns={"mapping_key": "gl_account"})
            .drop_duplicates().reset_index(drop=True))


# --- payloads -------------------------------------------------------------------------------

def _payloads(headers: pd.DataFrame, lines: pd.DataFrame, rules: CommitmentRules
              ) -> list[DesiredCommitment]:
    lines = lines.sort_values(["po_number", "line_number"])
    line_payloads: dict[str, list[dict]] = {}
    for row in lines.itertuples(index=False):
        payload = {
            "origin_id": line_origin_id(row.po_number, row.line_number),
            "description": clean_text(row.description or row.item_code or ""),
            "quantity": decimal_text(row.quantity),
            "unit_cost": decimal_text(row.unit_price),
            "amount": decimal_text(row.amount, 2),
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
