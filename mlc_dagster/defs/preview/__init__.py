"""Go-live preview: plan every flow against the live systems and write nothing (issue #14).

- `mode`: MLC_WRITE_MODE=preview enforced in three layers: the sensors and schedules launch
  nothing, every write step refuses at its top (`ensure_live`), and the API clients the
  resources build refuse any write request before sending it (a forgotten step still writes
  nothing).
- `report`: pure helpers turning preview rows into totals, markdown and CSV.
- `assets`: the `sync_preview` asset of the `preview_sync` job.
"""
