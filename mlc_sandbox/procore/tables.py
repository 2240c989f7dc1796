"""The sandbox's storage: one Table of plain-dict records per Procore resource, and lookups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlc_sandbox.procore.errors import Invalid, not_found
from mlc_sandbox.procore.values import now_iso

if TYPE_CHECKING:
    from mlc_sandbox.procore.state import ProcoreState


class _UniqueIndex:
    """value -> record id for live records; re-pointed whenever a record is saved."""

    def __init__(self) -> None:
        self.ids: dict[Any, int] = {}
        self._value_of: dict[int, Any] = {}

    def put(self, rid: int, value: Any) -> None:
        old = self._value_of.pop(rid, None)
        if old is not None and self.ids.get(old) == rid:
            del self.ids[old]
        if value is not None:
            self.ids[value] = rid
            self._value_of[rid] = value


class Table:
    """One resource's records by id, with a parent grouping and O(1) uniqueness lookups.

    Records are plain dicts; keys starting with "_" are internal and never serialized.
    Indexes: origin_id across the company and, for numbered records, `number` within the
    group. Soft-deleted records (deleted_at set) leave both, so the values can be reused.
    `unique_origin` False: no source says Procore refuses a second record with the same
    origin_id here, so `check_origin` lets it through (docs/api-assumptions.md §1).
    """

    def __init__(self, group_by: str | None = None, numbered: bool = False,
                 unique_origin: bool = True) -> None:
        self.group_by, self.numbered, self.unique_origin = group_by, numbered, unique_origin
        self.rows: dict[int, dict] = {}
        self._groups: dict[Any, dict[int, dict]] = {}
        self._origins = _UniqueIndex()
        self._numbers = _UniqueIndex()

    def save(self, record: dict) -> dict:
        rid, live = record["id"], not record.get("deleted_at")
        origin_id = record.get("origin_id")
        self._origins.put(rid, str(origin_id) if live and origin_id is not None else None)
        if self.numbered:
            number = record.get("number")
            group_number = (record[self.group_by], number)
            self._numbers.put(rid, group_number if live and number is not None else None)
        self.rows[rid] = record
        if self.group_by:
            self._groups.setdefault(record[self.group_by], {})[rid] = record
        return record

    def remove(self, record: dict) -> None:
        record["deleted_at"] = now_iso()
        self.save(record)
        del self.rows[record["id"]]
        if self.group_by:
            del self._groups[record[self.group_by]][record["id"]]

    def get(self, rid: int | None, group: Any = None, include_deleted: bool = False) -> dict | None:
        record = self.rows.get(rid)
        if record is None or (record.get("deleted_at") and not include_deleted):
            return None
        if group is not None and record[self.group_by] != group:
            return None
        return record

    def find_origin(self, origin_id: str | None) -> dict | None:
        return self.rows.get(self._origins.ids.get(origin_id)) if origin_id is not None else None

    def find_number(self, group: Any, number: str | None) -> dict | None:
        return self.rows.get(self._numbers.ids.get((group, number)))

    def size(self, group: Any) -> int:
        """Records ever created in the group (soft-deleted ones included)."""
        return len(self._groups.get(group, {}))

    def all(self, group: Any = None, include_deleted: bool = False) -> list[dict]:
        rows = self.rows if group is None else self._groups.get(group, {})
        return [r for r in rows.values() if include_deleted or not r.get("deleted_at")]


def public(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith("_")}


def record_or_404(table: Table, rid: int | None, what: str, group: Any = None,
                  project: dict | None = None) -> dict:
    """The live record (within `group`, of `project` when given), or Procore's 404."""
    record = table.get(rid, group)
    if record is None or (project is not None and record["_project_id"] != project["id"]):
        raise not_found(what)
    return record


def next_number(table: Table, group: Any) -> str:
    """Procore numbers new records 1, 2, 3... within their group, skipping numbers in use."""
    candidate = table.size(group) + 1
    while table.find_number(group, str(candidate)) is not None:
        candidate += 1
    return str(candidate)


def contract_in(state: ProcoreState, project: dict, contract_id: int | None, field: str) -> dict:
    """The project's live commitment a body attribute names, or a validation error on it."""
    contract = state.contracts.get(contract_id, project["id"])
    if contract is None:
        raise Invalid({field: ["does not exist in this project"]})
    return contract
