"""What the X3 staging steps of every flow share: their run config and their decorator."""

import dagster as dg


class StagingConfig(dg.Config):
    full_refresh: bool = False  # re-read every PO from X3 (also finds POs deleted in X3)


def staging_asset(name: str, group: str, check: str, noun: str):
    """The decorator of a step that stages X3 records through the ledger snapshot: kinds
    pandas + sage_x3, and the WARN check `check` that every X3 `noun` passes validation
    (quarantined records are held, and staged again by every run)."""
    return dg.asset(name=name, group_name=group, kinds={"pandas", "sage_x3"},
                    check_specs=[dg.AssetCheckSpec(
                        check, asset=name, description=f"Every X3 {noun} passes validation")])
