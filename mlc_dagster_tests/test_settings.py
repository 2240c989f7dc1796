"""Settings from the environment: defaults, parsing, and errors that name the variable.

`load_settings` builds the one Settings object; each section's bad value fails it with the
variable's name, so a typo never silently means a default.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlc_dagster.common.env import env_float, env_int
from mlc_dagster.resources.breaker import BreakerSettings
from mlc_dagster.settings import ProgressSettings, current_settings, load_settings


def test_numeric_settings_default_parse_and_name_the_variable_when_bad():
    env: dict[str, str] = {}
    assert env_int("MLC_TEST_NUMBER", 7, env) == 7
    assert env_float("MLC_TEST_NUMBER", 1.5, env) == 1.5
    env["MLC_TEST_NUMBER"] = " 42 "
    assert env_int("MLC_TEST_NUMBER", 7, env) == 42
    assert env_float("MLC_TEST_NUMBER", 1.5, env) == 42.0
    env["MLC_TEST_NUMBER"] = "2.5"
    with pytest.raises(ValueError, match=r"MLC_TEST_NUMBER must be a whole number, got '2.5'"):
        env_int("MLC_TEST_NUMBER", 7, env)
    assert env_float("MLC_TEST_NUMBER", 1.5, env) == 2.5
    env["MLC_TEST_NUMBER"] = "lots"
    with pytest.raises(ValueError, match=r"MLC_TEST_NUMBER must be a number, got 'lots'"):
        env_float("MLC_TEST_NUMBER", 1.5, env)


def test_an_empty_environment_gives_the_documented_defaults():
    settings = load_settings({})
    assert settings.home == Path(".dagster_home") and settings.write_mode == "live"
    assert not settings.preview and not settings.allow_insecure_loopback
    automation = settings.automation
    assert (automation.on, automation.sensor_interval_seconds, automation.sync_cron,
            automation.reconcile_cron) == (False, 30, "*/15 * * * *", "0 2 * * *")
    procore = settings.procore
    assert (procore.company_id, procore.timeout_seconds, procore.max_attempts,
            procore.max_wait_seconds, procore.write_lock_wait_seconds) == (
        "default", 30.0, 6, 120.0, 600.0)
    assert procore.breaker == BreakerSettings(records=3, attempts=12)
    assert procore.progress == ProgressSettings(every_seconds=60.0, hourly_allowance=600)
    x3 = settings.x3
    assert (x3.api, x3.endpoint, x3.timeout_seconds, x3.overlap_seconds,
            x3.read_concurrency) == ("rest", "SEED", 60.0, 120, 4)
    assert x3.names.mapping_key.kind == "gl_account"
    orders = settings.purchase_orders
    assert orders.gl_mapping_path.endswith("gl_cost_code_map.csv")
    assert (orders.project_match, orders.project_map_path, orders.new_commitment_status,
            orders.inactive_status, orders.max_pos_per_run, orders.approved_policy) == (
        "project_number", "", "Draft", "Closed", 5000, "change_order")
    assert orders.adoption.enabled
    invoices = settings.invoices
    assert (invoices.create_billing_periods, invoices.max_invoices_per_run,
            invoices.invoicing_recheck_seconds) == (False, 5000, 3600)
    assert (settings.reference.cron, settings.reference.max_age_seconds) == ("0 * * * *", 1350)
    x3_writes = settings.x3_writes
    assert (x3_writes.supplier_write, x3_writes.dimension_write) == ("import_file", "import_file")
    assert x3_writes.import_dir == Path(".dagster_home") / "x3_import"


def test_values_reach_their_sections():
    settings = load_settings({
        "DAGSTER_HOME": "/srv/dagster", "MLC_WRITE_MODE": " Preview ", "MLC_AUTOMATION_ON": "yes",
        "PROCORE_COMPANY_ID": "4263", "MLC_PROCORE_BREAKER_RECORDS": "0",
        "MLC_PROGRESS_LOG_SECONDS": "0.5", "SAGE_X3_API": "graphql",
        "MLC_MAPPING_KEY": "dimension:CST", "MLC_APPROVED_POLICY": "hold",
        "MLC_ADOPT": "off", "MLC_CREATE_BILLING_PERIODS": "1", "MLC_REFERENCE_CRON": "@daily",
        "MLC_X3_DIMENSION_WRITE": "api"})
    assert settings.home == Path("/srv/dagster") and settings.preview
    assert settings.automation.on and settings.procore.company_id == "4263"
    assert settings.procore.breaker.records == 0
    assert settings.procore.progress.every_seconds == 0.5
    assert settings.x3.api == "graphql"
    assert settings.x3.names.mapping_key.dimension_type == "CST"
    assert settings.purchase_orders.approved_policy == "hold"
    assert not settings.purchase_orders.adoption.enabled
    assert settings.invoices.create_billing_periods and settings.reference.cron == "@daily"
    assert settings.x3_writes.dimension_write == "api"
    assert settings.x3_writes.import_dir == Path("/srv/dagster/x3_import")


@pytest.mark.parametrize("name, value, words", [
    ("MLC_WRITE_MODE", "dry-run", "MLC_WRITE_MODE must be preview or live"),  # write mode
    ("MLC_SENSOR_INTERVAL_SECONDS", "soon", "MLC_SENSOR_INTERVAL_SECONDS must be a whole"),
    ("MLC_PROCORE_MAX_WAIT_SECONDS", "2m", "MLC_PROCORE_MAX_WAIT_SECONDS must be a number"),
    ("MLC_PROCORE_BREAKER_ATTEMPTS", "many", "MLC_PROCORE_BREAKER_ATTEMPTS must be a whole"),
    ("MLC_PROCORE_HOURLY_LIMIT", "6e2", "MLC_PROCORE_HOURLY_LIMIT must be a whole"),
    ("SAGE_X3_API", "soap", "SAGE_X3_API must be 'rest' or 'graphql'"),  # X3
    ("MLC_X3_READ_CONCURRENCY", "0", "MLC_X3_READ_CONCURRENCY must be at least 1"),
    ("MLC_MAPPING_KEY", "cost_centre", "MLC_MAPPING_KEY must be gl_account or dimension"),
    ("MLC_PROJECT_MATCH", "fuzzy", "MLC_PROJECT_MATCH must be one of"),  # purchase orders
    ("MLC_APPROVED_POLICY", "ignore", "MLC_APPROVED_POLICY must be one of"),
    ("MLC_MAX_POS_PER_RUN", "all", "MLC_MAX_POS_PER_RUN must be a whole"),
    ("MLC_ADOPT_DATE_DAYS", "-1", "MLC_ADOPT_DATE_DAYS must not be negative"),
    ("MLC_MAX_INVOICES_PER_RUN", "1.5", "MLC_MAX_INVOICES_PER_RUN must be a whole"),  # invoices
    ("MLC_REFERENCE_MAX_AGE_SECONDS", "1h", "MLC_REFERENCE_MAX_AGE_SECONDS must be a whole"),
    ("MLC_X3_SUPPLIER_WRITE", "soap", "MLC_X3_SUPPLIER_WRITE must be one of"),  # X3 writes
    ("MLC_X3_IMPORT_PENDING_HOURS", "a day", "MLC_X3_IMPORT_PENDING_HOURS must be a number"),
])
def test_a_bad_value_in_any_section_names_its_variable(name, value, words):
    with pytest.raises(ValueError, match=words):
        load_settings({name: value})


def test_runs_read_the_environment_anew_and_the_definitions_once(monkeypatch):
    """A run sees the environment of its start (tests change it between in-process runs);
    the definitions keep what they were built with."""
    monkeypatch.setenv("MLC_MAX_POS_PER_RUN", "10")
    assert load_settings().purchase_orders.max_pos_per_run == 10
    monkeypatch.setenv("MLC_MAX_POS_PER_RUN", "20")
    assert load_settings().purchase_orders.max_pos_per_run == 20
    assert current_settings() is current_settings()
