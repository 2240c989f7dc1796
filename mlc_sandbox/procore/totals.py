"""Money a commitment's show and invoice responses derive from its records."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from mlc_sandbox.procore.values import total

if TYPE_CHECKING:
    from mlc_sandbox.procore.state import ProcoreState


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


def claimed(state: ProcoreState, requisition: dict) -> Decimal:
    return total(i["work_completed_this_period"] + i["materials_presently_stored"]
                 for i in state.requisition_items.all(requisition["id"]))
