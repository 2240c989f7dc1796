"""Duplicates the way a user sees them in Procore, never by `origin_id`.

The Procore sandbox refuses a second record with the same `origin_id` where the sources say
Procore does, so a "no duplicate origin_id" assertion tests the sandbox, not the connector.
A project manager looking at Procore sees something else: two commitments with the same
number, two commitments for the same vendor and X3 PO, an invoice entered twice on a
commitment, a change order sent twice. That is what this module reports, reading Procore over
HTTP like any client (mlc_dagster_tests.oracle.ProcoreReader).

Rules (README "Tests", issue #16 "Checks that can fail"):
- two live commitments in a project with the same number, compared case- and space-insensitively;
- two live commitments in a project with the same vendor and the same X3 PO reference
  (`origin_code`, else the number);
- two requisitions on one commitment with the same invoice number (case/space-insensitive);
- two change order packages on one commitment for the same amendment: the same title key
  (`Sage X3 PO <n> rev <r> [<key>]`), or the same PO and revision with the same total.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from mlc_dagster_tests.oracle import ProcoreReader, money

# Our change order packages' titles (the connector's naming, README "Change orders").
PACKAGE_TITLE = re.compile(r"^Sage X3 PO (?P<po>\S+) rev (?P<revision>-?\d+) \[(?P<key>[^\]]+)\]$")
_SPACES = re.compile(r"\s+")


def normalised(text: object) -> str:
    """How a person compares two references: case and spaces do not matter."""
    return _SPACES.sub("", str(text or "")).casefold()


@dataclass
class DuplicateReport:
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # records looked at, by kind


def duplicate_report(procore_url: str) -> DuplicateReport:
    """Every user-visible duplicate in the Procore company, with what was looked at."""
    result = DuplicateReport(counts={"projects": 0, "commitments": 0, "requisitions": 0,
                                     "packages": 0})
    reader = ProcoreReader(procore_url)
    try:
        for project in reader.projects(status="All"):
            where = f"project {project.get('project_number') or project['id']}"
            contracts = reader.commitments(project["id"])
            requisitions = reader.requisitions(project["id"])
            packages = reader.packages(project["id"])
            result.problems += commitment_duplicates(where, contracts)
            result.problems += requisition_duplicates(where, contracts, requisitions)
            result.problems += package_duplicates(where, contracts, packages)
            for kind, records in (("projects", [project]), ("commitments", contracts),
                                  ("requisitions", requisitions), ("packages", packages)):
                result.counts[kind] += len(records)
        result.counts["procore_calls"] = reader.calls
        return result
    finally:
        reader.close()


def duplicate_problems(procore_url: str) -> list[str]:
    """Every user-visible duplicate in the Procore company, one line each; [] when none."""
    return duplicate_report(procore_url).problems


def _groups(records: Iterable[dict], key) -> list[list[dict]]:
    grouped: dict = defaultdict(list)
    for record in records:
        k = key(record)
        if k is not None:
            grouped[k].append(record)
    return [group for group in grouped.values() if len(group) > 1]


def _ids(records: list[dict]) -> str:
    return ", ".join(f"#{r.get('number')} (id {r.get('id')})" for r in records)


def commitment_duplicates(where: str, contracts: list[dict]) -> list[str]:
    problems = []
    for group in _groups(contracts, lambda c: normalised(c.get("number")) or None):
        problems.append(f"{where}: {len(group)} commitments numbered {group[0].get('number')!r}: "
                        f"{_ids(group)}")

    def vendor_reference(contract: dict):
        vendor = (contract.get("vendor") or {}).get("id")
        reference = normalised(contract.get("origin_code") or contract.get("number"))
        return (vendor, reference) if vendor is not None and reference else None

    for group in _groups(contracts, vendor_reference):
        if len({normalised(c.get("number")) for c in group}) == 1:
            continue  # already reported as the same number
        vendor = (group[0].get("vendor") or {}).get("company") or group[0]["vendor"]["id"]
        reference = group[0].get("origin_code") or group[0].get("number")
        problems.append(f"{where}: {len(group)} commitments of vendor {vendor!r} for X3 PO "
                        f"{reference!r}: {_ids(group)}")
    return problems


def requisition_duplicates(where: str, contracts: list[dict],
                           requisitions: list[dict]) -> list[str]:
    numbers = {c["id"]: c.get("number") for c in contracts}
    problems = []
    for group in _groups(requisitions, lambda r: (r.get("commitment_id"),
                                                  normalised(r.get("invoice_number")))
                         if normalised(r.get("invoice_number")) else None):
        first = group[0]
        problems.append(
            f"{where}: commitment #{numbers.get(first.get('commitment_id'))} has {len(group)} "
            f"invoices numbered {first.get('invoice_number')!r}: "
            + ", ".join(f"requisition #{r.get('number')} (id {r.get('id')}, "
                        f"{money(r.get('total_claimed_amount'))})" for r in group))
    return problems


def package_duplicates(where: str, contracts: list[dict], packages: list[dict]) -> list[str]:
    numbers = {c["id"]: c.get("number") for c in contracts}
    problems = []

    def describe(group: list[dict]) -> str:
        return ", ".join(f"#{p.get('number')} {p.get('title')!r} ({p.get('status')}, "
                         f"{money(p.get('grand_total'))})" for p in group)

    def title(package: dict):
        match = PACKAGE_TITLE.match(str(package.get("title") or ""))
        return (package.get("contract_id"), match["po"], match["revision"], match["key"]
                ) if match else None

    by_title = _groups(packages, title)
    for group in by_title:
        problems.append(f"{where}: commitment #{numbers.get(group[0].get('contract_id'))} has "
                        f"{len(group)} change orders for one amendment: {describe(group)}")
    reported = {id(p) for group in by_title for p in group}

    def amendment(package: dict):
        match = PACKAGE_TITLE.match(str(package.get("title") or ""))
        if not match:
            return None
        return (package.get("contract_id"), match["po"], match["revision"],
                money(package.get("grand_total")))

    for group in _groups(packages, amendment):
        if all(id(p) in reported for p in group):
            continue
        total = money(group[0].get("grand_total"))
        if total == Decimal("0.00") and len({title(p) for p in group}) == len(group):
            # empty packages with different keys are different amendments not yet filled
            continue
        problems.append(f"{where}: commitment #{numbers.get(group[0].get('contract_id'))} has "
                        f"{len(group)} change orders for PO {group[0]['title'].split()[3]} with "
                        f"the same revision and total: {describe(group)}")
    return problems
