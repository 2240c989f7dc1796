"""The independent oracle: what Procore must hold, from Sage X3 and the mapping CSV alone.

The reliability suite used to compare a faulted run with a fault-free run of the *same*
code, so a bug present in both passed. This oracle is written apart from the connector and
imports nothing from `mlc_dagster` except the sandbox's seed constants (credentials, company
id, the chart of accounts). It reads:

- Sage X3 through the X3 sandbox's REST API: PORDER `$query` then `$details` (PORDERQ lines;
  the line's GL account is PORDERC.LINACC at the position of the chart in COA; BPSUPPLIER
  code; the CLEFLG / LINCLEFLG closed flags, 2 = yes) and PINVOICE (`STA` 2 = posted, PIHTYP
  3/4 = credit memo; PINVOICED lines name the PO and PO line they bill);
- the mapping CSV file itself, with its own small parser (`gl_account,cost_code,cost_type
  [,project]`, project rows first);
- Procore reference data through the Procore API: projects by `project_number` (= X3 PJTH),
  active vendors by `origin_id` (= supplier code), the project's cost codes by code, line
  item types by code.

What it trusts: those four sources and the rules below (README "Purchase orders", "Supplier
invoices"; PRODUCT.md §2). What it does not trust: the connector, its ledger, its hashes.
It identifies a commitment the way a user does, by its number (or `origin_code`) in the
PO's project; its lines by the line `origin_id` `X3:PO:<po>:<line>` that PRODUCT.md §2 makes
their identity, plus change order lines `<line origin>:CO:<key>` on approved commitments.

For every X3 PO, Procore must hold:
- held (unknown project, supplier not an active linked vendor, a line without a mapped GL
  account, a cost code missing in the project or cost type missing in the company, or data
  the connector must refuse, `invalid_po_reasons`) -> no commitment carrying its number;
- otherwise exactly one commitment with that number, in that project (none elsewhere), with
  that vendor, status `inactive_status` when closed (closed flag or every line closed) and
  not `inactive_status` otherwise, and per X3 line: quantity, unit cost, amount (X3's
  LINAMT), cost code id and cost type id, read as the SOV line plus the line items of the
  commitment's change orders that are not rejected/void; any other line must net to zero.
For every final X3 invoice (STA 2, not a credit memo) billing a PO that must be in Procore:
exactly one requisition on that commitment with the supplier's invoice number (BPSINV, else
NUM) claiming the invoice's total for that PO; none for a non-final invoice or a credit memo.

What it cannot decide is reported as "unknown", never passed: e.g. an Approved commitment
whose values differ in a way a change order cannot carry (the connector holds those), a
commitment owned by another integration, an invoice billing a PO the oracle cannot judge.
Costs: about one Procore call per commitment plus a few per project, and one X3 call per PO
and per invoice; 429s are waited out (Retry-After / X-Rate-Limit-Reset, up to 30 s).
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import quote

import httpx

from mlc_sandbox.seed import COMPANY_ID, SANDBOX_CREDENTIALS, X3_CHART

CENT = Decimal("0.01")
LOCKED = {"approved", "complete"}  # Procore locks the schedule of values of these
NOT_COUNTED = {"rejected", "void"}  # change order packages that add nothing
CO_MARK = ":CO:"
MAX_WAIT = 30.0


# --- small value helpers ----------------------------------------------------------------------

def dec(value: object) -> Decimal | None:
    """A finite decimal, or None for anything that is not one."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def money(value: object) -> Decimal:
    return (dec(value) or Decimal(0)).quantize(CENT)


def whole(value: object) -> int | None:
    number = dec(value)
    return int(number) if number is not None and number == number.to_integral_value() else None


def text(value: object) -> str:
    return "" if value is None else str(value).strip()


def same_reference(a: object, b: object) -> bool:
    return re.sub(r"\s+", "", text(a)).casefold() == re.sub(r"\s+", "", text(b)).casefold()


# --- HTTP readers -----------------------------------------------------------------------------

def retry_pause(response: httpx.Response) -> float:
    """Seconds a polite client waits before asking again (Retry-After, else the rate reset)."""
    retry_after = dec(response.headers.get("Retry-After"))
    if retry_after is not None:
        return float(max(retry_after, Decimal("0.1")))
    reset = dec(response.headers.get("X-Rate-Limit-Reset"))
    if reset is not None and response.status_code == 429:
        return max(0.1, float(reset) - time.time())
    return 0.5


class _Reader:
    """GETs with the waits a polite client makes (429/5xx retried, a few times)."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.calls = 0

    def get(self, url: str, params: dict | None = None) -> httpx.Response:
        waited = 0.0
        for attempt in range(8):
            self.calls += 1
            try:
                response = self.http.get(url, params=params)
            except httpx.TransportError:
                if attempt == 7:
                    raise
                time.sleep(0.5)
                continue
            if response.status_code == 401 and self._refresh():
                continue
            if response.status_code == 429 or response.status_code >= 500:
                pause = retry_pause(response)
                if waited + pause > MAX_WAIT or attempt == 7:
                    response.raise_for_status()
                time.sleep(pause)
                waited += pause
                continue
            response.raise_for_status()
            return response
        raise AssertionError("unreachable")

    def _refresh(self) -> bool:
        return False


    def close(self) -> None:
        self.http.close()


class ProcoreReader(_Reader):
    """Procore over HTTP with the sandbox's client credentials (read-only: GET only)."""

    def __init__(self, url: str, company_id: int = COMPANY_ID) -> None:
        self.url, self.company_id = url.rstrip("/"), company_id
        super().__init__(httpx.Client(base_url=self.url, timeout=30,
                                      headers={"Procore-Company-Id": str(company_id)}))
        self._refresh()

    def _refresh(self) -> bool:
        response = httpx.post(f"{self.url}/oauth/token", data={
            "grant_type": "client_credentials",
            "client_id": SANDBOX_CREDENTIALS["procore_client_id"],
            "client_secret": SANDBOX_CREDENTIALS["procore_client_secret"]}, timeout=30)
        self.calls += 1
        if response.status_code != 200:
            return False
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        return True

    def pages(self, path: str, **params) -> list[dict]:
        records, page = [], 1
        while True:
            response = self.get(path, params={**params, "page": page, "per_page": 1000})
            records += response.json()
            if 'rel="next"' not in response.headers.get("Link", ""):
                return records
            page += 1

    def projects(self, status: str = "Active") -> list[dict]:
        return self.pages("/rest/v1.0/projects", company_id=self.company_id,
                          **{"filters[by_status]": status})

    def vendors(self) -> list[dict]:
        return self.pages("/rest/v1.0/vendors", company_id=self.company_id)

    def line_item_types(self) -> list[dict]:
        return self.pages("/rest/v1.0/line_item_types", company_id=self.company_id)

    def cost_codes(self, project_id: int) -> list[dict]:
        return self.pages("/rest/v1.0/cost_codes", project_id=project_id)

    def commitments(self, project_id: int) -> list[dict]:
        return self.pages("/rest/v1.0/purchase_order_contracts", project_id=project_id)

    def commitment(self, project_id: int, contract_id: int) -> dict:
        return self.get(f"/rest/v1.0/purchase_order_contracts/{contract_id}",
                        params={"project_id": project_id}).json()

    def requisitions(self, project_id: int) -> list[dict]:
        return self.pages("/rest/v1.1/requisitions", project_id=project_id)

    def packages(self, project_id: int) -> list[dict]:
        return self.pages("/rest/v1.0/change_order_packages", project_id=project_id)

    def pcos(self, project_id: int) -> list[dict]:
        return self.pages("/rest/v1.0/potential_change_orders", project_id=project_id)

    def pco_lines(self, project_id: int, pco_id: int) -> list[dict]:
        return self.pages(f"/rest/v1.0/potential_change_orders/{pco_id}/line_items",
                          project_id=project_id)


class X3Reader(_Reader):
    """Sage X3's REST web API (`api1`), Basic auth, `$query` pages then `$details`."""

    def __init__(self, url: str) -> None:
        c = SANDBOX_CREDENTIALS
        super().__init__(httpx.Client(base_url=f"{url.rstrip('/')}/api1/x3/erp/{c['x3_endpoint']}",
                                      auth=(c["x3_user"], c["x3_password"]), timeout=30))

    def records(self, class_name: str) -> list[dict]:
        keys, url = [], f"/{class_name}"
        params: dict | None = {"representation": f"{class_name}.$query", "count": 200}
        while url:
            body = self.get(url, params=params).json()
            keys += [row["$key"] for row in body.get("$resources", [])]
            url = ((body.get("$links") or {}).get("$next") or {}).get("$url")
            params = None  # the next link carries every parameter
        return [self.get(f"/{class_name}('{quote(key.replace(chr(39), chr(39) * 2), safe='~')}')",
                         params={"representation": f"{class_name}.$details"}).json()
                for key in keys]


# --- the mapping CSV, read by its own parser ---------------------------------------------------

@dataclass(frozen=True)
class MappingRow:
    cost_code: str
    cost_type: str


def read_mapping(path: str | Path) -> dict[tuple[str, str], MappingRow]:
    """(gl_account, project or "") -> row. A project row overrides the general row."""
    content = Path(path).read_text(encoding="utf-8-sig")
    first = content.splitlines()[0] if content.strip() else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    rows = list(csv.reader(io.StringIO(content), delimiter=delimiter))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if "gl_account" not in header or "cost_code" not in header:
        raise ValueError(f"{path}: expected a header gl_account,cost_code[,cost_type][,project]")
    table: dict[tuple[str, str], MappingRow] = {}
    for raw in rows[1:]:
        values = dict(zip(header, (cell.strip() for cell in raw), strict=False))
        account = values.get("gl_account", "").strip('="')
        if account.endswith(".0") and account[:-2].isdigit():
            account = account[:-2]
        if account and values.get("cost_code"):
            table.setdefault((account, values.get("project", "")),
                             MappingRow(values["cost_code"], values.get("cost_type", "")))
    return table


def mapped(table: dict[tuple[str, str], MappingRow], account: str,
           project: str) -> MappingRow | None:
    return table.get((account, project)) or table.get((account, ""))


# --- what must be true of an X3 record before anything reaches Procore --------------------------

def _bad_text(value: object, low: int, high: int) -> bool:
    return not isinstance(value, str | int) or not low <= len(text(value)) <= high


def _iso_day(value: object) -> date | None:
    try:
        day = date.fromisoformat(text(value)[:10])
    except ValueError:
        return None
    return day if date(2000, 1, 1) <= day <= date(2100, 12, 31) else None


def _amount_ok(value: object, *, positive: bool = False, limit: Decimal = Decimal("1e11"),
               cents: bool = False) -> bool:
    number = dec(value)
    if number is None or number < 0 or (positive and number == 0) or number > limit:
        return False
    return not cents or number == number.quantize(CENT)


def invalid_po_reasons(po: dict, lines: list[dict], accounts: list[str | None]) -> list[str]:
    """Why a PO cannot be sent as it stands (README "Bad input": held, naming the field)."""
    reasons = []
    checks = [
        (_bad_text(po.get("POHNUM"), 1, 30), "PO number blank or longer than 30"),
        (_bad_text(po.get("BPSNUM"), 1, 15), "supplier blank or longer than 15"),
        (_bad_text(po.get("PJTH"), 1, 30), "project blank or longer than 30"),
        (not re.fullmatch(r"[A-Z]{3}", text(po.get("CUR"))), "currency not a 3-letter code"),
        (_iso_day(po.get("ORDDAT")) is None, "order date missing or outside 2000-2100"),
        (whole(po.get("REVNUM")) is None or whole(po.get("REVNUM")) < 0, "revision not whole"),
        (text(po.get("CLEFLG")) not in ("1", "2", ""), "closed flag not yes/no"),
        (not lines, "no lines"),
    ]
    reasons += [why for bad, why in checks if bad]
    numbers = [whole(line.get("POPLIN")) for line in lines]
    for line, number, account in zip(lines, numbers, accounts, strict=True):
        where = f"line {line.get('POPLIN')}"
        checks = [
            (number is None or number <= 0, "line number not a positive whole number"),
            (number is not None and numbers.count(number) > 1, "duplicate line number"),
            (not account or len(account) > 20, "GL account missing or longer than 20"),
            (not _amount_ok(line.get("QTYUOM"), positive=True, limit=Decimal("1e9")),
             "quantity not in (0, 1e9]"),
            (not _amount_ok(line.get("NETPRI")), "unit price not in [0, 1e11]"),
            (not _amount_ok(line.get("LINAMT"), cents=True), "amount not in [0, 1e11] in cents"),
            (_bad_text(line.get("UOM"), 1, 10), "unit blank or longer than 10"),
        ]
        reasons += [f"{where}: {why}" for bad, why in checks if bad]
    return reasons


def invalid_invoice_reasons(invoice: dict, lines: list[dict]) -> list[str]:
    checks = [
        (_bad_text(invoice.get("NUM"), 1, 30), "invoice number blank or longer than 30"),
        (text(invoice.get("PIHTYP")) not in ("1", "2", "3", "4"), "invoice type unknown"),
        (_bad_text(invoice.get("BPSNUM"), 1, 15), "supplier blank or longer than 15"),
        (len(text(invoice.get("BPSINV"))) > 30, "supplier invoice number longer than 30"),
        (not re.fullmatch(r"[A-Z]{3}", text(invoice.get("CUR"))), "currency not a 3-letter code"),
        (_iso_day(invoice.get("INVDAT")) is None, "invoice date missing or outside 2000-2100"),
        (not lines, "no lines"),
    ]
    reasons = [why for bad, why in checks if bad]
    numbers = [whole(line.get("PIDLIN")) for line in lines]
    for line, number in zip(lines, numbers, strict=True):
        checks = [
            (number is None or number <= 0 or numbers.count(number) > 1, "line number"),
            (_bad_text(line.get("POHNUM"), 1, 30), "PO number"),
            (whole(line.get("POPLIN")) is None or whole(line.get("POPLIN")) <= 0, "PO line"),
            (not _amount_ok(line.get("QTYUOM"), limit=Decimal("1e9")), "quantity"),
            (not _amount_ok(line.get("AMTNOTLIN"), cents=True), "amount"),
        ]
        reasons += [f"line {line.get('PIDLIN')}: {why}" for bad, why in checks if bad]
    return reasons


# --- expectations --------------------------------------------------------------------------------

@dataclass
class ExpectedLine:
    origin_id: str
    quantity: Decimal
    unit_cost: Decimal
    amount: Decimal
    cost_code: str
    cost_code_id: int
    cost_type: str
    cost_type_id: int | None


@dataclass
class Expectation:
    """What Procore must hold for one X3 PO. verdict: commitment | held | unknown."""

    po_number: str
    verdict: str
    reasons: list[str] = field(default_factory=list)
    project_number: str = ""
    project_id: int | None = None
    vendor_id: int | None = None
    closed: bool = False
    lines: list[ExpectedLine] = field(default_factory=list)


@dataclass
class Reference:
    """Procore reference data, read once."""

    projects: dict[str, dict]  # project_number -> project
    vendors: dict[str, dict]  # supplier code (origin_id) -> active vendor
    types: dict[str, int]  # cost type code -> line item type id
    codes: dict[int, dict[str, int]] = field(default_factory=dict)  # project -> code -> id

    def cost_code_id(self, reader: ProcoreReader, project_id: int, code: str) -> int | None:
        if project_id not in self.codes:
            by_code: dict[str, int] = {}
            rows = sorted(reader.cost_codes(project_id),
                          key=lambda c: (c.get("biller_type") != "Project", c["id"]))
            for row in rows:  # the project's own code first, then the lowest id
                by_code.setdefault(text(row.get("code")), row["id"])
            self.codes[project_id] = by_code
        return self.codes[project_id].get(code)


def read_reference(reader: ProcoreReader) -> Reference:
    return Reference(
        projects={text(p.get("project_number")): p for p in reader.projects()},
        vendors={text(v["origin_id"]): v for v in reader.vendors()
                 if v.get("origin_id") and v.get("is_active") is not False},
        types={text(t.get("code")): t["id"] for t in reader.line_item_types() if t.get("code")})


def _line_accounts(po: dict, lines: list[dict], chart: str | None) -> list[str | None]:
    """Each line's GL account: PORDERC.LINACC at the position of `chart` in COA."""
    members = [m for m in po.get("PORDERC") or [] if isinstance(m, dict)]
    by_line = defaultdict(list)
    for member in members:
        by_line[text(member.get("POPLIN"))].append(member)
    accounts = []
    for line in lines:
        candidates = by_line.get(text(line.get("POPLIN"))) or [None]
        member = candidates.pop(0) if len(candidates) > 1 else candidates[0]
        charts, values = (member or {}).get("COA") or [], (member or {}).get("LINACC") or []
        index = charts.index(chart) if chart in charts else (0 if chart is None else None)
        value = values[index] if index is not None and index < len(values) else None
        accounts.append(text(value) or None)
    return accounts


def expect_po(po: dict, mapping: dict, ref: Reference, reader: ProcoreReader, *,
              chart: str | None = X3_CHART) -> Expectation:
    number = text(po.get("POHNUM"))
    lines = [line for line in po.get("PORDERQ") or [] if isinstance(line, dict)]
    accounts = _line_accounts(po, lines, chart)
    invalid = invalid_po_reasons(po, lines, accounts)
    if invalid:
        return Expectation(number, "held", invalid)
    project_number = text(po.get("PJTH"))
    expectation = Expectation(number, "commitment", project_number=project_number)
    project = ref.projects.get(project_number)
    vendor = ref.vendors.get(text(po.get("BPSNUM")))
    if project is None:
        expectation.reasons.append(f"project {project_number} is not a Procore project")
    if vendor is None:
        expectation.reasons.append(f"supplier {po.get('BPSNUM')} is not an active linked vendor")
    for line, account in zip(lines, accounts, strict=True):
        row = mapped(mapping, account, project_number)
        where = f"line {line['POPLIN']}"
        if row is None:
            expectation.reasons.append(f"{where}: GL account {account} is not mapped")
            continue
        code_id = ref.cost_code_id(reader, project["id"], row.cost_code) if project else None
        if project is not None and code_id is None:
            expectation.reasons.append(f"{where}: cost code {row.cost_code} is not in the project")
        type_id = ref.types.get(row.cost_type) if row.cost_type else None
        if row.cost_type and type_id is None:
            expectation.reasons.append(f"{where}: cost type {row.cost_type} is not in Procore")
        if code_id is not None:
            expectation.lines.append(ExpectedLine(
                f"X3:PO:{number}:{whole(line['POPLIN'])}", dec(line["QTYUOM"]),
                dec(line["NETPRI"]), money(line["LINAMT"]), row.cost_code, code_id,
                row.cost_type, type_id))
    if expectation.reasons:
        return Expectation(number, "held", expectation.reasons, project_number)
    expectation.project_id, expectation.vendor_id = project["id"], vendor["id"]
    expectation.closed = text(po.get("CLEFLG")) == "2" or all(
        text(line.get("LINCLEFLG")) == "2" for line in lines)
    return expectation


def expected_commitments(procore_url: str, x3_url: str, mapping_csv_path: str | Path, *,
                         x3_api: str = "rest", chart: str | None = X3_CHART,
                         reader: ProcoreReader | None = None, x3: X3Reader | None = None,
                         pos: list[dict] | None = None) -> dict[str, Expectation]:
    """X3 PO number -> what Procore must hold for it (see the module docstring).

    `x3_api` names the API the connector reads X3 through; the oracle reads REST either way
    (both serve the same records, and a second path is a better witness)."""
    if x3_api not in ("rest", "graphql"):
        raise ValueError(f"x3_api must be rest or graphql, got {x3_api!r}")
    mapping = read_mapping(mapping_csv_path)
    own_reader, own_x3 = reader is None, x3 is None
    reader, x3 = reader or ProcoreReader(procore_url), x3 or X3Reader(x3_url)
    try:
        ref = read_reference(reader)
        pos = pos if pos is not None else x3.records("PORDER")
        return {text(po.get("POHNUM")): expect_po(po, mapping, ref, reader, chart=chart)
                for po in pos}
    finally:
        if own_reader:
            reader.close()
        if own_x3:
            x3.close()


# --- what Procore holds ------------------------------------------------------------------------------

@dataclass
class HeldLine:
    """An X3 line as Procore shows it: its SOV line plus its change order lines."""

    quantity: Decimal = Decimal(0)
    amount: Decimal = Decimal("0.00")
    unit_cost: Decimal | None = None
    cost_code_id: int | None = None
    cost_type_id: int | None = None
    sov_lines: int = 0

    def add(self, item: dict, sov: bool) -> None:
        empty = self.quantity == 0 and self.amount == 0
        self.quantity += dec(item.get("quantity")) or Decimal(0)
        self.amount += money(item.get("amount"))
        self.sov_lines += sov
        if sov or empty:  # a line added back by a change order takes that line's fields
            self.unit_cost = dec(item.get("unit_cost"))
            self.cost_code_id = (item.get("cost_code") or {}).get("id")
            self.cost_type_id = (item.get("line_item_type") or {}).get("id")


class ProjectView:
    """One project's commitments, requisitions and change orders, read lazily."""

    def __init__(self, reader: ProcoreReader, project_id: int) -> None:
        self.reader, self.project_id = reader, project_id
        self.commitments = reader.commitments(project_id)
        self._requisitions: list[dict] | None = None
        self._co_lines: dict[int, list[tuple[dict, str]]] | None = None

    def carrying(self, po_number: str) -> list[dict]:
        """Commitments a user would take for this PO: its number, or its X3 reference."""
        return [c for c in self.commitments if same_reference(c.get("number"), po_number)
                or same_reference(c.get("origin_code"), po_number)]

    def requisitions(self) -> list[dict]:
        if self._requisitions is None:
            self._requisitions = self.reader.requisitions(self.project_id)
        return self._requisitions

    def change_order_lines(self, contract_id: int) -> list[tuple[dict, str]]:
        """(PCO line item, package status) of the commitment's change orders."""
        if self._co_lines is None:
            self._co_lines = defaultdict(list)
            packages = {p["id"]: p for p in self.reader.packages(self.project_id)}
            if packages:
                for pco in self.reader.pcos(self.project_id):
                    package = packages.get(pco.get("change_order_package_id"))
                    if package is None:
                        continue
                    for item in self.reader.pco_lines(self.project_id, pco["id"]):
                        self._co_lines[package["contract_id"]].append(
                            (item, text(package.get("status")).lower()))
        return self._co_lines.get(contract_id, [])


def tier(show: dict) -> int:
    if isinstance(show.get("change_order_requests"), list):
        return 3
    return 2 if isinstance(show.get("potential_change_orders"), list) else 1


def held_lines(po_number: str, show: dict, co_lines: list[tuple[dict, str]]
               ) -> tuple[dict[str, HeldLine], list[str]]:
    """Line origin -> HeldLine, and SOV lines that belong to no X3 line of this PO."""
    prefix, held, strays = f"X3:PO:{po_number}:", defaultdict(HeldLine), []
    for item in show.get("line_items") or []:
        origin = text(item.get("origin_id"))
        if origin.startswith(prefix) and CO_MARK not in origin:
            held[origin].add(item, sov=True)
        else:
            strays.append(f"line {item.get('id')} ({origin or 'no origin_id'}, "
                          f"{money(item.get('amount'))})")
    for item, status in co_lines:
        origin = text(item.get("origin_id")).split(CO_MARK, 1)[0]
        if status not in NOT_COUNTED and origin.startswith(prefix):
            held[origin].add(item, sov=False)
    return dict(held), strays


def line_differences(expected: list[ExpectedLine], held: dict[str, HeldLine]
                     ) -> tuple[list[str], bool]:
    """`line <n>: <field> Procore x, X3 y` for each difference, and whether a change order
    could carry them all (quantity changes at the same unit cost, new and removed lines)."""
    out, representable = [], True
    wanted = {line.origin_id: line for line in expected}
    for origin, line in wanted.items():
        name, got = f"line {origin.rsplit(':', 1)[-1]}", held.get(origin)
        if got is None or (got.quantity == 0 and got.amount == 0 and line.amount != 0):
            out.append(f"{name}: missing in Procore (X3 quantity {line.quantity}, amount "
                       f"{line.amount})")
            continue
        if got.sov_lines > 1:
            out.append(f"{name}: {got.sov_lines} schedule-of-values lines")
        for label, have, want in (("quantity", got.quantity, line.quantity),
                                  ("amount", got.amount, line.amount)):
            if have != want:
                out.append(f"{name}: {label} Procore {have}, X3 {want}")
        for label, have, want in (("unit cost", got.unit_cost, line.unit_cost),
                                  ("cost code id", got.cost_code_id, line.cost_code_id),
                                  ("cost type id", got.cost_type_id, line.cost_type_id)):
            if have != want:
                out.append(f"{name}: {label} Procore {have}, X3 {want} ({line.cost_code}/"
                           f"{line.cost_type or '-'})")
                representable = False
    for origin, got in sorted(held.items()):
        if origin not in wanted and (got.quantity != 0 or got.amount != 0):
            out.append(f"line {origin.rsplit(':', 1)[-1]}: not in X3 but Procore holds quantity "
                       f"{got.quantity}, amount {got.amount}")
    return out, representable


# --- the verdict ---------------------------------------------------------------------------------------

@dataclass
class OracleReport:
    problems: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def all(self) -> list[str]:
        return self.problems + [f"unknown: {u}" for u in self.unknown]


def check_commitment(exp: Expectation, view: ProjectView, elsewhere: list[str],
                     report: OracleReport, *, inactive_status: str,
                     approved_policy: str) -> dict | None:
    """Compare one PO that must be in Procore; returns its commitment when there is one."""
    po = exp.po_number
    found = view.carrying(po)
    for where in elsewhere:
        report.problems.append(f"PO {po}: a commitment carrying its number is in project "
                               f"{where}, not {exp.project_number}")
    if len(found) != 1:
        report.problems.append(f"PO {po}: {len(found)} commitments in project "
                               f"{exp.project_number} carry its number, expected 1"
                               + (f": {[c.get('number') for c in found]}" if found else ""))
        return None
    contract = found[0]
    origin = text(contract.get("origin_id"))
    if origin and origin != f"X3:PO:{po}":
        report.unknown.append(f"PO {po}: commitment #{contract.get('number')} is owned by "
                              f"another integration (origin_id {origin})")
        return None
    status = text(contract.get("status"))
    if exp.closed and status != inactive_status:
        report.problems.append(f"PO {po}: closed in X3, commitment status {status!r}, "
                               f"expected {inactive_status!r}")
    if not exp.closed and status == inactive_status:
        report.problems.append(f"PO {po}: open in X3, commitment status {status!r}")
    vendor_id = (contract.get("vendor") or {}).get("id")
    if vendor_id != exp.vendor_id:
        report.problems.append(f"PO {po}: commitment vendor {vendor_id}, expected {exp.vendor_id}")
    show = view.reader.commitment(view.project_id, contract["id"])
    held, strays = held_lines(po, show, view.change_order_lines(contract["id"]))
    differences, representable = line_differences(exp.lines, held)
    report.counts["lines"] += len(exp.lines)
    if strays:
        report.problems.append(f"PO {po}: commitment lines that are no X3 line: {strays}")
    if differences:
        locked = status.lower() in LOCKED
        if locked and not (representable and tier(show) == 1 and approved_policy == "change_order"):
            report.unknown.append(f"PO {po}: commitment is {status} (tier {tier(show)}, policy "
                                  f"{approved_policy}) and differs from X3: {differences}")
        else:
            report.problems += [f"PO {po}: {d}" for d in differences]
    return contract


def check_invoices(invoices: list[dict], pos: dict[str, dict], expectations: dict[str, Expectation],
                   contracts: dict[str, tuple[ProjectView, dict]], report: OracleReport) -> None:
    """Final invoices -> exactly one requisition per PO billed; none for the others."""
    for invoice in invoices:
        number = text(invoice.get("NUM"))
        lines = [line for line in invoice.get("PINVOICED") or [] if isinstance(line, dict)]
        reference = text(invoice.get("BPSINV")) or number
        final = text(invoice.get("STA")) == "2" and text(invoice.get("PIHTYP")) in ("1", "2")
        held = invalid_invoice_reasons(invoice, lines)
        totals: dict[str, Decimal] = defaultdict(lambda: Decimal("0.00"))
        for line in lines:
            po = text(line.get("POHNUM"))
            totals[po] += money(line.get("AMTNOTLIN"))
            x3_po = pos.get(po)
            po_lines = {whole(q.get("POPLIN")) for q in (x3_po or {}).get("PORDERQ") or []}
            if x3_po is None or whole(line.get("POPLIN")) not in po_lines:
                held.append(f"line {line.get('PIDLIN')}: PO {po} has no line {line.get('POPLIN')}")
            elif text(x3_po.get("BPSNUM")) != text(invoice.get("BPSNUM")):
                held.append(f"supplier {invoice.get('BPSNUM')} is not PO {po}'s supplier")
        report.counts["invoices"] += 1
        for po, total in sorted(totals.items()):
            exp, seen = expectations.get(po), contracts.get(po)
            ours = [r for r in seen[0].requisitions() if r.get("commitment_id") == seen[1]["id"]
                    and same_reference(r.get("invoice_number"), reference)] if seen else []
            if held or not final or (exp is not None and exp.verdict == "held"):
                want = 0  # refused by the connector's rules, not final, or a credit memo
            elif exp is not None and exp.verdict == "commitment" and seen is not None:
                want = 0 if seen[1].get("requisitions_are_enabled") is False else 1
            else:
                report.unknown.append(f"invoice {number}: PO {po} cannot be judged (its "
                                      "commitment is missing or not ours)")
                continue
            if len(ours) != want:
                report.problems.append(
                    f"invoice {number} ({reference}) on PO {po}: {len(ours)} requisition(s), "
                    f"expected {want}" + (f" ({'; '.join(held)})" if held and not want else ""))
            elif want and money(ours[0].get("total_claimed_amount")) != total:
                report.problems.append(
                    f"invoice {number} ({reference}) on PO {po}: requisition claims "
                    f"{money(ours[0].get('total_claimed_amount'))}, X3 total {total}")


def oracle_report(procore_url: str, x3_url: str, mapping_csv_path: str | Path, *,
                  x3_api: str = "rest", inactive_status: str = "Closed",
                  approved_policy: str = "change_order", chart: str | None = X3_CHART
                  ) -> OracleReport:
    """Procore against what X3 + the mapping CSV say, with counts of what was checked."""
    report = OracleReport()
    reader, x3 = ProcoreReader(procore_url), X3Reader(x3_url)
    try:
        pos = {text(po.get("POHNUM")): po for po in x3.records("PORDER")}
        expectations = expected_commitments(procore_url, x3_url, mapping_csv_path,
                                            x3_api=x3_api, chart=chart, reader=reader, x3=x3,
                                            pos=list(pos.values()))
        projects = {p["id"]: text(p.get("project_number")) for p in reader.projects("All")}
        views = {pid: ProjectView(reader, pid) for pid in projects}
        contracts: dict[str, tuple[ProjectView, dict]] = {}
        for po, exp in expectations.items():
            report.counts["pos"] += 1
            report.counts[exp.verdict] += 1
            carrying = {pid: view.carrying(po) for pid, view in views.items()}
            if exp.verdict == "held":
                for pid, found in carrying.items():
                    if found:
                        report.problems.append(
                            f"PO {po}: held ({'; '.join(exp.reasons)}) but project "
                            f"{projects[pid]} has commitment(s) {[c.get('number') for c in found]}")
                continue
            elsewhere = [projects[pid] for pid, found in carrying.items()
                         if found and pid != exp.project_id]
            contract = check_commitment(exp, views[exp.project_id], elsewhere, report,
                                        inactive_status=inactive_status,
                                        approved_policy=approved_policy)
            if contract is not None:
                contracts[po] = (views[exp.project_id], contract)
        check_invoices(x3.records("PINVOICE"), pos, expectations, contracts, report)
        report.counts["procore_calls"] = reader.calls
        report.counts["x3_calls"] = x3.calls
        return report
    finally:
        reader.close()
        x3.close()


def oracle_problems(procore_url: str, x3_url: str, mapping_csv_path: str | Path, *,
                    x3_api: str = "rest", **options) -> list[str]:
    """Every way Procore differs from what X3 + the mapping CSV say it must hold; what the
    oracle cannot decide comes last, prefixed `unknown:`. Empty when Procore is right."""
    return oracle_report(procore_url, x3_url, mapping_csv_path, x3_api=x3_api, **options).all()
