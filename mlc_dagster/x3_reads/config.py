"""Run config shared by the X3 staging steps of every flow."""

import dagster as dg


class StagingConfig(dg.Config):
    full_refresh: bool = False  # re-read every PO from X3 (also finds POs deleted in X3)
