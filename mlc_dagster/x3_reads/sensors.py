"""Sensors on Sage X3 changes: cheap to evaluate, bounded per tick, safe to repeat."""


import hashlib
import itertools
import json
import time

import dagster as dg

from mlc_dagster.common.write_mode import skip_reason
from mlc_dagster.defs.jobs import sync_sage_x3_to_procore
from mlc_dagster.procore_writes.continuation import lead_seconds, waiting_for_allowance
from mlc_dagster.resources.ledger import LedgerResource
from mlc_dagster.resources.sage_x3 import SageX3Resource
from mlc_dagster.resources.sage_x3_client import CANONICAL_KEYS, DeltaCursor
from mlc_dagster.settings import current_settings, load_settings

PAGE_SIZE = 200
MAX_PAGES_PER_TICK = 25  # 5,000 changed records read per tick at most


def x3_change_sensor(entity: str, *, name: str, trigger: str, noun: str,
                     count_tag: str, poll_lines: bool = False) -> dg.SensorDefinition:
    """A sensor requesting a `sync_sage_x3_to_procore` run when X3 `entity` records change.

    One X3 query per tick on the headers when nothing changed (more pages only when more
    changed): records stamped inside the overlap window that it hasn't seen. With
    `poll_lines`, a second query on the line stamps (X3 does not document that a line-only
    change moves the header stamp), so a no-change tick costs two X3 calls. Each cursor
    keeps its high-water stamp plus the (key, stamp) pairs already seen inside the overlap
    window, so same-second and late-committed changes trigger exactly once. The run itself
    re-reads everything changed since its own stored stamps, so a tick that stops at
    MAX_PAGES_PER_TICK still leads to a complete sync.

    While a backfill handed over at Procore's rate limit waits for its allowance, skips
    without reading X3 (procore_writes/continuation.py: the continuation run stages these changes).

    MLC_WRITE_MODE=preview: skips without reading X3 and leaves the cursor alone, so the
    first live tick still sees every change made meanwhile (and the run it requests plans from
    the ledger's whole X3 snapshot anyway, which a preview run's refresh only brings forward).
    """
    key_field = CANONICAL_KEYS[entity][0]
    automation = current_settings().automation

    @dg.sensor(
        name=name,
        job=sync_sage_x3_to_procore,
        minimum_interval_seconds=automation.sensor_interval_seconds,
        default_status=(dg.DefaultSensorStatus.RUNNING if automation.on
                        else dg.DefaultSensorStatus.STOPPED),
        description=(f"Requests a sync run when Sage X3 {noun}s change "
                     "(update stamp + overlap window)."),
    )
    def _sensor(context: dg.SensorEvaluationContext, sage_x3: SageX3Resource,
                ledger: LedgerResource):
        settings = load_settings()
        if settings.preview:
            return dg.SkipReason(skip_reason(f"sensor {name}"))
        lead = lead_seconds(settings.procore.max_wait_seconds)
        if waiting := waiting_for_allowance(ledger.get_ledger(), time.time(), lead):
            return dg.SkipReason(waiting)  # cursor untouched: the changes stay to be seen
        headers, lines = load_cursors(context.cursor, entity)
        client = sage_x3.get_client()
        overlap = settings.x3.overlap_seconds
        new = headers.advance(first_pages(client.changed(
            entity, headers.window_start(overlap), page_size=PAGE_SIZE)))
        if poll_lines:
            new += lines.advance(first_pages(client.changed_line_documents(
                entity, lines.window_start(overlap), page_size=PAGE_SIZE)))
        cursor = dump_cursors(headers, lines)
        if not new:
            return dg.SensorResult(skip_reason=f"no Sage X3 {noun} changed", cursor=cursor)
        keys = sorted({f"{r[key_field]}@{r['update_stamp']}" for r in new})
        digest = hashlib.sha256("|".join(keys).encode()).hexdigest()[:16]
        return dg.SensorResult(
            run_requests=[dg.RunRequest(
                run_key=f"{trigger.replace('_', '-')}:{digest}",
                tags={"mlc/trigger": trigger, count_tag: str(len({r[key_field] for r in new}))},
            )],
            cursor=cursor,
        )

    return _sensor


def first_pages(pages) -> list[dict]:
    """Up to MAX_PAGES_PER_TICK pages of changed records.

    X3 pages by key, not by stamp, so one page per tick would take a tick per page to catch
    up (a seed of 2,400 PO lines: 12 ticks, each requesting a run). Reading on within the tick
    costs nothing when nothing changed (one empty page) and stays well inside the sensor's
    60 s evaluation limit.
    """
    return [record for page in itertools.islice(pages, MAX_PAGES_PER_TICK) for record in page]


def load_cursors(text: str | None, entity: str) -> tuple[DeltaCursor, DeltaCursor]:
    """(header cursor, line cursor) from a sensor cursor; a cursor written before line
    polling (a bare DeltaCursor) keeps its header state."""
    if not text:
        return DeltaCursor(entity), DeltaCursor(entity)
    data = json.loads(text)
    if "h" not in data:
        return DeltaCursor.from_json(text), DeltaCursor(entity)
    return DeltaCursor.from_json(data["h"]), DeltaCursor.from_json(data["l"])


def dump_cursors(headers: DeltaCursor, lines: DeltaCursor) -> str:
    return json.dumps({"h": headers.to_json(), "l": lines.to_json()}, separators=(",", ":"))
