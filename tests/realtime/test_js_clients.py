"""Real JavaScript clients (npm graphql-ws and subscriptions-transport-ws) against a live server.

The clients live in tests/clients (``npm ci --prefix tests/clients`` installs them).
Without node or those modules the tests skip on a laptop and fail under CI=true.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.realtime.activity import Tenant
from tests.realtime.conftest import subscribed
from tests.support.databases import IN_CI
from tests.support.server import LiveServer

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
SCRIPTS = {
    "graphql-ws": "graphql-transport-ws.mjs",
    "subscriptions-transport-ws": "subscriptions-transport-ws.mjs",
}

Line = dict[str, Any]


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The clients exercise the wire, not the database: SQLite is enough here."""
    yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('js') / 'mark1.db'}"


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    missing = None
    if path is None:
        missing = "node is not installed"
    elif not all((CLIENTS / "node_modules" / m).is_dir() for m in ("graphql-ws", "ws")):
        missing = "tests/clients has no node_modules: run npm ci --prefix tests/clients"
    if missing:
        if IN_CI:
            pytest.fail(f"{missing}, and CI=true requires it")
        pytest.skip(missing)
    assert path is not None
    return path


@pytest.fixture(params=sorted(SCRIPTS))
def library(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


class JSClient:
    """A node process running one client script; reads its JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self, within: float = 10) -> Line:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), within)
        if not raw:
            stderr = await self.proc.stderr.read() if self.proc.stderr else b""
            raise AssertionError(f"the client ended without a line: {stderr.decode()[-2000:]}")
        line: Line = json.loads(raw)
        return line

    async def expect(self, event: str, within: float = 10) -> Line:
        line = await self.line(within)
        assert line["event"] == event, line
        return line

    async def exit_code(self, within: float = 10) -> int:
        return await asyncio.wait_for(self.proc.wait(), within)


@asynccontextmanager
async def js_client(
    node: str,
    library: str,
    server: LiveServer,
    token: str,
    query: str,
    variables: dict[str, Any] | None = None,
    count: int = 0,
) -> AsyncIterator[JSClient]:
    env = {
        **os.environ,
        "MARK1_WS_URL": server.ws_url,
        "MARK1_TOKEN": token,
        "MARK1_QUERY": query,
        "MARK1_VARIABLES": json.dumps(variables or {}),
        "MARK1_COUNT": str(count),
        "MARK1_TIMEOUT": "20",
    }
    proc = await asyncio.create_subprocess_exec(
        node,
        str(CLIENTS / SCRIPTS[library]),
        cwd=CLIENTS,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield JSClient(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_a_js_client_receives_every_change_of_a_task(
    node: str, library: str, server: LiveServer, tenant: str
) -> None:
    t = Tenant(server, tenant)
    viewer = server.token("VIEWER", tenant=tenant)
    query = "subscription { taskUpdates { title status } }"
    async with js_client(node, library, server, viewer, query, count=2) as client:
        await client.expect("connected")
        await subscribed(server, 1)
        task = await t.create_task("from python")
        await t.cancel_task(task["id"])
        first = await client.expect("next")
        second = await client.expect("next")
        assert await client.exit_code() == 0
    assert first["payload"] == {
        "data": {"taskUpdates": {"title": "from python", "status": "PENDING"}}
    }
    assert second["payload"]["data"]["taskUpdates"]["status"] == "CANCELLED"


async def test_a_js_client_replays_events_after_an_id_then_goes_live(
    node: str, library: str, server: LiveServer, tenant: str
) -> None:
    t = Tenant(server, tenant)
    for i in range(3):
        await t.create_task(f"old {i}")
    viewer = server.token("VIEWER", tenant=tenant)
    query = "subscription($after: ID) { events(after: $after) { id type } }"
    async with js_client(node, library, server, viewer, query, {"after": "1"}, count=3) as client:
        await client.expect("connected")
        ids = [(await client.expect("next"))["payload"]["data"]["events"]["id"] for _ in range(2)]
        await subscribed(server, 1)
        await t.create_task("new")
        ids.append((await client.expect("next"))["payload"]["data"]["events"]["id"])
        assert await client.exit_code() == 0
    assert ids == ["2", "3", "4"]


async def test_a_js_client_sees_a_finished_stream_complete(
    node: str, library: str, server: LiveServer, tenant: str
) -> None:
    t = Tenant(server, tenant)
    workflow = await t.start_workflow("done", ["only"])
    await t.cancel_workflow(workflow)
    viewer = server.token("VIEWER", tenant=tenant)
    query = "subscription($w: ID!) { workflowProgress(workflowId: $w) { workflow { status } } }"
    async with js_client(node, library, server, viewer, query, {"w": workflow}) as client:
        await client.expect("connected")
        state = await client.expect("next")
        await client.expect("complete")
        assert await client.exit_code() == 0
    assert state["payload"]["data"]["workflowProgress"]["workflow"]["status"] == "CANCELLED"


async def test_a_js_client_gets_forbidden_for_system_metrics_as_a_viewer(
    node: str, library: str, server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    query = "subscription { systemMetrics { at } }"
    async with js_client(node, library, server, viewer, query) as client:
        await client.expect("connected")
        line = await client.expect("error")
        assert await client.exit_code() == 1
    # graphql-ws hands over the `error` message's list; subscriptions-transport-ws its first.
    error = line["payload"][0] if library == "graphql-ws" else line["payload"]
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_a_js_client_with_a_bad_token_is_refused(
    node: str, library: str, server: LiveServer
) -> None:
    query = "subscription { events { id } }"
    async with js_client(node, library, server, "not-a-token", query) as client:
        line = await client.line()
        while line["event"] == "closed":
            line = await client.line()
        assert line["event"] == "error", line
        assert await client.exit_code() == 1
    if library == "graphql-ws":
        assert line["payload"]["code"] == 4403
    else:
        assert line["payload"]["message"]
