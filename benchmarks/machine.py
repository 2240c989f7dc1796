"""The machine a benchmark ran on and what it cost: peak memory per phase, wall time, CPU
(ours and others'), load average, and the versions and commit under test."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import resource
import socket
import subprocess
import time
from pathlib import Path


def _proc_status_kib(name: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{name}:\s+(\d+)\s+kB", text, re.M)
    return int(match.group(1)) if match else None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0), so peaks are per phase."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak resident set size since the last reset (VmHWM), else since process start."""
    kib = _proc_status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(kib / 1024, 1)


def rss_mib() -> float:
    kib = _proc_status_kib("VmRSS")
    return round(kib / 1024, 1) if kib is not None else peak_rss_mib()


def _machine_busy_seconds() -> float | None:
    """CPU-seconds the whole machine spent busy since boot (all cores)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Meter:
    """Wall time, load average and how busy the machine was with work that isn't ours."""

    def __init__(self) -> None:
        self.load_start = [round(x, 2) for x in os.getloadavg()]
        self.busy0 = _machine_busy_seconds()
        self.own0 = _own_cpu_seconds()
        self.t0 = time.perf_counter()

    def stop(self) -> dict:
        wall = time.perf_counter() - self.t0
        busy1, own1 = _machine_busy_seconds(), _own_cpu_seconds()
        out = {"wall_s": round(wall, 2), "load_avg_start": self.load_start,
               "load_avg_end": [round(x, 2) for x in os.getloadavg()],
               "own_cpu_cores": round((own1 - self.own0) / wall, 2) if wall else None}
        if busy1 is not None and self.busy0 is not None and wall > 0:
            machine = (busy1 - self.busy0) / wall
            out["machine_busy_cores"] = round(machine, 2)
            out["others_busy_cores"] = round(max(0.0, machine - out["own_cpu_cores"]), 2)
        return out


def _git(*args: str, cwd: Path) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict:
    """The results' `machine`, `versions` and `git` sections."""
    import mlc_dagster

    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = None
    with contextlib.suppress(OSError, AttributeError):
        mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    versions = {"python": platform.python_version()}
    for dist in ("dagster", "pandas", "pandera", "numpy", "httpx", "sqlalchemy", "uvicorn"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    source = Path(mlc_dagster.__file__).resolve().parent.parent
    dirty = _git("status", "--porcelain", "--untracked-files=no", cwd=source)
    return {
        "machine": {"cpu_count": os.cpu_count(), "cpu_model": model or platform.processor(),
                    "ram_gib": round(mem_kib / 1024**2, 1) if mem_kib else None,
                    "platform": platform.platform(), "hostname": socket.gethostname()},
        "versions": versions,
        "git": {"commit": _git("rev-parse", "HEAD", cwd=source),
                "subject": _git("log", "-1", "--format=%s", cwd=source),
                "dirty_files": dirty.splitlines()[:30] if dirty else [],
                "code_under_test": str(source)},
    }
