"""Sage X3 sandbox: the Syracuse REST web API (`/api1/...`) and the GraphQL API (`/xtrem/api`).

The connector is developed and tested without any real X3, so this simulator has to be
strict where the real system is strict (auth, representations, where syntax, key-cursor
paging, JWT claims, validation) and realistic where the real system is awkward (UPDDATTIM
with one-second resolution that several changes can share, an unknown property in `where`
answering HTTP 500, a line-only change that leaves the header stamp alone, a missing record
answered with a varying 4xx/5xx status). The contract it follows is
`reference/sage_x3_api.md`; the choices the reference leaves open are fixed here and noted
in the docstrings.

Both APIs read and write one in-memory `X3State` (state.py, a deep copy of the seed),
exposed as `build_app(...).state_obj` (app.py) so tests can inspect it or age stamps
directly. classes.py is the class dictionary (columns, keys, write validation); rest.py the
REST web API; graphql_schema.py, graphql_nodes.py and graphql_api.py the GraphQL API;
where.py parses REST `where=` and GraphQL `filter:`/`orderBy:`; admin.py is what an X3
administrator does (import files, set up writable objects). Every source and assumption:
docs/api-assumptions.md.
"""
