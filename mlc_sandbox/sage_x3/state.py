"""X3State: the one copy of the data both APIs read and write, with X3's write rules."""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from mlc_dagster.x3_import.templates import (
    ImportTemplate,
    dimension_template,
    supplier_template,
    supplier_update_template,
)
from mlc_sandbox.controls import SandboxControls
from mlc_sandbox.sage_x3.classes import BPSUPPLIER, PINVOICE, PORDER, X3Class, clean_body
from mlc_sandbox.sage_x3.errors import X3Error, missing_record
from mlc_sandbox.seed import SeedData, money, stamp

# The connected application's "Tokens validity" (seconds); a JWT living longer is refused.
CONNECTED_APP_TOKEN_VALIDITY = 600

_UUID_NAMESPACE = uuid.UUID("6f0c3c59-1d51-4b0e-9a43-3bd1d0c8e2a1")


def _seed_list(attr: str) -> property:
    """Read-only attribute: the state's copy of the seed's X3 record list `attr`."""
    return property(lambda self: getattr(self.data, attr))


class X3State:
    """In-memory X3 folder. The record lists are the seed's own lists (deep-copied), so a
    test can append, remove or age records directly; every API call scans them under
    `lock` (a few thousand records: indexes would only add stale-index bugs)."""

    X3_ATTRS = ("x3_purchase_orders", "x3_purchase_invoices", "x3_suppliers",
                "x3_gl_accounts", "x3_dimensions")

    def __init__(self, seed: SeedData, controls: SandboxControls | None = None) -> None:
        self.lock = threading.RLock()
        self.controls = controls
        self.reset(seed)

    def reset(self, seed: SeedData) -> None:
        """Back to a fresh copy of `seed` (and the real clock) without restarting the
        server. Only the X3 lists are deep-copied: the Procore half of the seed is never
        read here, and copying it would triple the cost of every reset."""
        data = copy.copy(seed)
        for attr in self.X3_ATTRS:
            setattr(data, attr, copy_json(getattr(seed, attr)))
        with self.lock:
            self.data = data
            self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
            self.token_validity_seconds = CONNECTED_APP_TOKEN_VALIDITY
            # What this customer's X3 has been set up with (sandbox settings, `/_sandbox/x3/
            # settings`). Standard X3 has none of the first two: see classes.WEB_API_READ_ONLY
            # and graphql_schema._mutation_sdl. The import templates are the ones the README
            # tells the X3 administrator to create in GESAOE.
            self.writable_classes: set[str] = set()
            self.api_operations: set[str] = set()
            self.import_templates: dict[str, ImportTemplate] = {
                t.code: t for t in (supplier_template(), supplier_update_template(),
                                    dimension_template())}

    # Same attribute names as SeedData, so tests read the state like the seed.
    x3_purchase_orders = _seed_list("x3_purchase_orders")
    x3_purchase_invoices = _seed_list("x3_purchase_invoices")
    x3_suppliers = _seed_list("x3_suppliers")
    x3_gl_accounts = _seed_list("x3_gl_accounts")
    x3_dimensions = _seed_list("x3_dimensions")

    @property
    def x3_purchase_order_lines(self) -> list[dict]:
        """Every PO line (the line dicts themselves, each carrying POHNUM)."""
        return [line for po in self.data.x3_purchase_orders for line in po.get("lines", [])]

    def line_change_moves_header(self) -> bool:
        """Sandbox setting `x3_line_change_moves_header` (POST /_sandbox/config). Whether
        changing only a PO line moves the header UPDDATTIM is undocumented: off by default,
        the stricter reading for a connector (it must watch line stamps itself)."""
        return self.controls is not None and self.controls.config.x3_line_change_moves_header

    def records(self, cls: X3Class) -> list[dict]:
        return getattr(self, cls.seed_attr)

    def now_stamp(self) -> str:
        """UPDDATTIM value for a change made now: UTC, one-second resolution."""
        return stamp(self.clock())

    # --- lookups -----------------------------------------------------------------------

    @staticmethod
    def key_of(cls: X3Class, rec: dict) -> str:
        return "~".join(str(rec.get(k, "")) for k in cls.keys)

    def find(self, cls: X3Class, key: str) -> dict | None:
        parts = key.split("~")
        if len(parts) != len(cls.keys):
            return None
        for rec in self.records(cls):
            if all(str(rec.get(k, "")) == v for k, v in zip(cls.keys, parts, strict=True)):
                return rec
        return None

    def get(self, cls: X3Class, key: str) -> dict:
        rec = self.find(cls, key)
        if rec is None:
            raise missing_record(cls.name, key)
        return rec

    # --- writes ------------------------------------------------------------------------

    def create(self, cls: X3Class, body: dict) -> dict:
        """Insert a record (and its lines) after validating everything; all or nothing."""
        self.require_writable(cls)
        header, lines_body, members = self._split_body(cls, body)
        values = clean_body(cls.fields, header, cls.name)
        for name in cls.mandatory:
            if values.get(name) in (None, ""):
                raise X3Error(400, f"{name} : Mandatory field")
        key = self.key_of(cls, values)
        if self.find(cls, key) is not None:
            raise X3Error(400, f"Record already exists ({cls.name} {key})")
        now = self.now_stamp()
        rec: dict[str, Any] = {}
        for name, spec in cls.fields.items():
            rec[name] = values[name] if name in values else spec.default
        self._fill_defaults(cls, rec)
        rec["CREDATTIM"] = rec["UPDDATTIM"] = now
        if cls.lines_member:
            rec["lines"] = []
            if lines_body is not None:
                self._apply_lines(cls, rec, lines_body, now)
            self._apply_members(cls, rec, members, now)
            self._recompute_total(cls, rec)
        self.records(cls).append(rec)
        return rec

    def update(self, cls: X3Class, key: str, body: dict) -> dict:
        """Partial update: only given fields change; given lines are upserted by line
        number (or `$uuid`), `"$delete": true` removes one. A changed line gets a new
        UPDDATTIM; the header's UPDDATTIM moves when a header field changed, and on a
        line-only change only if `line_change_moves_header()` (undocumented; off)."""
        self.require_writable(cls)
        rec = self.get(cls, key)
        header, lines_body, members = self._split_body(cls, body)
        values = clean_body(cls.fields, header, cls.name)
        for name in cls.keys:
            if name in values and str(values[name]) != str(rec.get(name)):
                raise X3Error(400, f"{name} : Key fields cannot be modified")
        for name in cls.mandatory:
            if name in values and values[name] in (None, ""):
                raise X3Error(400, f"{name} : Mandatory field")
        work = copy.deepcopy(rec)  # validate and apply on a copy: a bad line changes nothing
        now = self.now_stamp()
        changed = False
        for name, value in values.items():
            if work.get(name) != value:
                work[name] = value
                changed = True
        lines_changed = False
        if lines_body is not None:
            lines_changed = self._apply_lines(cls, work, lines_body, now)
        lines_changed = self._apply_members(cls, work, members, now) or lines_changed
        if changed or lines_changed:
            if cls.total_field:
                self._recompute_total(cls, work)
            if changed or self.line_change_moves_header():
                work["UPDDATTIM"] = now
            rec.clear()
            rec.update(work)
        return rec

    def delete(self, cls: X3Class, key: str) -> None:
        self.require_writable(cls)
        rec = self.get(cls, key)
        records = self.records(cls)
        records[:] = [r for r in records if r is not rec]

    # --- helpers -----------------------------------------------------------------------

    @staticmethod
    def require_writable(cls: X3Class) -> None:
        if not cls.writable:
            raise X3Error(405, f"{cls.name} is read-only: create, update and delete are not "
                               "available on this representation")

    @staticmethod
    def _split_body(cls: X3Class, body: Any) -> tuple[dict, Any, dict[str, list]]:
        if not isinstance(body, dict):
            raise X3Error(400, "The request body must be a JSON object")
        header = dict(body)
        lines = header.pop(cls.lines_member, None) if cls.lines_member else None
        if lines is not None and not isinstance(lines, list):
            raise X3Error(400, f"{cls.lines_member} must be an array of lines")
        members = {}
        for member in cls.line_members:
            entries = header.pop(member.name, None)
            if entries is not None:
                if not isinstance(entries, list):
                    raise X3Error(400, f"{member.name} must be an array")
                members[member.name] = entries
        return header, lines, members

    def _apply_members(self, cls: X3Class, rec: dict, members: dict[str, list], now: str
                       ) -> bool:
        """Set per-line child arrays (PORDERC accounts, CPTANALIN dimensions) on the lines
        they name. Returns True if a line changed (its UPDDATTIM then moves: ASSUMPTION,
        X3 saves the line with its analytics)."""
        changed = False
        for member in cls.line_members:
            for index, entry in enumerate(members.get(member.name, [])):
                where = f"{member.name}[{index}]"
                if not isinstance(entry, dict):
                    raise X3Error(400, f"{where} must be an object")
                unknown = [k for k in entry if not k.startswith("$") and k != member.line_key
                           and k not in member.arrays]
                if unknown:
                    raise X3Error(400, f"{where}: unknown property {unknown[0]}")
                try:
                    number = int(entry.get(member.line_key))
                except (TypeError, ValueError):
                    raise X3Error(400, f"{where}: {member.line_key} must be a line number") \
                        from None
                line = next((ln for ln in rec.get("lines", []) if ln.get(cls.line_key) == number),
                            None)
                if line is None:
                    raise X3Error(400, f"{where}: line {number} does not exist")
                for served, internal in member.arrays.items():
                    if served not in entry:
                        continue
                    values = entry[served]
                    if not isinstance(values, list) or not all(
                            isinstance(v, str) and len(v) <= 15 for v in values):
                        raise X3Error(400, f"{where}: {served} must be an array of codes")
                    if line.get(internal) != values:
                        line[internal] = list(values)
                        line["UPDDATTIM"] = now
                        changed = True
        return changed

    def _fill_defaults(self, cls: X3Class, rec: dict) -> None:
        """Defaults X3 itself would propose on a new record."""
        today = self.clock().date().isoformat()
        if cls is PORDER and not rec.get("ORDDAT"):
            rec["ORDDAT"] = today
        if cls is PINVOICE:
            rec["INVDAT"] = rec.get("INVDAT") or today
            rec["ACCDAT"] = rec.get("ACCDAT") or rec["INVDAT"]
        if cls is BPSUPPLIER and not rec.get("BPSSHO"):
            rec["BPSSHO"] = rec["BPSNAM"][:10]
        if cls in (PORDER, PINVOICE) and not rec.get("CUR"):
            supplier = self.find(BPSUPPLIER, str(rec.get("BPSNUM", "")))
            rec["CUR"] = supplier.get("CUR", "") if supplier else ""

    def _line_uuid(self, cls: X3Class, rec: dict, line: dict) -> str:
        return stable_uuid(f"{cls.name}:{self.key_of(cls, rec)}:{line.get(cls.line_key)}")

    def _apply_lines(self, cls: X3Class, rec: dict, lines_body: list, now: str) -> bool:
        """Upsert/delete lines in `rec` (already a working copy). Returns True if changed."""
        key_name = cls.line_key
        lines: list[dict] = rec.setdefault("lines", [])
        changed = False
        seen: set[int] = set()
        for index, item in enumerate(lines_body):
            where = f"{cls.lines_member}[{index}]"
            if not isinstance(item, dict):
                raise X3Error(400, f"{where} must be an object")
            values = clean_body(cls.line_fields, item, where)
            existing = None
            if key_name in values:
                existing = next((ln for ln in lines if ln.get(key_name) == values[key_name]), None)
            elif item.get("$uuid"):
                existing = next((ln for ln in lines
                                 if self._line_uuid(cls, rec, ln) == item["$uuid"]), None)
                if existing is None:
                    raise X3Error(400, f"{where}: no line with $uuid {item['$uuid']}")
            if item.get("$delete") is True:
                if existing is None:
                    raise X3Error(400, f"{where}: line {values.get(key_name)} does not exist")
                lines.remove(existing)
                changed = True
                continue
            if existing is None:
                line = {name: spec.default for name, spec in cls.line_fields.items()}
                line[cls.keys[0]] = rec[cls.keys[0]]
                if cls is PORDER:
                    line["PJT"] = rec.get("PJTH", "")
                line.update(values)
                if not line.get(key_name):
                    line[key_name] = (max((ln.get(key_name) or 0 for ln in lines), default=0)
                                      // 1000 + 1) * 1000
                if line[key_name] in seen:
                    raise X3Error(400, f"{where}: duplicate line number {line[key_name]}")
                line[cls.line_amount] = line_amount(line)  # computed, never taken from the body
                line["UPDDATTIM"] = now
                lines.append(line)
                changed = True
            else:
                if existing[key_name] in seen:
                    raise X3Error(400, f"{where}: duplicate line number {existing[key_name]}")
                diff = {k: v for k, v in values.items() if existing.get(k) != v}
                if diff:
                    existing.update(diff)
                    if {"QTYUOM", "NETPRI"} & diff.keys():
                        existing[cls.line_amount] = line_amount(existing)
                    existing["UPDDATTIM"] = now
                    changed = True
                line = existing
            seen.add(line[key_name])
        lines.sort(key=lambda ln: ln.get(key_name) or 0)
        return changed

    @staticmethod
    def _recompute_total(cls: X3Class, rec: dict) -> None:
        if cls.total_field:
            total = sum((Decimal(str(ln.get(cls.line_amount) or 0)) for ln in rec.get("lines", [])),
                        Decimal(0))
            rec[cls.total_field] = money(total)


def copy_json(value: Any) -> Any:
    """Deep copy of JSON-shaped data (dicts, lists, immutable scalars). Several times
    faster than copy.deepcopy, which matters because tests reset the state often."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value


def stable_uuid(name: str) -> str:
    return str(uuid.uuid5(_UUID_NAMESPACE, name))


def line_amount(line: dict) -> str:
    try:
        return money(Decimal(str(line.get("QTYUOM") or 0)) * Decimal(str(line.get("NETPRI") or 0)))
    except InvalidOperation:
        return "0.00"
