"""``mark1 watch`` as a user runs it: a subprocess against a real server."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import tests.support.server as server_module
from api.auth.tokens import mint_token
from api.domain import Role
from api.metrics import Metrics
from api.settings import Settings
from tests.support.graphql import data, gql
from tests.support.server import LiveServer, free_port, live_server

ROOT = Path(__file__).resolve().parents[2]
EVENT_ID = re.compile(r"  #(\d+)  ")
CREATE = "mutation($title: String!) { createTask(input: {title: $title}) { id } }"


class WatchProcess:
    """``uv run mark1 watch …`` with its output collected by reader threads."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARK1_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli.main", "watch", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=_drain, args=(stream, sink), daemon=True)
            for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))
        ]
        for reader in self._readers:
            reader.start()

    async def lines(self, count: int, within: float = 30) -> list[str]:
        """The first ``count`` stdout lines, waiting at most ``within`` seconds."""
        deadline = time.monotonic() + within
        while len(self.stdout) < count:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                pytest.fail(f"expected {count} lines, got {self.stdout!r}; stderr: {self.stderr!r}")
            await asyncio.sleep(0.05)
        return self.stdout[:count]

    def exit_code(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"watch did not exit; stdout {self.stdout!r}, stderr {self.stderr!r}")

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it."""
        self.proc.send_signal(signal.SIGINT)
        return self.exit_code(15)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for reader in self._readers:  # they close the pipes at EOF
            reader.join(10)


def _drain(stream: object, sink: list[str]) -> None:
    with stream:  # type: ignore[attr-defined]
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line.rstrip("\n"))


@pytest.fixture
def watches() -> Iterator[list[WatchProcess]]:
    started: list[WatchProcess] = []
    yield started
    for watch in started:
        watch.kill()


async def subscribed(live: LiveServer, count: int = 1, within: float = 30) -> None:
    """Until the server holds ``count`` subscriptions (the watches have subscribed)."""
    deadline = time.monotonic() + within
    while Metrics.value(live.runtime.metrics.subscriptions) < count:
        assert time.monotonic() < deadline, f"fewer than {count} watches subscribed"
        await asyncio.sleep(0.05)


async def create_tasks(live: LiveServer, token: str, *titles: str) -> None:
    for title in titles:
        data(await gql(live.url, CREATE, {"title": title}, token=token))


def event_ids(lines: list[str]) -> list[int]:
    ids = []
    for line in lines:
        match = EVENT_ID.search(line)
        assert match, f"no event id in {line!r}"
        ids.append(int(match.group(1)))
    return ids


async def test_watch_resumes_after_a_server_restart_without_missing_or_repeating_events(
    settings: Settings, tenant: str, watches: list[WatchProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setattr(server_module, "free_port", lambda: port)  # restart on the same port
    with live_server(settings) as live:
        token = live.token("OPERATOR", tenant=tenant)
        watch = WatchProcess("events", "--url", live.url, "--token", token)
        watches.append(watch)
        await subscribed(live)
        await create_tasks(live, token, "before-1", "before-2", "before-3")
        before = await watch.lines(3)
    assert [line.split("task ")[1] for line in before] == [
        '"before-1" PENDING 0%',
        '"before-2" PENDING 0%',
        '"before-3" PENDING 0%',
    ]
    assert all("TASK_CREATED" in line for line in before)

    with live_server(settings) as live:
        assert live.port == port
        # Most likely created while the watch is still backing off: then it replays them.
        await create_tasks(live, token, "after-1", "after-2", "after-3")
        await watch.lines(6)
        await subscribed(live)
        await create_tasks(live, token, "live-1")
        lines = await watch.lines(7)
        await asyncio.sleep(0.5)  # room for a duplicate to show up, were there one
        assert watch.interrupt() == 130

    assert event_ids(watch.stdout) == [1, 2, 3, 4, 5, 6, 7]
    assert [line.split('"')[1] for line in lines] == [
        "before-1",
        "before-2",
        "before-3",
        "after-1",
        "after-2",
        "after-3",
        "live-1",
    ]
    stderr = "\n".join(watch.stderr)
    assert "resuming after event 3" in stderr
    assert "Traceback" not in stderr


async def test_watch_without_after_starts_at_the_head_and_with_after_replays(
    server: LiveServer, tenant: str, watches: list[WatchProcess]
) -> None:
    token = server.token("OPERATOR", tenant=tenant)
    await create_tasks(server, token, "old-1", "old-2")
    live_only = WatchProcess("events", "--url", server.url, "--token", token)
    replay = WatchProcess("events", "--url", server.url, "--token", token, "--after", "1")
    watches += [live_only, replay]
    await subscribed(server, 2)
    await create_tasks(server, token, "new")

    assert event_ids(await live_only.lines(1)) == [3]
    assert event_ids(await replay.lines(2)) == [2, 3]


async def test_watch_formats_workflows_tasks_agents_and_custom_documents(
    server: LiveServer, tenant: str, watches: list[WatchProcess], tmp_path: Path
) -> None:
    token = server.token("OPERATOR", tenant=tenant)
    document = tmp_path / "titles.graphql"
    document.write_text("subscription { taskUpdates { title status } }")
    events = WatchProcess("events", "--url", server.url, "--token", token, "--after", "0")
    tasks = WatchProcess("tasks", "--url", server.url, "--token", token)
    agents = WatchProcess("agents", "--url", server.url, "--token", token)
    custom = WatchProcess(str(document), "--url", server.url, "--token", token)
    watches += [events, tasks, agents, custom]
    await subscribed(server, 4)
    body = await gql(
        server.url,
        'mutation { startWorkflow(input: {name: "build", steps: [{name: "compile"}, '
        '{name: "ship"}]}) { id } }',
        token=token,
    )
    data(body)
    body = await gql(
        server.url,
        'mutation { registerAgent(input: {name: "gpu-1", capabilities: []}) { agent { id } } }',
        token=token,
    )
    agent_id = data(body)["registerAgent"]["agent"]["id"]

    event_lines = await events.lines(3)
    assert "WORKFLOW_STARTED" in event_lines[0]
    assert any(
        "WORKFLOW_STEP_STARTED" in line and "workflow build RUNNING step 1/2 compile" in line
        for line in event_lines
    )
    (task_line,) = await tasks.lines(1)
    assert re.search(r"  task \S+  \"build / compile\" PENDING 0%$", task_line), task_line
    (agent_line,) = await agents.lines(1)
    assert agent_line.endswith(f"  agent {agent_id}  gpu-1 ONLINE"), agent_line
    assert await custom.lines(1) == [
        '{"taskUpdates":{"title":"build / compile","status":"PENDING"}}'
    ]


@pytest.mark.parametrize("what", ["events", "tasks"])
async def test_watch_exits_on_a_rejected_token_instead_of_retrying(
    server: LiveServer, what: str, watches: list[WatchProcess]
) -> None:
    forged = mint_token(
        secrets.token_urlsafe(48),
        sub="mallory",
        roles=[Role.ADMIN],
        tenant="default",
        agent_id=None,
        ttl=timedelta(hours=1),
        issuer=None,
        audience=None,
    )
    watch = WatchProcess(what, "--url", server.url, "--token", forged)
    watches.append(watch)

    assert watch.exit_code() == 1
    assert "token rejected" in "\n".join(watch.stderr)
    assert watch.stdout == []


async def test_watch_exits_when_its_token_expires_on_an_open_socket(
    server: LiveServer, tenant: str, watches: list[WatchProcess]
) -> None:
    # Long enough for the watch process to start and subscribe on a loaded machine.
    token = server.token("VIEWER", tenant=tenant, ttl=timedelta(seconds=10))
    watch = WatchProcess("tasks", "--url", server.url, "--token", token)
    watches.append(watch)
    await subscribed(server)

    assert watch.exit_code() == 1
    assert "token rejected (Token expired)" in "\n".join(watch.stderr)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1/graphql", "bad URL 'ftp://127.0.0.1/graphql'"),
        ("127.0.0.1:8000", "bad URL '127.0.0.1:8000'"),
        ("http://127.0.0.1:99999/graphql", "bad URL"),
    ],
)
def test_watch_refuses_a_bad_url(url: str, message: str, watches: list[WatchProcess]) -> None:
    watch = WatchProcess("events", "--url", url, "--token", "x")
    watches.append(watch)

    assert watch.exit_code() == 2
    assert message in "\n".join(watch.stderr)


async def test_watch_refuses_a_url_with_no_graphql_endpoint(
    server: LiveServer, watches: list[WatchProcess]
) -> None:
    token = server.token("VIEWER")
    watch = WatchProcess("events", "--url", f"{server.base}/nope", "--token", token)
    watches.append(watch)

    assert watch.exit_code() == 2
    assert "no GraphQL endpoint there (HTTP 404)" in "\n".join(watch.stderr)


def test_watch_needs_a_token(watches: list[WatchProcess]) -> None:
    watch = WatchProcess("events")
    watches.append(watch)

    assert watch.exit_code() == 2
    assert "no token: pass --token or set MARK1_TOKEN" in "\n".join(watch.stderr)
