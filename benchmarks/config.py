"""What one benchmark run is asked to do: the seed's shape per scenario, latencies, limits.

The command line (benchmarks/run.py) builds a `BenchConfig`; a group run in a child process
gets it back from JSON (`config_from_json`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
# The command line itself: groups and the staging measurement run it again in a child process.
RUN_SCRIPT = REPO / "benchmarks" / "run.py"
SCALES = {  # name: (projects, POs per project, lines per PO); mirrors mlc_sandbox/seed.py
    "small": (20, 15, None), "medium": (20, 100, None), "backfill": (20, 250, 10),
    "large": (20, 1000, 20),
}


@dataclass(frozen=True)
class BenchConfig:
    scale: str = "backfill"
    projects: int | None = None
    pos_per_project: int | None = None
    lines_per_po: int | None = None
    seed: int = 42
    latency_ms: int = 50
    x3_latency_ms: int | None = None  # None: same as latency_ms
    rate_compression: float = 60.0  # 0 = skip the rate-limited backfill
    delta_fractions: tuple[float, ...] = (0.002, 0.01, 0.02)
    staging_scale: str = "large"
    staging_projects: int | None = None
    staging_pos_per_project: int | None = None
    staging_lines_per_po: int | None = None
    staging_subprocess: bool = True
    staging_profile_fraction: float = 0.1  # profile per-row calls on this share of POs
    baseline_projects: int = 0  # 0 = every project; N = first N projects, scaled up
    latency_scale: str = "backfill"
    latency_pos: int = 20
    latency_window_s: float = 300.0
    latency_grace_s: float = 90.0
    sensor_interval_s: int = 10
    latency_poll_s: float = 0.5  # how often the API watcher asks Procore (its resolution)
    real_limit_compression: float = 60.0
    real_limit_latency_ms: int | None = None  # None = --latency-ms compressed too (/ C)
    real_limit_timeout_s: float = 0.0  # 0 = 3 x the rate floor + 15 min
    x3_load_scale: str = "small"
    x3_load_changes: tuple[int, ...] = (0, 20, 220)  # 220 > one list page of 200
    x3_load_apis: tuple[str, ...] = ("rest", "graphql")

    @property
    def x3_latency(self) -> int:
        return self.latency_ms if self.x3_latency_ms is None else self.x3_latency_ms

    def scale_of(self, which: str = "sync") -> str:
        """The scale name a scenario's seed is built at (`--scale` for the sync group)."""
        return {"staging": self.staging_scale, "latency": self.latency_scale,
                "x3_load": self.x3_load_scale}.get(which, self.scale)

    def shape(self, which: str = "sync") -> tuple[int, int, int | None]:
        """(projects, POs per project, lines per PO): the scale's, unless given. The staging
        scenario has its own overrides; the others share --projects and the like."""
        base = SCALES[self.scale_of(which)]
        if which == "staging":
            return (self.staging_projects or base[0], self.staging_pos_per_project or base[1],
                    self.staging_lines_per_po or base[2])
        return (self.projects or base[0], self.pos_per_project or base[1],
                self.lines_per_po or base[2])


def build_seed_for(cfg: BenchConfig, which: str = "sync"):
    """The sandboxes' seed for a scenario, at its scale and shape."""
    from mlc_sandbox.seed import build_seed

    projects, pos, lines = cfg.shape(which)
    return build_seed(cfg.seed, cfg.scale_of(which), projects=projects, pos_per_project=pos,
                      lines_per_po=lines)


def config_from_json(text: str) -> BenchConfig:
    """A BenchConfig from `asdict` JSON (tuples come back as lists)."""
    data = json.loads(text)
    for key in ("delta_fractions", "x3_load_changes", "x3_load_apis"):
        if key in data:
            data[key] = tuple(data[key])
    return BenchConfig(**data)
