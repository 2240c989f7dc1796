"""pandera schemas for staged Sage X3 records.

Validation is lazy (every failure is collected, not just the first) and each
failure becomes a quarantine reason naming the record and the field, so one
malformed PO never stops the others.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

MAX_AMOUNT = 1e11  # above any plausible single PO line
MAX_QUANTITY = 1e9


def at_most_two_decimals(series):
    """True where a money value has at most two decimals (X3 stores more; Procore does not).

    Compared in cents with a tolerance relative to the size: a float holds 1337222387.89 as
    133722238788.99998 cents, which a fixed 1e-6 tolerance wrongly called a third decimal.
    """
    cents = series * 100
    return (cents - cents.round()).abs() <= 1e-6 + 1e-14 * cents.abs()


PO_HEADER_SCHEMA = pa.DataFrameSchema(
    {
        "po_number": pa.Column(str, [pa.Check.str_length(1, 30)], unique=True),
        "supplier_code": pa.Column(str, pa.Check.str_length(1, 15)),
        "project_code": pa.Column(str, pa.Check.str_length(1, 30)),
        "currency": pa.Column(str, pa.Check.str_matches(r"^[A-Z]{3}$")),
        # No dtype pin: pandas 3 picks the datetime unit from the data (far dates need it).
        "order_date": pa.Column(
            checks=pa.Check.in_range(pd.Timestamp("2000-01-01"), pd.Timestamp("2100-12-31")),
            nullable=False,
        ),
        "revision": pa.Column(int, pa.Check.ge(0)),
        "closed": pa.Column(bool),
    },
    strict=False,
    coerce=False,
)

PO_LINE_SCHEMA = pa.DataFrameSchema(
    {
        "po_number": pa.Column(str, pa.Check.str_length(1, 30)),
        "line_number": pa.Column(int, pa.Check.gt(0)),
        # The GL account or the dimension value the line is mapped by (MLC_MAPPING_KEY).
        "mapping_key": pa.Column(str, pa.Check.str_length(1, 20)),
        "quantity": pa.Column(float, [pa.Check.gt(0), pa.Check.le(MAX_QUANTITY)]),
        "unit_price": pa.Column(float, [pa.Check.ge(0), pa.Check.le(MAX_AMOUNT)]),
        "amount": pa.Column(
            float,
            [pa.Check.ge(0), pa.Check.le(MAX_AMOUNT),
             pa.Check(at_most_two_decimals, element_wise=False, error="more than two decimals")],
        ),
        "uom": pa.Column(str, pa.Check.str_length(1, 10)),
        "closed": pa.Column(bool),
    },
    checks=[
        pa.Check(
            lambda df: ~df.duplicated(["po_number", "line_number"], keep=False),
            error="duplicate line number",
            name="unique_line_number",
        )
    ],
    strict=False,
    coerce=False,
)

# Human wording for pandera's check names in quarantine reasons.
CHECK_WORDING = {
    "str_length": "is blank or too long",
    "greater_than": "must be greater than {min}",
    "greater_than_or_equal_to": "must not be negative",
    "less_than_or_equal_to": "is implausibly large",
    "in_range": "is outside 2000-01-01..2100-12-31",
    "str_matches": "is not a 3-letter currency code",
    "field_uniqueness": "appears more than once",
    "not_nullable": "is missing or not a valid value",
    "unique_line_number": "duplicate line number in this PO",
    "more than two decimals": "has more than two decimals",
}
