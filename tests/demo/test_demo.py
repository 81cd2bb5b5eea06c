"""`mark1 demo` serves activity that repeated queries show changing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.server import free_port

QUERY = """{
  events(first: 1) { totalCount }
  tasks(first: 50) { edges { node { status progress } } }
  agents { edges { node { name status } } }
  workflows { totalCount }
}"""


def _wait_for_banner(proc: subprocess.Popen[str], deadline: float) -> dict[str, str]:
    seen: dict[str, str] = {}
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise AssertionError(f"demo exited with {proc.returncode}")
            continue
        if match := re.search(r"(Viewer|Operator) token:\s+(\S+)", line):
            seen[match.group(1)] = match.group(2)
        if match := re.search(r"GraphQL \(HTTP \+ WebSocket\):\s+(\S+)", line):
            seen["url"] = match.group(1)
        if {"Viewer", "Operator", "url"} <= seen.keys():
            return seen
    raise AssertionError(f"demo banner incomplete: {seen}")


@contextmanager
def running_demo(data_dir: Path) -> Iterator[tuple[dict[str, str], int]]:
    """`mark1 demo` in a subprocess; yields its banner (URL and tokens) and port."""
    port = free_port()
    env = {
        **os.environ,
        "MARK1_DATA_DIR": str(data_dir),
        "MARK1_PORT": str(port),
        "MARK1_DATABASE_URL": "postgresql+asyncpg://ignored/by-demo",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli.main", "demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield _wait_for_banner(proc, time.monotonic() + 60), port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode in (0, -15), proc.returncode


def test_demo_prints_urls_and_tokens_and_its_agents_keep_working(tmp_path: Path) -> None:
    with running_demo(tmp_path) as (banner, port):
        assert banner["url"] == f"http://127.0.0.1:{port}/graphql"
        headers = {"Authorization": f"Bearer {banner['Viewer']}"}
        snapshots = []
        for _ in range(3):
            time.sleep(2.5)
            body = httpx.post(banner["url"], json={"query": QUERY}, headers=headers).json()
            assert "errors" not in body, body
            snapshots.append(body["data"])
        counts = [s["events"]["totalCount"] for s in snapshots]
        assert counts[0] < counts[1] < counts[2], counts
        agent_names = {e["node"]["name"] for e in snapshots[-1]["agents"]["edges"]}
        assert len(agent_names) >= 5
        statuses = {e["node"]["status"] for s in snapshots for e in s["tasks"]["edges"]}
        assert "RUNNING" in statuses or "SUCCEEDED" in statuses
        assert snapshots[-1]["workflows"]["totalCount"] >= 1
        operator = {"Authorization": f"Bearer {banner['Operator']}"}
        created = httpx.post(
            banner["url"],
            json={"query": 'mutation { createTask(input: {title: "from test"}) { id } }'},
            headers=operator,
        ).json()
        assert created["data"]["createTask"]["id"]

    # A second run on the same data directory picks its agents up again.
    with running_demo(tmp_path) as (banner, _):
        headers = {"Authorization": f"Bearer {banner['Viewer']}"}
        time.sleep(3)
        body = httpx.post(banner["url"], json={"query": QUERY}, headers=headers).json()
        names = [e["node"]["name"] for e in body["data"]["agents"]["edges"]]
        assert sorted(names) == sorted(agent_names), names
