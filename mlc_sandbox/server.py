"""Run the Procore and Sage X3 sandboxes on loopback, in the foreground or in threads.

The sandboxes refuse any host that is not a loopback address: they hold demo
credentials and must never be reachable from another machine.
"""

from __future__ import annotations

import ipaddress
import shlex
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from mlc_sandbox.controls import SandboxConfig, SandboxControls
from mlc_sandbox.seed import COMPANY_ID, SANDBOX_CREDENTIALS, SeedData, build_seed


def ensure_loopback(host: str) -> str:
    """Return host if it is a loopback address; raise otherwise."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as exc:
        raise ValueError(f"sandbox host {host!r} does not resolve: {exc}") from exc
    for address in addresses:
        if not ipaddress.ip_address(address.split("%")[0]).is_loopback:
            raise ValueError(
                f"sandbox host {host!r} resolves to {address}, which is not a loopback address; "
                "the sandboxes only bind to 127.0.0.1 / ::1"
            )
    return host


def check_port_free(host: str, port: int) -> None:
    """Fail early, with a hint, when something listens on the port.

    SO_REUSEADDR as uvicorn binds: connections of a sandbox stopped a moment ago linger in
    TIME_WAIT for about a minute and must not count as "in use".
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise RuntimeError(
                f"cannot start a sandbox on {host}:{port}: {exc.strerror}; is another sandbox "
                "or demo still running? Stop it or pick other ports (--procore-port/--x3-port)"
            ) from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class SandboxHandle:
    """A running sandbox: its base URL and its controls (for in-process tests)."""

    name: str
    url: str
    controls: SandboxControls
    state: object
    server: uvicorn.Server
    thread: threading.Thread | None = None


def build_apps(seed_data: SeedData, procore_config: SandboxConfig | None = None,
               x3_config: SandboxConfig | None = None):
    # Imported here so the seed and controls modules stay importable on their own.
    from mlc_sandbox.procore import app as procore_app
    from mlc_sandbox.sage_x3 import app as sage_x3_app

    procore_controls = SandboxControls(procore_config)
    x3_controls = SandboxControls(x3_config)
    procore = procore_app.build_app(seed_data, procore_controls)
    x3 = sage_x3_app.build_app(seed_data, x3_controls)
    return (procore, procore_controls), (x3, x3_controls)


def _server(app, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(app, host=ensure_loopback(host), port=port, log_level="warning",
                            access_log=False, lifespan="off", timeout_graceful_shutdown=1)
    return uvicorn.Server(config)


@contextmanager
def running_sandboxes(
    seed: int = 42,
    scale: str = "small",
    host: str = "127.0.0.1",
    procore_port: int = 0,
    x3_port: int = 0,
    seed_data: SeedData | None = None,
    history: bool = False,
) -> Iterator[dict[str, SandboxHandle]]:
    """Start both sandboxes in background threads; stop them on exit. `history` seeds the
    hand-entered Procore history (ignored when `seed_data` is given: it is already built)."""
    ensure_loopback(host)  # before any socket is bound
    seed_data = seed_data or build_seed(seed, scale, history=history)
    handles: dict[str, SandboxHandle] = {}
    (procore, procore_controls), (x3, x3_controls) = build_apps(seed_data)
    for name, app, controls, port in (
        ("procore", procore, procore_controls, procore_port),
        ("sage_x3", x3, x3_controls, x3_port),
    ):
        if port:
            check_port_free(host, port)
        else:
            port = free_port(host)
        server = _server(app, host, port)
        thread = threading.Thread(target=server.run, name=f"sandbox-{name}", daemon=True)
        thread.start()
        handles[name] = SandboxHandle(name, f"http://{host}:{port}", controls,
                                      getattr(app, "state_obj", None), server, thread)
    try:
        for handle in handles.values():
            deadline = time.monotonic() + 10
            while not handle.server.started:
                if time.monotonic() > deadline or not handle.thread.is_alive():
                    raise RuntimeError(f"sandbox {handle.name} did not start")
                time.sleep(0.02)
        yield handles
    finally:
        for handle in handles.values():
            handle.server.should_exit = True
        for handle in handles.values():
            handle.thread.join(timeout=5)


def sandbox_env(procore_url: str, x3_url: str, x3_api: str = "rest") -> dict[str, str]:
    """The environment settings that point the connector at running sandboxes."""
    c = SANDBOX_CREDENTIALS
    return {
        "PROCORE_LOGIN_URL": procore_url,
        "PROCORE_API_URL": procore_url,
        "PROCORE_CLIENT_ID": c["procore_client_id"],
        "PROCORE_CLIENT_SECRET": c["procore_client_secret"],
        "PROCORE_COMPANY_ID": str(COMPANY_ID),
        "SAGE_X3_API": x3_api,
        "SAGE_X3_URL": x3_url,
        "SAGE_X3_ENDPOINT": c["x3_endpoint"],
        "SAGE_X3_USER": c["x3_user"],
        "SAGE_X3_PASSWORD": c["x3_password"],
        "SAGE_X3_JWT_CLIENT_ID": c["x3_jwt_client_id"],
        "SAGE_X3_JWT_SECRET": c["x3_jwt_secret"],
        "SAGE_X3_JWT_USER": c["x3_jwt_user"],
        # The sandboxes speak plain HTTP on loopback; real hosts always verify TLS.
        "MLC_ALLOW_INSECURE_LOOPBACK": "1",
        # What a new X3 supplier needs that Procore has not (sandbox values; see README).
        "MLC_X3_NEW_SUPPLIER_DEFAULTS":
            "BSGCOD=SUP,LAN=ENG,TSSCOD(0)=CON,ACCCOD=STD,VACBPR=NOR,PTE=30NET,BPAADD=MAIN",
    }


def write_env_file(path: str, env: dict[str, str]) -> None:
    lines = ["# Written by `mlc-dagster sandbox`: points the connector at the local sandboxes."]
    # Quoted for the shell (`source` it) and for python-dotenv alike, e.g. TSSCOD(0)=… .
    lines += [f"{key}={shlex.quote(value)}" for key, value in env.items()]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def serve_forever(seed: int, scale: str, host: str, procore_port: int, x3_port: int,
                  env_file: str | None, x3_api: str = "rest", on_ready=None,
                  history: bool = False) -> None:
    """Foreground mode for `mlc-dagster sandbox`: run until Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with running_sandboxes(seed, scale, host, procore_port, x3_port,
                           history=history) as handles:
        env = sandbox_env(handles["procore"].url, handles["sage_x3"].url, x3_api)
        if env_file:
            write_env_file(env_file, env)
        if on_ready:
            on_ready(handles, env)
        try:
            while all(h.thread.is_alive() for h in handles.values()):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


def _raise_interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt
