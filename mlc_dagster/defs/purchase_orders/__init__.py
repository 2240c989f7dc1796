"""Sage X3 purchase orders -> Procore commitments (the main flow).

staging.py + schemas.py validate X3 POs; gl_map.py reads the accountants' GL -> cost code
table; desired.py builds the commitments X3 says Procore should hold (pure); adoption.py
links hand-typed twins; plan.py diffs desired against the ledger (pure); writer.py sends the
difference (change_orders.py when a commitment is locked); assets.py, checks.py,
sensors.py and schedules.py are what Dagster loads.
"""
