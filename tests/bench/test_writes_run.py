"""`make bench`'s write path runs end to end: every scenario, one after another, on one fleet.

Not a timed test: it checks that the benchmark completes and measures something in
each figure, not how fast. The scenarios share the fleet's agents, so one that
leaves an agent holding a task must not break the next (a claim loop stopped
between claim and complete once failed the whole run). Every product figure is
compared with the bare strawberry floor measured right before and right after it,
so the ratio follows the machine's speed rather than the speed at the start.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

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

    # Each figure's floor is the mean of the windows on either side of it, and its
    # ratio is to that floor, not to the one measured at the start.
    spread = figures["strawberry_floor"]
    windows = spread["windows"]
    assert spread["min"] == min(windows) > 0 and spread["max"] == max(windows)
    assert windows[0] == figures["floors"]["strawberry"]["per_second"]
    labelled = {"bare strawberry, one-line mutation": figures["floors"]["strawberry_mutation"]}
    labelled |= {f"sqlite: {name}": fig for name, fig in sqlite.items()}
    lines = run.stdout.splitlines()
    for label, fig in labelled.items():
        floor = fig["strawberry_floor"]
        assert floor["before"] in windows and floor["after"] in windows, label
        assert floor["per_second"] == pytest.approx((floor["before"] + floor["after"]) / 2)
        assert fig["x_strawberry"] == pytest.approx(fig["per_second"] / floor["per_second"])
        assert (
            f"= {fig['x_strawberry']:.2f}x strawberry {floor['per_second']:,.0f}/s "
            f"({floor['before']:,.0f} before, {floor['after']:,.0f} after)"
        ) in next(line for line in lines if line.startswith(f"  {label} ")), label
    # Scenarios back to back share the floor window between them: the "after" of
    # one is the "before" of the next, each measured once.
    in_sequence = [sqlite[name]["strawberry_floor"] for name in SCENARIOS]
    for earlier, later in itertools.pairwise(in_sequence):
        assert later["before"] == earlier["after"]
    # Floor windows: the first, after the mutation floor, then per database one before
    # the scenarios, one after each, two around the subscribers and two around raw SQL.
    assert len(windows) == 2 + 1 + len(SCENARIOS) + 2 + 2
    low, high = f"{spread['min']:,.0f}", f"{spread['max']:,.0f}"
    assert f"over the run: {len(windows)} windows of 0.5 s, {low} to {high}/s" in run.stdout
    assert (
        f"{len(windows)} such windows of 0.5 s read {low} to {high}/s"
        in (tmp_path / "writes.md").read_text()
    )
