"""X3 suppliers <-> Procore vendors, both ways: matching and ownership in plan.py (pure),
Procore writes in writer.py, X3 supplier import records in exports.py."""
