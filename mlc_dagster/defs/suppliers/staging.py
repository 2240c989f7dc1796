"""Canonical Sage X3 suppliers -> a validated DataFrame plus a quarantine (pure).

A supplier that would be refused by Procore (a country that is not a two-letter ISO code,
an e-mail that is not one) or that X3 itself should not hold (blank or over-long name, no
active flag) is quarantined with a reason naming the supplier and the field; the others
carry on.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa

from mlc_dagster.defs.purchase_orders.staging import yes_no_flags
from mlc_dagster.x3_reads import quarantine as q

KEY, LABEL = "supplier_code", "supplier"
TEXT = ["supplier_code", "name", "short_name", "currency", "country", "city", "postcode",
        "address", "phone", "email", "tax_id", "update_stamp"]
NAME_LIMIT = 35  # BPSNAM

SCHEMA = pa.DataFrameSchema(
    {
        "supplier_code": pa.Column(str, pa.Check.str_length(1, 15), unique=True),
        "name": pa.Column(str, pa.Check.str_length(1, NAME_LIMIT)),
        "country": pa.Column(str, pa.Check(lambda s: s.str.fullmatch(r"([A-Z]{2})?"),
                                           name="iso_country")),
        "email": pa.Column(str, pa.Check(lambda s: s.str.fullmatch(r"([^@\s]+@[^@\s]+\.[^@\s]+)?"),
                                         name="email")),
    },
    strict=False, coerce=False,
)
WORDING = {
    "iso_country": "is not an ISO 3166 two-letter country code (Procore requires one)",
    "email": "is not an e-mail address",
}


@dataclass
class StagedSuppliers:
    suppliers: pd.DataFrame  # valid suppliers, canonical columns, `active` as bool
    quarantine: pd.DataFrame
    stamps: dict[str, str | None]

    def reasons(self) -> dict[str, str]:
        grouped = self.quarantine.groupby(KEY, sort=True)["reason"]
        return {key: "; ".join(dict.fromkeys(reasons)) for key, reasons in grouped}


def stage_suppliers(records: list[dict]) -> StagedSuppliers:
    df = pd.DataFrame.from_records(records)
    for column in TEXT + ["active"]:
        if column not in df:
            df[column] = None
    for column in TEXT:
        df[column] = df[column].astype("string").fillna("").str.strip().astype(object)
    df["active"] = yes_no_flags(df["active"], missing=pd.NA)
    bad_flag = df["active"].isna()
    problems = [q.problem_rows(KEY, LABEL, df.loc[bad_flag, KEY], None, "active",
                               "active flag is missing or not yes/no"),
                q.schema_problems(SCHEMA, df, key=KEY, label=LABEL, wording=WORDING)]
    quarantine = q.combine(KEY, problems)
    held = set(quarantine[KEY])
    stamps = dict(zip(df[KEY], df["update_stamp"].replace("", None), strict=True))
    good = df[~df[KEY].isin(held)].copy()
    good["active"] = good["active"].astype(bool)
    return StagedSuppliers(good.reset_index(drop=True), quarantine, stamps)
