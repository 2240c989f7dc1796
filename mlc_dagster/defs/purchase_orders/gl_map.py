"""The GL account -> cost code table kept by accountants, and the X3 -> Procore project rule.

Pure functions: text in, DataFrames and problem lists out. The CSV is read
leniently where spreadsheets are sloppy (BOM, stray spaces, blank trailing
rows, `;` separators from European Excel) and strictly where mistakes cost
money (duplicate GL accounts, missing cost codes), with every problem naming
its line.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

import pandas as pd

from mlc_dagster.resources.sage_x3_client import MappingKey

REQUIRED_COLUMNS = ("gl_account", "cost_code")
OPTIONAL_COLUMNS = ("cost_type", "project")
KEY_COLUMNS = ("gl_account", "dimension")


class MappingError(ValueError):
    """The mapping file cannot be used at all (e.g. no header)."""


@dataclass
class GlMapping:
    """A parsed mapping table plus the problems found in it (line numbers are 1-based)."""

    # columns: gl_account, cost_code, cost_type, project, line. `gl_account` holds the
    # mapping key: the GL account, or the dimension value when `key` is a dimension.
    table: pd.DataFrame
    problems: list[str] = field(default_factory=list)  # errors: block every write
    fingerprint: str = ""
    warnings: list[str] = field(default_factory=list)  # worth reading, harmless
    key: MappingKey = field(default_factory=MappingKey)

    def with_cost_codes(self, lines: pd.DataFrame, project: str = "project") -> pd.DataFrame:
        """`lines` (a `mapping_key` column, the X3 project in column `project`) with the
        `cost_code` and `cost_type` they map to, NaN where the key is unmapped.

        The project-override rule: a row for the line's project wins over the general row
        (blank project); a key with only other projects' rows is unmapped."""
        table = self.table.rename(columns={"gl_account": "mapping_key"})
        general = table[table["project"] == ""][["mapping_key", "cost_code", "cost_type"]]
        override = table[table["project"] != ""][["mapping_key", "project", "cost_code",
                                                  "cost_type"]]
        lines = lines.merge(general, on="mapping_key", how="left")
        if len(override):
            lines = lines.merge(override.rename(columns={"project": project}),
                                on=["mapping_key", project], how="left",
                                suffixes=("", "_override"))
            has_override = lines["cost_code_override"].notna()
            lines.loc[has_override, "cost_code"] = lines.loc[has_override, "cost_code_override"]
            lines.loc[has_override, "cost_type"] = lines.loc[has_override, "cost_type_override"]
            lines = lines.drop(columns=["cost_code_override", "cost_type_override"])
        return lines


def parse_gl_mapping(text: str, source: str = "mapping CSV", key: MappingKey | None = None
                     ) -> GlMapping:
    """Parse `gl_account,cost_code[,cost_type][,project]` text into a GlMapping.

    `key` is MLC_MAPPING_KEY (default gl_account). Keyed by `dimension:<TYPE>`, the key column
    is `dimension` instead of `gl_account` (same other columns); a file keyed the other way is
    refused with the fix.
    """
    import hashlib

    key = key or MappingKey()
    column = key.csv_column
    expected = f"'{column},cost_code,cost_type'"
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise MappingError(f"{source} is empty: expected a header {expected}")
    first_line = text.splitlines()[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader)]
    other = next((c for c in KEY_COLUMNS if c != column and c in header), None)
    if other and column not in header:
        setting = "gl_account" if other == "gl_account" else "dimension:<TYPE>"
        raise MappingError(
            f"{source} line 1: the file is keyed by {other!r} but MLC_MAPPING_KEY maps lines "
            f"by {key.label}; set MLC_MAPPING_KEY={setting} or use a {column!r} column")
    missing = [c for c in (column, "cost_code") if c not in header]
    if missing:
        raise MappingError(
            f"{source} line 1: header {header} lacks {missing}; "
            f"expected {expected} (cost_type and project optional)"
        )
    if column != "gl_account":
        header = ["gl_account" if h == column else h for h in header]
    unknown = [h for h in header if h and h not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    warnings = [f"{source} line 1: ignoring unknown column(s) {unknown}"] if unknown else []
    problems: list[str] = []

    rows, seen = [], {}
    for line_no, raw in enumerate(reader, start=2):
        if not any(cell.strip() for cell in raw):
            continue  # blank lines, Excel's trailing ',,,' rows
        values = {name: (raw[i].strip() if i < len(raw) else "") for i, name in enumerate(header)}
        gl = _clean_code(values.get("gl_account", ""))
        code = values.get("cost_code", "").strip()
        cost_type = values.get("cost_type", "").strip()
        project = values.get("project", "").strip()
        if not gl:
            problems.append(f"{source} line {line_no}: {column} is blank")
            continue
        if not code:
            problems.append(f"{source} line {line_no}: cost_code is blank for {key.label} {gl}")
            continue
        row_key = (gl, project)
        if row_key in seen:
            where = f" for project {project}" if project else ""
            problems.append(
                f"{source} line {line_no}: duplicate {key.label} {gl}{where} "
                f"(first mapped on line {seen[row_key]})"
            )
            continue
        seen[row_key] = line_no
        rows.append({"gl_account": gl, "cost_code": code, "cost_type": cost_type,
                     "project": project, "line": line_no})
    table = pd.DataFrame(rows, columns=["gl_account", "cost_code", "cost_type", "project", "line"])
    canonical = table.drop(columns="line").sort_values(["project", "gl_account"]).to_csv(index=False)
    if key.kind != "gl_account":  # GL-keyed fingerprints stay what they always were
        canonical = f"{key.kind}:{key.dimension_type}\n{canonical}"
    return GlMapping(table=table, problems=problems,
                     fingerprint=hashlib.sha256(canonical.encode()).hexdigest()[:16],
                     warnings=warnings, key=key)


def _clean_code(value: str) -> str:
    """Excel turns 601100 into '601100.0' or '="601100"'; undo both."""
    value = value.strip().strip('="').strip('"')
    if value.endswith(".0") and value[:-2].isdigit():
        value = value[:-2]
    return value


def validate_against_procore(mapping: GlMapping, cost_codes: pd.DataFrame,
                             line_item_types: pd.DataFrame) -> list[str]:
    """Mapping rows naming cost codes / cost types that don't exist in Procore."""
    known_codes = set(cost_codes["code"]) if len(cost_codes) else set()
    known_types = set(line_item_types["code"]) if len(line_item_types) else set()
    errors = []
    for row in mapping.table.itertuples():
        if row.cost_code not in known_codes:
            errors.append(f"line {row.line}: {mapping.key.label} {row.gl_account} maps to cost "
                          f"code {row.cost_code!r}, which does not exist in Procore")
        if row.cost_type and row.cost_type not in known_types:
            errors.append(f"line {row.line}: {mapping.key.label} {row.gl_account} maps to cost type "
                          f"{row.cost_type!r}, which does not exist in Procore")
    return errors


def parse_project_map(text: str, source: str = "project map CSV") -> dict[str, str]:
    """Explicit `x3_project,procore_project` table (Procore project id or number)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    if fields[:2] != ["x3_project", "procore_project"]:
        raise MappingError(f"{source} line 1: expected header 'x3_project,procore_project'")
    result = {}
    for line_no, row in enumerate(reader, start=2):
        values = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        x3, procore = values.get("x3_project", ""), values.get("procore_project", "")
        if not x3 and not procore:
            continue
        if not (x3 and procore):
            raise MappingError(f"{source} line {line_no}: both x3_project and procore_project "
                               "are needed")
        if x3 in result:
            raise MappingError(f"{source} line {line_no}: X3 project {x3} is mapped twice")
        result[x3] = procore
    return result


def match_projects(x3_codes: pd.Series, projects: pd.DataFrame, rule: str,
                   explicit: dict[str, str] | None = None) -> pd.Series:
    """Procore project id for each X3 project code (NaN where unknown).

    rule: `project_number` (X3 code == Procore project number), `origin_id`
    (X3 code == Procore project origin_id) or `table` (explicit map to an id or number).
    """
    if rule == "project_number":
        lookup = dict(zip(projects["project_number"].astype(str), projects["id"], strict=False))
    elif rule == "origin_id":
        lookup = dict(zip(projects["origin_id"].astype(str), projects["id"], strict=False))
    elif rule == "table":
        by_number = dict(zip(projects["project_number"].astype(str), projects["id"], strict=False))
        by_id = {str(i): i for i in projects["id"]}
        lookup = {x3: by_id.get(target, by_number.get(target)) for x3, target in (explicit or {}).items()}
    else:
        raise ValueError(f"unknown project match rule {rule!r} (project_number, origin_id, table)")
    return x3_codes.map(lookup)
