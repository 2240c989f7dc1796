"""`dagster dev` (webserver + daemon) as a child process of the benchmark, and the `dagster`
CLI calls that prepare its sensors. Stopping it ends its whole process group (webserver,
daemon, code server, run workers) and only that group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.config import REPO


def dagster_cli(args: list[str], env: dict, log) -> None:
    subprocess.run([sys.executable, "-m", "dagster", *args, "-w", "workspace.yaml"], cwd=REPO,
                   env=env, stdout=log, stderr=subprocess.STDOUT, check=True, timeout=300)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_dagster_dev(env: dict, log):
    """`dagster dev` on a free loopback port, in its own session; stopped on the way out."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(free_port())],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop_process_group(proc)


def wait_for_daemon(instance, proc, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("dagster dev exited before the daemon started")
        beats = instance.get_daemon_heartbeats()
        if "SENSOR" in beats and "QUEUED_RUN_COORDINATOR" in beats:
            return
        time.sleep(1.0)
    raise RuntimeError(f"the Dagster daemon did not start within {timeout:.0f} s")


def wait_for_runs(instance, timeout: float) -> None:
    """Until no run is queued, starting or started (or `timeout` passes)."""
    from dagster import DagsterRunStatus, RunsFilter

    busy = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
            DagsterRunStatus.STARTED]
    deadline = time.time() + timeout
    while time.time() < deadline and instance.get_runs(filters=RunsFilter(statuses=busy)):
        time.sleep(1.0)


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGINT to `dagster dev` (it stops its webserver, daemon and runs), then escalate on
    the process group this benchmark created, and only that one."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    # Its webserver, daemon, code server and run workers share the group; none may outlive it.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_alive(proc.pid):
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.time() + 10
        while time.time() < deadline and _group_alive(proc.pid):
            time.sleep(0.2)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies still count for killpg(0); reap ours and ignore others' (already exited).
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[2]) == pgid and fields[0] != "Z":
                        return True
        return False
    return True
