"""``make soak``'s machinery: its verdict fails when it should, and a short real run passes."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.sampling import Memory
from bench.verdict import failures
from tests.support import databases

ROOT = Path(__file__).resolve().parents[2]


def _memory(points: list[tuple[float, int]]) -> Memory:
    memory = Memory("server A", pid=0)
    memory.points = points
    return memory


def test_rss_trend_is_the_fitted_growth_after_warm_up() -> None:
    # 100 MiB, climbing 20 % during warm-up (the first 10 s), then flat with noise.
    noisy = [(t, 102_400 + (t * 2_048 if t < 10 else 20_480) + (t % 3) * 300) for t in range(60)]
    flat = _memory(noisy).trend(warmup=10, end=59)
    assert abs(flat["growth_percent"]) < 1 and abs(flat["slope_mib_per_minute"]) < 0.5
    # 1 % a minute after warm-up: 10 % over ten minutes.
    leaking = _memory([(t, int(102_400 * (1 + t / 6_000))) for t in range(0, 601, 5)])
    trend = leaking.trend(warmup=120, end=600)
    assert trend["growth_percent"] == pytest.approx(100 * 480 / (6_000 + 120), rel=0.01)
    assert trend["slope_mib_per_minute"] == pytest.approx(1.0, rel=0.01)


def _passing() -> dict[str, Any]:
    return {
        "subscribers": {
            "asked": 4,
            "connected": 4,
            "judged": 4,
            "with_a_fault": 0,
            "lost": 0,
            "duplicated": 0,
            "out_of_order": 0,
            "errors": [],
        },
        "events": {"written": 12},
        "writes": {"failed": 0, "first_failure": None},
        "memory": {"server A": {"growth_percent": 1.0}, "server B": {"growth_percent": -0.5}},
        "servers_exited_early": [],
    }


@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        (("subscribers", "with_a_fault"), 1, "1 subscribers lost"),
        (("subscribers", "connected"), 3, "3 of 4 sockets connected"),
        (("subscribers", "judged"), 3, "4 of 4 sockets connected, 3 reported"),
        (("subscribers", "errors"), ["closed: 1011"], "socket errors, e.g. closed: 1011"),
        (("writes", "failed"), 2, "2 writes failed"),
        (("events", "written"), 0, "no event was written"),
        (("memory", "server B"), {"growth_percent": 5.1}, "server B: RSS grew 5.1 %"),
        (("memory", "server A"), {"growth_percent": None}, "server A: too few RSS samples"),
    ],
)
def test_the_soak_fails_on_each_fault(path: tuple[str, str], value: object, says: str) -> None:
    assert failures(_passing(), max_rss_growth=5) == []
    result = copy.deepcopy(_passing())
    result[path[0]][path[1]] = value
    found = failures(result, max_rss_growth=5)
    assert len(found) == 1 and found[0].startswith(says), found


def test_a_server_that_exits_during_the_soak_fails_it() -> None:
    result = _passing() | {"servers_exited_early": ["mark1 serve (1 worker), …"]}
    assert failures(result, max_rss_growth=5) == [
        "servers exited during the soak: ['mark1 serve (1 worker), …']"
    ]


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(300)
def test_a_short_soak_on_two_processes_passes_and_reports_its_figures(tmp_path: Path) -> None:
    databases.require("PostgreSQL", databases.postgres_reachable())
    databases.require("Redis", databases.redis_reachable())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MARK1_", "SOAK_"))}
    env |= {
        "SOAK_SECONDS": "3",
        "SOAK_SUBSCRIBERS": "4",
        "SOAK_RATE": "8",
        "SOAK_PROGRESS": "1",
        "SOAK_OUTPUT": str(tmp_path),
        "SOAK_REDIS": databases.REDIS_URL,
        "MARK1_BENCH_PG": databases.PG_ADMIN_DSN,
    }
    run = subprocess.run(
        [sys.executable, "-m", "bench.soak"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "soak passed" in run.stdout and "written" in run.stdout  # a progress line
    result = json.loads((tmp_path / "soak.json").read_text())
    subscribers = result["subscribers"]
    assert subscribers["judged"] == 4 and subscribers["with_a_fault"] == 0
    assert result["failures"] == []
    written = result["events"]["written"]
    assert written >= 12  # 8/s asked for 3 s, on a loaded machine
    # Every socket got every event written (and the priming events before).
    assert result["delivered"] >= 4 * written
    assert result["latency_ms"]["p99"] > 0
    assert set(result["memory"]) == {"server A", "server B"}
    assert all(m["samples"] >= 2 for m in result["memory"].values())
    assert "load: writers and orchestration" in result["cpu_share_of_a_core"]
