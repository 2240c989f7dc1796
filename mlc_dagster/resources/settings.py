"""SettingsResource: the connector's settings as one run sees them.

Read from the environment when the run starts (not when the code location loaded), so every
step of a run works with the same values and the next run sees a changed environment. Steps
take the section they need from it and hand it to the pure functions they call.
"""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from mlc_dagster.settings import Settings, load_settings


class SettingsResource(dg.ConfigurableResource):
    """No configuration of its own: the values come from the environment (README)."""

    _settings: Settings | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._settings = load_settings()

    def get(self) -> Settings:
        if self._settings is None:  # outside a run (a test's dg.build_resources, a script)
            self._settings = load_settings()
        return self._settings

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self._settings = None
