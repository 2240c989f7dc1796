"""Sage X3 import files: what an X3 integrator uses where the web APIs cannot write.

Sage's documents say the REST web API updates only objects rebuilt as classes and
representations (classic objects such as suppliers, GESBPS, and dimensions, GESCCE, are
read-only there) and that the X3 GraphQL finance nodes are read-only unless an API operation
(GESAPIOPE) is set up. The documented way to load such data is an import template
(GESAOE) run by the Imports function (GIMPOBJ) or its batch task IMPORT. This package writes
those files: `templates` (pure layouts and rendering), `files` (atomic writes and the ledger
audit trail), `settings` (write mode per object), `assets` (one Dagster asset per file kind).
"""
