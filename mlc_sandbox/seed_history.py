"""The Procore history a customer typed in by hand before buying the connector (opt-in seed).

`build_seed(..., history=True)` calls `add_history`, which adds to the seed:

- `procore_commitments`: purchase order contracts entered by hand (no `origin_id` on them or
  their lines), twins of X3 POs written in the ways people really type them, plus a few with
  no X3 counterpart, some approved, one partly invoiced (hand-entered requisitions);
- `history_cases`: the ground truth per case (which X3 PO, which hand numbers, whether the
  connector must adopt, hold or leave it untouched, and by which matching rule);
- one Procore vendor owned by another integration (`origin_id` "ACME-ERP:V:88") for the last
  X3 supplier, appended to `vendors`;
- only if no eligible PO has a final X3 invoice: one such invoice (the `invoiced` case says so).

Cases are taken deterministically from the ELIGIBLE POs (supplier linked to an active Procore
vendor, every GL account mapped, open, invoicing enabled, two lines or more), visited project
by project in turn so the history spreads over single-, two- and three-tier projects. Nothing
here draws from the seed's random generator: the rest of the seed is the same with or without
history. The shape of these records is a contract with the adoption, invoice, preview and
preflight tests; the Procore sandbox loads them as if its own API had created them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

from mlc_sandbox.seed import GL_ACCOUNTS, SeedData, money

FOREIGN_PO_ORIGIN = ("ACME-ERP:PO:4711", "4711")
FOREIGN_VENDOR_ORIGIN = ("ACME-ERP:V:88", "88")
FUZZY_NUMBER = "HT-0417"
AMBIGUOUS_NUMBERS = ("HT-1001", "HT-1002")
HAND_ONLY_INVOICE = "HAND-INV-0001"
HAND_ONLY_CLAIM = Decimal("100.00")
# Commitments with no X3 counterpart: number, status, contract date and lines
# (description, quantity, unit cost, uom, cost code, cost type), on the Procore-only vendors.
PROCORE_ONLY = [
    ("HT-2001", "Approved", "2026-03-16",
     [("MOBILE CRANE 50T INCL OPERATOR", "3", "1450.00", "LS", "01-500", "E")]),
    ("HT-2002", "Draft", "2026-04-02",
     [("8 YARD SKIPS", "6", "285.00", "EA", "01-500", "E"),
      ("SKIP EXCHANGES", "4", "95.00", "EA", "01-500", "E")]),
]
GL_MAPPING = {acc: (code, ctype) for acc, _des, code, ctype in GL_ACCOUNTS}


def add_history(data: SeedData, new_id: Callable[[], int]) -> None:
    """Fill data.procore_commitments / history_cases (ids from the seed's allocator)."""
    builder = _HistoryBuilder(data, new_id)
    builder.build()
    data.procore_commitments, data.history_cases = builder.commitments, builder.cases
    check_unique_numbers(data.procore_commitments)


def eligible_pos(data: SeedData) -> list[dict]:
    """X3 POs a hand-made twin can stand for, project by project in turn (round robin)."""
    linked = {v["origin_id"] for v in data.vendors if v["origin_id"] and v["is_active"]}
    disabled = set(data.requisitions_disabled_pos)
    projects = {p["project_number"] for p in data.projects}
    by_project: dict[str, list[dict]] = {}
    for po in data.x3_purchase_orders:
        if (po["BPSNUM"] in linked and po["CLEFLG"] == 1 and po["POHNUM"] not in disabled
                and po["PJTH"] in projects and len(po["lines"]) >= 2
                and all(GL_MAPPING.get(line["ACC"], (None,))[0] for line in po["lines"])):
            by_project.setdefault(po["PJTH"], []).append(po)
    queues = list(by_project.values())
    return [queue[i] for i in range(max(map(len, queues), default=0))
            for queue in queues if i < len(queue)]


def check_unique_numbers(commitments: list[dict]) -> None:
    """Procore refuses a second commitment with the same number in a project."""
    seen: set[tuple[int, str]] = set()
    for c in commitments:
        key = (c["project_id"], c["number"])
        if key in seen:
            raise ValueError(f"history commitment number {c['number']!r} used twice in "
                             f"project {c['project_id']}")
        seen.add(key)


def hand_description(line: dict, index: int) -> str:
    """What a person typed: never X3's ITMDES as is (the connector rewrites it)."""
    if index % 2 == 0:
        return line["ITMDES"].upper()
    return f"{line['ITMREF']} {line['ITMDES']}"[:30]


def final_invoices(data: SeedData) -> dict[str, dict]:
    """PO number -> its first posted (STA 2) X3 invoice."""
    found: dict[str, dict] = {}
    for invoice in data.x3_purchase_invoices:
        if invoice["STA"] == 2:
            for line in invoice["lines"]:
                found.setdefault(line["POHNUM"], invoice)
    return found


def invoiced_by_po(data: SeedData) -> set[str]:
    return {line["POHNUM"] for inv in data.x3_purchase_invoices for line in inv["lines"]}


def claims(po: dict, invoice: dict) -> dict[int, str]:
    """Index of the billed PO line (== the twin line) -> the invoice line's amount."""
    index_of = {line["POPLIN"]: i for i, line in enumerate(po["lines"])}
    return {index_of[line["POPLIN"]]: line["AMTNOTLIN"] for line in invoice["lines"]
            if line["POHNUM"] == po["POHNUM"]}


def room_for_hand_claim(po: dict, invoice: dict) -> bool:
    """Line 0 can take the extra hand-entered claim without being billed beyond its amount."""
    billed = Decimal(claims(po, invoice).get(0, "0"))
    return Decimal(po["lines"][0]["LINAMT"]) - billed >= HAND_ONLY_CLAIM


class _HistoryBuilder:
    """Builds the cases in a fixed order; `take` hands out each eligible PO once."""

    def __init__(self, data: SeedData, new_id: Callable[[], int]) -> None:
        self.data, self.new_id = data, new_id
        self.pool = eligible_pos(data)
        self.used: set[str] = set()
        self.commitments: list[dict] = []
        self.cases: list[dict] = []
        self.project_by_number = {p["project_number"]: p for p in data.projects}
        self.vendor_by_origin = {v["origin_id"]: v for v in data.vendors if v["origin_id"]}
        self.type_by_code = {t["code"]: t for t in data.line_item_types}

    def build(self) -> None:
        self.invoiced()
        self.approved_diff()
        for _ in range(2):
            self.twin_case("exact", "adopt", "number", "number and lines as in X3, Draft")
        self.exact_typo()
        self.normalised()
        self.fuzzy()
        self.ambiguous()
        self.foreign()
        self.twin_case("approved_equal", "adopt", "number",
                       "Approved, lines equal to X3: linked without touching the lines",
                       status="Approved")
        self.procore_only()
        self.foreign_vendor()

    # --- picking POs ---

    def take(self, case: str, accept: Callable[[dict], bool] = lambda _po: True) -> dict:
        for po in self.pool:
            if po["POHNUM"] not in self.used and accept(po):
                self.used.add(po["POHNUM"])
                return po
        raise ValueError(f"history case {case!r}: no eligible X3 PO left (supplier linked to "
                         "an active Procore vendor, every GL account mapped, open, invoicing "
                         "enabled, 2+ lines); use more projects or POs per project")

    def project_id(self, po: dict) -> int:
        return self.project_by_number[po["PJTH"]]["id"]

    # --- records ---

    def hand_line(self, project_id: int, line: dict, index: int,
                  unit_cost: str | None = None) -> dict:
        """A hand-typed copy of an X3 line (optionally with a mistyped unit cost)."""
        code, ctype = GL_MAPPING[line["ACC"]]
        amount = line["LINAMT"]
        if unit_cost is not None:
            amount = money(Decimal(line["QTYUOM"]) * Decimal(unit_cost))
        return self.line(project_id, hand_description(line, index), line["QTYUOM"],
                         unit_cost or line["NETPRI"], amount, line["UOM"], code, ctype)

    def line(self, project_id: int, description: str, quantity: str, unit_cost: str,
             amount: str, uom: str, code: str, ctype: str | None) -> dict:
        cost_code = next(c for c in self.data.project_cost_codes[project_id]
                         if c["code"] == code)
        lit = self.type_by_code.get(ctype) if ctype else None
        return {"id": self.new_id(), "description": description, "quantity": quantity,
                "unit_cost": unit_cost, "amount": amount, "uom": uom,
                "cost_code_id": cost_code["id"], "line_item_type_id": lit["id"] if lit else None}

    def commitment(self, po: dict, number: str, *, status: str = "Draft",
                   contract_date: str | None = None, lines: list[dict] | None = None,
                   origin: tuple[str | None, str | None] = (None, None),
                   title_suffix: str = "") -> dict:
        """A hand-entered twin of `po` (lines equal to X3 unless given)."""
        project_id = self.project_id(po)
        vendor = self.vendor_by_origin[po["BPSNUM"]]
        if lines is None:
            lines = [self.hand_line(project_id, line, i) for i, line in enumerate(po["lines"])]
        record = {
            "id": self.new_id(), "project_id": project_id, "number": number,
            "title": f"{vendor['name']} - {po['ORDREF'].removeprefix('Order ')}{title_suffix}",
            "status": status, "vendor_id": vendor["id"],
            "contract_date": contract_date or po["ORDDAT"],
            "origin_id": origin[0], "origin_code": origin[1], "lines": lines,
            "requisitions": [],
        }
        self.commitments.append(record)
        return record

    def case(self, name: str, po: dict | None, project_id: int | None, numbers: list[str],
             expect: str, rule: str | None, note: str, **extra) -> None:
        self.cases.append({"case": name, "po_number": po["POHNUM"] if po else None,
                           "project_id": project_id, "procore_numbers": numbers,
                           "expect": expect, "rule": rule, "note": note, **extra})

    # --- the cases ---

    def twin_case(self, name: str, expect: str, rule: str | None, note: str, *,
                  status: str = "Draft") -> None:
        """The PO's twin under its own number, lines equal to X3."""
        po = self.take(name)
        twin = self.commitment(po, po["POHNUM"], status=status)
        self.case(name, po, twin["project_id"], [twin["number"]], expect, rule, note)

    def exact_typo(self) -> None:
        po = self.take("exact_typo")
        project_id = self.project_id(po)
        first, *middle, _last = po["lines"]
        typo = money(Decimal(first["NETPRI"]) * Decimal("1.1"))
        lines = [self.hand_line(project_id, first, 0, unit_cost=typo)]
        lines += [self.hand_line(project_id, line, i + 1) for i, line in enumerate(middle)]
        twin = self.commitment(po, po["POHNUM"], lines=lines)
        self.case("exact_typo", po, project_id, [twin["number"]], "adopt", "number",
                  f"line 1 unit cost typed {typo} (X3 {first['NETPRI']}), last X3 line "
                  "missing: the connector corrects the lines")

    def normalised(self) -> None:
        for style, write in (("lower case with a dash", lambda n: f"{n[:2].lower()}-{n[2:]}"),
                             ("no prefix, two extra leading zeros", lambda n: f"00{n[2:]}")):
            po = self.take("normalised")
            twin = self.commitment(po, write(po["POHNUM"]))
            self.case("normalised", po, twin["project_id"], [twin["number"]], "adopt",
                      "normalised_number", f"number typed {style}")

    def fuzzy(self) -> None:
        po = self.take("fuzzy")
        day = (date.fromisoformat(po["ORDDAT"]) + timedelta(days=2)).isoformat()
        twin = self.commitment(po, FUZZY_NUMBER, contract_date=day)
        self.case("fuzzy", po, twin["project_id"], [FUZZY_NUMBER], "adopt", "vendor_date_total",
                  "unrelated number; same vendor, dated 2 days after the PO, same total")

    def ambiguous(self) -> None:
        po = self.take("ambiguous")
        for i, number in enumerate(AMBIGUOUS_NUMBERS):
            self.commitment(po, number, title_suffix=" (re-keyed)" if i else "")
        self.case("ambiguous", po, self.project_id(po), list(AMBIGUOUS_NUMBERS), "hold", None,
                  "two hand commitments with the same vendor, date and total: held with "
                  "both listed, both untouched")

    def foreign(self) -> None:
        po = self.take("foreign")
        twin = self.commitment(po, po["POHNUM"], origin=FOREIGN_PO_ORIGIN)
        self.case("foreign", po, twin["project_id"], [twin["number"]], "hold", None,
                  f"origin_id {FOREIGN_PO_ORIGIN[0]} belongs to another integration: "
                  "held, untouched")

    def approved_diff(self) -> None:
        invoiced = invoiced_by_po(self.data)

        def single_tier_uninvoiced(po: dict) -> bool:
            tier = self.data.change_order_tiers.get(self.project_id(po), 1)
            return tier == 1 and po["POHNUM"] not in invoiced

        po = self.take("approved_diff", single_tier_uninvoiced)
        project_id = self.project_id(po)
        lines = [self.hand_line(project_id, line, i) for i, line in enumerate(po["lines"][:-1])]
        twin = self.commitment(po, po["POHNUM"], status="Approved", lines=lines)
        self.case("approved_diff", po, project_id, [twin["number"]], "adopt", "number",
                  f"Approved, X3 line {po['lines'][-1]['POPLIN']} missing: linked, the line is "
                  "sent as a change order (MLC_APPROVED_POLICY=change_order)")

    def invoiced(self) -> None:
        finals, added = final_invoices(self.data), ""
        try:
            po = self.take("invoiced", lambda p: p["POHNUM"] in finals
                           and room_for_hand_claim(p, finals[p["POHNUM"]]))
            invoice = finals[po["POHNUM"]]
        except ValueError:
            invoiced = invoiced_by_po(self.data)
            po = self.take("invoiced", lambda p: p["POHNUM"] not in invoiced
                           and Decimal(p["lines"][0]["LINAMT"]) >= 2 * HAND_ONLY_CLAIM)
            invoice = add_final_invoice(self.data, po)
            added = "; the final X3 invoice was added to the seed for this case"
        twin = self.commitment(po, po["POHNUM"])
        twin["requisitions"] = [
            self.requisition(twin, invoice["BPSINV"], invoice["INVDAT"], claims(po, invoice)),
            self.requisition(twin, HAND_ONLY_INVOICE, later_date(invoice["INVDAT"]),
                             {0: money(HAND_ONLY_CLAIM)}),
        ]
        self.case("invoiced", po, twin["project_id"], [twin["number"]], "adopt", "number",
                  f"x3_invoice={invoice['NUM']}; requisition '{invoice['BPSINV']}' entered by "
                  f"hand for it, plus '{HAND_ONLY_INVOICE}' with no X3 counterpart{added}")

    def requisition(self, twin: dict, invoice_number: str, billing_date: str,
                    items: dict[int, str]) -> dict:
        return {"id": self.new_id(), "invoice_number": invoice_number,
                "billing_date": billing_date, "status": "approved",
                "period_id": self.period_id(twin["project_id"], billing_date), "items": items}

    def period_id(self, project_id: int, day: str) -> int:
        """The billing period whose dates hold `day` (closed, or the open December one)."""
        for period in self.data.billing_periods[project_id]:
            if period["start_date"] <= day <= period["end_date"]:
                return period["id"]
        raise ValueError(f"history: no billing period of project {project_id} holds {day}")

    def procore_only(self) -> None:
        vendors = [v for v in self.data.vendors if v["origin_id"] is None]
        projects = self.data.projects
        for i, (number, status, day, specs) in enumerate(PROCORE_ONLY):
            vendor, project = vendors[i % len(vendors)], projects[i % len(projects)]
            lines = [self.line(project["id"], desc, qty, cost, money(Decimal(qty) * Decimal(cost)),
                               uom, code, ctype) for desc, qty, cost, uom, code, ctype in specs]
            self.commitments.append({
                "id": self.new_id(), "project_id": project["id"], "number": number,
                "title": f"{vendor['name']} - site services", "status": status,
                "vendor_id": vendor["id"], "contract_date": day, "origin_id": None,
                "origin_code": None, "lines": lines, "requisitions": []})
            self.case("procore_only", None, project["id"], [number], "untouched", None,
                      f"no X3 counterpart (vendor {vendor['name']} exists only in Procore)")

    def foreign_vendor(self) -> None:
        supplier = self.data.x3_suppliers[-1]
        if supplier["BPSNUM"] in self.vendor_by_origin:
            raise ValueError(f"history case 'foreign_vendor': supplier {supplier['BPSNUM']} "
                             "already has a Procore vendor")
        vendor = foreign_vendor(supplier, self.new_id(), self.data)
        self.data.vendors.append(vendor)
        self.case("foreign_vendor", None, None, [], "hold", None,
                  f"Procore vendor {vendor['name']} (origin_id {vendor['origin_id']}) matches "
                  f"{supplier['BPSNUM']} by tax id; the supplier flow must not create a second "
                  "vendor", supplier=supplier["BPSNUM"], vendor_id=vendor["id"])


def later_date(day: str, days: int = 14) -> str:
    """A later billing date, still in 2026 (the seed's billing periods cover 2026 only)."""
    return min(date.fromisoformat(day) + timedelta(days=days), date(2026, 12, 31)).isoformat()


def foreign_vendor(supplier: dict, vendor_id: int, data: SeedData) -> dict:
    """The X3 supplier as another integration created it in Procore (its origin, not ours)."""
    created = data.projects[0]["created_at"] if data.projects else None
    return {
        "id": vendor_id, "name": supplier["BPSNAM"], "abbreviated_name": supplier["BPSNAM"][:10],
        "address": supplier["ADDLIG"], "city": supplier["CTY"], "zip": supplier["POSCOD"],
        "country_code": supplier["CRY"], "business_phone": supplier["TEL"],
        "email_address": supplier["WEB"], "is_active": True,
        "origin_id": FOREIGN_VENDOR_ORIGIN[0], "origin_code": FOREIGN_VENDOR_ORIGIN[1],
        "origin_data": None, "synced_to_erp": True, "tax_id": supplier["EECNUM"],
        "company": data.company["name"], "created_at": created, "updated_at": created,
    }


def add_final_invoice(data: SeedData, po: dict) -> dict:
    """A posted X3 invoice billing half of the PO's first two lines (only when the seed has
    no eligible PO with one), shaped like the seed's own invoices."""
    seq = 1 + max((int(i["NUM"][2:]) - 26000000 for i in data.x3_purchase_invoices), default=0)
    number = f"PI{26000000 + seq:08d}"
    day = min(date.fromisoformat(po["ORDDAT"]) + timedelta(days=10), date(2026, 12, 15))
    stamp_at = max([po["UPDDATTIM"]] + [i["UPDDATTIM"] for i in data.x3_purchase_invoices])
    lines = []
    for n, po_line in enumerate(po["lines"][:2]):
        qty = (Decimal(po_line["QTYUOM"]) / 2).quantize(Decimal("0.001"))
        lines.append({
            "NUM": number, "PIDLIN": (n + 1) * 1000, "POHNUM": po["POHNUM"],
            "POPLIN": po_line["POPLIN"], "POQSEQ": 1, "ITMREF": po_line["ITMREF"],
            "ITMDES": po_line["ITMDES"], "QTYUOM": str(qty), "UOM": po_line["UOM"],
            "NETPRI": po_line["NETPRI"], "AMTNOTLIN": money(Decimal(po_line["NETPRI"]) * qty),
            "UPDDATTIM": stamp_at})
    invoice = {
        "NUM": number, "PIHTYP": 1, "BPSNUM": po["BPSNUM"], "BPSINV": f"INV-{seq:05d}",
        "INVDAT": day.isoformat(), "ACCDAT": day.isoformat(), "CUR": po["CUR"],
        "PJT": po["PJTH"], "STA": 2,
        "AMTNOT": money(sum(Decimal(line["AMTNOTLIN"]) for line in lines)),
        "CREDATTIM": stamp_at, "UPDDATTIM": stamp_at, "lines": lines}
    data.x3_purchase_invoices.append(invoice)
    return invoice
