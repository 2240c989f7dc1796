"""Go-live preview: plan every flow against the live systems and write nothing (issue #14).

- `assets`: the `sync_preview` asset of the `preview_sync` job.
- `report`: pure helpers turning preview rows into totals, markdown and CSV.

MLC_WRITE_MODE=preview is enforced in three layers (common/write_mode.py): the sensors and
schedules launch nothing, every write step refuses at its top (`ensure_live`), and the API
clients the resources build refuse any write request before sending it. The CLI driver
`mlc-dagster preview` is preflight/preview.py.
"""
