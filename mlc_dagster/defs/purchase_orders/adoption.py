"""Adopting the commitments people typed into Procore by hand before go-live (pure functions).

A customer who typed X3 purchase orders into Procore by hand has, on day one, a twin of many
POs already in Procore: no `origin_id`, a number that may or may not be X3's, maybe approved,
maybe invoiced. Creating the PO again would clash on the number at best and double the
committed cost at worst. So before the first write into a project, what Procore holds there is
read once, and each X3 PO about to be *created* is matched to its hand-made twin:

1. `number`: the commitment's number is the PO number;
2. `normalised_number`: equal once case, spaces and punctuation, a configured prefix
   (MLC_ADOPT_NUMBER_PREFIXES, default `PO`) and leading zeros are ignored;
3. `vendor_date_total`: no number matches, but the vendor is the same, the contract date is
   within MLC_ADOPT_DATE_DAYS (default 7) of the PO date, and the total is within
   MLC_ADOPT_TOTAL_TOLERANCE (default 1.00) of the PO total.

One unambiguous twin is linked (adopted): the normal header sync, addressed by the twin's `id`,
writes our `origin_id` onto it (procore/documentation tutorials/using_sync_actions.md: with an
id, the record is found by id, which is how an origin_id is set on an existing record), and
its line items are paired with the X3 lines by cost code and amount (then by cost code), so
they too are updated in place rather than duplicated. Several candidates, or a twin that
carries another integration's origin_id ("only one integration may own origin_id",
tutorials/tutorial_financial_tools.md) -> the PO is held with every candidate named; nothing is
created or overwritten. No twin -> the PO is created as usual.

A commitment that is Approved or Complete has a locked schedule of values: if its lines
already equal X3's, it is linked without touching them (their ids are kept in the ledger);
otherwise the approved-commitment policy applies (a change order, or a hold) — nothing
approved is rewritten silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from mlc_dagster.common.payload import contract_origin_id
from mlc_dagster.defs.purchase_orders.change_orders import dec, is_locked_status, money_text, ref_id
from mlc_dagster.defs.purchase_orders.desired import DesiredCommitment

OUR_ORIGIN_PREFIX = "X3:PO:"
RULES = ("number", "normalised_number", "vendor_date_total", "origin_id")
HOLD_PREFIX = "adoption:"  # hold reasons of this module start with it (re-checked every run)
SCAN_ENTITY = "procore_project_scan"
_NOT_ALNUM = re.compile(r"[^0-9A-Z]")


@dataclass(frozen=True)
class AdoptionRules:
    """How hand-made twins are recognised (README "Going live")."""

    enabled: bool = True
    number_prefixes: tuple[str, ...] = ("PO",)
    date_days: int = 7
    total_tolerance: Decimal = Decimal("1.00")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AdoptionRules:
        def number(name: str, default: str, parse):
            text = (env.get(name) or default).strip()
            try:
                value = parse(text)
            except (ValueError, InvalidOperation):
                raise ValueError(f"{name} must be a number, got {text!r}") from None
            if value < 0:
                raise ValueError(f"{name} must not be negative, got {text!r}")
            return value

        enabled = (env.get("MLC_ADOPT") or "on").strip().lower()
        if enabled not in {"on", "off"}:
            raise ValueError(f"MLC_ADOPT must be on or off, got {enabled!r}")
        prefixes = env.get("MLC_ADOPT_NUMBER_PREFIXES")
        return cls(
            enabled=enabled == "on",
            number_prefixes=tuple(p.strip().upper() for p in
                                  (prefixes if prefixes is not None else "PO").split(",")
                                  if p.strip()),
            date_days=number("MLC_ADOPT_DATE_DAYS", "7", int),
            total_tolerance=number("MLC_ADOPT_TOTAL_TOLERANCE", "1.00", Decimal),
        )


def normalise_number(number: object, prefixes: tuple[str, ...] = ("PO",)) -> str:
    """`po-0026000005`, `PO 26000005` and `26000005` all become `26000005`."""
    text = _NOT_ALNUM.sub("", str(number or "").upper())
    for prefix in sorted(prefixes, key=len, reverse=True):
        if prefix and text.startswith(prefix) and len(text) > len(prefix):
            text = text[len(prefix):]
            break
    return text.lstrip("0") or text[-1:]


def is_foreign_origin(origin_id: object) -> bool:
    """An origin_id set by another integration (ours all start with `X3:PO:`)."""
    text = str(origin_id or "")
    return bool(text) and not text.startswith(OUR_ORIGIN_PREFIX)


def vendor_of(contract: dict) -> int | None:
    vendor = contract.get("vendor") or {}
    value = vendor.get("id") if isinstance(vendor, dict) else None
    value = contract.get("vendor_id") if value is None else value
    return int(value) if value not in (None, "") else None


def describe(contract: dict) -> str:
    """How a person finds the commitment in Procore: number, id, vendor, date, total, status."""
    vendor = contract.get("vendor") or {}
    name = vendor.get("company") if isinstance(vendor, dict) else None
    parts = [f"#{contract.get('number')} (id {contract.get('id')}"]
    if name:
        parts.append(f", {name}")
    if contract.get("contract_date"):
        parts.append(f", {contract['contract_date']}")
    if contract.get("grand_total") is not None:
        parts.append(f", {money_text(dec(contract['grand_total']))}")
    if contract.get("status"):
        parts.append(f", {contract['status']}")
    if is_foreign_origin(contract.get("origin_id")):
        parts.append(f", origin_id {contract['origin_id']}")
    return "".join(parts) + ")"


# --- header matching ---------------------------------------------------------------------------


@dataclass
class TwinMatch:
    """The decision for one X3 PO about to be created."""

    po_number: str
    outcome: str  # adopt | ambiguous | foreign
    rule: str | None = None
    contract: dict | None = None
    candidates: list[dict] = field(default_factory=list)
    rivals: list[str] = field(default_factory=list)  # other X3 POs claiming the same twin

    def hold_reason(self) -> str:
        listed = "; ".join(describe(c) for c in self.candidates)
        if self.rivals:
            return (f"{HOLD_PREFIX} hand-made commitment {listed} matches several X3 POs "
                    f"({', '.join(sorted(self.rivals))}) by {self.rule}: none is linked. Give it "
                    "the right PO number (and the others theirs) and the next run adopts it")
        if self.outcome == "foreign":
            return (f"{HOLD_PREFIX} Procore already holds this PO as commitment {listed}, which "
                    "belongs to another integration (its origin_id is not ours); it is never "
                    "overwritten and no second commitment is created. Clear its origin_id in the "
                    "other integration if the connector should own it, or delete it; the next "
                    "run adopts or creates the PO")
        return (f"{HOLD_PREFIX} {len(self.candidates)} hand-made commitments in Procore could be "
                f"this PO ({self.rule}): {listed}. Nothing is created or linked: give the right "
                f"one the PO number {self.po_number} (or delete the duplicate) and the next run "
                "adopts it")


def commitment_total(c: DesiredCommitment) -> Decimal:
    return sum((dec(line.get("amount")) for line in c.lines), Decimal(0))


def match_twins(creates: list[DesiredCommitment], contracts: list[dict],
                rules: AdoptionRules) -> dict[str, TwinMatch]:
    """Match each PO to be created with a hand-made commitment of its project (pure).

    `contracts` are the project's commitments as Procore lists them. Ours (origin_id
    `X3:PO:...`) are never candidates. A commitment claimed by two POs is ambiguous for both.
    POs without a twin are absent from the result.
    """
    if not rules.enabled:
        return {}
    ours = {str(c.get("origin_id")): c for c in contracts
            if str(c.get("origin_id") or "").startswith(OUR_ORIGIN_PREFIX)}
    pool = [c for c in contracts if str(c.get("origin_id") or "") not in ours]
    by_number: dict[str, list[dict]] = {}
    by_normalised: dict[str, list[dict]] = {}
    for contract in pool:
        by_number.setdefault(str(contract.get("number") or ""), []).append(contract)
        by_normalised.setdefault(normalise_number(contract.get("number"), rules.number_prefixes),
                                 []).append(contract)
    # Numbers that are some X3 PO's: a commitment carrying one is never a fuzzy twin of another.
    x3_numbers = {normalise_number(c.po_number, rules.number_prefixes) for c in creates}

    found: dict[str, TwinMatch] = {}
    for desired in creates:
        resumed = ours.get(contract_origin_id(desired.po_number))
        if resumed is not None:  # linked by an earlier run whose ledger write was lost
            found[desired.po_number] = TwinMatch(desired.po_number, "adopt", "origin_id",
                                                 resumed, [resumed])
            continue
        match = _match_one(desired, pool, by_number, by_normalised, x3_numbers, rules)
        if match is not None:
            found[desired.po_number] = match
    claims: dict[int, list[str]] = {}
    for po, match in found.items():
        if match.outcome == "adopt":
            claims.setdefault(int(match.contract["id"]), []).append(po)
    for pos in claims.values():
        if len(pos) > 1:
            for po in pos:
                found[po] = TwinMatch(po, "ambiguous", found[po].rule, None,
                                      [found[po].contract], rivals=pos)
    return found


def _match_one(desired: DesiredCommitment, pool: list[dict], by_number: dict,
               by_normalised: dict, x3_numbers: set[str], rules: AdoptionRules
               ) -> TwinMatch | None:
    po = desired.po_number
    for rule, candidates in (
            ("number", by_number.get(po, [])),
            ("normalised_number",
             by_normalised.get(normalise_number(po, rules.number_prefixes), []))):
        if candidates:
            return _decide(po, rule, candidates)
    vendor = desired.header.get("vendor_id")
    ordered = date.fromisoformat(desired.header["contract_date"])
    total = commitment_total(desired)
    fuzzy = []
    for contract in pool:
        if normalise_number(contract.get("number"), rules.number_prefixes) in x3_numbers:
            continue  # carries another X3 PO's number: that PO's twin, if anyone's
        if vendor_of(contract) != vendor or not contract.get("contract_date"):
            continue
        try:
            days = abs((date.fromisoformat(str(contract["contract_date"])[:10]) - ordered).days)
        except ValueError:
            continue
        if days <= rules.date_days and abs(dec(contract.get("grand_total")) - total) \
                <= rules.total_tolerance:
            fuzzy.append(contract)
    return _decide(po, "vendor_date_total", fuzzy) if fuzzy else None


def _decide(po: str, rule: str, candidates: list[dict]) -> TwinMatch:
    candidates = sorted(candidates, key=lambda c: int(c["id"]))
    if any(is_foreign_origin(c.get("origin_id")) for c in candidates):
        return TwinMatch(po, "foreign", rule, None,
                         [c for c in candidates if is_foreign_origin(c.get("origin_id"))])
    if len(candidates) > 1:
        return TwinMatch(po, "ambiguous", rule, None, candidates)
    return TwinMatch(po, "adopt", rule, candidates[0], candidates)


# --- line pairing ------------------------------------------------------------------------------


@dataclass
class LinePairing:
    """X3 lines paired with the twin's hand-typed line items."""

    paired: dict[str, dict]  # X3 line origin_id -> the Procore line item it becomes
    new: list[str]  # X3 line origin_ids with no Procore line: added
    extra: list[dict]  # Procore line items with no X3 line: removed (or, if locked, a hold)

    @property
    def line_ids(self) -> dict[str, int]:
        return {origin: int(item["id"]) for origin, item in self.paired.items()}

    @property
    def unlabelled(self) -> dict[str, int]:
        """Paired lines that do not carry their X3 origin_id yet."""
        return {origin: int(item["id"]) for origin, item in self.paired.items()
                if item.get("origin_id") != origin}


def pair_lines(desired_lines: list[dict], procore_lines: list[dict]) -> LinePairing:
    """Pair by cost code and amount (to the cent) first, then by cost code alone, in order.

    A line already carrying the X3 line's origin_id (labelled by an interrupted earlier run)
    is that line's; lines carrying any other origin_id are never paired.
    """
    ordered = sorted(procore_lines, key=lambda i: (i.get("position") or 0, int(i["id"])))
    wanted = {line["origin_id"] for line in desired_lines}
    paired: dict[str, dict] = {str(i["origin_id"]): i for i in ordered
                               if str(i.get("origin_id") or "") in wanted}
    free = [item for item in ordered if not item.get("origin_id")]
    for same_amount in (True, False):
        for line in desired_lines:
            if line["origin_id"] in paired:
                continue
            for item in free:
                if ref_id(item, "cost_code") != line.get("cost_code_id"):
                    continue
                if same_amount and dec(item.get("amount")) != dec(line.get("amount")):
                    continue
                paired[line["origin_id"]] = item
                free.remove(item)
                break
    new = [line["origin_id"] for line in desired_lines if line["origin_id"] not in paired]
    return LinePairing(paired, new, free)


LINE_COMPARED = (("description", "description"), ("quantity", "quantity"),
                 ("unit_cost", "unit_cost"), ("amount", "amount"), ("uom", "uom"))


def line_differences(desired_lines: list[dict], pairing: LinePairing) -> list[str]:
    """What adopting changes on the twin's lines, line by line (before -> after)."""
    out = []
    for line in desired_lines:
        number = line["origin_id"].rsplit(":", 1)[-1]
        item = pairing.paired.get(line["origin_id"])
        if item is None:
            out.append(f"line {number} added ({line.get('description')}, {line.get('amount')})")
            continue
        for ours, theirs in LINE_COMPARED:
            before, after = item.get(theirs), line.get(ours)
            if ours in {"quantity", "unit_cost", "amount"}:
                if dec(before) != dec(after):
                    out.append(f"line {number}: {ours} {before} -> {after}")
            elif (before or "") != (after or ""):
                out.append(f"line {number}: {ours} {before!r} -> {after!r}")
        type_before = ref_id(item, "line_item_type")
        if line.get("line_item_type_id") is not None and type_before != line["line_item_type_id"]:
            out.append(f"line {number}: cost type {type_before} -> {line['line_item_type_id']}")
    out.extend(f"hand-typed line item {item['id']} removed ({item.get('description')!r}, "
               f"{money_text(dec(item.get('amount')))})" for item in pairing.extra)
    return out


def amounts_equal(desired_lines: list[dict], pairing: LinePairing) -> bool:
    """Every X3 line has a twin line with its amount, and the twin has no other line."""
    return not pairing.new and not pairing.extra and all(
        dec(pairing.paired[line["origin_id"]].get("amount")) == dec(line.get("amount"))
        and dec(pairing.paired[line["origin_id"]].get("quantity")) == dec(line.get("quantity"))
        for line in desired_lines)


@dataclass
class Adoption:
    """How one X3 PO takes over its hand-made twin (attached to its CommitmentWrite)."""

    rule: str
    contract: dict  # the twin as Procore listed it
    pairing: LinePairing
    locked: bool
    differences: list[str]

    @property
    def contract_id(self) -> int:
        return int(self.contract["id"])

    def before(self) -> dict:
        """The twin as it was, for the audit trail."""
        c = self.contract
        return {"id": c.get("id"), "number": c.get("number"), "title": c.get("title"),
                "status": c.get("status"), "vendor_id": vendor_of(c),
                "contract_date": c.get("contract_date"), "grand_total": c.get("grand_total"),
                "origin_id": c.get("origin_id"),
                "lines": [{"id": i.get("id"), "description": i.get("description"),
                           "quantity": i.get("quantity"), "unit_cost": i.get("unit_cost"),
                           "amount": i.get("amount"), "cost_code_id": ref_id(i, "cost_code")}
                          for i in [*self.pairing.paired.values(), *self.pairing.extra]]}


def plan_adoption(desired: DesiredCommitment, match: TwinMatch, procore_lines: list[dict]
                  ) -> Adoption:
    """Pair the lines of an adopted twin and list what adopting it changes (pure)."""
    pairing = pair_lines(desired.lines, procore_lines)
    return Adoption(match.rule or "number", match.contract or {}, pairing,
                    is_locked_status((match.contract or {}).get("status")),
                    line_differences(desired.lines, pairing))


def header_differences(desired: DesiredCommitment, contract: dict) -> list[str]:
    out = []
    for key, before in (("number", contract.get("number")), ("title", contract.get("title")),
                        ("contract_date", contract.get("contract_date"))):
        after = desired.header.get(key)
        if before != after:
            out.append(f"{key} {before!r} -> {after!r}")
    if vendor_of(contract) != desired.header.get("vendor_id"):
        out.append(f"vendor_id {vendor_of(contract)} -> {desired.header.get('vendor_id')}")
    out.append(f"origin_id {contract.get('origin_id')!r} -> "
               f"{contract_origin_id(desired.po_number)!r}")
    return out


# --- the scan: what Procore held before our first write into a project --------------------------


def unclaimed_summary(contracts: list[dict], claimed: set[int]) -> list[dict]:
    """The hand-made commitments (no origin_id, or another integration's) still unmatched:
    kept in the ledger so POs that become creatable later match without a new scan."""
    keep = ("id", "number", "title", "status", "contract_date", "grand_total", "origin_id")
    return [{**{k: c.get(k) for k in keep}, "vendor": {"id": vendor_of(c)}}
            for c in contracts
            if int(c["id"]) not in claimed
            and not str(c.get("origin_id") or "").startswith(OUR_ORIGIN_PREFIX)]
