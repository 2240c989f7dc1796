"""The sandbox's in-memory Procore company: its tables, tokens and the test-facing reads."""

from __future__ import annotations

import copy
import itertools
import secrets
import threading
import time
from decimal import Decimal

from mlc_sandbox.controls import SandboxControls
from mlc_sandbox.procore.commitments import (
    CONTRACT_FIELDS,
    LOCKED_COMMITMENT_STATUSES,
    contract_out,
)
from mlc_sandbox.procore.rate_limit import RateLimiter
from mlc_sandbox.procore.requisitions import ITEM_AMOUNTS, REQUISITION_FIELDS, requisition_out
from mlc_sandbox.procore.routing import as_client_sees_it
from mlc_sandbox.procore.sov_lines import LINE_ITEM_FIELDS
from mlc_sandbox.procore.tables import Table
from mlc_sandbox.procore.values import coerce, money, now_iso
from mlc_sandbox.procore.vendors import vendor_out
from mlc_sandbox.seed import SANDBOX_CREDENTIALS, SeedData


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
                     "login": (SANDBOX_CREDENTIALS["procore_client_id"]
                               + "@service-account.procore.com")}
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
        # Change orders (change_orders.py): packages per contract, the potential
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

    def write(self, table: Table, record: dict | None, values: dict,
              new: dict | None = None) -> dict:
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
