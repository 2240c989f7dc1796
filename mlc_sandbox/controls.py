"""Sandbox-only controls shared by both simulators: call log, fault injection, config.

These live under `/_sandbox/` and are never part of either real API. They are
implemented as a pure ASGI middleware so that faults and latency apply before
the simulated API sees the request, exactly like a flaky network or a busy
upstream would.

- `GET /_sandbox/calls` -> `{"calls": [...]}`; `DELETE` clears it.
- `POST /_sandbox/faults` with `{"route": "PATCH /rest/v1.0/purchase_order_contracts/sync",
  "status": 429, "count": 3, "retry_after": 1, "delay": 0, "drop": false}`; `route` is
  `"[METHOD ]path-regex"` matched with `re.search`; `count` = how many matching calls fail
  (`-1` = until cleared). `DELETE` clears all faults; `GET` lists them.
- `GET/POST /_sandbox/config` -> token lifetime, hourly and spike limits and their window
  lengths (seconds, floats: a benchmark compresses time), latency (ms), and
  `approved_lock` (Procore only): the company setting that locks Approved / Complete commitments,
  `x3_line_change_moves_header` (Sage X3 only, default false).
- A simulated API may note facts about a call in `scope[CALL_NOTE]` (a dict); they are added to
  that call's log entry (the Procore sandbox records `dropped`: body attributes it ignored).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl

CONTROL_PREFIX = "/_sandbox/"
CALL_NOTE = "mlc.sandbox.call_note"


@dataclass
class SandboxConfig:
    """Sandbox settings, changed with `POST /_sandbox/config`.

    The rate-limit defaults (3600 an hour, 1000 per 10-second spike window) are a roomy
    sandbox setting, not Procore's: tests and the demo set their own. What the sources say:
    procore/documentation plan_your_app/rate_limiting.md shows an hourly limit of 600 and a
    spike limit of 25 per 10-second window in its header examples and warns not to assume
    "3600/hour"; before commit ca4a1eb the same page gave each company DMSA "its own limit
    (3,600 requests per hour)". No source gives 1000 per spike window. A real client must
    read X-Rate-Limit-Limit / -Remaining / -Reset on every response.
    """

    token_lifetime_seconds: int = 5400
    hourly_limit: int = 3600
    spike_limit: int = 1000
    # Window lengths are floats so that a benchmark can compress time for both limits
    # together (600 per 3600/C s and 25 per 10/C s); Procore's own are 3600 s and 10 s.
    spike_window_seconds: float = 10.0
    hourly_window_seconds: float = 3600.0
    latency_ms: int = 0
    # Procore: "Commitment Settings" company option (procore/documentation
    # tutorials/tutorial_financial_tools.md, "Record locking / Commitments"); on by default.
    approved_lock: bool = True
    # Sage X3: whether a change to a PO line alone also moves the header UPDDATTIM. Not
    # documented either way, so off by default (the stricter reading; sage_x3/state.py).
    x3_line_change_moves_header: bool = False

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if not hasattr(self, key):
                raise ValueError(f"unknown config key {key!r}")
            current = getattr(self, key)
            setattr(self, key, _flag(key, value) if isinstance(current, bool)
                    else type(current)(value))


def _flag(key: str, value: Any) -> bool:
    """A JSON boolean (or "true"/"false"); bool("false") would silently be True."""
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ValueError(f"config key {key!r} must be true or false")


@dataclass
class Fault:
    route: str
    status: int | None = None
    count: int = 1
    retry_after: float | None = None
    delay: float = 0.0
    drop: bool = False
    body: Any = None
    hits: int = 0
    _pattern: re.Pattern | None = field(default=None, repr=False, compare=False)

    def matches(self, method: str, path: str) -> bool:
        if self._pattern is None:
            want_method, _, regex = (self.route.partition(" ") if " " in self.route
                                     else ("", "", self.route))
            self._want_method = want_method.upper()
            self._pattern = re.compile(regex)
        if self._want_method and self._want_method != method:
            return False
        return bool(self._pattern.search(path))

    def public(self) -> dict:
        data = asdict(self)
        data.pop("_pattern", None)
        return data


class SandboxControls:
    """State behind `/_sandbox/*`: thread-safe, since tests read it from other threads."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.calls: list[dict] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()

    def record(self, call: dict) -> None:
        with self._lock:
            self.calls.append(call)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.count != 0 and fault.matches(method, path):
                    if fault.count > 0:
                        fault.count -= 1
                    fault.hits += 1
                    return fault
        return None

    def add_fault(self, spec: dict) -> Fault:
        allowed = {"route", "status", "count", "retry_after", "delay", "drop", "body"}
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        if "route" not in spec:
            raise ValueError("fault needs a 'route' (\"[METHOD ]path-regex\")")
        fault = Fault(**spec)
        fault.matches("GET", "/")  # compile now so a bad regex is a 400, not a later 500
        with self._lock:
            self.faults.append(fault)
        return fault


class ControlsMiddleware:
    """ASGI middleware: serves /_sandbox/*, applies latency and faults, logs every call."""

    def __init__(self, app, controls: SandboxControls, name: str) -> None:
        self.app = app
        self.controls = controls
        self.name = name

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path.startswith(CONTROL_PREFIX):
            return await self._control(scope, receive, send)

        method = scope["method"]
        started = time.perf_counter()
        status_holder = {"status": None}
        query = scope.get("query_string", b"").decode("latin-1")

        async def logging_send(message):
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        call_note: dict = {}
        scope[CALL_NOTE] = call_note

        def log(status, note=None):
            entry = {
                "system": self.name, "method": method, "path": path, "query": query,
                "status": status, "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "at": time.time(), **call_note,
            }
            if note:
                entry["fault"] = note
            self.controls.record(entry)

        latency = self.controls.config.latency_ms
        if latency:
            await asyncio.sleep(latency / 1000)
        fault = self.controls.take_fault(method, path)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.drop:
                log(None, "dropped")
                # Start a response promising a body, then abort: the client sees the peer
                # close the connection mid-response, as with a dropped connection.
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", b"1000")]})
                raise ConnectionAbortedError("sandbox fault: dropped connection")
            if fault.status:
                headers = [(b"content-type", b"application/json")]
                if fault.retry_after is not None:
                    headers.append((b"retry-after", str(int(fault.retry_after)).encode()))
                body = (fault.body if fault.body is not None
                        else _fault_body(self.name, fault.status))
                await send({"type": "http.response.start", "status": fault.status,
                            "headers": headers})
                await send({"type": "http.response.body", "body": json.dumps(body).encode()})
                log(fault.status, f"injected {fault.status}")
                return
        try:
            await self.app(scope, receive, logging_send)
        finally:
            log(status_holder["status"])

    async def _control(self, scope, receive, send):
        method, path = scope["method"], scope["path"]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            payload = json.loads(body) if body else {}
        except json.JSONDecodeError:
            return await _json(send, 400, {"error": "body must be JSON"})
        c = self.controls
        try:
            if path == "/_sandbox/calls":
                if method == "GET":
                    params = dict(parse_qsl(scope.get("query_string", b"").decode()))
                    since = float(params.get("since", 0))
                    with c._lock:
                        calls = [x for x in c.calls if x["at"] >= since]
                    return await _json(send, 200, {"calls": calls})
                if method == "DELETE":
                    return await _cleared(send, c, c.calls)
            elif path == "/_sandbox/faults":
                if method == "GET":
                    return await _json(send, 200, {"faults": [f.public() for f in c.faults]})
                if method == "POST":
                    specs = payload if isinstance(payload, list) else [payload]
                    added = [c.add_fault(spec).public() for spec in specs]
                    return await _json(send, 200, {"faults": added})
                if method == "DELETE":
                    return await _cleared(send, c, c.faults)
            elif path == "/_sandbox/config":
                if method == "POST":
                    c.config.update(payload)
                return await _json(send, 200, asdict(c.config))
            elif path == "/_sandbox/health":
                return await _json(send, 200, {"ok": True, "system": self.name})
        except (ValueError, TypeError, re.error) as exc:
            return await _json(send, 400, {"error": str(exc)})
        return await _json(send, 404, {"error": f"no sandbox control {method} {path}"})


def _fault_body(system: str, status: int) -> dict:
    if system == "procore" and status == 429:
        return {"message": "You have surpassed the max number of requests for an hour. "
                           "Please wait until your limit resets."}
    if system == "sage_x3":
        return {"$diagnoses": [{"$severity": "error", "$message": f"Injected error {status}"}]}
    return {"error": f"injected {status}"}


async def _cleared(send, controls: SandboxControls, items: list) -> None:
    """Empty one of the controls' lists (the call log or the faults) and say so."""
    with controls._lock:
        items.clear()
    await _json(send, 200, {"cleared": True})


async def _json(send, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
