"""`mlc-dagster`: sandboxes, the one-command demo, the go-live preflight and preview, and the
audit trail."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ENTITY_ALIASES = {"po": "purchase_order", "purchase_order": "purchase_order",
                  "invoice": "purchase_invoice", "supplier": "supplier"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlc-dagster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sandbox = sub.add_parser("sandbox", help="run the Procore and Sage X3 sandboxes (foreground)")
    _sandbox_args(sandbox)
    sandbox.add_argument("--write-env", metavar="FILE", help="write the connector settings here")

    demo = sub.add_parser("demo", help="sandboxes + Dagster UI with the sensor on")
    _sandbox_args(demo)
    demo.add_argument("--ui-port", type=int, default=3000)
    demo.add_argument("--dagster-home", default=".dagster_home")

    sub.add_parser("ping", help="go-live preflight: both systems, the configured X3 fields and "
                              "what needs a decision before the first sync")

    sub.add_parser("preview", help="run preview_sync: what a live run would change, writing "
                                   "nothing (totals per project + a CSV for sign-off)")

    audit = sub.add_parser("audit", help="the history of one record, oldest first")
    audit.add_argument("entity", help="po | invoice | supplier | vendor | dimension")
    audit.add_argument("key", help="e.g. a PO number")
    audit.add_argument("--json", action="store_true", help="machine-readable output")

    args = parser.parse_args(argv)
    command = {"sandbox": cmd_sandbox, "demo": cmd_demo, "ping": cmd_ping, "audit": cmd_audit,
               "preview": cmd_preview}
    try:
        return command[args.command](args)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _sandbox_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scale", default="small", help="small | medium | backfill | large")
    parser.add_argument("--host", default="127.0.0.1", help="loopback only")
    parser.add_argument("--procore-port", type=int, default=8710)
    parser.add_argument("--x3-port", type=int, default=8720)
    parser.add_argument("--x3-api", default="rest", choices=["rest", "graphql"])
    parser.add_argument("--history", action=argparse.BooleanOptionalAction, default=True,
                        help="seed Procore with commitments typed in by hand before go-live, "
                             "for the connector to adopt (default: on)")


def _sandbox_server():
    """The simulators' server module, or a clear hint when the sandbox extra is missing."""
    try:
        from mlc_sandbox import server
    except ImportError as exc:
        raise SystemExit(f"the sandboxes need the 'sandbox' extra ({exc.name} is missing): "
                         "pip install 'mlc-dagster[sandbox,ui]'") from None
    return server


def cmd_sandbox(args) -> int:
    server = _sandbox_server()
    ensure_loopback, serve_forever = server.ensure_loopback, server.serve_forever

    ensure_loopback(args.host)

    def ready(handles, _env):
        print(f"Procore sandbox: {handles['procore'].url}")
        print(f"Sage X3 sandbox: {handles['sage_x3'].url}  (REST /api1/x3/erp/SEED, GraphQL /xtrem/api)")
        if args.write_env:
            print(f"Settings written to {args.write_env}; load them with: set -a; . {args.write_env}; set +a")
        print("Ctrl-C to stop.", flush=True)

    serve_forever(args.seed, args.scale, args.host, args.procore_port, args.x3_port,
                  args.write_env, args.x3_api, on_ready=ready, history=args.history)
    return 0


def cmd_demo(args) -> int:
    """Start the sandboxes, then `dagster dev` pointed at them with automation on."""
    server = _sandbox_server()
    running_sandboxes, sandbox_env = server.running_sandboxes, server.sandbox_env
    write_env_file = server.write_env_file

    home = Path(args.dagster_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    repo_config = Path("dagster.yaml")
    if repo_config.exists() and not (home / "dagster.yaml").exists():
        shutil.copy(repo_config, home / "dagster.yaml")
    with running_sandboxes(args.seed, args.scale, args.host, args.procore_port,
                           args.x3_port, history=args.history) as handles:
        env = sandbox_env(handles["procore"].url, handles["sage_x3"].url, args.x3_api)
        write_env_file(str(home / "sandbox.env"), env)
        env.update({"DAGSTER_HOME": str(home), "MLC_AUTOMATION_ON": "1",
                    "MLC_SENSOR_INTERVAL_SECONDS": os.environ.get("MLC_SENSOR_INTERVAL_SECONDS", "30")})
        print(f"Procore sandbox {handles['procore'].url} | Sage X3 sandbox {handles['sage_x3'].url}")
        print(f"Dagster UI: http://127.0.0.1:{args.ui_port}  (sensors x3_purchase_order_changes, x3_purchase_invoice_changes and procore_rate_limit_continuation are on)")
        print(f"Sandbox settings: {home / 'sandbox.env'}", flush=True)
        cmd, where = dev_command(args.ui_port)
        proc = subprocess.Popen(cmd, env={**os.environ, **env, "VIRTUAL_ENV": sys.prefix},
                                cwd=where)
        signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGINT))
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            return proc.wait()


def dev_command(ui_port: int) -> tuple[list[str], str | None]:
    """`dg dev` from the project checkout (its pyproject's [tool.dg] names the code location),
    as Dagster 1.13 recommends; from an installed wheel, which has no project directory,
    `dagster dev` on the definitions module."""
    project = Path(__file__).resolve().parent.parent
    dg_cli = Path(sys.executable).with_name("dg")
    if dg_cli.exists() and "[tool.dg]" in _read(project / "pyproject.toml"):
        return [str(dg_cli), "dev", "-h", "127.0.0.1", "-p", str(ui_port)], str(project)
    return [sys.executable, "-m", "dagster", "dev", "-m", "mlc_dagster.definitions",
            "-h", "127.0.0.1", "-p", str(ui_port)], None


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def cmd_ping(_args) -> int:
    """The go-live preflight: exit 1 on any FAIL; warnings alone exit 0."""
    from mlc_dagster.ping import exit_code, format_report, run_ping

    report = run_ping(os.environ)
    print(format_report(report))
    return exit_code(report)


def cmd_preview(_args) -> int:
    """preview_sync in this process against the configured systems; exit 1 if it failed."""
    from mlc_dagster.preflight.preview import run_preview, summary_text

    run = run_preview()
    if not run.success:
        print(f"error: the preview run {run.run_id} failed; nothing was written", file=sys.stderr)
        for message in run.errors:
            print(f"  {message}", file=sys.stderr)
        return 1
    print(summary_text(run))
    return 0


def cmd_audit(args) -> int:
    from mlc_dagster.ledger.store import Ledger

    entity = ENTITY_ALIASES.get(args.entity)
    if entity is None:
        print(f"error: unknown entity {args.entity!r} "
              f"({', '.join(sorted(ENTITY_ALIASES))})", file=sys.stderr)
        return 2
    events = Ledger().events(entity, args.key)
    if args.json:
        print(json.dumps(events, default=str, indent=2))
        return 0 if events else 1
    if not events:
        print(f"no history for {args.entity} {args.key}")
        return 1
    for event in events:
        summary = (event.get("changes") or {}).get("summary") if isinstance(
            event.get("changes"), dict) else None
        detail = "; ".join(summary) if summary else (event.get("reason") or "")
        print(f"{event['at']:%Y-%m-%d %H:%M:%S}  run {str(event['run_id'])[:8]}  "
              f"{event['action']:<10} {event['status']:<8} {detail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
