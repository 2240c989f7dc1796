"""Settings of the invoice flow (documented in README and .env.example)."""

from __future__ import annotations

from dataclasses import dataclass

from mlc_dagster.settings import env_flag, env_int


@dataclass(frozen=True)
class InvoiceSettings:
    create_billing_periods: bool  # MLC_CREATE_BILLING_PERIODS: create a missing period, else hold
    max_invoices_per_run: int  # MLC_MAX_INVOICES_PER_RUN: the rest waits for the next run

    @classmethod
    def from_env(cls) -> InvoiceSettings:
        return cls(create_billing_periods=env_flag("MLC_CREATE_BILLING_PERIODS"),
                   max_invoices_per_run=env_int("MLC_MAX_INVOICES_PER_RUN", 5000))
