"""Suppliers <-> vendors: identity, matching and field ownership (pure functions).

Identity: a Procore company vendor is linked to an X3 supplier when its `origin_id` is the
supplier code (`origin_code` shows the same code to users).

Field ownership (README "Suppliers and vendors"):
- identity and financial fields (name, short name, postal address, country) belong to X3:
  X3's value is written to Procore, a Procore edit is overwritten;
- contact fields (phone, e-mail) belong to X3 or to Procore (MLC_VENDOR_CONTACT_OWNER);
  on the first link a blank side is filled from the other, never wiped;
- the active flag belongs to both: whichever side changed since our last sync wins (X3 if
  both did), so an inactive supplier deactivates its vendor and the reverse.

Vendors owned by another integration: "only one integration may own origin_id"
(procore/documentation tutorials/tutorial_financial_tools.md). A vendor whose origin_id is set
but is not a supplier code of this X3 belongs to someone else; it is never written, and an X3
supplier that matches it by tax id or name + postcode is held (creating a vendor for it would
put the same company in Procore twice).

No ping-pong: the ledger keeps a hash of both sides as they were after our last write
(Procore's side as Procore returned it). When both sides still hash the same on the next
poll, nothing is compared and nothing is written, however recently X3 stamped the record.

X3 by import file (MLC_X3_SUPPLIER_WRITE=import_file): a change for X3 is `exported`, not
synced. Until a read of X3 shows it, the plan reasons from the state X3 *will* have (so the
pending change is neither exported twice nor mistaken for an X3 edit); once X3 shows it the
record is confirmed; if X3 changed the record since the export without taking our values,
X3's values count; if X3 shows nothing for longer than the pending window, it is exported
again. Phone and e-mail live on the business partner's address in X3, which the import file
for existing suppliers does not address, so they are not written into existing suppliers in
that mode (`SupplierRules.x3_contact_writable`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pandas as pd

from mlc_dagster.common.payload import content_hash
from mlc_dagster.ledger.store import Change, RecordState
from mlc_dagster.resources.sage_x3_client import parse_stamp
from mlc_dagster.x3_import.files import (
    CONFIRM_ACTION,
    EXPORT_ACTION,
    PENDING,
    export_file,
    exported_at,
    is_stale,
)

SUPPLIER, VENDOR = "supplier", "vendor"
FIELDS = ("name", "abbreviated_name", "address", "city", "zip", "country_code",
          "business_phone", "email_address", "is_active")
IDENTITY = ("name", "abbreviated_name", "address", "city", "zip", "country_code")
CONTACT = ("business_phone", "email_address")
X3_NAMES = {"name": "name", "abbreviated_name": "short_name", "address": "address",
            "city": "city", "zip": "postcode", "country_code": "country",
            "business_phone": "phone", "email_address": "email", "is_active": "active"}
# BPSUPPLIER column sizes: a Procore value longer than this is never truncated into X3.
X3_LIMITS = {"name": 35, "abbreviated_name": 10, "address": 50, "city": 40, "zip": 10,
             "country_code": 3, "business_phone": 40, "email_address": 80}
CODE_LIMIT = 15
_LEGAL_SUFFIXES = {"ltd", "limited", "plc", "llc", "llp", "inc", "co", "corp", "sa", "sas",
                   "sarl", "gmbh", "bv", "ag"}


@dataclass(frozen=True)
class SupplierRules:
    contact_owner: str = "x3"  # x3 | procore
    code_prefix: str = "PC"  # X3 code of a supplier created from a Procore-only vendor
    x3_contact_writable: bool = True  # False: phone/e-mail never written into X3 suppliers
    x3_create_problem: str = ""  # set: Procore-only vendors are held with this reason
    pending_hours: float = 24.0  # an export X3 has not shown after this is exported again

    def __post_init__(self) -> None:
        if self.contact_owner not in ("x3", "procore"):
            raise ValueError("MLC_VENDOR_CONTACT_OWNER must be x3 or procore, "
                             f"not {self.contact_owner!r}")


# --- normalised views of both sides, in Procore's field names ---------------------------------


def x3_view(supplier: dict) -> dict:
    view = {f: _text(supplier.get(X3_NAMES[f])) for f in FIELDS if f != "is_active"}
    view["country_code"] = view["country_code"].upper()
    view["is_active"] = bool(supplier.get("active"))
    return view


def procore_view(vendor: dict) -> dict:
    view = {f: _text(vendor.get(f)) for f in FIELDS if f != "is_active"}
    view["is_active"] = vendor.get("is_active") is not False
    return view


def pair_hash(x3: dict, procore: dict) -> str:
    return content_hash({"x3": x3, "procore": procore})


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def supplier_code_for(vendor_id: int, prefix: str) -> str:
    """Deterministic, so a re-run after a crash finds the supplier it already created."""
    digits, n = "", int(vendor_id)
    while True:
        n, r = divmod(n, 36)
        digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[r] + digits
        if n == 0:
            return prefix + digits


# --- matching pre-existing vendors ---------------------------------------------------------------


def norm_name(name: str) -> str:
    text = unicodedata.normalize("NFKD", name or "")
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    words = re.sub(r"[^0-9a-z]+", " ", text).split()
    while words and words[-1] in _LEGAL_SUFFIXES:
        words.pop()
    return " ".join(words)


def norm_compact(value: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", (value or "").upper())


def match_keys(name: str, postcode: str, tax_id: str) -> set[str]:
    keys = set()
    if norm_compact(tax_id):
        keys.add("tax:" + norm_compact(tax_id))
    if norm_name(name) and norm_compact(postcode):
        keys.add(f"name:{norm_name(name)}|{norm_compact(postcode)}")
    return keys


def match_unlinked(suppliers: list[dict], vendors: list[dict]
                   ) -> tuple[dict[str, dict], list[tuple[list[str], list[dict]]]]:
    """Pair unlinked suppliers with unlinked vendors by tax id, or name + postcode.

    Returns (supplier code -> its one vendor, ambiguous groups). A group with more than one
    supplier or vendor is ambiguous: listed for a person, never merged.
    """
    by_key: dict[str, tuple[set[str], set[int]]] = {}
    for s in suppliers:
        for key in match_keys(s.get("name"), s.get("postcode"), s.get("tax_id")):
            by_key.setdefault(key, (set(), set()))[0].add(s["supplier_code"])
    vendor_by_id = {int(v["id"]): v for v in vendors}
    for v in vendors:
        for key in match_keys(v.get("name"), v.get("zip"), v.get("tax_id")):
            if key in by_key:
                by_key[key][1].add(int(v["id"]))
    # Connected components over shared keys (a supplier may match by tax id and by name).
    groups: list[tuple[set[str], set[int]]] = []
    for codes, ids in by_key.values():
        if not ids:
            continue
        merged = [g for g in groups if g[0] & codes or g[1] & ids]
        new = (set(codes), set(ids))
        for g in merged:
            new[0].update(g[0])
            new[1].update(g[1])
            groups.remove(g)
        groups.append(new)
    links, ambiguous = {}, []
    for codes, ids in groups:
        if len(codes) == 1 and len(ids) == 1:
            links[next(iter(codes))] = vendor_by_id[next(iter(ids))]
        else:
            ambiguous.append((sorted(codes), [vendor_by_id[i] for i in sorted(ids)]))
    return links, ambiguous


def our_supplier_codes(records: list[dict], quarantine_reasons: dict[str, str],
                       supplier_states: dict[str, RecordState],
                       vendor_states: dict[str, RecordState]) -> set[str]:
    """Every origin_id this connector puts on a vendor: the supplier codes of this X3 (valid
    or quarantined), and the codes its ledger knows (a supplier since deleted in X3, one
    created from a Procore vendor)."""
    codes = {str(r["supplier_code"]) for r in records} | set(quarantine_reasons)
    codes |= set(supplier_states)
    codes |= {str(s.summary["supplier_code"]) for s in vendor_states.values()
              if isinstance(s.summary, dict) and s.summary.get("supplier_code")}
    return codes


def foreign_vendor_reason(vendor: dict, supplier: dict) -> str:
    """Why an X3 supplier that matches another integration's vendor is held."""
    shared = match_keys(supplier.get("name"), supplier.get("postcode"), supplier.get("tax_id")) \
        & match_keys(vendor.get("name"), vendor.get("zip"), vendor.get("tax_id"))
    by = "tax id" if any(k.startswith("tax:") for k in shared) else "name+postcode"
    return (f"Procore vendor {vendor['id']} ({vendor.get('name')}) matches by {by} but belongs "
            f"to another integration (origin_id {vendor.get('origin_id')}); the connector does "
            "not overwrite or duplicate it: link it by hand or clear its origin_id in the "
            "other system")


# --- the plan -------------------------------------------------------------------------------------


@dataclass
class PairWrite:
    """One supplier/vendor pair to bring in step; either side's changes may be empty."""

    code: str
    vendor_id: int | None
    action: str  # create | link | update | baseline
    vendor_item: dict | None  # a vendors/sync item, None = nothing to send to Procore
    x3_fields: dict  # canonical X3 fields to change, {} = nothing to send to X3
    x3_after: dict  # X3 side after the write (view)
    procore_after: dict  # Procore side we expect (Procore's response replaces it)
    changes: list[str]
    x3_stamp: str | None = None
    matched: bool = False  # an unlinked vendor matched to this supplier (record the vendor too)
    pending_export: dict | None = None  # X3 has not imported an earlier export yet (payload)


@dataclass
class SupplierCreate:
    """A Procore-only vendor to create as an X3 supplier, then link back."""

    vendor_id: int
    code: str
    record: dict  # canonical X3 supplier
    pair: PairWrite


@dataclass
class SupplierPlan:
    pairs: list[PairWrite] = field(default_factory=list)
    creates: list[SupplierCreate] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    holds: list[Change] = field(default_factory=list)
    confirms: list[Change] = field(default_factory=list)  # exported changes X3 now shows
    pending: list[str] = field(default_factory=list)  # exported, X3 has not imported them yet
    ambiguous: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["x3_suppliers", "procore_vendors", "why"]))


def plan_supplier_sync(suppliers: pd.DataFrame, quarantine_reasons: dict[str, str],
                       vendors: list[dict], supplier_states: dict[str, RecordState],
                       vendor_states: dict[str, RecordState], rules: SupplierRules,
                       stamps: dict[str, str | None] | None = None,
                       now: datetime | None = None) -> SupplierPlan:
    stamps = stamps or {}
    now = now or datetime.now(UTC)
    plan = SupplierPlan()
    holds: dict[tuple[str, str], str] = {(SUPPLIER, c): r for c, r in quarantine_reasons.items()}
    records = suppliers.to_dict("records")
    by_origin = {str(v["origin_id"]): v for v in vendors if v.get("origin_id")}
    ours = our_supplier_codes(records, quarantine_reasons, supplier_states, vendor_states)
    foreign = {int(v["id"]): v for v in vendors
               if v.get("origin_id") and str(v["origin_id"]) not in ours}

    unlinked_vendors = [v for v in vendors if not v.get("origin_id")
                        and v.get("is_active") is not False]
    # A supplier we created from a vendor whose link-back did not happen (crash): its code
    # is the vendor's own, so it is linked, not created again on either side.
    own_codes = {_own_code(v, vendor_states, rules): v for v in unlinked_vendors}
    links = {c: v for c, v in own_codes.items() if c in {r["supplier_code"] for r in records}}
    unlinked_vendors = [v for v in unlinked_vendors if v not in links.values()]
    unlinked_suppliers = [r for r in records if r["supplier_code"] not in by_origin
                          and r["supplier_code"] not in links and r["active"]]
    # Foreign vendors take part in matching so that a look-alike of one is never created.
    matched, ambiguous = match_unlinked(unlinked_suppliers,
                                        unlinked_vendors + list(foreign.values()))
    in_doubt_codes, in_doubt_vendors = set(), set()
    by_code = {r["supplier_code"]: r for r in records}
    for code, v in matched.items():
        if int(v["id"]) in foreign:
            holds[(SUPPLIER, code)] = foreign_vendor_reason(v, by_code[code])
            in_doubt_codes.add(code)
        else:
            links[code] = v
    rows = []
    for codes, group in ambiguous:
        names = ", ".join(f"{v['id']} ({v.get('name')}, {v.get('zip') or '-'}"
                          + (f", origin_id {v['origin_id']} of another integration"
                             if int(v["id"]) in foreign else "") + ")" for v in group)
        why = (f"ambiguous match: X3 supplier(s) {', '.join(codes)} and Procore vendor(s) "
               f"{names} share a tax id or name + postcode; link one by hand (or deactivate "
               "the duplicate vendor) and the next run links it")
        rows.append({"x3_suppliers": ", ".join(codes), "procore_vendors": names, "why": why})
        for code in codes:
            holds[(SUPPLIER, code)] = why
            in_doubt_codes.add(code)
        for v in group:
            if int(v["id"]) not in foreign:  # another integration's: not ours to record
                holds[(VENDOR, str(v["id"]))] = why
            in_doubt_vendors.add(int(v["id"]))
    plan.ambiguous = pd.DataFrame(rows, columns=plan.ambiguous.columns)

    for r in records:
        code = r["supplier_code"]
        x3 = x3_view(r)
        state = supplier_states.get(code)
        if code in by_origin:
            pair = _plan_linked(code, x3, by_origin[code], state, rules, stamps.get(code),
                                now, plan)
        elif code in links:
            pair = _plan_pair(code, x3, links[code], None, rules, linking=True)
        elif code in in_doubt_codes or not r["active"]:
            continue  # ambiguous (held above), or inactive and never linked: nothing to do
        else:
            pair = _create_vendor(code, x3)
        if pair is None:
            if code not in plan.pending:
                plan.unchanged.append(code)
            continue
        pair.x3_stamp = stamps.get(code)
        too_long = _over_limits(pair.x3_fields, canonical=True)
        if too_long:
            holds[(SUPPLIER, code)] = f"cannot write to X3: {too_long}"
        else:
            plan.pairs.append(pair)

    linked_ids = {int(v["id"]) for v in links.values()}
    for v in unlinked_vendors:
        vid = int(v["id"])
        if vid in in_doubt_vendors or vid in linked_ids:
            continue
        create = _create_supplier(vid, _own_code(v, vendor_states, rules), v)
        if isinstance(create, str) or rules.x3_create_problem:
            holds[(VENDOR, str(vid))] = create if isinstance(create, str) else (
                f"Procore vendor {vid} ({v.get('name')}) cannot become an X3 supplier yet: "
                f"{rules.x3_create_problem}")
            continue
        state = vendor_states.get(str(vid))
        if state and state.status == PENDING and state.content_hash == create_hash(create):
            if not is_stale(state.payload, now, rules.pending_hours):
                plan.pending.append(f"vendor {vid}")  # same supplier already exported
                continue
            create.pair.changes.insert(0, _stale_note(state, rules))
        plan.creates.append(create)

    for (entity, key), reason in sorted(holds.items()):
        state = (supplier_states if entity == SUPPLIER else vendor_states).get(key)
        if state and state.status == "held" and state.reason == reason:
            continue
        plan.holds.append(Change(entity=entity, key=key, status="held", action="hold",
                                 reason=reason, procore_id=state.procore_id if state else None,
                                 summary=state.summary if state else None,
                                 x3_stamp=stamps.get(key) if entity == SUPPLIER else None))
    return plan


def create_hash(create: SupplierCreate) -> str:
    """What an exported supplier creation is compared by: the X3 record it carries."""
    return content_hash(create.record)


def _stale_note(state: RecordState, rules: SupplierRules) -> str:
    return (f"exported again: X3 has not shown what {export_file(state.payload)} carried "
            f"after {rules.pending_hours:g} h (check the X3 import log, GIMPOBJ)")


def _plan_linked(code: str, x3: dict, vendor: dict, state: RecordState | None,
                 rules: SupplierRules, stamp: str | None, now: datetime,
                 plan: SupplierPlan) -> PairWrite | None:
    """`_plan_pair`, with the X3 side of an exported (pending) change resolved first."""
    if state is None or state.status != PENDING:
        return _plan_pair(code, x3, vendor, state, rules)
    settled = replace(state, status="synced")
    expected = (state.summary or {}).get("x3") or {}
    if x3 == expected:  # X3 imported our file
        plan.confirms.append(Change(
            entity=SUPPLIER, key=code, status="synced", action=CONFIRM_ACTION,
            reason=f"seen in X3 after the import of {export_file(state.payload)}",
            procore_id=state.procore_id, content_hash=state.content_hash, x3_stamp=stamp,
            summary=state.summary))
        return _plan_pair(code, x3, vendor, settled, rules)
    at = exported_at(state.payload)
    if stamp and at and _stamp(stamp) > at:  # X3 changed the record since, without our values
        pair = _plan_pair(code, x3, vendor, settled, rules)
        if pair is not None:
            pair.changes.insert(0, f"X3 changed the supplier after {export_file(state.payload)} "
                                   "was exported; X3's values count")
        return pair
    pending_fields = {X3_NAMES[f]: expected[f] for f in FIELDS
                      if f in expected and expected[f] != x3.get(f)}
    pair = _plan_pair(code, expected, vendor, settled, rules)  # as X3 will be after the import
    stale = is_stale(state.payload, now, rules.pending_hours)
    if pair is None and not stale:
        plan.pending.append(code)
        return None
    if pair is None:
        pair = PairWrite(code, int(vendor["id"]), "update", None, {}, expected,
                         state.summary.get("procore") or procore_view(vendor), [])
    if pair.x3_fields or stale:  # a new export carries the pending values too
        pair.x3_fields = {**pending_fields, **pair.x3_fields}
        if stale:
            pair.changes.insert(0, _stale_note(state, rules))
    else:
        pair.pending_export = state.payload  # only Procore changes: the export still stands
    return pair


def _stamp(value: str) -> datetime:
    try:
        return parse_stamp(value)
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)  # unreadable: treat as changed after


def _plan_pair(code: str, x3: dict, vendor: dict, state: RecordState | None,
               rules: SupplierRules, linking: bool = False) -> PairWrite | None:
    pc = procore_view(vendor)
    if state and state.status == "synced" and state.content_hash == pair_hash(x3, pc):
        return None
    last = (state.summary or {}) if state and not linking else {}
    first = not last
    to_pc, to_x3 = dict(pc), dict(x3)
    for f in IDENTITY:
        to_pc[f] = x3[f]
    for f in CONTACT:
        owner_value = x3[f] if rules.contact_owner == "x3" else pc[f]
        if first and not owner_value:  # first link: fill a blank side, never wipe
            owner_value = pc[f] or x3[f]
        to_pc[f] = owner_value
        to_x3[f] = owner_value if rules.x3_contact_writable else x3[f]
    active = x3["is_active"]
    if last and x3["is_active"] == last.get("x3", {}).get("is_active") \
            and pc["is_active"] != last.get("procore", {}).get("is_active"):
        active = pc["is_active"]  # only Procore changed since our last sync
    to_pc["is_active"] = to_x3["is_active"] = active

    vendor_changes = {f: to_pc[f] for f in FIELDS if to_pc[f] != pc[f]}
    x3_changes = {f: to_x3[f] for f in FIELDS if to_x3[f] != x3[f]}
    changes = [f"Procore {f}: {pc[f]!r} -> {v!r}" for f, v in vendor_changes.items()]
    changes += [f"X3 {X3_NAMES[f]}: {x3[f]!r} -> {v!r}" for f, v in x3_changes.items()]
    item = None
    if vendor_changes or linking:
        item = {"id": int(vendor["id"]), **{f: v or None if f != "is_active" else v
                                            for f, v in vendor_changes.items()}}
        if linking:
            item.update(origin_id=code, origin_code=code)
            changes.insert(0, f"linked to existing Procore vendor {vendor['id']} "
                              f"({vendor.get('name')})")
    action = "link" if linking else ("update" if item or x3_changes else "baseline")
    return PairWrite(code, int(vendor["id"]), action, item,
                     {X3_NAMES[f]: v for f, v in x3_changes.items()}, to_x3, to_pc,
                     changes or ["recorded as in step"], matched=linking)


def _create_vendor(code: str, x3: dict) -> PairWrite:
    item = {"origin_id": code, "origin_code": code,
            **{f: (x3[f] or None) if f != "is_active" else x3[f] for f in FIELDS}}
    return PairWrite(code, None, "create", item, {}, x3, dict(x3),
                     [f"Procore vendor created for X3 supplier {code} ({x3['name']})"])


def _own_code(vendor: dict, vendor_states: dict[str, RecordState], rules: SupplierRules) -> str:
    state = vendor_states.get(str(vendor["id"]))
    recorded = (state.summary or {}).get("supplier_code") if state else None
    return recorded or supplier_code_for(int(vendor["id"]), rules.code_prefix)


def _create_supplier(vendor_id: int, code: str, vendor: dict) -> SupplierCreate | str:
    pc = procore_view(vendor)
    x3 = dict(pc, abbreviated_name=pc["abbreviated_name"] or pc["name"][:10])
    problems = _over_limits(x3)
    if len(code) > CODE_LIMIT:
        problems = f"supplier code {code} is longer than {CODE_LIMIT} characters; " + problems
    if not pc["name"]:
        problems = "vendor has no name; " + problems
    if problems.strip("; "):
        return f"Procore vendor {vendor_id} cannot become an X3 supplier: {problems.strip('; ')}"
    record = {"supplier_code": code, **{X3_NAMES[f]: v for f, v in x3.items() if v != ""}}
    link = {"id": vendor_id, "origin_id": code, "origin_code": code}
    pair = PairWrite(code, vendor_id, "link", link, {}, x3, pc,
                     [f"X3 supplier {code} created from Procore vendor {vendor_id} "
                      f"({pc['name']}) and linked back"])
    return SupplierCreate(vendor_id, code, record, pair)


def _over_limits(values: dict, canonical: bool = False) -> str:
    names = {v: k for k, v in X3_NAMES.items()} if canonical else {}
    out = []
    for name, value in values.items():
        limit = X3_LIMITS.get(names.get(name, name))
        if limit and isinstance(value, str) and len(value) > limit:
            out.append(f"{name} is {len(value)} characters, Sage X3 allows {limit}")
    return "; ".join(out)


# --- preview: what the live run's writer would record (pure) ---------------------------------------


def supplier_preview_rows(plan: SupplierPlan, *, x3_by_file: bool = True) -> list[dict]:
    """One row per ledger event `SupplierWriter.run(plan)` records, with its entity as the flow
    and its action: confirm, hold, create, link, update, baseline, export. Unchanged records
    and exports X3 has not imported yet record nothing, so have no row.

    `x3_by_file`: MLC_X3_SUPPLIER_WRITE is import_file (its default): new X3 suppliers and
    X3-side changes are exported instead of written through the API.
    """
    rows = [_supplier_row(c.entity, c.key, c.action, c.reason or "")
            for c in plan.confirms + plan.holds]
    for create in plan.creates:
        if x3_by_file:
            rows.append(_supplier_row(VENDOR, str(create.vendor_id), EXPORT_ACTION,
                                      f"X3 supplier {create.code} to be created from Procore "
                                      f"vendor {create.vendor_id} by import file"))
            continue
        rows.append(_supplier_row(VENDOR, str(create.vendor_id), "create",
                                  create.pair.changes[0]))
        rows.append(_supplier_row(SUPPLIER, create.code, create.pair.action,
                                  "; ".join(create.pair.changes)))
    for pair in plan.pairs:
        action = EXPORT_ACTION if x3_by_file and pair.x3_fields else pair.action
        rows.append(_supplier_row(SUPPLIER, pair.code, action, "; ".join(pair.changes)))
        if pair.matched:
            rows.append(_supplier_row(VENDOR, str(pair.vendor_id), "link",
                                      f"linked to X3 supplier {pair.code}"))
    return rows


def _supplier_row(entity: str, key: str, action: str, detail: str) -> dict:
    return {"flow": entity, "key": key, "project_id": None, "action": action, "detail": detail,
            "amount": None}
