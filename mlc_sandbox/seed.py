"""Deterministic demo universe shared by the Sage X3 and Procore sandboxes.

Both sandboxes are built from one `SeedData`, so the X3 supplier codes match the
Procore vendor `origin_id`s, X3 project codes match Procore project numbers, and
the GL accounts line up with the shipped GL -> cost code mapping CSV. A few
things are deliberately broken so the demo shows held POs: some GL accounts
have no mapping, a couple of suppliers have no Procore vendor, and some vendors
exist only in Procore.

Records are kept in the shape each real API stores them: X3 records use X3
column names (POHNUM, BPSNUM, UPDDATTIM, ...), Procore records use Procore's
JSON field names.

`history=True` (opt-in; `mlc-dagster sandbox` and `demo` turn it on, `--no-history` off)
adds what a customer typed into Procore by hand before go-live, for adoption to find:
commitments without origin_id that are twins of X3 POs (same number, a number written
differently, or only the same vendor, date and total), ambiguous pairs, one owned by another
integration, approved ones, a partly invoiced one, a few with no X3 counterpart, and a
vendor owned by another integration. `SeedData.history_cases` is the ground truth per case;
seed_history.py builds both. With history off the seed is byte-identical to before.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

# Ids above 2**32, as Procore's multi-region ids are.
COMPANY_ID = 562949953421312
ID_BASE = 562949953500000

SANDBOX_CREDENTIALS = {
    "procore_client_id": "mlc-sandbox-client",
    "procore_client_secret": "sandbox-procore-secret-4f9c",
    "x3_user": "MLCAPI",
    "x3_password": "sandbox-x3-password-7d21",
    "x3_endpoint": "SEED",
    "x3_jwt_client_id": "8f1c2d3e4b5a69788796a5b4c3d2e1f0",
    "x3_jwt_secret": "sandbox-x3-connected-app-secret-a91e7c40",
    "x3_jwt_user": "MLCAPI",
}

SCALES = {
    # name: (projects, POs per project, max lines per PO, fixed lines per PO or None)
    "small": (20, 15, 15, None),
    "medium": (20, 100, 15, None),
    "backfill": (20, 250, 10, 10),
    "large": (20, 1000, 20, 20),
}

UOMS = ["EA", "LS", "M3", "T", "HR", "M", "M2", "KG"]

LINE_ITEM_TYPES = [
    # (code, name, base_type)
    ("M", "Materials", "materials"),
    ("L", "Labor", "labor"),
    ("E", "Equipment", "equipment"),
    ("S", "Subcontract", "commitment"),
    ("O", "Other", "other"),
]

COST_CODES = [
    ("01-100", "General Requirements"),
    ("01-500", "Temporary Facilities"),
    ("02-200", "Site Preparation"),
    ("02-300", "Earthwork"),
    ("03-100", "Concrete Formwork"),
    ("03-200", "Concrete Reinforcement"),
    ("03-300", "Cast-in-Place Concrete"),
    ("04-200", "Unit Masonry"),
    ("05-100", "Structural Steel"),
    ("05-500", "Metal Fabrications"),
    ("06-100", "Rough Carpentry"),
    ("07-200", "Insulation"),
    ("07-500", "Membrane Roofing"),
    ("08-100", "Doors and Frames"),
    ("08-500", "Windows"),
    ("09-200", "Plaster and Gypsum Board"),
    ("09-600", "Flooring"),
    ("09-900", "Painting"),
    ("10-100", "Specialties"),
    ("21-100", "Fire Suppression"),
    ("22-100", "Plumbing"),
    ("23-100", "HVAC"),
    ("26-100", "Electrical"),
    ("31-200", "Excavation and Fill"),
    ("32-100", "Paving"),
]

# GL accounts (COA "SEED"). The last three are in use but deliberately unmapped.
GL_ACCOUNTS = [
    ("601100", "Purchases - general requirements", "01-100", "O"),
    ("601150", "Site facilities hire", "01-500", "E"),
    ("601200", "Site preparation", "02-200", "S"),
    ("601300", "Earthworks subcontract", "02-300", "S"),
    ("602100", "Formwork materials", "03-100", "M"),
    ("602200", "Rebar", "03-200", "M"),
    ("602300", "Ready-mix concrete", "03-300", "M"),
    ("602400", "Masonry materials", "04-200", "M"),
    ("603100", "Structural steel", "05-100", "M"),
    ("603500", "Metalwork", "05-500", "S"),
    ("604100", "Timber", "06-100", "M"),
    ("604200", "Insulation materials", "07-200", "M"),
    ("604500", "Roofing", "07-500", "S"),
    ("605100", "Doors and ironmongery", "08-100", "M"),
    ("605500", "Glazing", "08-500", "S"),
    ("606200", "Drylining", "09-200", "S"),
    ("606600", "Floor finishes", "09-600", "M"),
    ("606900", "Decoration", "09-900", "L"),
    ("607100", "Specialties", "10-100", "M"),
    ("608100", "Sprinklers", "21-100", "S"),
    ("608200", "Plumbing", "22-100", "S"),
    ("608300", "Mechanical", "23-100", "S"),
    ("608600", "Electrical", "26-100", "S"),
    ("609200", "Bulk excavation", "31-200", "E"),
    ("609300", "Paving", "32-100", "S"),
    ("611000", "Plant hire", "01-500", "E"),
    ("612000", "Labour agency", "01-100", "L"),
    ("619900", "Sundry purchases - unallocated", None, None),
    ("621000", "Small tools (uncoded)", None, None),
    ("628800", "Consultancy (uncoded)", None, None),
]
UNMAPPED_GL_ACCOUNTS = [acc for acc, _d, code, _t in GL_ACCOUNTS if code is None]
MAPPED_GL_ACCOUNTS = [acc for acc, _d, code, _t in GL_ACCOUNTS if code is not None]

X3_CHART = "SEED"  # the chart of accounts (COA) of the demo folder
# The analytical dimension type on PO lines whose values a contractor maps to cost codes
# (MLC_MAPPING_KEY=dimension:CST); one value per GL account, so both keys map alike.
LINE_DIMENSION_TYPE = "CST"


def line_dimension_value(account: str) -> str:
    return f"C{account}"


CITIES = [
    ("London", "EC1A 1BB", "GB"), ("Manchester", "M1 1AE", "GB"), ("Leeds", "LS1 4AP", "GB"),
    ("Bristol", "BS1 4ST", "GB"), ("Birmingham", "B1 1BB", "GB"), ("Lyon", "69002", "FR"),
    ("Paris", "75008", "FR"), ("Glasgow", "G1 1XQ", "GB"),
]
SUPPLIER_WORDS = [
    "Atlas", "Beacon", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iron",
    "Juniper", "Keystone", "Lumen", "Meridian", "Northgate", "Oakridge", "Pinnacle", "Quarry",
    "Ridgeway", "Summit", "Titan", "Union", "Vertex", "Westfield", "Yardley",
]
SUPPLIER_TRADES = [
    "Concrete", "Steel", "Timber", "Electrical", "Plumbing", "Plant Hire", "Roofing",
    "Glazing", "Scaffolding", "Aggregates", "Mechanical", "Interiors",
]
ITEMS = [
    ("CONC-C30", "Ready-mix concrete C30/37", "M3"), ("REBAR-16", "Rebar B500B 16mm", "T"),
    ("PLY-18", "Plywood 18mm sheet", "EA"), ("STL-UB", "Universal beam 305x165", "T"),
    ("LAB-DAY", "Labour day rate", "HR"), ("EXC-HIRE", "Excavator hire", "HR"),
    ("INS-100", "Mineral wool insulation", "M2"), ("ROOF-SYS", "Roofing system install", "LS"),
    ("CABLE-6", "Cable 6mm twin and earth", "M"), ("PIPE-22", "Copper pipe 22mm", "M"),
    ("DOOR-FD30", "Fire door set FD30", "EA"), ("GLZ-PNL", "Glazing panel", "M2"),
    ("PAINT-W", "Emulsion paint", "KG"), ("SUB-LS", "Subcontract package", "LS"),
]


def stamp(dt: datetime) -> str:
    """X3 update stamps are UTC datetimes with second resolution."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def money(value: Decimal) -> str:
    """Two decimals, halves rounded up (commercial rounding; ASSUMPTION for X3 amounts)."""
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


# Every stamp is relative to this moment; reference data predates it.
BASE_TIME = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)
CREATED = stamp(BASE_TIME - timedelta(days=30))  # Procore reference data
PROJECT_KINDS = ["Tower", "Depot", "School", "Clinic", "Bridge"]
SUB_JOBS = (("A", "Phase A - Substructure"), ("B", "Phase B - Superstructure"))
SUPPLIER_COUNT = 40
# Vendors that exist only in Procore (no origin_id): adoption and the vendor sync leave them.
PROCORE_ONLY_VENDORS = ["Harbor Crane Services", "Local Skip Hire", "Brightline Surveys"]


@dataclass
class SeedData:
    seed: int
    scale: str
    company: dict
    projects: list[dict]  # Procore projects
    x3_projects: list[dict]  # X3 project codes (PJTH values)
    standard_cost_code_list: dict
    standard_cost_codes: list[dict]
    project_cost_codes: dict[int, list[dict]]  # procore project id -> cost codes
    line_item_types: list[dict]
    sub_jobs: dict[int, list[dict]]
    uoms: list[dict]
    vendors: list[dict]  # Procore company vendors
    billing_periods: dict[int, list[dict]]
    x3_suppliers: list[dict]  # BPSUPPLIER records
    x3_gl_accounts: list[dict]  # GACCOUNT records
    x3_dimensions: list[dict]  # CACCE records
    x3_purchase_orders: list[dict]  # PORDER headers with "lines" (PORDERQ-like)
    x3_purchase_invoices: list[dict]  # PINVOICE headers with "lines"
    mapping_csv: str = ""
    ids: dict = field(default_factory=dict)
    # Procore project id -> change-order tier (1, 2 or 3); projects not listed are single-tier.
    change_order_tiers: dict[int, int] = field(default_factory=dict)
    # PO numbers whose Procore commitment has subcontractor invoicing disabled once created.
    requisitions_disabled_pos: list[str] = field(default_factory=list)
    # history=True only (seed_history.py): hand-entered Procore commitments (with their lines
    # and requisitions) and the expected outcome per case; empty otherwise.
    procore_commitments: list[dict] = field(default_factory=list)
    history_cases: list[dict] = field(default_factory=list)


class _Ids:
    """Sequential 64-bit id allocator (Procore ids exceed 32 bits)."""

    def __init__(self, start: int = ID_BASE) -> None:
        self.next = start

    def __call__(self) -> int:
        self.next += 1
        return self.next


def gl_mapping_csv() -> str:
    """The GL -> cost code table an accountant would keep for the demo data."""
    return _mapping_csv("gl_account", lambda account: account)


def dimension_mapping_csv() -> str:
    """The same table keyed by the line dimension (MLC_MAPPING_KEY=dimension:CST)."""
    return _mapping_csv("dimension", line_dimension_value)


def _mapping_csv(key_column: str, key_of: Callable[[str], str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([key_column, "cost_code", "cost_type"])
    for acc, _des, code, ctype in GL_ACCOUNTS:
        if code is not None:
            writer.writerow([key_of(acc), code, ctype or ""])
    return out.getvalue()


def change_order_tiers(projects: list[dict]) -> dict[int, int]:
    """Most projects single-tier; the last one three-tier and the one before it two-tier."""
    if len(projects) < 3:
        return {}
    return {projects[-2]["id"]: 2, projects[-1]["id"]: 3}


def build_seed(
    seed: int = 42,
    scale: str = "small",
    *,
    projects: int | None = None,
    pos_per_project: int | None = None,
    lines_per_po: int | None = None,
    history: bool = False,
) -> SeedData:
    """Build the whole demo universe. Same arguments -> byte-identical data.

    The parts are built in a fixed order, because ids are handed out in that order and the
    purchase orders and invoices draw from one random generator.

    history: add the hand-entered Procore history (seed_history.py); off, nothing changes."""
    size = _SeedSize.of(scale, projects, pos_per_project, lines_per_po)
    rng = random.Random(seed)
    new_id = _Ids()
    company = {"id": COMPANY_ID, "name": "Northbridge Construction Ltd", "is_active": True}

    procore_projects, x3_projects = _projects(size.projects, company, new_id)
    scc_list, standard_cost_codes = _standard_cost_codes(new_id)
    project_cost_codes, sub_jobs, billing_periods = _project_setup(
        procore_projects, standard_cost_codes, new_id)
    line_item_types = _line_item_types(new_id)
    uoms = [{"id": new_id(), "name": u, "uom_category_id": 1} for u in UOMS]
    x3_suppliers, vendors = _suppliers_and_vendors(company, new_id)
    x3_pos = _purchase_orders(rng, size, x3_projects, [s["BPSNUM"] for s in x3_suppliers])
    data = SeedData(
        seed=seed, scale=scale, company=company, projects=procore_projects,
        x3_projects=x3_projects, standard_cost_code_list=scc_list,
        standard_cost_codes=standard_cost_codes, project_cost_codes=project_cost_codes,
        line_item_types=line_item_types, sub_jobs=sub_jobs, uoms=uoms, vendors=vendors,
        billing_periods=billing_periods, x3_suppliers=x3_suppliers,
        x3_gl_accounts=_gl_accounts(), x3_dimensions=_dimensions(x3_projects),
        x3_purchase_orders=x3_pos, x3_purchase_invoices=_purchase_invoices(rng, x3_pos),
        mapping_csv=gl_mapping_csv(), ids={"next": new_id.next},
        change_order_tiers=change_order_tiers(procore_projects),
        requisitions_disabled_pos=[po["POHNUM"] for po in x3_pos[12::13]],
    )
    if history:
        # Imported here: seed_history builds on this module's constants.
        from mlc_sandbox.seed_history import add_history

        add_history(data, new_id)
        data.ids = {"next": new_id.next}
    return data


# --- the parts of the seed, in the order build_seed builds them -----------------------------



@dataclass(frozen=True)
class _SeedSize:
    projects: int
    pos_per_project: int
    max_lines: int
    fixed_lines: int | None  # every PO has this many lines; None: 1..max_lines at random

    @classmethod
    def of(cls, scale: str, projects: int | None, pos_per_project: int | None,
           lines_per_po: int | None) -> _SeedSize:
        """The scale's size, with any explicit count taking precedence."""
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
        n_projects, n_pos, max_lines, fixed_lines = SCALES[scale]
        if lines_per_po:
            fixed_lines = max_lines = lines_per_po
        return cls(projects or n_projects, pos_per_project or n_pos, max_lines, fixed_lines)


def _projects(count: int, company: dict, new_id: _Ids) -> tuple[list[dict], list[dict]]:
    """Procore projects and the X3 project codes they match (project_number = PJTNUM)."""
    procore_projects, x3_projects = [], []
    for i in range(count):
        number = f"P{1001 + i}"
        city = CITIES[i % len(CITIES)]
        name = f"{city[0]} {PROJECT_KINDS[i % len(PROJECT_KINDS)]} {i + 1:02d}"
        procore_projects.append({
            "id": new_id(), "name": name, "display_name": f"{number} - {name}",
            "project_number": number, "active": True, "city": city[0], "zip": city[1],
            "country_code": city[2], "origin_id": None, "origin_code": None, "origin_data": None,
            "company": {"id": COMPANY_ID, "name": company["name"]},
            "created_at": CREATED, "updated_at": CREATED,
        })
        x3_projects.append({"PJTNUM": number, "DES": name})
    return procore_projects, x3_projects


def _standard_cost_codes(new_id: _Ids) -> tuple[dict, list[dict]]:
    """The company's standard cost code list and its codes (COST_CODES)."""
    scc_list = {"id": new_id(), "name": "ERP Standard Cost Code List", "company_id": COMPANY_ID}
    codes = [{
        "id": new_id(), "standard_cost_code_list_id": scc_list["id"], "parent_id": None,
        "code": code, "full_code": code, "name": name, "origin_id": None, "origin_data": None,
        "created_at": CREATED, "updated_at": CREATED,
    } for code, name in COST_CODES]
    return scc_list, codes


def _project_setup(projects: list[dict], standard_cost_codes: list[dict], new_id: _Ids
                   ) -> tuple[dict[int, list[dict]], dict[int, list[dict]], dict[int, list[dict]]]:
    """Per project, in this order: its cost codes, sub jobs and billing periods."""
    cost_codes, sub_jobs, billing_periods = {}, {}, {}
    for project in projects:
        cost_codes[project["id"]] = _project_cost_codes(project, standard_cost_codes, new_id)
        sub_jobs[project["id"]] = [
            {"id": new_id(), "code": f"{project['project_number']}-{suffix}", "name": name,
             "origin_id": None, "origin_data": None, "created_at": CREATED, "updated_at": CREATED}
            for suffix, name in SUB_JOBS
        ]
        billing_periods[project["id"]] = _billing_periods(new_id)
    return cost_codes, sub_jobs, billing_periods


def _project_cost_codes(project: dict, standard_cost_codes: list[dict], new_id: _Ids
                        ) -> list[dict]:
    """One project cost code per standard cost code, billed to the project itself."""
    return [{
        "id": new_id(), "code": scc["code"], "full_code": scc["code"], "name": scc["name"],
        "standard_cost_code_id": scc["id"], "parent": None, "position": position,
        "biller_type": "Project", "biller_id": project["id"], "origin_id": None,
        "origin_data": None, "created_at": CREATED, "updated_at": CREATED, "deleted_at": None,
    } for position, scc in enumerate(standard_cost_codes)]


def _billing_periods(new_id: _Ids) -> list[dict]:
    """One billing period per month of 2026."""
    periods = []
    for month in range(1, 13):
        start = datetime(2026, month, 1).date()
        end = (datetime(2026 + (month == 12), month % 12 + 1, 1) - timedelta(days=1)).date()
        periods.append({
            "id": new_id(), "start_date": start.isoformat(), "end_date": end.isoformat(),
            # Only one billing period can be Open at any given time (Procore support,
            # "Edit a Billing Period"): the most recent one, invoices go into it.
            "due_date": end.isoformat(), "status": "open" if month == 12 else "closed",
            "position": month,
        })
    return periods


def _line_item_types(new_id: _Ids) -> list[dict]:
    return [
        {"id": new_id(), "code": code, "name": name, "base_type": base, "origin_id": None,
         "origin_data": None}
        for code, name, base in LINE_ITEM_TYPES
    ]


def _suppliers_and_vendors(company: dict, new_id: _Ids) -> tuple[list[dict], list[dict]]:
    """X3 suppliers with their Procore vendors (origin_id = BPSNUM), except the last two
    suppliers, which are X3-only (POs from them are held), then the Procore-only vendors."""
    x3_suppliers, vendors = [], []
    no_vendor = {SUPPLIER_COUNT - 1, SUPPLIER_COUNT - 2}
    for i in range(SUPPLIER_COUNT):
        supplier = _x3_supplier(i)
        x3_suppliers.append(supplier)
        if i not in no_vendor:
            vendors.append(_vendor_of(supplier, company, new_id))
    for j, name in enumerate(PROCORE_ONLY_VENDORS):
        city = CITIES[j]
        vendors.append({
            "id": new_id(), "name": name, "abbreviated_name": name[:10],
            "address": f"{j + 1} High Street", "city": city[0], "zip": city[1],
            "country_code": city[2], "business_phone": None,
            "email_address": None, "is_active": True, "origin_id": None, "origin_code": None,
            "origin_data": None, "synced_to_erp": False, "tax_id": None,
            "company": company["name"], "created_at": CREATED, "updated_at": CREATED,
        })
    return x3_suppliers, vendors


def _x3_supplier(i: int) -> dict:
    """The i-th BPSUPPLIER record."""
    code = f"SUP{i + 1:03d}"
    word = SUPPLIER_WORDS[i % len(SUPPLIER_WORDS)]
    trade = SUPPLIER_TRADES[(i * 7) % len(SUPPLIER_TRADES)]
    name = f"{word} {trade} Ltd" if i < len(SUPPLIER_WORDS) else f"{word} {trade} Group"
    city = CITIES[i % len(CITIES)]
    stamp_at = stamp(BASE_TIME - timedelta(days=20, minutes=i))
    return {
        "BPSNUM": code, "BPSNAM": name, "BPSSHO": name[:10], "BPSTYP": 1, "ENAFLG": 2,
        "CUR": "GBP" if city[2] == "GB" else "EUR", "CRY": city[2], "CTY": city[0],
        "POSCOD": city[1], "ADDLIG": f"{10 + i} Industrial Estate",
        "TEL": f"+44 20 7946 {i:04d}", "WEB": f"{code.lower()}@example.com",
        "EECNUM": f"GB{100000000 + i * 7919:09d}", "CREDATTIM": stamp_at, "UPDDATTIM": stamp_at,
    }


def _vendor_of(supplier: dict, company: dict, new_id: _Ids) -> dict:
    """The Procore vendor an earlier sync made of an X3 supplier."""
    code, name = supplier["BPSNUM"], supplier["BPSNAM"]
    return {
        "id": new_id(), "name": name, "abbreviated_name": name[:10],
        "address": supplier["ADDLIG"], "city": supplier["CTY"], "zip": supplier["POSCOD"],
        "country_code": supplier["CRY"], "business_phone": supplier["TEL"],
        "email_address": supplier["WEB"], "is_active": True, "origin_id": code,
        "origin_code": code, "origin_data": None, "synced_to_erp": True,
        "tax_id": supplier["EECNUM"], "company": company["name"], "created_at": CREATED,
        "updated_at": CREATED,
    }


def _gl_accounts() -> list[dict]:
    return [{"COA": X3_CHART, "ACC": acc, "DES": des,
             "UPDDATTIM": stamp(BASE_TIME - timedelta(days=60))}
            for acc, des, _c, _t in GL_ACCOUNTS]


def _dimensions(x3_projects: list[dict]) -> list[dict]:
    """A PRJ dimension per project, then a line dimension (LINE_DIMENSION_TYPE) per GL account."""
    return [
        {"DIE": "PRJ", "CCE": p["PJTNUM"], "DES": p["DES"][:30], "DESSHO": p["PJTNUM"],
         "ENAFLG": 2, "UPDDATTIM": stamp(BASE_TIME - timedelta(days=60))}
        for p in x3_projects
    ] + [
        {"DIE": LINE_DIMENSION_TYPE, "CCE": line_dimension_value(acc), "DES": des[:30],
         "DESSHO": line_dimension_value(acc), "ENAFLG": 2,
         "UPDDATTIM": stamp(BASE_TIME - timedelta(days=60))}
        for acc, des, _c, _t in GL_ACCOUNTS
    ]


def _purchase_orders(rng: random.Random, size: _SeedSize, x3_projects: list[dict],
                     supplier_pool: list[str]) -> list[dict]:
    """`size.pos_per_project` POs per project, stamped 7 s apart; a few from X3-only
    suppliers (the last two of the pool), a few closed."""
    x3_pos = []
    for p_index, project in enumerate(x3_projects):
        for k in range(size.pos_per_project):
            po_seq = len(x3_pos) + 1
            number = f"PO{26000000 + po_seq:08d}"
            n_lines = size.fixed_lines or rng.randint(1, size.max_lines)
            supplier = supplier_pool[rng.randrange(len(supplier_pool) - 2)]
            if rng.random() < 0.02:
                supplier = supplier_pool[-1 - rng.randrange(2)]  # X3-only supplier -> held
            order_day = BASE_TIME + timedelta(days=rng.randrange(300))
            stamp_at = stamp(BASE_TIME + timedelta(seconds=po_seq * 7))
            lines = [_po_line(rng, number, n, project["PJTNUM"], stamp_at)
                     for n in range(n_lines)]
            closed = rng.random() < 0.04
            x3_pos.append({
                "POHNUM": number, "POHTYP": 1, "POHFCY": "FR011" if p_index % 7 == 5 else "GB011",
                "ORDDAT": order_day.date().isoformat(), "BPSNUM": supplier,
                "PJTH": project["PJTNUM"], "CUR": "GBP", "REVNUM": 0,
                "CLEFLG": 2 if closed else 1, "APPFLG": 3,
                "ORDREF": f"Order {project['PJTNUM']}-{k + 1:04d}",
                "TOTORD": money(sum(Decimal(line["LINAMT"]) for line in lines)),
                "CREDATTIM": stamp_at, "UPDDATTIM": stamp_at, "lines": lines,
            })
    return x3_pos


def _po_line(rng: random.Random, number: str, index: int, project: str, stamp_at: str) -> dict:
    """The index-th line of PO `number`; now and then on an unmapped GL account."""
    item, desc, uom = ITEMS[rng.randrange(len(ITEMS))]
    acc = MAPPED_GL_ACCOUNTS[rng.randrange(len(MAPPED_GL_ACCOUNTS))]
    if rng.random() < 0.004:
        acc = UNMAPPED_GL_ACCOUNTS[rng.randrange(len(UNMAPPED_GL_ACCOUNTS))]
    qty = Decimal(rng.randint(1, 400)) if uom != "LS" else Decimal(1)
    price = Decimal(rng.randint(500, 500000)) / 100
    # X3 keeps a line's accounts in PORDERC.LINACC (by chart, COA) and its dimensions in
    # CPTANALIN.CCE (by type, DIE); "ACC" is a seed-only shortcut for LINACC[0] that the
    # sandbox never serves.
    return {
        "POHNUM": number, "POPLIN": (index + 1) * 1000, "POQSEQ": 1, "ITMREF": item,
        "ITMDES": desc, "ACC": acc, "COA": [X3_CHART], "LINACC": [acc],
        "DIE": ["PRJ", LINE_DIMENSION_TYPE], "CCE": [project, line_dimension_value(acc)],
        "PJT": project, "QTYUOM": str(qty), "UOM": uom,
        "NETPRI": money(price), "LINAMT": money(qty * price), "LINCLEFLG": 1,
        "LINSTA": 1, "LINREVNUM": 0, "UPDDATTIM": stamp_at,
    }


def _purchase_invoices(rng: random.Random, x3_pos: list[dict]) -> list[dict]:
    """An invoice for each of the first 30 % of the open POs, stamped after every PO; most
    are posted (final), every 8th one is still being entered."""
    invoices = []
    open_pos = [po for po in x3_pos if po["CLEFLG"] == 1]
    for po in open_pos[: max(1, len(open_pos) * 3 // 10)]:
        inv_seq = len(invoices) + 1
        number = f"PI{26000000 + inv_seq:08d}"
        inv_day = datetime.fromisoformat(po["ORDDAT"]) + timedelta(days=rng.randint(5, 40))
        if inv_day.year > 2026:
            inv_day = datetime(2026, 12, 15)
        stamp_at = stamp(BASE_TIME + timedelta(seconds=len(x3_pos) * 7 + inv_seq * 5))
        billed = po["lines"][: rng.randint(1, len(po["lines"]))]
        lines = [_invoice_line(rng, number, n, po, po_line, stamp_at)
                 for n, po_line in enumerate(billed)]
        invoices.append({
            "NUM": number, "PIHTYP": 1, "BPSNUM": po["BPSNUM"], "BPSINV": f"INV-{inv_seq:05d}",
            "INVDAT": inv_day.date().isoformat(), "ACCDAT": inv_day.date().isoformat(),
            "CUR": po["CUR"], "PJT": po["PJTH"],
            "STA": 1 if inv_seq % 8 == 0 else 2,
            "AMTNOT": money(sum(Decimal(line["AMTNOTLIN"]) for line in lines)),
            "CREDATTIM": stamp_at, "UPDDATTIM": stamp_at, "lines": lines,
        })
    return invoices


def _invoice_line(rng: random.Random, number: str, index: int, po: dict, po_line: dict,
                  stamp_at: str) -> dict:
    """A quarter, half, three quarters or all of a PO line's quantity, at its price."""
    fraction = Decimal(rng.choice([25, 50, 75, 100])) / 100
    qty = (Decimal(po_line["QTYUOM"]) * fraction).quantize(Decimal("0.001"))
    amount = Decimal(po_line["NETPRI"]) * qty
    return {
        "NUM": number, "PIDLIN": (index + 1) * 1000, "POHNUM": po["POHNUM"],
        "POPLIN": po_line["POPLIN"], "POQSEQ": 1, "ITMREF": po_line["ITMREF"],
        "ITMDES": po_line["ITMDES"], "QTYUOM": str(qty),
        "UOM": po_line["UOM"], "NETPRI": po_line["NETPRI"], "AMTNOTLIN": money(amount),
        "UPDDATTIM": stamp_at,
    }
