"""Real JavaScript clients (npm graphql-ws and subscriptions-transport-ws) against a live server.

The clients live in tests/clients (``npm ci --prefix tests/clients`` installs them;
tests/support/node.py runs them). Without node or those modules the tests skip on a
laptop and fail under CI=true.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.realtime.activity import Tenant
from tests.realtime.conftest import subscribed
from tests.support.databases import sqlite_url
from tests.support.node import Subscribers, node_with
from tests.support.server import LiveServer

SUBSCRIBERS = Subscribers(
    {
        "graphql-ws": ("graphql-transport-ws.mjs", {}),
        "subscriptions-transport-ws": ("subscriptions-transport-ws.mjs", {}),
    },
    websocket=True,
)
js_client = SUBSCRIBERS.run


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The clients exercise the wire, not the database: SQLite is enough here."""
    yield sqlite_url(tmp_path_factory.mktemp("js"))


@pytest.fixture(scope="module")
def node() -> str:
    return node_with("graphql-ws", "ws")


@pytest.fixture(params=sorted(SUBSCRIBERS.scripts))
def library(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


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
