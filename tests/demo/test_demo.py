"""`mark1 demo` serves activity that repeated queries show changing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
        finally:
            assert proc.stdout is not None
            proc.stdout.close()  # an unclosed pipe is a ResourceWarning, an error here
    assert proc.returncode in (0, -15), proc.returncode


def _query(banner: dict[str, str]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {banner['Viewer']}"}
    body = httpx.post(banner["url"], json={"query": QUERY}, headers=headers).json()
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]
    return result


def _eventually(banner: dict[str, str], check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Query until the demo's state satisfies ``check`` (its agents work at their own pace)."""
    deadline = time.monotonic() + 60
    while not check(snapshot := _query(banner)):
        assert time.monotonic() < deadline, f"the demo never got there: {snapshot}"
        time.sleep(0.2)
    return snapshot


def _events(snapshot: dict[str, Any]) -> int:
    count: int = snapshot["events"]["totalCount"]
    return count


def test_demo_prints_urls_and_tokens_and_its_agents_keep_working(tmp_path: Path) -> None:
    with running_demo(tmp_path) as (banner, port):
        assert banner["url"] == f"http://127.0.0.1:{port}/graphql"
        snapshots = [_query(banner)]
        for _ in range(2):
            before = _events(snapshots[-1])
            snapshots.append(_eventually(banner, lambda s, before=before: _events(s) > before))
        busy = _eventually(
            banner,
            lambda s: (
                any(e["node"]["status"] in ("RUNNING", "SUCCEEDED") for e in s["tasks"]["edges"])
                and s["workflows"]["totalCount"] >= 1
                and len(s["agents"]["edges"]) >= 5
            ),
        )
        agent_names = {e["node"]["name"] for e in busy["agents"]["edges"]}
        operator = {"Authorization": f"Bearer {banner['Operator']}"}
        created = httpx.post(
            banner["url"],
            json={"query": 'mutation { createTask(input: {title: "from test"}) { id } }'},
            headers=operator,
        ).json()
        assert created["data"]["createTask"]["id"]

    # A second run on the same data directory picks its agents up again (and registers none).
    with running_demo(tmp_path) as (banner, _):
        restarted = _eventually(banner, lambda s: _events(s) > _events(busy))
        names = [e["node"]["name"] for e in restarted["agents"]["edges"]]
        assert sorted(names) == sorted(agent_names), names
