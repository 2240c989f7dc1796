"""The fewest Procore calls a sync can make, from the seed and the GL mapping CSV alone.

Written apart from the connector: nothing here imports `mlc_dagster`. The floor is read from
the `SeedData` that the sandboxes serve and from the mapping file the run uses, with small
rules of its own about which POs and invoices must reach Procore. The benchmark and the CI
smoke test compare the sandboxes' call logs with it (`floor_check`). A floor taken from what
the run did (the commitments it wrote, the lists it reused) would agree with any run, however
many calls it wasted.

A first backfill into a Procore company with no commitments yet needs, per endpoint:

    POST /oauth/token                            1
    GET  projects, vendors, line_item_types      pages(n) each        (reference lists)
    GET  cost_codes                              pages(n) per Procore project
    GET  purchase_order_contracts                1 per project written into (the adoption
                                                 scan of issue #14: an empty list)
    PATCH purchase_order_contracts/sync          ceil(n / 1000) per project (POs to write)
    PATCH .../{id}/line_items/sync               ceil(lines / 1000) per PO
    GET  requisitions                            1 per project with an invoice to send (one
                                                 project-wide listing: no requisition yet)
    GET  projects/{id}/billing_periods           1 per project with an invoice to send
    POST requisitions                            1 per (final invoice, PO) part
    GET  purchase_order_contracts/{id}           1 per commitment with invoicing disabled
                                                 that an invoice tries (its POST above is
                                                 refused; the read confirms why)

`pages(n)` is ceil(n / 100), at least 1. A PO must reach Procore when its project is a Procore
project (X3 PJTH = project_number), its supplier is an active vendor with that origin_id,
and every line's GL account (PORDERC.LINACC at the chart's position) maps to a cost code that
the project has and to a cost type that exists (or none). An invoice is sent when it is final
(STA 2, not a credit memo), its project has an open billing period, and every PO it bills
reaches Procore. A closed PO's status goes with its header sync, and a new commitment's
Draft status is Procore's default, so neither costs a call.

One allowance, named with its reason in `Floor.allowance_reasons`: the requisitions of a
project where a run invoices 2 to 4 commitments are listed per commitment
(PROJECT_LISTING_MIN_COMMITMENTS). One known gap, reported apart and not part of the floor,
is `Floor.recheck`: what each later run spends re-checking invoices held on commitments that
refuse invoices.

Not covered: seeds with hand-entered Procore history (adoption reads twins and their lines),
more POs or invoices than one run takes (MLC_MAX_POS_PER_RUN, MLC_MAX_INVOICES_PER_RUN), and
mapping keys other than the GL account. Each raises ValueError rather than guess.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

PAGE = 100  # the page size the connector asks Procore for; every list in the seeds fits one
SYNC_BATCH = 1000  # Procore's /sync endpoints take at most 1000 items a call
MAX_PER_RUN = 5000  # MLC_MAX_POS_PER_RUN / MLC_MAX_INVOICES_PER_RUN defaults
FINAL_STATUS = "2"  # PINVOICE STA: posted
CREDIT_MEMO_TYPES = {3, 4}  # PIHTYP

TOKEN = "POST /oauth/token"
PROJECTS = "GET /rest/v1.0/projects"
VENDORS = "GET /rest/v1.0/vendors"
COST_CODES = "GET /rest/v1.0/cost_codes"
LINE_ITEM_TYPES = "GET /rest/v1.0/line_item_types"
SCAN = "GET /rest/v1.0/purchase_order_contracts"
HEADER_SYNC = "PATCH /rest/v1.0/purchase_order_contracts/sync"
LINE_SYNC = "PATCH /rest/v1.0/purchase_order_contracts/{id}/line_items/sync"
CONTRACT_READ = "GET /rest/v1.0/purchase_order_contracts/{id}"
REQUISITION_LIST = "GET /rest/v1.1/requisitions"
BILLING_PERIODS = "GET /rest/v1.0/projects/{id}/billing_periods"
REQUISITION_CREATE = "POST /rest/v1.1/requisitions"
REFERENCE = (TOKEN, PROJECTS, VENDORS, COST_CODES, LINE_ITEM_TYPES)
INVOICE_FLOW = (REQUISITION_LIST, BILLING_PERIODS, REQUISITION_CREATE)


_ID = re.compile(r"/\d+(?=/|$)")


def pages(n: int, size: int = PAGE) -> int:
    return max(1, math.ceil(n / size))


def endpoint(method: str, path: str) -> str:
    """`PATCH /rest/v1.0/purchase_order_contracts/5629/line_items/sync` -> `... /{id}/...`."""
    return f"{method} {_ID.sub('/{id}', path)}"


@dataclass(frozen=True)
class Mapping:
    """The GL mapping CSV, read here with its own small parser: `gl_account,cost_code,
    cost_type[,project]`; a row naming a project overrides the general row there."""

    general: dict[str, tuple[str, str]]
    by_project: dict[tuple[str, str], tuple[str, str]]

    @classmethod
    def parse(cls, text: str) -> Mapping:
        rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
        if rows and "gl_account" not in rows[0]:
            raise ValueError("the floor reads GL-account mapping files only")
        general, by_project = {}, {}
        for row in rows:
            account = (row.get("gl_account") or "").strip()
            target = ((row.get("cost_code") or "").strip(), (row.get("cost_type") or "").strip())
            if account and target[0]:
                project = (row.get("project") or "").strip()
                if project:
                    by_project[(account, project)] = target
                else:
                    general[account] = target
        return cls(general, by_project)

    def target(self, account: str, project: str) -> tuple[str, str] | None:
        return self.by_project.get((account, project)) or self.general.get(account)


@dataclass
class Floor:
    calls: Counter  # "METHOD /path/{id}" -> the fewest calls
    pos: dict[str, list[str]] = field(default_factory=dict)  # project number -> POs written
    held_pos: dict[str, str] = field(default_factory=dict)  # PO -> why it stays out
    invoices: list[str] = field(default_factory=list)  # sent: one POST per (invoice, PO)
    invoice_contract_reads: int = 0  # the CONTRACT_READ calls that belong to the invoice flow
    # Calls above the floor that a guard lets pass, each with its reason (the one kind:
    # PROJECT_LISTING_MIN_COMMITMENTS below).
    allowance: Counter = field(default_factory=Counter)
    allowance_reasons: list[str] = field(default_factory=list)
    # project -> commitments that refuse invoices and hold an invoice (see `recheck`)
    refusing: dict[str, set[str]] = field(default_factory=dict)

    def recheck(self) -> Counter:
        """A known gap, not part of the floor: what each later run spends today re-checking
        the invoices held because their commitment refuses invoices. There is no change
        to see (invoicing is switched on by hand in Procore), yet every run fetches a token,
        reads each such commitment once, and lists the requisitions of each project where
        it retries 5 or more of them. A no-change run should cost 0 Procore calls."""
        reads = sum(len(c) for c in self.refusing.values())
        if not reads:
            return Counter()
        listings = sum(1 for c in self.refusing.values()
                       if len(c) >= PROJECT_LISTING_MIN_COMMITMENTS)
        # `+ Counter()` drops a zero count (no project with 5 or more)
        return Counter({TOKEN: 1, CONTRACT_READ: reads, REQUISITION_LIST: listings}) + Counter()

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def flow(self, which: str) -> int:
        """Calls of the PO flow ("po") or of the invoice flow ("invoices")."""
        invoice = sum(self.calls[e] for e in INVOICE_FLOW) + self.invoice_contract_reads
        return invoice if which == "invoices" else self.total - invoice

    def as_dict(self) -> dict:
        return {"by_endpoint": dict(sorted(self.calls.items())), "total": self.total,
                "po_flow": self.flow("po"), "invoice_flow": self.flow("invoices"),
                "pos_expected": sum(len(v) for v in self.pos.values()),
                "pos_held": len(self.held_pos), "invoice_parts_expected": len(self.invoices),
                # the rows the report and older readers know
                "line_item_syncs": self.calls[LINE_SYNC], "header_syncs": self.calls[HEADER_SYNC],
                "adoption_scans": self.calls[SCAN],
                "reference_reads": sum(self.calls[e] for e in REFERENCE),
                "recheck": dict(sorted(self.recheck().items()))}


def _po_hold(po: dict, projects: dict[str, dict], vendors: set[str], mapping: Mapping,
             codes: dict[int, set[str]], types: set[str], chart: str) -> str | None:
    project = projects.get(po.get("PJTH") or "")
    if project is None:
        return f"project {po.get('PJTH')} is not a Procore project"
    if po.get("BPSNUM") not in vendors:
        return f"supplier {po.get('BPSNUM')} is not an active Procore vendor"
    if not po.get("lines"):
        return "no lines"
    for line in po["lines"]:
        charts = list(line.get("COA") or [])
        account = line["LINACC"][charts.index(chart)] if chart in charts else None
        target = mapping.target(account, po["PJTH"]) if account else None
        if target is None:
            return f"line {line.get('POPLIN')}: GL account {account} is not mapped"
        if target[0] not in codes.get(project["id"], set()):
            return f"line {line.get('POPLIN')}: cost code {target[0]} not in the project"
        if target[1] and target[1] not in types:
            return f"line {line.get('POPLIN')}: cost type {target[1]} does not exist"
    return None


def backfill_floor(seed, mapping_csv: str, *, chart: str = "SEED") -> Floor:
    """The floor of the first sync run of `seed` into its empty Procore (see the module)."""
    if getattr(seed, "procore_commitments", None):
        raise ValueError("the floor is for a Procore company with no commitments yet")
    if len(seed.x3_purchase_orders) > MAX_PER_RUN or len(seed.x3_purchase_invoices) > MAX_PER_RUN:
        raise ValueError(f"more than {MAX_PER_RUN} POs or invoices: several runs")
    mapping = Mapping.parse(mapping_csv)
    projects = {p["project_number"]: p for p in seed.projects if p.get("active", True)}
    active = [v for v in seed.vendors if v.get("is_active", True)]
    linked = {v["origin_id"] for v in active if v.get("origin_id")}
    codes = {pid: {c["code"] for c in cc} for pid, cc in seed.project_cost_codes.items()}
    types = {t["code"] for t in seed.line_item_types if t.get("code")}

    calls: Counter = Counter({
        TOKEN: 1, PROJECTS: pages(len(projects)), VENDORS: pages(len(seed.vendors)),
        LINE_ITEM_TYPES: pages(len(seed.line_item_types)),
        COST_CODES: sum(pages(len(seed.project_cost_codes.get(p["id"], [])))
                        for p in projects.values())})
    floor = Floor(calls)
    written: dict[str, dict] = {}  # PO number -> PO
    by_project: dict[str, list[str]] = defaultdict(list)
    for po in seed.x3_purchase_orders:
        reason = _po_hold(po, projects, linked, mapping, codes, types, chart)
        if reason:
            floor.held_pos[po["POHNUM"]] = reason
            continue
        written[po["POHNUM"]] = po
        by_project[po["PJTH"]].append(po["POHNUM"])
        calls[LINE_SYNC] += pages(len(po["lines"]), SYNC_BATCH)
    for numbers in by_project.values():
        calls[SCAN] += 1  # no commitment yet: one empty page
        calls[HEADER_SYNC] += pages(len(numbers), SYNC_BATCH)
    floor.pos = dict(by_project)

    disabled = set(getattr(seed, "requisitions_disabled_pos", ()) or ())
    invoiced: dict[str, set[str]] = defaultdict(set)  # project -> commitments invoices try
    refused: set[str] = set()  # disabled commitments already tried
    for inv in seed.x3_purchase_invoices:
        billed = sorted({line["POHNUM"] for line in inv.get("lines") or []})
        if (str(inv.get("STA")) != FINAL_STATUS or int(inv.get("PIHTYP") or 1) in CREDIT_MEMO_TYPES
                or not billed or any(po not in written for po in billed)):
            continue
        project = projects[written[billed[0]]["PJTH"]]
        if not any(p.get("status") == "open" for p in seed.billing_periods.get(project["id"], [])):
            continue
        for po in billed:
            if po in refused:
                break  # held: the commitment is known to refuse invoices, nothing is sent
            invoiced[project["project_number"]].add(po)
            calls[REQUISITION_CREATE] += 1
            if po in disabled:
                refused.add(po)
                floor.refusing.setdefault(project["project_number"], set()).add(po)
                calls[CONTRACT_READ] += 1
                floor.invoice_contract_reads += 1
                break
            floor.invoices.append(f"{inv['NUM']}:{po}")
    calls[REQUISITION_LIST] += len(invoiced)  # pages of 1000 of nothing: 1 each
    calls[BILLING_PERIODS] += len(invoiced)
    for project, commitments in sorted(invoiced.items()):
        if 2 <= len(commitments) < PROJECT_LISTING_MIN_COMMITMENTS:
            floor.allowance[REQUISITION_LIST] += len(commitments) - 1
            floor.allowance_reasons.append(
                f"{REQUISITION_LIST} +{len(commitments) - 1}: project {project} gets invoices on "
                f"{len(commitments)} commitments, each listed on its own ({LISTING_REASON})")
    return floor


# The one allowance: the connector lists requisitions per commitment when a run touches fewer
# than 5 commitments of a project, and once per project from 5 (defs/invoices/writer.py). On a
# project holding thousands of requisitions, a few filtered listings are fewer calls and far
# smaller answers than the whole project in pages of 1000; it cannot know which case it is in
# before listing. At most 3 calls per project per run, and none on a project with 1 or 5+.
PROJECT_LISTING_MIN_COMMITMENTS = 5
LISTING_REASON = "fewer than 5 commitments: filtered listings, smaller on busy projects"


def delta_floor(changed: dict[str, str], lines_of: dict[str, int]) -> Floor:
    """The floor of a run after the POs `changed` (PO -> project) were amended in X3, right
    after another run. The amendment bumps the PO's revision, which the commitment header
    carries, and the reference data is reused. So the run needs one token, one header sync
    per project touched (per <=1000 POs) and one line-item sync per PO."""
    calls: Counter = Counter({TOKEN: 1})
    for n in Counter(changed.values()).values():
        calls[HEADER_SYNC] += pages(n, SYNC_BATCH)
    for po in changed:
        calls[LINE_SYNC] += pages(lines_of[po], SYNC_BATCH)
    return Floor(calls)


def over_floor(actual: Counter | dict, floor: Counter | dict) -> dict[str, int]:
    """Endpoint -> calls above the floor (an endpoint the floor does not name counts whole)."""
    return {e: n - floor.get(e, 0) for e, n in sorted(actual.items()) if n > floor.get(e, 0)}


def under_floor(actual: Counter | dict, floor: Counter | dict) -> dict[str, int]:
    """Endpoint -> calls the floor counts but the run did not make. Below the fewest possible
    calls means the floor is wrong (or the run skipped work): either way, a finding."""
    return {e: n - actual.get(e, 0) for e, n in sorted(floor.items()) if n > actual.get(e, 0)}


def floor_check(by_endpoint: dict, floor: Floor) -> dict:
    """A run's Procore calls (endpoint -> calls) against the floor, endpoint by endpoint:
    calls above it (beyond the allowance), below it, and one line per violation."""
    actual = Counter(by_endpoint)
    allowed = floor.calls + floor.allowance
    over = over_floor(actual, allowed)
    return {"over": over, "under": under_floor(actual, floor.calls),
            "calls": sum(actual.values()), "floor": floor.total,
            "allowance": dict(floor.allowance), "allowance_reasons": floor.allowance_reasons,
            "violations": [f"{e}: {actual[e]} calls, floor {floor.calls.get(e, 0)}"
                           + (f" + {floor.allowance[e]} allowed" if floor.allowance.get(e) else "")
                           + f" (+{n})" for e, n in over.items()]}
