"""Procore REST API sandbox: an in-memory, seeded stand-in for the endpoints the connector uses.

It follows `shared/reference/procore_api.md` and the official request shapes in
`procore_api_subset.json` (same paths, methods, query parameters and body wrappers; body
attributes the template does not name are dropped, see spec.py): OAuth client
credentials with expiring tokens, the `Procore-Company-Id` header, the hourly + spike
rate-limit windows and their headers, `page`/`per_page` paging with `Total`/`Per-Page`/
`Link`, `filters[...]`, batch `/sync` endpoints with Procore's id/origin_id matching table
and per-item errors, and the business rules a sync client trips over (unknown references,
origin_id uniqueness, the Approved lock on commitments, immutable ERP-synced invoices, only
the latest draft invoice being editable, one open billing period). Every rule cites its
source next to the code; rules no source states are the stricter reading, listed in
docs/api-assumptions.md.

Where things are: app.py builds the ASGI app (`build_app`) around the endpoint runner
(auth, headers, body filter, call log notes); routing.py registers handlers (`api`) and
gives them a `Call`; listing.py pages and filters lists; writes.py holds the `/sync`
matching table and the rules every write shares; state.py the in-memory company
(`ProcoreState`) over tables.py; values.py converts request fields. One module per resource
family: oauth, projects, vendors, cost_codes, reference (UOMs, line item types, sub jobs),
billing_periods, commitments (purchase order contracts and their line items, on
sov_lines.py and totals.py), requisitions, change_orders.

Faults, latency and the call log are not here: `ControlsMiddleware` (controls.py) wraps
this app and serves `/_sandbox/*`.
"""
