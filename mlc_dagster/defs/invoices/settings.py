"""Settings of the invoice flow (documented in README and .env.example)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mlc_dagster.common.env import env_flag, env_int


@dataclass(frozen=True)
class InvoiceSettings:
    create_billing_periods: bool  # MLC_CREATE_BILLING_PERIODS: create a missing period, else hold
    max_invoices_per_run: int  # MLC_MAX_INVOICES_PER_RUN: the rest waits for the next run
    # MLC_INVOICING_RECHECK_SECONDS: how often invoices held because their commitment refuses
    # invoices are tried again (one commitment read each); 0 = on every run
    invoicing_recheck_seconds: int = 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> InvoiceSettings:
        return cls(create_billing_periods=env_flag("MLC_CREATE_BILLING_PERIODS", env),
                   max_invoices_per_run=env_int("MLC_MAX_INVOICES_PER_RUN", 5000, env),
                   invoicing_recheck_seconds=env_int("MLC_INVOICING_RECHECK_SECONDS", 3600, env))
