"""Write X3 import files atomically and record every exported record in the ledger.

An exported record is *not* written to X3: its ledger state is `exported` (pending) until
the next read of X3 shows the values (then `synced`, action `confirm`). The ledger event per
record has action `export` and names the file, so the audit trail says which file carried
which change. The file appears under its final name only when complete (written to a
dot-prefixed temporary name, flushed, then renamed), so an X3 import task polling the folder
never reads half a file; the ledger is written after the file, so a crash in between leaves
an unrecorded file and the record is exported again next run (X3 imports it twice, which a
create-or-modify import tolerates), never a recorded export without a file. A batch is
written once: a record the ledger shows exported with the same content after the batch was
planned (the file step materialised again, or an overlapping run) is left out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from mlc_dagster.ledger.store import Change, Ledger
from mlc_dagster.resources.sage_x3_client import format_stamp, parse_stamp
from mlc_dagster.x3_import.templates import ImportTemplate, Record, render

PENDING, EXPORT_ACTION, CONFIRM_ACTION = "exported", "export", "confirm"
# The only X3 objects an import file from this connector may load: suppliers (BPS) and
# dimension values (CCE). Never GL accounts, journals or accounting entries.
WRITABLE_IMPORT_OBJECTS = frozenset({"BPS", "CCE"})


class ImportObjectForbidden(PermissionError):
    """An import file for an X3 object outside the allow-list (e.g. a journal template)."""


@dataclass
class ExportItem:
    """One object instance for an import file, and the ledger state it leaves behind."""

    entity: str
    key: str
    records: list[Record]
    change: Change  # status "exported", action "export"; the file fields are added on write


@dataclass
class ExportBatch:
    template: ImportTemplate
    items: list[ExportItem] = field(default_factory=list)
    planned_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class WrittenFile:
    path: str
    template: str
    records: int  # object instances (suppliers, dimension values)
    lines: int


def file_name(template: ImportTemplate, now: datetime, run_id: str | None) -> str:
    """One file per template and run: `YMLCCCE_20240501T101500Z_1a2b3c4d.txt`."""
    return f"{template.code}_{now.astimezone(UTC):%Y%m%dT%H%M%SZ}_{(run_id or 'manual')[:8]}.txt"


def write_atomically(directory: Path, name: str, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / name
    if final.exists():
        raise FileExistsError(f"{final} already exists; refusing to overwrite an import file")
    temporary = directory / f".{name}.part"
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, final)
    return final


def write_batches(batches: list[ExportBatch], directory: Path, run_id: str | None,
                  ledger: Ledger, now: datetime | None = None) -> list[WrittenFile]:
    """Each batch's records not yet written -> one file, then their `exported` states and
    events."""
    now = now or datetime.now(UTC)
    stamp = format_stamp(now)
    written = []
    for batch in batches:
        template = batch.template
        if batch.items and template.object not in WRITABLE_IMPORT_OBJECTS:
            raise ImportObjectForbidden(
                f"refusing to write an X3 import file for object {template.object!r} (template "
                f"{template.code}): only {sorted(WRITABLE_IMPORT_OBJECTS)} may be imported")
        items = _not_yet_written(batch, ledger)
        if not items:
            continue
        text = render(template, [item.records for item in items])
        path = write_atomically(directory, file_name(template, now, run_id),
                                text.encode(template.encoding))
        export = {"file": path.name, "path": str(path), "template": template.code, "at": stamp}
        ledger.apply([replace(
            item.change, status=PENDING, action=EXPORT_ACTION,
            reason=f"{item.change.reason}; exported to {path.name} (X3 template "
                   f"{template.code}), pending until X3 imports it",
            payload={**export, "records": [[i, v] for i, v in item.records]})
            for item in items], run_id)
        written.append(WrittenFile(str(path), template.code, len(items),
                                   sum(len(item.records) for item in items)))
    return written


def _not_yet_written(batch: ExportBatch, ledger: Ledger) -> list[ExportItem]:
    """The batch's items, less those the ledger shows exported with the same content since
    the batch was planned (this batch written already: the step ran again, or a run overlapped).
    An older export of the same content (stale, exported again on purpose) is written."""
    since = batch.planned_at.replace(microsecond=0)
    states = {}
    for entity in {item.entity for item in batch.items}:
        keys = [item.key for item in batch.items if item.entity == entity]
        states.update({(entity, k): s for k, s in ledger.states(entity, keys).items()})

    def written(item: ExportItem) -> bool:
        state = states.get((item.entity, item.key))
        at = exported_at(state.payload) if state and state.status == PENDING else None
        return at is not None and at >= since and item.change.content_hash is not None \
            and state.content_hash == item.change.content_hash

    return [item for item in batch.items if not written(item)]


def exported_at(payload) -> datetime | None:
    """When an exported record's file was written (None if the payload has no stamp)."""
    try:
        return parse_stamp(payload["at"])
    except (TypeError, KeyError, ValueError):
        return None


def is_stale(payload, now: datetime, pending_hours: float) -> bool:
    """Exported longer ago than the pending window without X3 showing it."""
    at = exported_at(payload)
    return at is not None and (now - at).total_seconds() > pending_hours * 3600


def export_file(payload) -> str:
    return payload.get("file", "?") if isinstance(payload, dict) else "?"
