"""`make bench`'s write path runs end to end: every scenario, one after another, on one fleet.

Not a timed test: it checks that the benchmark completes and measures something in
each figure, not how fast. The scenarios share the fleet's agents, so one that
leaves an agent holding a task must not break the next (a claim loop stopped
between claim and complete once failed the whole run).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = (
    "Mark-1 `{ __typename }`, agent token",
    "reportProgress",
    "heartbeat",
    "createTask",
    "claimTask + completeTask",
)


def test_the_write_benchmark_runs_every_scenario_in_sequence(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "bench.writes",
        "--seconds", "0.5",
        "--agents", "4",
        "--databases", "sqlite",
        "--subscribers", "3",
        "--results", str(tmp_path),
    ]  # fmt: skip
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    figures = json.loads((tmp_path / "writes.json").read_text())
    sqlite = figures["products"]["sqlite"]
    for name in (*SCENARIOS, "reportProgress, 3 subscribers attached"):
        assert sqlite[name]["requests"] > 0, name
        assert sqlite[name]["failures"] == 0, name
    assert sqlite["raw SQL of one reportProgress"]["requests"] > 0
    assert figures["floors"]["strawberry"]["requests"] > 0
