"""Procore REST API sandbox: an in-memory, seeded stand-in for the endpoints the connector uses.

It follows `shared/reference/procore_api.md` and the official request shapes in
`procore_api_subset.json` (same paths, methods, query parameters and body wrappers; body
attributes the template does not name are dropped, see procore_spec.py): OAuth client
credentials with expiring tokens, the `Procore-Company-Id` header, the hourly + spike
rate-limit windows and their headers, `page`/`per_page` paging with `Total`/`Per-Page`/
`Link`, `filters[...]`, batch `/sync` endpoints with Procore's id/origin_id matching table
and per-item errors, and the business rules a sync client trips over (unknown references,
origin_id uniqueness, the Approved lock on commitments, immutable ERP-synced invoices, only
the latest draft invoice being editable, one open billing period). Change orders (packages,
potential change orders, commitment change orders) live in procore_change_orders.py.
Every rule cites its source next to the code; rules no source states are the stricter
reading, listed in docs/api-assumptions.md.

Faults, latency and the call log are not here: `ControlsMiddleware` (controls.py) wraps
this app and serves `/_sandbox/*`.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import logging
import math
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dt_time
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlc_sandbox.controls import (
    CALL_NOTE,
    ControlsMiddleware,
    SandboxConfig,
    SandboxControls,
)
from mlc_sandbox.procore_spec import (
    FILTER_KEY,
    ISO_3166_2_SUBDIVISIONS,
    ISO_3166_ALPHA2,
    STATE_CODE,
    body_templates,
    listed_filters,
    permitted_body,
    range_bound_format,
    range_formats,
)
from mlc_sandbox.seed import COMPANY_ID, SANDBOX_CREDENTIALS, SeedData

log = logging.getLogger(__name__)

SYNC_LIMIT = 1000
MAX_PER_PAGE = 1000
MAX_AMOUNT = Decimal(10) ** 13
PO_STATUSES = ("Draft", "Processing", "Submitted", "Partially Received", "Received", "Approved",
               "Closed")
ACCOUNTING_METHODS = ("amount", "unit")
BASE_TYPES = ("labor", "equipment", "materials", "commitment", "owner_cost",
              "professional_services", "other")
# "If a Commitment ... has a Status of Approved or Complete, the Contract Company and the
# Schedule of Values are not able to be modified ... cannot be deleted" (procore/documentation
# tutorials/tutorial_financial_tools.md, "Record locking"), when the company setting is on.
LOCKED_COMMITMENT_STATUSES = ("Approved", "Complete")
REQUISITION_STATUSES = ("draft", "under_review", "revise_and_resubmit", "approved",
                        "approved_as_noted", "pending_owner_approval")
# OAS: PATCH /rest/v1.1/requisitions/:id (Update Requisition): "Users without admin
# permissions can only update a requisition (sub invoice) if it is the most recent and has a
# status of 'draft' or 'revise_and_resubmit'" (the sandbox takes the non-admin reading).
EDITABLE_REQUISITION_STATUSES = ("draft", "revise_and_resubmit")
REQUISITION_ITEM_TYPES = ("contract_item", "contract_detail_item", "change_order_item")
# "Select Open or Closed from the Status list" (Procore support, "Edit a Billing Period").
BILLING_PERIOD_STATUSES = ("open", "closed")

RATE_LIMIT_MESSAGE = ("You have surpassed the max number of requests for an hour. "
                      "Please wait until your limit resets.")
INVALID_TOKEN = "The access token is invalid"
INVALID_CLIENT = ("Client authentication failed due to unknown client, no client authentication "
                  "included, or unsupported authentication method.")
SOV_LOCKED = "The schedule of values is locked because the commitment is Approved or Complete"
INVOICE_LOCKED = ("Only the latest subcontractor invoice of a commitment, in status draft or "
                  "revise_and_resubmit, can be changed")
# tutorial_financial_tools.md, "Subcontractor Invoices": the notice Procore shows.
INVOICE_SYNCED = "The invoice is not editable because it has been synced with ERP"
INVOICING_DISABLED = "Subcontractor invoices are not enabled on this commitment"


# --- errors ------------------------------------------------------------------------------


class ApiError(Exception):
    """A whole-request failure (400/401/403/404/413/422) with Procore's JSON body."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, body)
        self.status, self.body, self.headers = status, body, headers or {}


class Invalid(Exception):
    """Validation failure: `{field: [messages]}`; 422 on single writes, per-item in sync."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def missing_param(name: str) -> ApiError:
    # Rails' ActionController::ParameterMissing wording, which Procore's v1 API returns.
    return ApiError(400, {"errors": f"param is missing or the value is empty: {name}"})


def not_found(what: str) -> ApiError:
    return ApiError(404, {"errors": f"{what} not found"})


def add_error(errors: dict[str, list[str]], field: str, message: str) -> None:
    errors.setdefault(field, []).append(message)


# --- value conversion (request fields -> stored values) -----------------------------------


def text(value: Any) -> str:
    if isinstance(value, (bool, dict, list)):
        raise ValueError("must be a string")
    return str(value)


def origin(value: Any) -> str | None:
    """origin_id is a string in Procore; blank means 'none' for matching."""
    value = text(value).strip()
    return value or None


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ValueError("must be true or false")


def integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ValueError("is not an integer")


def id_list(value: Any) -> list[int]:
    if not isinstance(value, list):
        raise ValueError("must be an array of ids")
    return [integer(v) for v in value]


def iso_date(value: Any) -> str:
    try:
        return date.fromisoformat(text(value)).isoformat()
    except ValueError:
        raise ValueError("is not a valid date") from None


def number(value: Any) -> Decimal:
    """A decimal from a JSON number or numeric string; never NaN/Infinity or absurd sizes."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("is not a number")
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("is not a number") from None
    if not result.is_finite():
        raise ValueError("is not a number")
    if abs(result) >= MAX_AMOUNT:
        raise ValueError(f"must be less than {MAX_AMOUNT}")
    return result.quantize(Decimal(1)) if result.as_tuple().exponent > 0 else result


def money(value: Any) -> Decimal:
    return to_cents(number(value))


def to_cents(value: Decimal) -> Decimal:
    # Wide context: quantity x unit_cost of two large (but valid) inputs must not overflow.
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP, context=Context(prec=60))


def one_of(*choices: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"is not included in the list ({', '.join(choices)})")
        return value
    return convert


def country_code(value: Any) -> str:
    """An officially assigned ISO 3166-1 alpha-2 code (`UK` is not one: `GB` is); the source
    is next to ISO_3166_ALPHA2 in procore_spec.py."""
    value = text(value)
    if value not in ISO_3166_ALPHA2:
        raise ValueError("must be an ISO-3166 alpha-2 code")
    return value


def state_code(value: Any) -> str:
    """Two upper-case characters (procore/documentation best_practices/country_codes.md)."""
    value = text(value)
    if not STATE_CODE.fullmatch(value):
        raise ValueError("must be an ISO-3166 alpha-2 subdivision code")
    return value


def check_state_code(values: dict, record: dict | None, errors: dict) -> None:
    """A US or Canadian state_code must be one of that country's ISO 3166-2 subdivisions."""
    merged = {**(record or {}), **values}
    known = ISO_3166_2_SUBDIVISIONS.get(merged.get("country_code") or "")
    if known and merged.get("state_code") and merged["state_code"] not in known:
        add_error(errors, "state_code", f"is not a subdivision of {merged['country_code']}")


def opaque(value: Any) -> Any:
    return value


def coerce(attrs: dict, fields: dict[str, Callable[[Any], Any]]) -> tuple[dict, dict]:
    """Convert the known fields present in attrs; unknown keys are ignored, like Procore."""
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, convert in fields.items():
        if name not in attrs:
            continue
        if attrs[name] is None:
            values[name] = None
            continue
        try:
            values[name] = convert(attrs[name])
        except ValueError as exc:
            add_error(errors, name, str(exc))
    return values, errors


def total(values: Iterable[Decimal | None]) -> Decimal:
    return sum((v for v in values if v is not None), Decimal("0.00"))


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- storage --------------------------------------------------------------------------------


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


# --- rate limiting ------------------------------------------------------------------------------


@dataclass
class _Window:
    length: float
    limit: int
    start: float
    count: int = 0


class RateLimiter:
    """Procore's two fixed windows, hourly and spike, read live from SandboxConfig.

    A window opens at the first request after the previous one ended, so tests never
    straddle a boundary by accident. Changing any limit or window length resets both
    counters. Both lengths are configurable (`hourly_window_seconds`, default 3600, and
    `spike_window_seconds`, default 10) and may be fractions of a second, so a benchmark
    can compress time for both limits together.

    `X-Rate-Limit-Reset` stays an integer epoch, as Procore sends it
    (procore/documentation plan_your_app/rate_limiting.md): the end of the shown window
    rounded up. With a compressed window the header can therefore name a moment up to 1 s
    after the window really ends, and a client that waits for it waits up to 1 s longer
    than it had to.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: tuple | None = None
        self._windows: list[_Window] = []

    def take(self, config: SandboxConfig) -> tuple[bool, dict[str, str]]:
        settings = (config.hourly_limit, config.spike_limit, config.spike_window_seconds,
                    config.hourly_window_seconds)
        now = time.time()
        with self._lock:
            if settings != self._settings:
                self._settings = settings
                # Spike first: it is reported when both are equally close to exhaustion.
                self._windows = [_Window(config.spike_window_seconds, config.spike_limit, now),
                                 _Window(config.hourly_window_seconds, config.hourly_limit, now)]
            for window in self._windows:
                if now >= window.start + window.length:
                    window.start, window.count = now, 0
            allowed = all(w.count < w.limit for w in self._windows)
            if allowed:
                for window in self._windows:
                    window.count += 1
            shown = min(self._windows, key=lambda w: w.limit - w.count)
            headers = {
                "X-Rate-Limit-Limit": str(shown.limit),
                "X-Rate-Limit-Remaining": str(max(0, shown.limit - shown.count)),
                "X-Rate-Limit-Reset": str(math.ceil(shown.start + shown.length)),
            }
        return allowed, headers


# --- state ----------------------------------------------------------------------------------------


class ProcoreState:
    """The sandbox's in-memory Procore company, seeded from SeedData (deep-copied)."""

    def __init__(self, seed: SeedData, controls: SandboxControls) -> None:
        self.controls = controls
        self.lock = threading.RLock()
        self.limiter = RateLimiter()
        self.tokens: dict[str, dict] = {}
        known_ids = [seed.ids.get("next", 0)] + [p["id"] for p in seed.projects]
        self._ids = itertools.count(max(known_ids) + 1)
        created = seed.projects[0]["created_at"] if seed.projects else now_iso()
        stamps = {"created_at": created, "updated_at": created}

        self.company = dict(seed.company)
        self.user = {"id": self.new_id(), "name": "ml-connector service account",
                     "login": SANDBOX_CREDENTIALS["procore_client_id"] + "@service-account.procore.com"}
        self.projects = Table()
        self.vendors = Table()
        self.cost_code_lists = Table()
        self.standard_cost_codes = Table("standard_cost_code_list_id")
        self.cost_codes = Table("_project_id")
        self.line_item_types = Table()
        self.sub_jobs = Table("_project_id")
        self.uoms = Table()
        self.billing_periods = Table("_project_id")
        self.contracts = Table("_project_id", numbered=True)
        self.line_items = Table("_contract_id")
        # Change orders (procore_change_orders.py): packages per contract, the potential
        # change orders (PCOs) that hold their line items, and those line items.
        self.packages = Table("contract_id", numbered=True)
        self.pcos = Table("contract_id")
        self.pco_lines = Table("_pco_id")
        # Requisitions: created by plain POST only, and absent from the origin_id uniqueness
        # sources (docs/api-assumptions.md): a second one with the same origin_id is accepted.
        self.requisitions = Table("_commitment_id", unique_origin=False)
        self.requisition_items = Table("_requisition_id")
        self.change_order_tiers = dict(seed.change_order_tiers)
        self.requisitions_disabled_pos = frozenset(seed.requisitions_disabled_pos)

        for project in copy.deepcopy(seed.projects):
            self.projects.save(project)
        for vendor in copy.deepcopy(seed.vendors):
            self.vendors.save(vendor)
        self.cost_code_lists.save({**stamps, **copy.deepcopy(seed.standard_cost_code_list)})
        for code in copy.deepcopy(seed.standard_cost_codes):
            self.standard_cost_codes.save(code)
        for project_id, codes in copy.deepcopy(seed.project_cost_codes).items():
            for code in codes:
                self.cost_codes.save({**code, "_project_id": project_id})
        for lit in copy.deepcopy(seed.line_item_types):
            self.line_item_types.save({**stamps, **lit})
        for project_id, jobs in copy.deepcopy(seed.sub_jobs).items():
            for job in jobs:
                self.sub_jobs.save({**job, "_project_id": project_id})
        for uom in copy.deepcopy(seed.uoms):
            self.uoms.save(uom)
        for project_id, periods in copy.deepcopy(seed.billing_periods).items():
            for period in periods:
                self.billing_periods.save({**stamps, **period, "_project_id": project_id})
        for hand in copy.deepcopy(seed.procore_commitments):
            self._load_hand_commitment(hand, stamps)

    def _load_hand_commitment(self, hand: dict, stamps: dict) -> None:
        """A commitment typed in by hand before go-live (seed history, seed_history.py), with
        its lines and requisitions, stored as save_contract / save_schedule_line /
        save_requisition store what the API creates (same keys, defaults, Decimal types)."""
        values, errors = coerce(hand, CONTRACT_FIELDS)
        if errors:
            raise ValueError(f"seed commitment {hand.get('number')!r}: {errors}")
        contract = {"id": hand["id"], **dict.fromkeys(CONTRACT_FIELDS),
                    "_project_id": hand["project_id"], "executed": False, "private": False,
                    "accounting_method": "amount", "deleted_at": None,
                    "_requisitions_enabled": True, **stamps, **values}
        self.contracts.save(contract)
        line_ids = []
        for position, attrs in enumerate(hand["lines"], start=1):
            values, errors = coerce(attrs, LINE_ITEM_FIELDS)
            if errors:
                raise ValueError(f"seed commitment {hand['number']!r} line {position}: {errors}")
            self.line_items.save({"id": attrs["id"], **dict.fromkeys(LINE_ITEM_FIELDS),
                                  "_contract_id": contract["id"], "extended_type": "manual",
                                  "deleted_at": None, "position": position, **stamps, **values})
            line_ids.append(attrs["id"])
        for number, attrs in enumerate(hand["requisitions"], start=1):
            self._load_hand_requisition(contract, number, attrs, line_ids, stamps)

    def _load_hand_requisition(self, contract: dict, number: int, attrs: dict,
                               line_ids: list[int], stamps: dict) -> None:
        """A hand-entered invoice in its billing period, one contract item per SOV line (as
        save_requisition creates them) holding the claimed work_completed_this_period."""
        period = self.billing_periods.get(attrs["period_id"], contract["_project_id"])
        values, errors = coerce({**attrs, "requisition_start": period["start_date"],
                                 "requisition_end": period["end_date"]}, REQUISITION_FIELDS)
        if errors:
            raise ValueError(f"seed requisition {attrs.get('invoice_number')!r}: {errors}")
        requisition = self.requisitions.save({
            "id": attrs["id"], **dict.fromkeys(REQUISITION_FIELDS),
            "_commitment_id": contract["id"], "_project_id": contract["_project_id"],
            "final": False, "number": number, **stamps, **values})
        claims = {line_ids[int(index)]: money(amount) for index, amount in attrs["items"].items()}
        for line_id in line_ids:
            line = self.line_items.get(line_id)
            self.requisition_items.save({
                "id": self.new_id(), "_requisition_id": requisition["id"],
                "item_type": "contract_item", "line_item_id": line_id,
                "cost_code_id": line["cost_code_id"], "description_of_work": line["description"],
                "scheduled_value": line["amount"], **dict.fromkeys(ITEM_AMOUNTS, Decimal("0.00")),
                "work_completed_this_period_quantity": Decimal(0), "status": "no_action",
                "comment": None, **stamps,
                "work_completed_this_period": claims.get(line_id, Decimal("0.00"))})

    def new_id(self) -> int:
        return next(self._ids)

    def change_order_tier(self, project_id: int) -> int:
        """A project's change-order tier (a project setting, never a response field)."""
        return self.change_order_tiers.get(project_id, 1)

    def sov_locked(self, contract: dict) -> bool:
        """The Approved lock: the company setting is on and the status is Approved / Complete."""
        return (self.controls.config.approved_lock
                and contract["status"] in LOCKED_COMMITMENT_STATUSES)

    def write(self, table: Table, record: dict | None, values: dict, new: dict | None = None) -> dict:
        """Create (record None; `new` holds the defaults) or update; stamp only real changes."""
        now = now_iso()
        if record is None:
            record = {"id": self.new_id(), **(new or {}), "created_at": now, "updated_at": now}
        elif all(record.get(k) == v for k, v in values.items()):
            return record
        record.update(values)
        record["updated_at"] = now
        return table.save(record)

    # --- OAuth tokens ---

    def issue_token(self, client_id: str) -> dict:
        lifetime = self.controls.config.token_lifetime_seconds
        issued = time.time()
        token = {"access_token": secrets.token_urlsafe(32), "client_id": client_id,
                 "issued": issued, "expires_at": issued + lifetime, "lifetime": lifetime,
                 "revoked": False}
        with self.lock:
            self.tokens[token["access_token"]] = token
        return token

    def valid_token(self, access_token: str) -> dict | None:
        with self.lock:
            token = self.tokens.get(access_token)
        if token is None or token["revoked"] or token["expires_at"] <= time.time():
            return None
        return token

    # --- Python API for tests ---

    def revoke_all_tokens(self) -> None:
        """Invalidate every issued token, as a credential rotation would."""
        with self.lock:
            for token in self.tokens.values():
                token["revoked"] = True

    # These return exactly what a client decodes from the show endpoints.

    def contracts_by_origin(self, project_id: int | None = None) -> dict[str, dict]:
        """Live purchase order contracts (with line_items) by origin_id."""
        with self.lock:
            return as_client_sees_it({c["origin_id"]: contract_out(self, c, detail=True)
                                      for c in self.contracts.all(project_id) if c["origin_id"]})

    def vendors_by_origin(self) -> dict[str, dict]:
        with self.lock:
            return as_client_sees_it({v["origin_id"]: vendor_out(v)
                                      for v in self.vendors.all() if v.get("origin_id")})

    def requisitions_by_origin(self) -> dict[str, dict]:
        """Requisitions (with items) by origin_id."""
        with self.lock:
            return as_client_sees_it({r["origin_id"]: requisition_out(self, r, with_items=True)
                                      for r in self.requisitions.all() if r["origin_id"]})


# --- requests, routing, responses ----------------------------------------------------------------


def encode(data: Any) -> bytes:
    """JSON as Procore's v1 API sends it: Decimal money becomes a string like "1234.50"."""
    return json.dumps(data, default=str, ensure_ascii=False).encode()


def as_client_sees_it(data: Any) -> Any:
    return json.loads(encode(data))


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(encode(data), status_code=status, headers=headers,
                    media_type="application/json")


def no_content() -> Response:
    return Response(status_code=204)


def empty_ok() -> Response:
    """200 with an empty body: the DELETEs whose documented response is `200 OK`, "void (empty
    response body)" (procore_python_sdk docs, e.g. rest_v10_purchase_order_contracts_id_delete).
    """
    return Response(status_code=200)


def parse_id(value: Any, name: str) -> int:
    try:
        result = integer(value)
    except ValueError:
        result = 0
    if not 0 < result < 2**63:
        raise ApiError(400, {"errors": f"{name} must be a positive integer"})
    return result


class Call:
    """One API request: parameter access with Procore's 400s, plus common lookups."""

    def __init__(self, request: Request, state: ProcoreState, body: dict,
                 route: tuple[str, str] = ("", "")) -> None:
        self.request, self.state, self.body, self.route = request, state, body, route

    def param(self, name: str, where: str) -> Any:
        if where == "path":
            return self.request.path_params.get(name)
        if where == "query":
            return self.request.query_params.get(name) or None
        return self.body.get(name)

    def id(self, name: str = "id", where: str = "path", required: bool = True) -> int | None:
        value = self.param(name, where)
        if value is None or value == "":
            if required:
                raise missing_param(name)
            return None
        return parse_id(value, name)

    def wrapper(self, name: str) -> dict:
        value = self.body.get(name)
        if value is None or value == {}:
            raise missing_param(name)
        if not isinstance(value, dict):
            raise ApiError(400, {"errors": f"{name} must be a JSON object"})
        return value

    def updates(self) -> list:
        updates = self.body.get("updates")
        if updates is None:
            raise missing_param("updates")
        if not isinstance(updates, list):
            raise ApiError(400, {"errors": "updates must be an array"})
        if len(updates) > SYNC_LIMIT:
            raise ApiError(413, {"errors": "Payload Too Large"})
        return updates

    def company(self, where: str = "query") -> int:
        company_id = self.id("company_id", where)
        if company_id != COMPANY_ID:
            raise ApiError(403, {"errors": "App is not connected to this company"})
        return company_id

    def project(self, where: str = "query") -> dict:
        return record_or_404(self.state.projects, self.id("project_id", where), "Project")

    def contract(self, project: dict, name: str = "id", where: str = "path") -> dict:
        return record_or_404(self.state.contracts, self.id(name, where),
                             "Purchase order contract", project["id"])

    def filters(self, name: str) -> list[str] | None:
        """The values of filters[name] / filters[name][], or None: also when the operation's
        OAS query list does not declare that filter, which Procore then does not apply
        (procore_spec.listed_filters)."""
        if name not in listed_filters().get(self.route, ()):
            return None
        params = self.request.query_params
        values = params.getlist(f"filters[{name}]") + params.getlist(f"filters[{name}][]")
        return [v for v in values if v != ""] or None

    def filter_value(self, name: str) -> str | None:
        """The single value of a listed filters[name], or None (absent, empty or unlisted)."""
        values = self.filters(name)
        return values[0] if values else None


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Callable[[Call], Response]
    company_header: bool
    query: tuple[str, ...]
    invalid_status: int = 422
    body_types: tuple[str, ...] = ("application/json",)


_ENDPOINTS: list[Endpoint] = []
JSON_BODY, FORM_BODY, MULTIPART_BODY = ("application/json", "application/x-www-form-urlencoded",
                                        "multipart/form-data")


def api(method: str, path: str, *, company_header: bool = True, query: tuple[str, ...] = (),
        invalid_status: int = 422, body_types: tuple[str, ...] = (JSON_BODY,)):
    """Register a handler; `query` lists the query parameters the subset marks (Required).

    `body_types`: the media types a body may have (see read_body); JSON only by default.

    `invalid_status` answers a validation failure: 422 by default; 400 on the change order
    operations whose documented responses list 400 and no 422 (weigandconstruction/
    procore_python_sdk docs, generated from Procore's OpenAPI). The older operations keep 422
    although several of them document only 400 too (ASSUMPTION, docs/api-assumptions.md).
    """
    def register(handler: Callable[[Call], Response]) -> Callable[[Call], Response]:
        _ENDPOINTS.append(Endpoint(method, path, handler, company_header, query, invalid_status,
                                   body_types))
        return handler
    return register


def served_routes() -> list[tuple[str, str]]:
    """(method, path) of every API route, paths in Starlette `{param}` syntax."""
    return [(e.method, e.path) for e in _ENDPOINTS]


def required_query(method: str, path: str) -> tuple[str, ...]:
    return next(e.query for e in _ENDPOINTS if (e.method, e.path) == (method, path))


async def read_body(request: Request, body_types: tuple[str, ...]) -> dict:
    """The body, in one of the operation's media types; no body at all reads as {}.

    `/rest/` writes take JSON only: the OAS sends `Content-Type: application/json` on every
    served write, and procore/documentation api_essentials/troubleshooting.md ("400: Bad
    Request") says "Ensure `Content-Type: application/json` header is set for POST/PATCH/PUT
    requests"; anything else is a 400. The OAuth endpoints declare their own encodings.
    Malformed JSON or a JSON body that is not an object is a 400 too.
    """
    raw = await request.body()
    if not raw.strip():
        return {}
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in body_types:
        expected = " or ".join(body_types)
        if request.url.path.startswith("/oauth/"):
            # RFC 6749 section 5.2 error shape (PD oauth/oauth_endpoints.md); ASSUMPTION.
            raise oauth_error(400, "invalid_request", f"The request body must be {expected}.")
        raise ApiError(400, {"errors": f"Content-Type must be {expected}"})
    if media_type in (FORM_BODY, MULTIPART_BODY):
        form = await request.form()
        return {k: v for k, v in form.items() if not isinstance(v, UploadFile)}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, {"errors": "The request body is not valid JSON"}) from None
    if not isinstance(body, dict):
        raise ApiError(400, {"errors": "The request body must be a JSON object"})
    return body


def check_company_header(request: Request) -> None:
    raw = request.headers.get("procore-company-id", "").strip()
    if not raw:
        raise ApiError(400, {
            "errors": "Missing Procore-Company-Id header!",
            "message": "Requests made with this token must send the Procore-Company-Id header "
                       "naming the company they act on.",
        })
    if not raw.isdigit():
        raise ApiError(400, {"errors": "Procore-Company-Id header must be an integer company id"})
    if int(raw) != COMPANY_ID:
        raise ApiError(403, {"errors": "App is not connected to this company"})


def authenticate(state: ProcoreState, request: Request) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or state.valid_token(token.strip()) is None:
        raise ApiError(401, {"errors": INVALID_TOKEN}, {
            "WWW-Authenticate": f'Bearer realm="Procore", error="invalid_token", '
                                f'error_description="{INVALID_TOKEN}"'})


def unlisted_filters(request: Request, route: tuple[str, str]) -> list[str]:
    """The filters[...] query keys the operation's OAS query list does not declare."""
    listed = listed_filters().get(route, frozenset())
    return sorted({key for key in request.query_params
                   if (match := FILTER_KEY.fullmatch(key)) and match.group(1) not in listed})


def endpoint_runner(state: ProcoreState, endpoints: dict[str, Endpoint]):
    """The Starlette endpoint for one path: auth, headers, body, then the handler under the lock."""
    templates = body_templates()

    async def run(request: Request) -> Response:
        ep = endpoints[request.method if request.method != "HEAD" else "GET"]
        try:
            if ep.path.startswith("/rest/"):
                authenticate(state, request)
                if ep.company_header:
                    check_company_header(request)
            for name in ep.query:
                if not request.query_params.get(name):
                    raise missing_param(name)
            ignored = unlisted_filters(request, (ep.method, ep.path))
            if ignored:  # not applied (Call.filters); the call log names them
                request.scope.get(CALL_NOTE, {})["ignored_filters"] = ignored
            body = {}
            if request.method in ("POST", "PATCH", "PUT"):
                # Procore ignores attributes it does not permit (issue 13 point 4): only what
                # the operation's OAS body template names reaches the handler.
                body, dropped = permitted_body(await read_body(request, ep.body_types),
                                               templates.get((ep.method, ep.path)))
                request.scope.get(CALL_NOTE, {})["dropped"] = dropped
            with state.lock:
                return ep.handler(Call(request, state, body, (ep.method, ep.path)))
        except ApiError as exc:
            return json_response(exc.status, exc.body, exc.headers)
        except Invalid as exc:
            return json_response(ep.invalid_status, {"errors": exc.errors})
        except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError) as exc:
            # Odd client input that slipped past validation: a 400, never a 500 traceback.
            log.warning("procore sandbox: %s %s rejected: %r", request.method, request.url.path,
                        exc, exc_info=True)
            return json_response(400, {"errors": f"Bad request: {exc}"})

    return run


def paged(call: Call, records: list, serialize: Callable[[Any], Any],
          max_per_page: int = MAX_PER_PAGE, default_per_page: int = 100) -> Response:
    """One page of records with Procore's Total / Per-Page / Link headers."""
    page = call.id("page", "query", required=False) or 1
    per_page = min(call.id("per_page", "query", required=False) or default_per_page,
                   max_per_page)
    last = max(1, math.ceil(len(records) / per_page))
    chunk = records[(page - 1) * per_page: page * per_page]
    url = call.request.url
    headers = {"Total": str(len(records)), "Per-Page": str(per_page), "Link": ", ".join(
        f'<{url.include_query_params(page=n, per_page=per_page)}>; rel="{rel}"'
        for rel, n in page_links(page, last))}
    return json_response(200, [serialize(r) for r in chunk], headers)


def page_links(page: int, last: int) -> list[tuple[str, int]]:
    """The Link relations procore/documentation plan_your_app/pagination.md lists: page 1 has
    next and last; page 2 first, next and last; later pages first, prev, next and last; the
    last page omits next (and keeps the others, `last` included)."""
    links = [("first", 1)] if page > 1 else []
    if page > 2:
        links.append(("prev", min(page - 1, last)))
    if page < last:
        links.append(("next", page + 1))
    return [*links, ("last", last)]


def _filter_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _range_bound(text_value: str, end: bool) -> datetime:
    if len(text_value) == 10:
        day = date.fromisoformat(text_value)
        return datetime.combine(day, dt_time.max if end else dt_time.min, tzinfo=UTC)
    return parse_stamp(text_value)


def filtered(call: Call, records: list[dict], fields: dict[str, str]) -> list[dict]:
    """Apply filters[name]=v / filters[name][]=v equality filters and created/updated ranges."""
    for name, field in fields.items():
        wanted = call.filters(name)
        if wanted is not None:
            records = [r for r in records if _filter_text(r.get(field)) in wanted]
    for name in ("created_at", "updated_at"):
        raw = call.filter_value(name)
        if raw is None:
            continue
        low, high = date_range(call, name, raw)
        records = [r for r in records if r.get(name) and low <= parse_stamp(r[name]) <= high]
    return records


def date_range(call: Call, name: str, raw: str) -> tuple[datetime, datetime]:
    """`start...end`, both bounds in the same one of the formats the operation's OAS lists
    for filters[name] (procore_spec.range_formats); anything else is a 400 (ASSUMPTION: the
    docs do not say what Procore answers). A date end bound covers that whole day."""
    formats = range_formats(*call.route, name)
    parts = raw.split("...")
    kinds = {range_bound_format(part, formats) for part in parts}
    if len(parts) == 2 and len(kinds) == 1 and None not in kinds:
        try:
            return _range_bound(parts[0], end=False), _range_bound(parts[1], end=True)
        except ValueError:
            pass  # matched the pattern but is no calendar date or time
    raise ApiError(400, {"errors": f"filters[{name}] must be a range 'start...end' with both "
                                   f"bounds in one of the formats {', '.join(formats)}"})


def include_deleted(call: Call, table: Table, group: Any) -> list[dict]:
    """filters[include_deleted]: `only` -> deleted only, `with` -> deleted and live
    (procore/documentation tutorials/filtering_on_list_actions.md, "Filtering on Deleted
    Objects"; OAS: "Use 'only' ... Use 'with' ..."). Absent, unlisted for the operation, or
    any other value (`true`, `false`, `1`): live only, as if the filter were not sent
    (ASSUMPTION: the docs name no other value)."""
    mode = call.filter_value("include_deleted")
    if mode not in ("only", "with"):
        return table.all(group)
    rows = table.all(group, include_deleted=True)
    return [r for r in rows if r.get("deleted_at")] if mode == "only" else rows


def run_sync(call: Call, table: Table, scope: Any, save: Callable[[dict, dict | None], dict],
             serialize: Callable[[dict], dict]) -> Response:
    """A Procore `/sync` call: each item matched, validated and saved on its own.

    Matching table: `id` given -> update that record (error if absent); else `origin_id` found
    in scope -> update; else create (save() rejects an origin_id used elsewhere in the company).
    """
    entities, errors = [], []
    for item in call.updates():
        try:
            if not isinstance(item, dict):
                raise Invalid({"base": ["must be a JSON object"]})
            entities.append(serialize(save(item, match_sync_item(table, scope, item))))
        except Invalid as exc:
            echo = dict(item) if isinstance(item, dict) else {"item": item}
            errors.append({**echo, "errors": exc.errors})
    return json_response(200, {"entities": entities, "errors": errors})


def match_sync_item(table: Table, scope: Any, item: dict) -> dict | None:
    if item.get("id") is not None:
        try:
            record = table.get(integer(item["id"]), scope)
        except ValueError:
            raise Invalid({"id": ["is not an integer"]}) from None
        if record is None:
            raise Invalid({"id": ["Entity with this ID not found"]})
        return record
    try:
        record = table.find_origin(origin(item["origin_id"])) if item.get("origin_id") else None
    except ValueError:
        raise Invalid({"origin_id": ["must be a string"]}) from None
    if record is not None and (scope is None or record[table.group_by] == scope):
        return record
    return None


def check_origin(table: Table, values: dict, record: dict | None, errors: dict) -> None:
    """origin_id is unique within the company, across all projects, where a source says so
    (using_sync_actions.md; tutorial_financial_tools.md "unique (per object type)")."""
    if not table.unique_origin:
        return
    other = table.find_origin(values.get("origin_id"))
    if other is not None and other is not record:
        add_error(errors, "origin_id", "has already been taken")


def require(values: dict, record: dict | None, errors: dict, *names: str) -> None:
    """Fields that must be present on create and may not be blanked on update."""
    for name in names:
        if (record is None and not values.get(name)) or (name in values and not values[name]):
            add_error(errors, name, "can't be blank")


def taken(records: Iterable[dict], record: dict | None, field: str, value: Any) -> bool:
    return value is not None and any(r[field] == value and r is not record for r in records)


# --- OAuth -------------------------------------------------------------------------------------------


def oauth_error(status: int, error: str, description: str) -> ApiError:
    return ApiError(status, {"error": error, "error_description": description})


# The three encodings the sources show: multipart (procore/documentation
# oauth/oauth_client_credentials.md, curl -F), x-www-form-urlencoded
# (api_essentials/troubleshooting.md, "Body (x-www-form-urlencoded)") and JSON (OAS: POST
# /oauth/token (Get or Refresh an Access Token), Content-Type: application/json).
@api("POST", "/oauth/token", company_header=False,
     body_types=(FORM_BODY, MULTIPART_BODY, JSON_BODY))
def issue_token(call: Call) -> Response:
    """Client-credentials grant (form, multipart or JSON body; HTTP Basic also accepted)."""
    body = call.body
    client_id, client_secret = body.get("client_id"), body.get("client_secret")
    scheme, _, encoded = call.request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic" and client_id is None:
        try:
            client_id, _, client_secret = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            raise oauth_error(401, "invalid_client", INVALID_CLIENT) from None
    grant_type = body.get("grant_type")
    if not grant_type:
        raise oauth_error(400, "invalid_request", "The request is missing a required parameter: "
                                                  "grant_type.")
    if grant_type != "client_credentials":
        raise oauth_error(400, "unsupported_grant_type", "The authorization grant type is not "
                                                         "supported by the authorization server.")
    if (client_id != SANDBOX_CREDENTIALS["procore_client_id"]
            or client_secret != SANDBOX_CREDENTIALS["procore_client_secret"]):
        raise oauth_error(401, "invalid_client", INVALID_CLIENT)
    token = call.state.issue_token(client_id)
    return json_response(200, {"access_token": token["access_token"], "token_type": "bearer",
                               "expires_in": token["lifetime"], "created_at": int(token["issued"])})


# "The request must contain the access token and other required parameters in the request
# body as form-data" (procore/documentation oauth/oauth_endpoints.md, "Revoke Token", whose
# example is curl -F, i.e. multipart; OAS: POST /oauth/revoke (Revoke Token): "must contain the
# body data as form-data"). Read strictly: multipart only, not x-www-form-urlencoded.
@api("POST", "/oauth/revoke", company_header=False, body_types=(MULTIPART_BODY,))
def revoke_token(call: Call) -> Response:
    """200 for a revoked and for an unknown token (as documented), once the client is known.

    client_id and, for a confidential app such as a DMSA, client_secret are required (same
    page: "client_secret is only required for confidential applications"). Wrong or missing
    credentials: 401 invalid_client; no token: 400 invalid_request (RFC 7009 section 2.1 and
    RFC 6749 section 5.2 shapes, ASSUMPTION).
    """
    if (call.body.get("client_id") != SANDBOX_CREDENTIALS["procore_client_id"]
            or call.body.get("client_secret") != SANDBOX_CREDENTIALS["procore_client_secret"]):
        raise oauth_error(401, "invalid_client", INVALID_CLIENT)
    if not call.body.get("token"):
        raise oauth_error(400, "invalid_request", "The request is missing a required parameter: "
                                                  "token.")
    token = call.state.tokens.get(str(call.body["token"]))
    if token is not None:
        token["revoked"] = True
    return json_response(200, {})


@api("GET", "/oauth/token/info", company_header=False)
def token_info(call: Call) -> Response:
    _, _, access_token = call.request.headers.get("authorization", "").partition(" ")
    token = call.state.valid_token(access_token.strip())
    if token is None:
        raise ApiError(401, {"error": "invalid_token", "error_description": INVALID_TOKEN})
    return json_response(200, {
        "resource_owner_id": call.state.user["id"], "scopes": [],
        "expires_in_seconds": max(0, int(token["expires_at"] - time.time())),
        "application": {"uid": token["client_id"]}, "created_at": int(token["issued"]),
    })


# --- companies, me, projects --------------------------------------------------------------------------


# The OAS exempts /companies and /me from Procore-Company-Id, but a DMSA "_must_ include the
# `Procore-Company-Id` request header when making calls to the `/rest/v1.0/me` or
# `/rest/v1.0/companies` endpoints" (procore/documentation oauth/oauth_client_credentials.md,
# "Using Developer Managed Service Accounts with MPR"). Every sandbox token is a DMSA's.
@api("GET", "/rest/v1.0/companies")
def list_companies(call: Call) -> Response:
    company = {**call.state.company, "logo_url": None, "pcn_business_experience": False,
               "my_company": True}
    return paged(call, [company], dict)


@api("GET", "/rest/v1.0/me")  # the header, as for /companies above
def show_me(call: Call) -> Response:
    return json_response(200, call.state.user)


PROJECT_FIELDS = {
    "name": text, "project_number": text, "active": boolean, "address": text, "city": text,
    "state_code": state_code, "zip": text, "country_code": country_code, "description": text,
    "phone": text, "public_notes": text, "start_date": iso_date, "completion_date": iso_date,
    "time_zone": text, "store_number": text, "accounting_project_number": text,
    "origin_id": origin, "origin_data": opaque, "origin_code": text,
}


def project_out(project: dict) -> dict:
    number, name = project.get("project_number"), project.get("name")
    return {**public(project), "display_name": f"{number} - {name}" if number else name}


def save_project(state: ProcoreState, attrs: dict, project: dict | None) -> dict:
    values, errors = coerce(attrs, PROJECT_FIELDS)
    require(values, project, errors, "name")
    check_state_code(values, project, errors)
    if taken(state.projects.all(), project, "project_number", values.get("project_number")):
        add_error(errors, "project_number", "has already been taken")
    check_origin(state.projects, values, project, errors)
    if errors:
        raise Invalid(errors)
    new = {**dict.fromkeys(PROJECT_FIELDS), "active": True,
           "company": {"id": COMPANY_ID, "name": state.company["name"]}}
    return state.write(state.projects, project, values, new)


PROJECT_STATUS_FILTERS = ("Active", "Inactive", "All")


def list_projects(call: Call, extra_filters: dict[str, str], max_per_page: int) -> Response:
    call.company("query")
    # OAS: GET /rest/v1.0/projects (List projects): "Return a list of active Projects";
    # filters[by_status] "Must be one of Active, Inactive, or All": anything else is a 400
    # (the status code: ASSUMPTION, per api_essentials/error_reference.md "invalid parameter
    # values").
    status = call.filter_value("by_status") or "Active"
    if status not in PROJECT_STATUS_FILTERS:
        raise ApiError(400, {"errors": "filters[by_status] must be one of "
                                       f"{', '.join(PROJECT_STATUS_FILTERS)}"})
    records = call.state.projects.all()
    if status != "All":
        records = [p for p in records if p.get("active") == (status == "Active")]
    name = call.filter_value("name")
    if name:
        records = [p for p in records if name.lower() in (p.get("name") or "").lower()]
    records = filtered(call, records, {"id": "id", "origin_id": "origin_id", **extra_filters})
    return paged(call, records, project_out, max_per_page)


@api("GET", "/rest/v1.0/projects", query=("company_id",))
def list_projects_v10(call: Call) -> Response:
    return list_projects(call, {}, MAX_PER_PAGE)


@api("GET", "/rest/v1.1/projects", query=("company_id",))
def list_projects_v11(call: Call) -> Response:
    return list_projects(call, {"project_number": "project_number"}, 300)


@api("POST", "/rest/v1.0/projects")
def create_project(call: Call) -> Response:
    call.company("body")
    return json_response(201, project_out(save_project(call.state, call.wrapper("project"), None)))


@api("PATCH", "/rest/v1.0/projects/sync")
def sync_projects(call: Call) -> Response:
    call.company("body" if "company_id" in call.body else "query")
    return run_sync(call, call.state.projects, None,
                    lambda item, rec: save_project(call.state, item, rec), project_out)


# --- vendors -------------------------------------------------------------------------------------------


VENDOR_FIELDS = {
    "name": text, "abbreviated_name": text, "trade_name": text, "address": text, "city": text,
    "state_code": state_code, "zip": text, "country_code": country_code, "business_phone": text,
    "mobile_phone": text, "fax_number": text, "email_address": text, "website": text,
    "is_active": boolean, "authorized_bidder": boolean, "prequalified": boolean,
    "labor_union": text, "license_number": text, "union_member": boolean,
    "non_union_prevailing_wage": boolean, "notes": text, "vendor_group_id": integer,
    "parent_id": integer, "primary_contact_id": integer, "origin_id": origin,
    "origin_data": opaque, "origin_code": text, "trade_ids": id_list,
    "bidding_distribution_ids": id_list, "standard_cost_code_ids": id_list, "bidding": opaque,
}
VENDOR_BLANK = dict.fromkeys(VENDOR_FIELDS)


def vendor_out(vendor: dict) -> dict:
    return {**VENDOR_BLANK, **public(vendor), "synced_to_erp": bool(vendor.get("origin_id"))}


def save_vendor(state: ProcoreState, attrs: dict, vendor: dict | None) -> dict:
    values, errors = coerce(attrs, VENDOR_FIELDS)
    require(values, vendor, errors, "name")
    check_state_code(values, vendor, errors)
    check_origin(state.vendors, values, vendor, errors)
    if errors:
        raise Invalid(errors)
    new = {**VENDOR_BLANK, "is_active": True, "company": state.company["name"]}
    return state.write(state.vendors, vendor, values, new)


def vendor_or_404(call: Call) -> dict:
    return record_or_404(call.state.vendors, call.id(), "Vendor")


# OAS: GET /rest/v1.0/vendors, filters[search]: "matches the vendor name, keywords,
# origin_code, or ABN/EIN number" (the sandbox keeps the ABN/EIN in `tax_id`).
VENDOR_SEARCH_FIELDS = ("name", "keywords", "origin_code", "tax_id")


@api("GET", "/rest/v1.0/vendors", query=("company_id",))
def list_vendors(call: Call) -> Response:
    """OAS: GET /rest/v1.0/vendors (List company vendors): "Return a list of all Vendors
    associated with a Company" - active and inactive alike (the reader checks is_active);
    `view` is served as its documented default, extended."""
    call.company("query")
    records = call.state.vendors.all()
    search = call.filter_value("search")
    if search:
        needle = search.lower()
        records = [v for v in records if any(needle in str(v.get(f) or "").lower()
                                             for f in VENDOR_SEARCH_FIELDS)]
    records = filtered(call, records, {"id": "id", "origin_id": "origin_id",
                                       "parent_id": "parent_id"})
    for name, field in (("trade_id", "trade_ids"), ("standard_cost_code_id",
                                                     "standard_cost_code_ids")):
        wanted = call.filters(name)
        if wanted is not None:
            records = [v for v in records if {str(i) for i in v.get(field) or []} & set(wanted)]
    return paged(call, records, vendor_out)


@api("GET", "/rest/v1.0/vendors/{id}", query=("company_id",))
def show_vendor(call: Call) -> Response:
    call.company("query")
    return json_response(200, vendor_out(vendor_or_404(call)))


@api("POST", "/rest/v1.0/vendors")
def create_vendor(call: Call) -> Response:
    call.company("body")
    return json_response(201, vendor_out(save_vendor(call.state, call.wrapper("vendor"), None)))


@api("PATCH", "/rest/v1.0/vendors/{id}")
def update_vendor(call: Call) -> Response:
    call.company("body")
    vendor = vendor_or_404(call)
    return json_response(200, vendor_out(save_vendor(call.state, call.wrapper("vendor"), vendor)))


@api("PATCH", "/rest/v1.0/vendors/sync")
def sync_vendors(call: Call) -> Response:
    call.company("body")
    return run_sync(call, call.state.vendors, None,
                    lambda item, rec: save_vendor(call.state, item, rec), vendor_out)


@api("GET", "/rest/v1.0/companies/{company_id}/vendors/inactive")
def list_inactive_vendors(call: Call) -> Response:
    call.company("path")
    return paged(call, [v for v in call.state.vendors.all() if not v.get("is_active")], vendor_out)


@api("PATCH", "/rest/v1.0/companies/{company_id}/vendors/inactive/{id}")
def reactivate_vendor(call: Call) -> Response:
    call.company("path")
    vendor = vendor_or_404(call)
    return json_response(200, vendor_out(call.state.write(call.state.vendors, vendor,
                                                          {"is_active": True})))


# --- units of measure ---------------------------------------------------------------------------------


@api("GET", "/rest/v1.0/companies/{company_id}/uoms")
def list_uoms(call: Call) -> Response:
    call.company("path")
    return paged(call, call.state.uoms.all(), public)


@api("GET", "/rest/v1.0/companies/{company_id}/uoms/{id}")
def show_uom(call: Call) -> Response:
    call.company("path")
    return json_response(200, public(record_or_404(call.state.uoms, call.id(),
                                                   "Unit of measure")))


# --- standard cost code lists and standard cost codes -------------------------------------------------


def cost_code_list_or_404(call: Call, rid: int) -> dict:
    return record_or_404(call.state.cost_code_lists, rid, "Standard cost code list")


@api("GET", "/rest/v1.0/standard_cost_code_lists", query=("company_id",))
def list_cost_code_lists(call: Call) -> Response:
    call.company("query")
    return paged(call, call.state.cost_code_lists.all(), public)


@api("GET", "/rest/v1.0/standard_cost_code_lists/{id}", query=("company_id",))
def show_cost_code_list(call: Call) -> Response:
    call.company("query")
    return json_response(200, public(cost_code_list_or_404(call, call.id())))


@api("POST", "/rest/v1.0/standard_cost_code_lists")
def create_cost_code_list(call: Call) -> Response:
    call.company("body")
    values, errors = coerce(call.wrapper("standard_cost_code_list"), {"name": text})
    require(values, None, errors, "name")
    if errors:
        raise Invalid(errors)
    record = call.state.write(call.state.cost_code_lists, None, values, {"company_id": COMPANY_ID})
    return json_response(201, public(record))


STANDARD_COST_CODE_FIELDS = {"parent_id": integer, "code": text, "name": text, "origin_id": origin,
                             "origin_data": opaque}


def save_standard_cost_code(state: ProcoreState, code_list: dict, attrs: dict,
                            code: dict | None) -> dict:
    values, errors = coerce(attrs, STANDARD_COST_CODE_FIELDS)
    require(values, code, errors, "code", "name")
    siblings = state.standard_cost_codes.all(code_list["id"])
    parent_id = values.get("parent_id", code and code["parent_id"])
    parent = state.standard_cost_codes.get(parent_id, code_list["id"])
    if parent_id is not None and parent is None:
        add_error(errors, "parent_id", "does not exist in this standard cost code list")
    if taken([s for s in siblings if s["parent_id"] == parent_id], code, "code", values.get("code")):
        add_error(errors, "code", "has already been taken")
    check_origin(state.standard_cost_codes, values, code, errors)
    if errors:
        raise Invalid(errors)
    own_code = values.get("code", code and code["code"])
    values["full_code"] = f"{parent['full_code']}.{own_code}" if parent else own_code
    new = {**dict.fromkeys(STANDARD_COST_CODE_FIELDS), "standard_cost_code_list_id": code_list["id"]}
    return state.write(state.standard_cost_codes, code, values, new)


def standard_cost_code_or_404(call: Call) -> dict:
    return record_or_404(call.state.standard_cost_codes, call.id(), "Standard cost code")


@api("GET", "/rest/v1.0/standard_cost_codes", query=("company_id", "standard_cost_code_list_id"))
def list_standard_cost_codes(call: Call) -> Response:
    call.company("query")
    code_list = cost_code_list_or_404(call, call.id("standard_cost_code_list_id", "query"))
    records = filtered(call, call.state.standard_cost_codes.all(code_list["id"]),
                       {"id": "id", "origin_id": "origin_id"})
    return paged(call, records, public)


@api("GET", "/rest/v1.0/standard_cost_codes/{id}",
     query=("company_id", "standard_cost_code_list_id"))
def show_standard_cost_code(call: Call) -> Response:
    call.company("query")
    return json_response(200, public(standard_cost_code_or_404(call)))


@api("POST", "/rest/v1.0/standard_cost_codes")
def create_standard_cost_code(call: Call) -> Response:
    call.company("body")
    code_list = cost_code_list_or_404(call, call.id("standard_cost_code_list_id", "body"))
    record = save_standard_cost_code(call.state, code_list, call.wrapper("standard_cost_code"), None)
    return json_response(201, public(record))


@api("PATCH", "/rest/v1.0/standard_cost_codes/{id}")
def update_standard_cost_code(call: Call) -> Response:
    call.company("body")
    code = standard_cost_code_or_404(call)
    code_list = cost_code_list_or_404(call, code["standard_cost_code_list_id"])
    record = save_standard_cost_code(call.state, code_list, call.wrapper("standard_cost_code"), code)
    return json_response(200, public(record))


@api("PATCH", "/rest/v1.0/standard_cost_codes/sync")
def sync_standard_cost_codes(call: Call) -> Response:
    call.company("body")
    code_list = cost_code_list_or_404(call, call.id("standard_cost_code_list_id", "body"))
    return run_sync(call, call.state.standard_cost_codes, code_list["id"],
                    lambda item, rec: save_standard_cost_code(call.state, code_list, item, rec),
                    public)


# --- project cost codes --------------------------------------------------------------------------------


COST_CODE_FIELDS = {"name": text, "code": text, "position": integer, "parent_id": integer,
                    "standard_cost_code_id": integer, "origin_id": origin, "origin_data": opaque}


def biller(call: Call, project: dict, where: str) -> tuple[str, int]:
    """Cost codes belong to the project, or to one of its sub jobs when sub_job_id is given."""
    sub_job_id = call.id("sub_job_id", where, required=False)
    if sub_job_id is None:
        return "Project", project["id"]
    if call.state.sub_jobs.get(sub_job_id, project["id"]) is None:
        raise not_found("Sub job")
    return "SubJob", sub_job_id


def save_cost_code(state: ProcoreState, project: dict, owner: tuple[str, int], attrs: dict,
                   code: dict | None) -> dict:
    values, errors = coerce(attrs, COST_CODE_FIELDS)
    require(values, code, errors, "code", "name")
    parent_id = values.pop("parent_id", code["parent"]["id"] if code and code["parent"] else None)
    parent = state.cost_codes.get(parent_id, project["id"])
    if parent_id is not None and parent is None:
        add_error(errors, "parent_id", "does not exist in this project")
    standard_id = values.get("standard_cost_code_id")
    if standard_id is not None and state.standard_cost_codes.get(standard_id) is None:
        add_error(errors, "standard_cost_code_id", "does not exist")
    if code is None:
        values["biller_type"], values["biller_id"] = owner
    owner_id = (code or values)["biller_id"]
    same_owner = [c for c in state.cost_codes.all(project["id"])
                  if c["biller_id"] == owner_id and (c["parent"] or {}).get("id") == parent_id]
    if taken(same_owner, code, "code", values.get("code")):
        add_error(errors, "code", "has already been taken")
    check_origin(state.cost_codes, values, code, errors)
    if errors:
        raise Invalid(errors)
    own_code = values.get("code", code and code["code"])
    values["full_code"] = f"{parent['full_code']}.{own_code}" if parent else own_code
    values["parent"] = {"id": parent_id} if parent_id else None
    new = {**{k: None for k in COST_CODE_FIELDS if k != "parent_id"},  # stored as `parent`
           "_project_id": project["id"], "deleted_at": None,
           "position": state.cost_codes.size(project["id"])}
    return state.write(state.cost_codes, code, values, new)


def cost_code_or_404(call: Call, project: dict) -> dict:
    return record_or_404(call.state.cost_codes, call.id(), "Cost code", project["id"])


@api("GET", "/rest/v1.0/cost_codes", query=("project_id",))
def list_cost_codes(call: Call) -> Response:
    project = call.project("query")
    records = call.state.cost_codes.all(project["id"])
    if call.param("sub_job_id", "query"):
        owner_id = biller(call, project, "query")[1]
        records = [c for c in records if c["biller_id"] == owner_id]
    return paged(call, filtered(call, records, {"id": "id", "origin_id": "origin_id"}), public)


@api("GET", "/rest/v1.0/cost_codes/{id}", query=("project_id",))
def show_cost_code(call: Call) -> Response:
    return json_response(200, public(cost_code_or_404(call, call.project("query"))))


@api("POST", "/rest/v1.0/cost_codes")
def create_cost_code(call: Call) -> Response:
    project = call.project("body")
    code = save_cost_code(call.state, project, biller(call, project, "body"),
                          call.wrapper("cost_code"), None)
    return json_response(201, public(code))


@api("PATCH", "/rest/v1.0/cost_codes/{id}")
def update_cost_code(call: Call) -> Response:
    project = call.project("body")
    code = cost_code_or_404(call, project)
    code = save_cost_code(call.state, project, (code["biller_type"], code["biller_id"]),
                          call.wrapper("cost_code"), code)
    return json_response(200, public(code))


@api("PATCH", "/rest/v1.0/cost_codes/sync", query=("project_id",))
def sync_cost_codes(call: Call) -> Response:
    """project_id (and sub_job_id) travel in the query string on this endpoint."""
    project = call.project("query")
    owner = biller(call, project, "query")
    return run_sync(call, call.state.cost_codes, project["id"],
                    lambda item, rec: save_cost_code(call.state, project, owner, item, rec), public)


# --- line item types (cost types) -----------------------------------------------------------------------


LINE_ITEM_TYPE_FIELDS = {"name": text, "csv_import_code": text, "base_type": one_of(*BASE_TYPES),
                         "origin_id": origin, "origin_data": opaque}


def save_line_item_type(state: ProcoreState, attrs: dict, lit: dict | None) -> dict:
    values, errors = coerce(attrs, LINE_ITEM_TYPE_FIELDS)
    require(values, lit, errors, "name")
    if "csv_import_code" in values:  # the request says csv_import_code, responses say code
        values["code"] = values.pop("csv_import_code")
    if taken(state.line_item_types.all(), lit, "code", values.get("code")):
        add_error(errors, "csv_import_code", "has already been taken")
    check_origin(state.line_item_types, values, lit, errors)
    if errors:
        raise Invalid(errors)
    new = {"name": None, "code": None, "base_type": "other", "origin_id": None, "origin_data": None}
    return state.write(state.line_item_types, lit, values, new)


def line_item_type_or_404(call: Call) -> dict:
    return record_or_404(call.state.line_item_types, call.id(), "Line item type")


@api("GET", "/rest/v1.0/line_item_types")
def list_line_item_types(call: Call) -> Response:
    """Takes company_id or project_id; the subset marks both (Required), one is enough."""
    if call.param("company_id", "query"):
        call.company("query")
    elif call.param("project_id", "query"):
        call.project("query")
    else:
        raise missing_param("company_id or project_id")
    records = filtered(call, call.state.line_item_types.all(), {"origin_id": "origin_id"})
    return paged(call, records, public)


@api("GET", "/rest/v1.0/line_item_types/{id}", query=("company_id",))
def show_line_item_type(call: Call) -> Response:
    call.company("query")
    return json_response(200, public(line_item_type_or_404(call)))


@api("POST", "/rest/v1.0/line_item_types")
def create_line_item_type(call: Call) -> Response:
    call.company("body")
    lit = save_line_item_type(call.state, call.wrapper("line_item_type"), None)
    return json_response(201, public(lit))


@api("PATCH", "/rest/v1.0/line_item_types/{id}")
def update_line_item_type(call: Call) -> Response:
    call.company("body")
    lit = line_item_type_or_404(call)
    return json_response(200, public(save_line_item_type(call.state,
                                                         call.wrapper("line_item_type"), lit)))


@api("PATCH", "/rest/v1.0/line_item_types/sync")
def sync_line_item_types(call: Call) -> Response:
    call.company("body")
    return run_sync(call, call.state.line_item_types, None,
                    lambda item, rec: save_line_item_type(call.state, item, rec), public)


# --- sub jobs -----------------------------------------------------------------------------------------


SUB_JOB_FIELDS = {"name": text, "code": text, "origin_id": origin, "origin_data": opaque}


def save_sub_job(state: ProcoreState, project: dict, attrs: dict, job: dict | None) -> dict:
    values, errors = coerce(attrs, SUB_JOB_FIELDS)
    require(values, job, errors, "name", "code")
    if taken(state.sub_jobs.all(project["id"]), job, "code", values.get("code")):
        add_error(errors, "code", "has already been taken")
    check_origin(state.sub_jobs, values, job, errors)
    if errors:
        raise Invalid(errors)
    new = {**dict.fromkeys(SUB_JOB_FIELDS), "_project_id": project["id"]}
    return state.write(state.sub_jobs, job, values, new)


def sub_job_or_404(call: Call, project: dict) -> dict:
    return record_or_404(call.state.sub_jobs, call.id(), "Sub job", project["id"])


@api("GET", "/rest/v1.0/sub_jobs", query=("project_id",))
def list_sub_jobs(call: Call) -> Response:
    project = call.project("query")
    return paged(call, filtered(call, call.state.sub_jobs.all(project["id"]),
                                {"origin_id": "origin_id"}), public)


@api("GET", "/rest/v1.0/sub_jobs/{id}", query=("project_id",))
def show_sub_job(call: Call) -> Response:
    return json_response(200, public(sub_job_or_404(call, call.project("query"))))


@api("POST", "/rest/v1.0/sub_jobs")
def create_sub_job(call: Call) -> Response:
    project = call.project("body")
    return json_response(201, public(save_sub_job(call.state, project, call.wrapper("sub_job"),
                                                  None)))


@api("PATCH", "/rest/v1.0/sub_jobs/{id}")
def update_sub_job(call: Call) -> Response:
    project = call.project("body")
    job = sub_job_or_404(call, project)
    return json_response(200, public(save_sub_job(call.state, project, call.wrapper("sub_job"),
                                                  job)))


@api("PATCH", "/rest/v1.0/sub_jobs/sync", query=("project_id",))
def sync_sub_jobs(call: Call) -> Response:
    project = call.project("query")
    return run_sync(call, call.state.sub_jobs, project["id"],
                    lambda item, rec: save_sub_job(call.state, project, item, rec), public)


# --- billing periods ----------------------------------------------------------------------------------


BILLING_PERIOD_FIELDS = {"start_date": iso_date, "end_date": iso_date, "due_date": iso_date,
                         "status": one_of(*BILLING_PERIOD_STATUSES)}
BILLING_PERIODS = "/rest/v1.0/projects/{project_id}/billing_periods"


@api("GET", BILLING_PERIODS)
def list_billing_periods(call: Call) -> Response:
    project = call.project("path")
    records = filtered(call, call.state.billing_periods.all(project["id"]),
                       {"id": "id", "status": "status"})
    return paged(call, records, public)


@api("GET", BILLING_PERIODS + "/{id}")
def show_billing_period(call: Call) -> Response:
    period = record_or_404(call.state.billing_periods, call.id(), "Billing period",
                           call.project("path")["id"])
    return json_response(200, public(period))


def open_period(state: ProcoreState, project_id: int) -> dict | None:
    return next((p for p in state.billing_periods.all(project_id) if p["status"] == "open"), None)


def save_billing_period(state: ProcoreState, project: dict, attrs: dict,
                        period: dict | None) -> dict:
    """Procore support, "Edit a Billing Period": "Every billing period you create must have a
    unique date range" and "Only one (1) billing period can be Open ... at any given time"; a
    period opened while another is open is refused (stricter than closing the other one).
    A new period is open unless the body says closed (ASSUMPTION: the default status)."""
    values, errors = coerce(attrs, BILLING_PERIOD_FIELDS)
    require(values, period, errors, "start_date", "end_date")
    merged = {"status": "open", **(period or {}), **values}
    others = [p for p in state.billing_periods.all(project["id"]) if p is not period]
    if not errors and merged["end_date"] < merged["start_date"]:
        add_error(errors, "end_date", "must be on or after the start date")
    if not errors and any(p["start_date"] <= merged["end_date"] and
                          merged["start_date"] <= p["end_date"] for p in others):
        add_error(errors, "base", "overlaps an existing billing period")
    if merged["status"] == "open" and any(p["status"] == "open" for p in others):
        add_error(errors, "status", "another billing period of this project is open")
    if errors:
        raise Invalid(errors)
    new = {"_project_id": project["id"], "due_date": merged["end_date"], "status": "open",
           "position": len(others) + 1}
    return state.write(state.billing_periods, period, values, new)


@api("POST", BILLING_PERIODS)
def create_billing_period(call: Call) -> Response:
    project = call.project("path")
    period = save_billing_period(call.state, project, call.wrapper("billing_period"), None)
    return json_response(201, public(period))


@api("PATCH", BILLING_PERIODS + "/{id}")
def update_billing_period(call: Call) -> Response:
    project = call.project("path")
    period = record_or_404(call.state.billing_periods, call.id(), "Billing period", project["id"])
    period = save_billing_period(call.state, project, call.wrapper("billing_period"), period)
    return json_response(200, public(period))


# --- purchase order contracts ---------------------------------------------------------------------------


CONTRACT_DATES = ("contract_date", "delivery_date", "execution_date", "issued_on_date",
                  "letter_of_intent_date", "returned_date")
CONTRACT_FIELDS = {
    "number": text, "title": text, "description": text, "status": one_of(*PO_STATUSES),
    "executed": boolean, "private": boolean, "vendor_id": integer,
    "accounting_method": one_of(*ACCOUNTING_METHODS), "assignee_id": integer,
    "bill_to_address": text, "ship_to_address": text, "ship_via": text, "payment_terms": text,
    "retainage_percent": number, "approval_letter_date": text,
    **dict.fromkeys(CONTRACT_DATES, iso_date), "invoice_contact_user_ids": id_list,
    "origin_id": origin, "origin_code": text, "origin_data": opaque, "currency_iso_code": text,
    "currency_exchange_rate": number,
}
CONTRACTS = "/rest/v1.0/purchase_order_contracts"


def next_number(table: Table, group: Any) -> str:
    """Procore numbers new records 1, 2, 3... within their group, skipping numbers in use."""
    candidate = table.size(group) + 1
    while table.find_number(group, str(candidate)) is not None:
        candidate += 1
    return str(candidate)


def save_contract(state: ProcoreState, project: dict, attrs: dict, contract: dict | None) -> dict:
    """Create/update a PO; under the Approved lock it keeps its vendor (status stays editable)."""
    values, errors = coerce(attrs, CONTRACT_FIELDS)
    vendor_id = values.get("vendor_id")
    if vendor_id is not None and state.vendors.get(vendor_id) is None:
        add_error(errors, "vendor_id", "does not exist")
    if (contract is not None and state.sov_locked(contract) and "vendor_id" in values
            and vendor_id != contract["vendor_id"]):
        add_error(errors, "vendor_id", "is locked because the commitment is Approved or Complete")
    # ASSUMPTION (stricter, docs/api-assumptions.md §1.6): the accounting method of a commitment
    # that has line items cannot change.
    if (contract is not None and "accounting_method" in values
            and values["accounting_method"] != contract["accounting_method"]
            and state.line_items.all(contract["id"])):
        add_error(errors, "accounting_method",
                  "cannot be changed once the commitment has line items")
    same_number = state.contracts.find_number(project["id"], values.get("number"))
    if same_number is not None and same_number is not contract:
        add_error(errors, "number", "has already been taken")
    check_origin(state.contracts, values, contract, errors)
    if errors:
        raise Invalid(errors)
    if contract is not None:
        return state.write(state.contracts, contract, values)
    number = values.get("number") or next_number(state.contracts, project["id"])
    new = {**dict.fromkeys(CONTRACT_FIELDS), "_project_id": project["id"], "status": "Draft",
           "executed": False, "private": False, "accounting_method": "amount",
           "number": number, "deleted_at": None,
           # requisitions_are_enabled is set in Procore's UI, not through this body: the seed
           # names the POs whose commitments have invoicing disabled.
           "_requisitions_enabled": not ({number, values.get("origin_code")}
                                         & state.requisitions_disabled_pos)}
    return state.write(state.contracts, None, values, new)


def package_total(state: ProcoreState, package: dict) -> Decimal:
    """A change order package's grand_total: the line items of its potential change orders."""
    return total(line["amount"] for pco in state.pcos.all(package["contract_id"])
                 if pco["change_order_package_id"] == package["id"]
                 for line in state.pco_lines.all(pco["id"]))


def contract_sums(state: ProcoreState, contract: dict) -> dict[str, Decimal]:
    """The commitment's money summary: SOV total plus its change order packages by status."""
    grand_total = total(line["amount"] for line in state.line_items.all(contract["id"]))
    packages = state.packages.all(contract["id"])

    def packages_total(status: str) -> Decimal:
        return total(package_total(state, p) for p in packages if p["status"] == status)

    approved, pending = packages_total("approved"), packages_total("pending")
    return {
        "grand_total": grand_total, "approved_change_orders": approved,
        "pending_change_orders": pending,
        "draft_change_orders_amount": packages_total("draft"),
        "revised_contract": grand_total + approved,
        "pending_revised_contract": grand_total + approved + pending,
        "total_requisitions_amount": total(
            claimed(state, r) for r in state.requisitions.all(contract["id"])),
    }


def contract_out(state: ProcoreState, contract: dict, detail: bool = False) -> dict:
    vendor = state.vendors.get(contract["vendor_id"])
    project = state.projects.get(contract["_project_id"])
    out = public(contract)
    del out["vendor_id"], out["currency_iso_code"]
    out.update(contract_sums(state, contract))
    out.update({
        "vendor": {"id": vendor["id"], "company": vendor["name"], "origin_id": vendor["origin_id"],
                   "origin_data": vendor["origin_data"]} if vendor else None,
        "project": {"id": project["id"], "name": project["name"]},
        "requisitions_are_enabled": contract["_requisitions_enabled"],
        "currency_configuration": {"currency_iso_code": contract["currency_iso_code"]},
    })
    if detail:
        out["line_items"] = [line_out(state, line) for line in state.line_items.all(contract["id"])]
        out.update(tier_arrays(state, contract))
    return out


def tier_arrays(state: ProcoreState, contract: dict) -> dict[str, list]:
    """OAS: GET /rest/v1.0/purchase_order_contracts/:id (Show Purchase Order Contract), "Special
    notes (Tiers)": 1-tier shows Change Order Packages; 2-tier adds Potential Change Orders;
    3-tier adds Change Order Requests (not modelled: always empty). Detail responses only."""
    from mlc_sandbox.procore_change_orders import package_out, pco_out

    tier = state.change_order_tier(contract["_project_id"])
    arrays = {"change_order_packages": [package_out(state, p)
                                        for p in state.packages.all(contract["id"])]}
    if tier >= 2:
        arrays["potential_change_orders"] = [pco_out(state, p)
                                             for p in state.pcos.all(contract["id"])]
    if tier >= 3:
        arrays["change_order_requests"] = []
    return arrays


@api("GET", CONTRACTS, query=("project_id",))
def list_contracts(call: Call) -> Response:
    project = call.project("query")
    records = filtered(call, include_deleted(call, call.state.contracts, project["id"]),
                       {"id": "id", "origin_id": "origin_id", "status": "status"})
    return paged(call, records, lambda c: contract_out(call.state, c))


@api("GET", CONTRACTS + "/{id}", query=("project_id",))
def show_contract(call: Call) -> Response:
    contract = call.contract(call.project("query"))
    return json_response(200, contract_out(call.state, contract, detail=True))


@api("POST", CONTRACTS)
def create_contract(call: Call) -> Response:
    project = call.project("body")
    contract = save_contract(call.state, project, call.wrapper("purchase_order_contract"), None)
    return json_response(201, contract_out(call.state, contract, detail=True))


@api("PATCH", CONTRACTS + "/{id}")
def update_contract(call: Call) -> Response:
    project = call.project("body")
    contract = save_contract(call.state, project, call.wrapper("purchase_order_contract"),
                             call.contract(project))
    return json_response(200, contract_out(call.state, contract, detail=True))


@api("DELETE", CONTRACTS + "/{id}", query=("project_id",))
def delete_contract(call: Call) -> Response:
    contract = call.contract(call.project("query"))
    if call.state.sov_locked(contract):
        raise Invalid({"base": ["An Approved or Complete commitment cannot be deleted"]})
    call.state.write(call.state.contracts, contract, {"deleted_at": now_iso()})
    return empty_ok()


@api("PATCH", CONTRACTS + "/sync")
def sync_contracts(call: Call) -> Response:
    project = call.project("body")
    return run_sync(call, call.state.contracts, project["id"],
                    lambda item, rec: save_contract(call.state, project, item, rec),
                    lambda c: contract_out(call.state, c, detail=True))


@api("GET", "/rest/v1.0/commitments", query=("project_id",))
def list_commitments(call: Call) -> Response:
    project = call.project("query")
    return paged(call, call.state.contracts.all(project["id"]),
                 lambda c: contract_out(call.state, c))


@api("GET", "/rest/v1.0/commitments/{id}", query=("project_id",))
def show_commitment(call: Call) -> Response:
    contract = call.contract(call.project("query"))
    return json_response(200, contract_out(call.state, contract, detail=True))


# --- purchase order contract line items (schedule of values) --------------------------------------------


LINE_ITEM_FIELDS = {
    "amount": money, "quantity": number, "unit_cost": number, "uom": text, "description": text,
    "cost_code_id": integer, "line_item_type_id": integer,
    "extended_type": one_of("manual", "calculated"), "origin_id": origin, "origin_data": opaque,
}
LINE_ITEMS = CONTRACTS + "/{purchase_order_contract_id}/line_items"


def check_line_references(state: ProcoreState, project_id: int, values: dict, errors: dict,
                          prefix: str = "") -> None:
    """A line's cost code must be the project's; its cost type and UOM the company's."""
    code_id = values.get("cost_code_id")
    if code_id is not None and state.cost_codes.get(code_id, project_id) is None:
        add_error(errors, prefix + "cost_code_id", "does not exist in this project")
    type_id = values.get("line_item_type_id")
    if type_id is not None and state.line_item_types.get(type_id) is None:
        add_error(errors, prefix + "line_item_type_id", "does not exist")
    uom = values.get("uom")
    if uom is not None and uom not in {u["name"] for u in state.uoms.all()}:
        add_error(errors, prefix + "uom", "is not a unit of measure of this company")


def line_amount(values: dict, line: dict | None) -> Decimal:
    """amount when sent; else quantity x unit_cost (unit accounting); else unchanged / 0."""
    if values.get("amount") is not None:
        return values["amount"]
    if line is not None and "quantity" not in values and "unit_cost" not in values:
        return line["amount"]
    merged = {**(line or {}), **values}
    if merged.get("quantity") is not None and merged.get("unit_cost") is not None:
        return to_cents(merged["quantity"] * merged["unit_cost"])
    return line["amount"] if line else Decimal("0.00")


def save_schedule_line(state: ProcoreState, table: Table, holder_id: int, project_id: int,
                       attrs: dict, line: dict | None) -> dict:
    """Create or update a schedule-of-values line under its holder (a commitment's or a
    potential change order's: same fields and rules); `table` groups lines by holder."""
    values, errors = coerce(attrs, LINE_ITEM_FIELDS)
    check_line_references(state, project_id, values, errors)
    check_origin(table, values, line, errors)
    if errors:
        raise Invalid(errors)
    values["amount"] = line_amount(values, line)
    if line is not None:
        return state.write(table, line, values)
    new = {**dict.fromkeys(LINE_ITEM_FIELDS), table.group_by: holder_id,
           "extended_type": "manual", "deleted_at": None, "position": table.size(holder_id) + 1}
    return state.write(table, None, values, new)


def save_line_item(state: ProcoreState, contract: dict, attrs: dict, line: dict | None) -> dict:
    # Any write to the schedule of values of a locked commitment is refused, a quantity or
    # unit cost change that keeps the amount included (issue 13 point 6b).
    if state.sov_locked(contract):
        raise Invalid({"base": [SOV_LOCKED]})
    return save_schedule_line(state, state.line_items, contract["id"], contract["_project_id"],
                              attrs, line)


def line_out(state: ProcoreState, line: dict) -> dict:
    contract = state.contracts.get(line["_contract_id"], include_deleted=True)
    return holder_line_out(state, line, contract["_project_id"],
                           {"id": contract["id"], "holder_type": "PurchaseOrderContract"})


def holder_line_out(state: ProcoreState, line: dict, project_id: int, holder: dict) -> dict:
    """A schedule-of-values line as Procore returns it, under its holder (contract or PCO):
    cost_code_id / line_item_type_id become the nested objects Procore returns."""
    out = public(line)
    code = state.cost_codes.get(out.pop("cost_code_id"), include_deleted=True)
    lit = state.line_item_types.get(out.pop("line_item_type_id"))
    project = state.projects.get(project_id)
    return {
        **out,
        "cost_code": {key: code[key] for key in ("id", "code", "full_code", "name",
                                                 "origin_id")} if code else None,
        "line_item_type": {key: lit[key] for key in ("id", "name", "code", "base_type",
                                                     "origin_id", "origin_data")} if lit else None,
        "total_amount": line["amount"], "extended_amount": line["amount"], "wbs_code": None,
        "tax_code_id": None, "holder": holder, "project": {"id": project["id"], "name": project["name"]},
        "company": {"id": COMPANY_ID, "name": state.company["name"]},
    }


def line_item_or_404(call: Call, contract: dict) -> dict:
    return record_or_404(call.state.line_items, call.id(), "Line item", contract["id"])


@api("GET", LINE_ITEMS, query=("project_id",))
def list_line_items(call: Call) -> Response:
    contract = call.contract(call.project("query"), "purchase_order_contract_id")
    records = filtered(call, include_deleted(call, call.state.line_items, contract["id"]),
                       {"id": "id", "origin_id": "origin_id", "cost_code_id": "cost_code_id",
                        "line_item_type_id": "line_item_type_id"})
    return paged(call, records, lambda line: line_out(call.state, line))


@api("GET", LINE_ITEMS + "/{id}", query=("project_id",))
def show_line_item(call: Call) -> Response:
    contract = call.contract(call.project("query"), "purchase_order_contract_id")
    return json_response(200, line_out(call.state, line_item_or_404(call, contract)))


@api("POST", LINE_ITEMS)
def create_line_item(call: Call) -> Response:
    contract = call.contract(call.project("body"), "purchase_order_contract_id")
    line = save_line_item(call.state, contract, call.wrapper("line_item"), None)
    return json_response(201, line_out(call.state, line))


@api("PATCH", LINE_ITEMS + "/{id}")
def update_line_item(call: Call) -> Response:
    contract = call.contract(call.project("body"), "purchase_order_contract_id")
    line = save_line_item(call.state, contract, call.wrapper("line_item"),
                          line_item_or_404(call, contract))
    return json_response(200, line_out(call.state, line))


@api("DELETE", LINE_ITEMS + "/{id}", query=("project_id",))
def delete_line_item(call: Call) -> Response:
    contract = call.contract(call.project("query"), "purchase_order_contract_id")
    line = line_item_or_404(call, contract)
    if call.state.sov_locked(contract):
        raise Invalid({"base": [SOV_LOCKED]})
    call.state.write(call.state.line_items, line, {"deleted_at": now_iso()})
    return empty_ok()


@api("PATCH", LINE_ITEMS + "/sync", query=("project_id",))
def sync_line_items(call: Call) -> Response:
    """project_id is a query parameter here; the body is just {updates: [...]}."""
    contract = call.contract(call.project("query"), "purchase_order_contract_id")
    return run_sync(call, call.state.line_items, contract["id"],
                    lambda item, rec: save_line_item(call.state, contract, item, rec),
                    lambda line: line_out(call.state, line))


# --- requisitions (subcontractor invoices) --------------------------------------------------------------


REQUISITION_FIELDS = {
    "period_id": integer, "requisition_start": iso_date, "requisition_end": iso_date,
    "billing_date": iso_date, "final": boolean, "invoice_number": text,
    "payment_date": iso_date, "submitted_at": text, "comment": text,
    "status": one_of(*REQUISITION_STATUSES), "origin_id": origin, "origin_data": opaque,
}
ITEM_AMOUNTS = ("work_completed_this_period", "materials_presently_stored",
                "work_completed_retainage_retained_this_period",
                "work_completed_retainage_released_this_period",
                "materials_stored_retainage_currently_retained", "subcontractor_claimed_amount")
CONTRACT_ITEM_FIELDS = {**dict.fromkeys(ITEM_AMOUNTS, money),
                        "work_completed_this_period_quantity": number}
REQUISITION_ITEM_FIELDS = {
    "id": integer, "item_type": one_of(*REQUISITION_ITEM_TYPES), "line_item_id": integer,
    "status": one_of("approved", "rejected", "no_action"), "comment": text,
    **CONTRACT_ITEM_FIELDS,
}


def requisition_is_editable(state: ProcoreState, requisition: dict) -> bool:
    return editing_refusal(state, requisition) is None


def editing_refusal(state: ProcoreState, requisition: dict) -> str | None:
    """Why an invoice may not change (update, item update or delete), or None.

    tutorial_financial_tools.md, "Subcontractor Invoices": "When an origin_id exists on a
    Subcontractor Invoice, the entire object is immutable". Otherwise the Update / Delete
    Requisition descriptions (OAS; tutorial_requisitions.md: "Must be the latest, open
    subcontractor invoice"): the most recent invoice, in draft or revise_and_resubmit.
    """
    if requisition["origin_id"]:
        return INVOICE_SYNCED
    latest = max(state.requisitions.all(requisition["_commitment_id"]), key=lambda r: r["number"])
    if latest is not requisition or requisition["status"] not in EDITABLE_REQUISITION_STATUSES:
        return INVOICE_LOCKED
    return None


def ensure_editable(state: ProcoreState, requisition: dict) -> None:
    refusal = editing_refusal(state, requisition)
    if refusal is not None:
        raise Invalid({"base": [refusal]})


def plan_items(state: ProcoreState, contract: dict, requisition: dict | None, raw: Any,
               errors: dict) -> list[tuple[int, dict]]:
    """Validate v1.1 `items` into (line_item_id, values) pairs before anything is written.

    On create an item names a schedule-of-values line (`line_item_id`; the OAS create body
    has no item id). On update it names the invoice's own item by `id` (OAS: PATCH
    /rest/v1.1/requisitions/:id, `requisition.items[].id`); `line_item_id` does not select.
    """
    if not isinstance(raw, list):
        add_error(errors, "items", "must be an array")
        return []
    billable = {line["id"] for line in state.line_items.all(contract["id"])}
    plan = []
    for index, item in enumerate(raw):
        prefix = f"items[{index}]."
        if not isinstance(item, dict):
            add_error(errors, prefix.rstrip("."), "must be a JSON object")
            continue
        values, item_errors = coerce(item, REQUISITION_ITEM_FIELDS)
        item_type = values.pop("item_type", None)
        if item_type is None:
            add_error(item_errors, "item_type", "can't be blank")
        elif item_type != "contract_item":
            add_error(item_errors, "item_type", "only contract_item is supported by the sandbox")
        item_id, line_id = values.pop("id", None), values.pop("line_item_id", None)
        if requisition is not None:
            target = state.requisition_items.get(item_id, requisition["id"])
            if item_id is None:
                add_error(item_errors, "id", "can't be blank")
            elif target is None:
                add_error(item_errors, "id", "is not an item of this invoice")
            elif line_id is not None and line_id != target["line_item_id"]:
                add_error(item_errors, "line_item_id", "is not the line of this item")
            line_id = target["line_item_id"] if target else None
        elif line_id not in billable:
            add_error(item_errors, "line_item_id", "is not on this commitment's schedule of values")
        for field, messages in item_errors.items():
            errors.setdefault(prefix + field, []).extend(messages)
        plan.append((line_id, values))
    return plan


def check_period(state: ProcoreState, project: dict, values: dict, errors: dict) -> None:
    """The invoice goes into the project's open billing period and takes its dates (Procore
    support, "Edit a Billing Period": "The billing period on a new invoice always corresponds to
    the dates on the Open billing period"). Dates sent by the client are not kept."""
    values.pop("requisition_start", None)
    values.pop("requisition_end", None)
    if "period_id" not in values:
        return
    period = state.billing_periods.get(values["period_id"], project["id"])
    if period is None:
        add_error(errors, "period_id", "is not a billing period of this project")
    elif period["status"] != "open":
        add_error(errors, "period_id", "is not the open billing period of this project")
    else:
        values["requisition_start"], values["requisition_end"] = (period["start_date"],
                                                                  period["end_date"])


def save_requisition(state: ProcoreState, project: dict, contract: dict, attrs: dict,
                     requisition: dict | None, items: Any = None) -> dict:
    """Create/update an invoice; a new one gets a contract item per schedule-of-values line."""
    if requisition is not None:
        ensure_editable(state, requisition)
    elif not contract["_requisitions_enabled"]:
        # The commitment's requisitions_are_enabled (OAS Show Purchase Order Contract: "If
        # true, Requisitions (Subcontractor Invoices) are enabled") is false.
        raise Invalid({"base": [INVOICING_DISABLED]})
    values, errors = coerce(attrs, REQUISITION_FIELDS)
    require(values, requisition, errors, "period_id")
    if requisition is not None and values.get("period_id", -1) == requisition["period_id"]:
        del values["period_id"]  # unchanged: the period may have closed since
    check_period(state, project, values, errors)
    check_origin(state.requisitions, values, requisition, errors)
    plan = plan_items(state, contract, requisition, items, errors) if items is not None else []
    if errors:
        raise Invalid(errors)
    siblings = state.requisitions.all(contract["id"])
    new = {**dict.fromkeys(REQUISITION_FIELDS), "_commitment_id": contract["id"],
           "_project_id": project["id"], "status": "draft", "final": False,
           "number": 1 + max((r["number"] for r in siblings), default=0)}
    created = requisition is None
    requisition = state.write(state.requisitions, requisition, values, new)
    if created:
        for line in state.line_items.all(contract["id"]):
            state.write(state.requisition_items, None, {}, {
                "_requisition_id": requisition["id"], "item_type": "contract_item",
                "line_item_id": line["id"], "cost_code_id": line["cost_code_id"],
                "description_of_work": line["description"], "scheduled_value": line["amount"],
                **dict.fromkeys(ITEM_AMOUNTS, Decimal("0.00")),
                "work_completed_this_period_quantity": Decimal(0), "status": "no_action",
                "comment": None})
    by_line = {i["line_item_id"]: i for i in state.requisition_items.all(requisition["id"])}
    for line_id, item_values in plan:
        state.write(state.requisition_items, by_line[line_id], item_values)
    return requisition


def claimed(state: ProcoreState, requisition: dict) -> Decimal:
    return total(i["work_completed_this_period"] + i["materials_presently_stored"]
                 for i in state.requisition_items.all(requisition["id"]))


def previous_work(state: ProcoreState, requisition: dict) -> dict[int, Decimal]:
    """Work billed per line item on the commitment's earlier invoices."""
    done: dict[int, Decimal] = {}
    for earlier in state.requisitions.all(requisition["_commitment_id"]):
        if earlier["number"] < requisition["number"]:
            for item in state.requisition_items.all(earlier["id"]):
                done[item["line_item_id"]] = (done.get(item["line_item_id"], Decimal("0.00"))
                                              + item["work_completed_this_period"])
    return done


def contract_item_out(item: dict, previous: dict[int, Decimal]) -> dict:
    before = previous.get(item["line_item_id"], Decimal("0.00"))
    to_date = before + item["work_completed_this_period"] + item["materials_presently_stored"]
    scheduled = item["scheduled_value"]
    return {
        **public(item), "work_completed_from_previous_application": before,
        "total_completed_and_stored_to_date": to_date,
        "total_completed_and_stored_to_date_percent":
            to_cents(to_date * 100 / scheduled) if scheduled else Decimal("0.00"),
        "balance_to_finish": scheduled - to_date,
    }


def requisition_out(state: ProcoreState, requisition: dict, with_items: bool = False) -> dict:
    contract = state.contracts.get(requisition["_commitment_id"], include_deleted=True)
    vendor = state.vendors.get(contract["vendor_id"])
    previous = previous_work(state, requisition)
    items = [contract_item_out(i, previous)
             for i in state.requisition_items.all(requisition["id"])]
    sums = contract_sums(state, contract)
    completed = total(i["total_completed_and_stored_to_date"] for i in items)
    this_period = claimed(state, requisition)
    contract_sum = sums["revised_contract"]
    out = {
        **public(requisition), "commitment_id": contract["id"],
        "commitment_type": "PurchaseOrderContract", "contract_name": contract["title"],
        "vendor_id": vendor["id"] if vendor else None,
        "vendor_name": vendor["name"] if vendor else None,
        "total_claimed_amount": this_period,
        "percent_complete": to_cents(completed * 100 / contract_sum) if contract_sum else
        Decimal("0.00"),
        "deletable": requisition_is_editable(state, requisition), "erp_status": "not_ready",
        "summary": {
            "original_contract_sum": sums["grand_total"],
            "net_change_by_change_orders": sums["approved_change_orders"],
            "contract_sum_to_date": contract_sum,
            "total_completed_and_stored_to_date": completed,
            "total_retainage": Decimal("0.00"),
            "total_earned_less_retainage": completed,
            "less_previous_certificates_for_payment": completed - this_period,
            "current_payment_due": this_period,
            "balance_to_finish_including_retainage": contract_sum - completed,
        },
    }
    if with_items:
        out["items"] = items
    return out


def is_v11(call: Call) -> bool:
    return call.request.url.path.startswith("/rest/v1.1/")


def requisition_or_404(call: Call, project: dict, name: str = "id") -> dict:
    return record_or_404(call.state.requisitions, call.id(name), "Requisition", project=project)


def contract_in(state: ProcoreState, project: dict, contract_id: int | None, field: str) -> dict:
    """The project's live commitment a body attribute names, or a validation error on it."""
    contract = state.contracts.get(contract_id, project["id"])
    if contract is None:
        raise Invalid({field: ["does not exist in this project"]})
    return contract


def commitment_for(call: Call, project: dict) -> dict:
    return contract_in(call.state, project, call.id("commitment_id", "body"), "commitment_id")


@api("GET", "/rest/v1.0/requisitions", query=("project_id",))
@api("GET", "/rest/v1.1/requisitions", query=("project_id",))
def list_requisitions(call: Call) -> Response:
    project = call.project("query")
    records = [r for r in call.state.requisitions.all() if r["_project_id"] == project["id"]]
    records = filtered(call, records, {"id": "id", "commitment_id": "_commitment_id",
                                       "period_id": "period_id", "status": "status",
                                       "origin_id": "origin_id"})
    is_last = call.filter_value("is_last")
    if is_v11(call) and is_last in ("true", "false"):
        # OAS: "Setting this to true will return only the last item. Setting this to false
        # will return all the items except the last one" (per commitment).
        latest = {}  # each commitment's newest invoice: higher numbers overwrite lower ones
        for record in sorted(records, key=lambda r: r["number"]):
            latest[record["_commitment_id"]] = record
        last_ids = {r["id"] for r in latest.values()}
        records = [r for r in records if (r["id"] in last_ids) == (is_last == "true")]
    with_items = is_v11(call) and call.request.query_params.get("view") in ("extended", "items")
    # OAS: GET /rest/v1.1/requisitions, per_page: "Elements per page, default 30".
    return paged(call, records, lambda r: requisition_out(call.state, r, with_items),
                 default_per_page=30 if is_v11(call) else 100)


@api("GET", "/rest/v1.0/requisitions/{id}", query=("project_id",))
@api("GET", "/rest/v1.1/requisitions/{id}", query=("project_id",))
def show_requisition(call: Call) -> Response:
    requisition = requisition_or_404(call, call.project("query"))
    return json_response(200, requisition_out(call.state, requisition, is_v11(call)))


@api("POST", "/rest/v1.0/requisitions")
@api("POST", "/rest/v1.1/requisitions")
def create_requisition(call: Call) -> Response:
    """Body {project_id, commitment_id, requisition: {...}}; v1.1 may carry requisition.items."""
    project = call.project("body")
    contract = commitment_for(call, project)
    attrs = call.wrapper("requisition")
    items = attrs.get("items") if is_v11(call) else None
    requisition = save_requisition(call.state, project, contract, attrs, None, items)
    return json_response(201, requisition_out(call.state, requisition, is_v11(call)))


@api("PATCH", "/rest/v1.0/requisitions/{id}")
@api("PATCH", "/rest/v1.1/requisitions/{id}")
def update_requisition(call: Call) -> Response:
    project = call.project("body")
    requisition = requisition_or_404(call, project)
    contract = call.state.contracts.get(requisition["_commitment_id"], include_deleted=True)
    attrs = call.wrapper("requisition")
    items = attrs.get("items") if is_v11(call) else None
    requisition = save_requisition(call.state, project, contract, attrs, requisition, items)
    return json_response(200, requisition_out(call.state, requisition, is_v11(call)))


@api("DELETE", "/rest/v1.0/requisitions/{id}", query=("project_id",))
@api("DELETE", "/rest/v1.1/requisitions/{id}", query=("project_id",))
def delete_requisition(call: Call) -> Response:
    requisition = requisition_or_404(call, call.project("query"))
    ensure_editable(call.state, requisition)
    for item in call.state.requisition_items.all(requisition["id"]):
        call.state.requisition_items.remove(item)
    call.state.requisitions.remove(requisition)
    return empty_ok()


CONTRACT_ITEMS = "/rest/v1.0/requisitions/{requisition_id}/contract_items"


def contract_item_or_404(call: Call, requisition: dict) -> dict:
    return record_or_404(call.state.requisition_items, call.id(), "Contract item",
                         requisition["id"])


@api("GET", CONTRACT_ITEMS, query=("project_id",))
def list_contract_items(call: Call) -> Response:
    requisition = requisition_or_404(call, call.project("query"), "requisition_id")
    previous = previous_work(call.state, requisition)
    return paged(call, call.state.requisition_items.all(requisition["id"]),
                 lambda item: contract_item_out(item, previous))


@api("GET", CONTRACT_ITEMS + "/{id}", query=("project_id",))
def show_contract_item(call: Call) -> Response:
    requisition = requisition_or_404(call, call.project("query"), "requisition_id")
    item = contract_item_or_404(call, requisition)
    return json_response(200, contract_item_out(item, previous_work(call.state, requisition)))


@api("PATCH", CONTRACT_ITEMS + "/{id}", query=("project_id",))
def update_contract_item(call: Call) -> Response:
    requisition = requisition_or_404(call, call.project("query"), "requisition_id")
    item = contract_item_or_404(call, requisition)
    ensure_editable(call.state, requisition)
    values, errors = coerce(call.wrapper("requisition_contract_item"), CONTRACT_ITEM_FIELDS)
    if errors:
        raise Invalid(errors)
    item = call.state.write(call.state.requisition_items, item, values)
    return json_response(200, contract_item_out(item, previous_work(call.state, requisition)))


BULK_ITEM_FIELDS = {key: REQUISITION_ITEM_FIELDS[key] for key in (
    "item_type", "status", "comment", *CONTRACT_ITEM_FIELDS)}


@api("PATCH", "/rest/v1.0/requisitions/{requisition_id}/bulk_item_update", query=("project_id",))
def bulk_update_requisition_items(call: Call) -> Response:
    """OAS: PATCH .../bulk_item_update: "Updates all requisition items received in the body";
    items by `id`, all validated before any is written; 200 with an empty body (SDK docs)."""
    requisition = requisition_or_404(call, call.project("query"), "requisition_id")
    ensure_editable(call.state, requisition)
    raw = call.body.get("requisition_items")
    if raw is None or raw == []:
        raise missing_param("requisition_items")
    if not isinstance(raw, list):
        raise ApiError(400, {"errors": "requisition_items must be an array"})
    plan, errors = [], {}
    for index, entry in enumerate(raw):
        prefix = f"requisition_items[{index}]."
        entry = entry if isinstance(entry, dict) else {}
        values, item_errors = coerce(entry, BULK_ITEM_FIELDS)
        if values.pop("item_type", None) != "contract_item":
            add_error(item_errors, "item_type", "only contract_item is supported by the sandbox")
        try:
            item = call.state.requisition_items.get(integer(entry.get("id")), requisition["id"])
        except ValueError:
            item = None
        if item is None:
            add_error(item_errors, "id", "is not an item of this invoice")
        for field, messages in item_errors.items():
            errors.setdefault(prefix + field, []).extend(messages)
        plan.append((item, values))
    if errors:
        raise Invalid(errors)
    for item, values in plan:
        call.state.write(call.state.requisition_items, item, values)
    return empty_ok()


# --- ASGI assembly -----------------------------------------------------------------------------------


def _add_headers(send, headers: list[tuple[bytes, bytes]]):
    async def send_with_headers(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *headers]}
        await send(message)
    return send_with_headers


class RateLimitMiddleware:
    """Counts every /rest/ call and token request against the live limits; 429 once spent.

    No Retry-After here: the docs disagree on it, so it only comes from injected faults.
    """

    def __init__(self, app, state: ProcoreState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path.startswith("/rest/") or path == "/oauth/token"):
            return await self.app(scope, receive, send)
        allowed, headers = self.state.limiter.take(self.state.controls.config)
        raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        if allowed:
            return await self.app(scope, receive, _add_headers(send, raw))
        body = json.dumps({"message": RATE_LIMIT_MESSAGE}).encode()
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *raw]})
        await send({"type": "http.response.body", "body": body})


class RequestIdMiddleware:
    """Every response carries a fresh X-Request-Id, as Procore's do."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = str(uuid.uuid4()).encode()
        await self.app(scope, receive, _add_headers(send, [(b"x-request-id", request_id)]))


async def http_error(request: Request, exc: HTTPException) -> Response:
    """Unknown routes and wrong methods answer in JSON like the rest of the API."""
    return json_response(exc.status_code, {"errors": exc.detail}, exc.headers)


def build_app(seed_data: SeedData, controls: SandboxControls):
    """The Procore sandbox ASGI app; its state is reachable as `app.state_obj`."""
    state = ProcoreState(seed_data, controls)
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in _ENDPOINTS:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    # Literal segments first, so /vendors/sync is never taken for /vendors/{id}.
    paths = sorted(by_path, key=lambda p: p.count("{"))
    routes = [Route(path, endpoint_runner(state, by_path[path]), methods=list(by_path[path]))
              for path in paths]
    starlette = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    starlette.router.redirect_slashes = False
    app = ControlsMiddleware(RequestIdMiddleware(RateLimitMiddleware(starlette, state)), controls,
                             "procore")
    app.state_obj = state
    return app


# The change order endpoints live in their own module, which builds on the helpers above;
# importing it here registers them with every app this module builds.
from mlc_sandbox import procore_change_orders  # noqa: E402, F401
