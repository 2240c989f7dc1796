"""How suppliers and dimension values reach Sage X3: web API or import file (per object).

Defaults follow Sage's documents: standard X3 cannot be written through the web APIs for
these objects (REST updates need an object rebuilt as a class/representation, the GraphQL
finance nodes are read-only without a GESAPIOPE operation), so both default to
`import_file`. `api` is for a customer who has set up a writable class/representation or a
GraphQL API operation (REST `$create`/`$edit` or GraphQL `create`/`update`, per MLC_X3_API).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlc_dagster.common.env import dagster_home, env_float
from mlc_dagster.x3_import.templates import (
    ImportTemplate,
    dimension_template,
    supplier_template,
    supplier_update_template,
)

WRITE_MODES = ("import_file", "api")
# Creation-mandatory supplier fields the connector cannot know (AOE_BPS + category).
SUPPLIER_DEFAULT_FIELDS = ("BSGCOD", "LAN", "TSSCOD(0)", "ACCCOD", "VACBPR", "PTE", "BPAADD")


@dataclass(frozen=True)
class X3WriteSettings:
    supplier_write: str  # MLC_X3_SUPPLIER_WRITE
    dimension_write: str  # MLC_X3_DIMENSION_WRITE
    import_dir: Path  # MLC_X3_IMPORT_DIR
    supplier_template: ImportTemplate  # MLC_X3_SUPPLIER_TEMPLATE
    supplier_update_template: ImportTemplate  # MLC_X3_SUPPLIER_UPDATE_TEMPLATE
    dimension_template: ImportTemplate  # MLC_X3_DIMENSION_TEMPLATE
    # MLC_X3_NEW_SUPPLIER_DEFAULTS: X3 fields a new supplier needs that Procore does not have
    new_supplier_defaults: dict[str, str] = field(default_factory=dict)
    pending_hours: float = 24.0  # MLC_X3_IMPORT_PENDING_HOURS

    def __post_init__(self) -> None:
        for name, mode in (("MLC_X3_SUPPLIER_WRITE", self.supplier_write),
                           ("MLC_X3_DIMENSION_WRITE", self.dimension_write)):
            if mode not in WRITE_MODES:
                raise ValueError(f"{name} must be one of {', '.join(WRITE_MODES)}, not {mode!r}")
        codes = [self.supplier_template.code, self.supplier_update_template.code,
                 self.dimension_template.code]
        if len(set(codes)) < len(codes):  # one GESAOE code is one layout, and one file name
            raise ValueError("MLC_X3_SUPPLIER_TEMPLATE, MLC_X3_SUPPLIER_UPDATE_TEMPLATE and "
                             "MLC_X3_DIMENSION_TEMPLATE must be different template codes, not "
                             f"{', '.join(codes)}")
        unknown = set(self.new_supplier_defaults) - set(SUPPLIER_DEFAULT_FIELDS)
        if unknown:
            raise ValueError(f"MLC_X3_NEW_SUPPLIER_DEFAULTS: unknown field(s) "
                             f"{', '.join(sorted(unknown))}; allowed: "
                             f"{', '.join(SUPPLIER_DEFAULT_FIELDS)}")

    @property
    def missing_supplier_defaults(self) -> list[str]:
        return [f for f in SUPPLIER_DEFAULT_FIELDS if not self.new_supplier_defaults.get(f)]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> X3WriteSettings:
        return cls(
            supplier_write=_mode(env, "MLC_X3_SUPPLIER_WRITE"),
            dimension_write=_mode(env, "MLC_X3_DIMENSION_WRITE"),
            import_dir=Path(env.get("MLC_X3_IMPORT_DIR") or dagster_home(env) / "x3_import"),
            supplier_template=supplier_template(_code(env, "MLC_X3_SUPPLIER_TEMPLATE", "YMLCBPS")),
            supplier_update_template=supplier_update_template(
                _code(env, "MLC_X3_SUPPLIER_UPDATE_TEMPLATE", "YMLCBPSU")),
            dimension_template=dimension_template(
                _code(env, "MLC_X3_DIMENSION_TEMPLATE", "YMLCCCE")),
            new_supplier_defaults=parse_defaults(env.get("MLC_X3_NEW_SUPPLIER_DEFAULTS", "")),
            pending_hours=env_float("MLC_X3_IMPORT_PENDING_HOURS", 24.0, env),
        )


def parse_defaults(text: str) -> dict[str, str]:
    """`BSGCOD=SUP,LAN=ENG` -> {"BSGCOD": "SUP", "LAN": "ENG"}."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"MLC_X3_NEW_SUPPLIER_DEFAULTS: {part!r} is not FIELD=value")
        out[name.strip().upper()] = value.strip()
    return out


def _mode(env: Mapping[str, str], name: str) -> str:
    return (env.get(name) or "import_file").strip().lower()


def _code(env: Mapping[str, str], name: str, default: str) -> str:
    code = (env.get(name) or default).strip().upper()
    if not code.isalnum() or len(code) > 10:
        raise ValueError(f"{name} must be an X3 template code (letters and digits, at most "
                         f"10), not {code!r}")
    return code
