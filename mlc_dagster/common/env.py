"""Reading one variable of an environment (a mapping): a number, a flag, DAGSTER_HOME.

The settings sections (mlc_dagster/settings.py and each flow's settings.py) parse the
environment `load_settings` hands them with these; a bad value raises a ValueError that names
the variable, never a bare `invalid literal for int()`. No import from the rest of the
package, so every module can use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

Number = TypeVar("Number", int, float)
TRUE_WORDS = {"1", "true", "yes", "on"}


def env_int(name: str, default: int, env: Mapping[str, str]) -> int:
    return _env_number(env, name, default, int, "a whole number")


def env_float(name: str, default: float, env: Mapping[str, str]) -> float:
    return _env_number(env, name, default, float, "a number")


def _env_number(env: Mapping[str, str], name: str, default: Number,
                parse: Callable[[str], Number], wording: str) -> Number:
    """An optional numeric setting; unset or blank is `default`."""
    value = (env.get(name) or "").strip()
    if not value:
        return default
    try:
        return parse(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be {wording}, got {value!r}") from exc


def env_flag(name: str, env: Mapping[str, str]) -> bool:
    """1 / true / yes / on (any case) is on; anything else, or unset, is off."""
    return (env.get(name) or "").strip().lower() in TRUE_WORDS


def dagster_home(env: Mapping[str, str] = os.environ) -> Path:
    """DAGSTER_HOME, else ./.dagster_home: where the default ledger, import files and previews
    live (the process environment by default: the ledger's default URL reads it there)."""
    return Path(env.get("DAGSTER_HOME") or ".dagster_home")
