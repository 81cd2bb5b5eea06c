"""What the soak's processes use over a run: RSS samples and their trend, CPU shares."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bench.server import cpu_seconds, rss_kib

WRITERS_AND_ORCHESTRATION = "load: writers and orchestration"


@dataclass
class Memory:
    """One process's RSS over the writing phase."""

    name: str
    pid: int
    points: list[tuple[float, int]] = field(default_factory=list)  # (seconds, KiB)
    idle_kib: int = 0  # before any subscriber connected

    def sample(self, at: float) -> None:
        if (kib := rss_kib(self.pid)) is not None:
            self.points.append((at, kib))

    def trend(self, warmup: float, end: float) -> dict[str, Any]:
        """Least-squares line through the samples after warm-up: slope and growth."""
        points = [(t, kib) for t, kib in self.points if t >= warmup] or self.points[-2:]
        if len(points) < 2:
            return {"samples": len(self.points), "growth_percent": None}
        n = len(points)
        mean_t = sum(t for t, _ in points) / n
        mean_m = sum(m for _, m in points) / n
        var = sum((t - mean_t) ** 2 for t, _ in points)
        slope = sum((t - mean_t) * (m - mean_m) for t, m in points) / var if var else 0.0
        at_warm = mean_m + slope * (points[0][0] - mean_t)
        at_end = mean_m + slope * (end - mean_t)
        return {
            "samples": len(self.points),
            "first_mib": self.points[0][1] / 1024,
            "warm_mib": at_warm / 1024,
            "end_mib": at_end / 1024,
            "max_mib": max(m for _, m in self.points) / 1024,
            "slope_mib_per_minute": slope * 60 / 1024,
            "growth_percent": (at_end - at_warm) / at_warm * 100,
        }


class Cpu:
    """CPU seconds of some processes between two readings."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
        self.start[WRITERS_AND_ORCHESTRATION] = time.process_time()
        self.started = time.monotonic()

    def shares(self) -> dict[str, float]:
        """Each process's CPU time since the start as a share of one core."""
        wall = max(time.monotonic() - self.started, 1e-9)
        now = {name: cpu_seconds(pid) or 0.0 for name, pid in self.pids.items()}
        now[WRITERS_AND_ORCHESTRATION] = time.process_time()
        return {name: (now[name] - self.start[name]) / wall for name in self.start}
