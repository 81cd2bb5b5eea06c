"""Real JavaScript clients of the HTTP streams against a live server.

graphql-sse's own client in both of its modes, urql through its SSE recipe
(subscriptionExchange forwarding to a graphql-sse client; its single-connection
mode is graphql-sse's, tested above), and Apollo Client's
HttpLink, which runs subscriptions over multipart HTTP by itself. The scripts live
in tests/clients (``npm ci --prefix tests/clients``; tests/support/node.py runs them);
without node or those modules the tests skip on a laptop and fail under CI=true.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from api.settings import Settings
from tests.http.streams import all_closed, subscribed
from tests.realtime.activity import Tenant
from tests.support.databases import sqlite_url
from tests.support.node import JSClient, Line, Subscribers, node_with
from tests.support.server import LiveServer, shared_settings

SUBSCRIBERS = Subscribers(
    {
        "graphql-sse": ("graphql-sse.mjs", {}),
        "graphql-sse-single": ("graphql-sse.mjs", {"MARK1_SINGLE": "1"}),
        "urql-sse": ("urql-sse.mjs", {}),
        "apollo-multipart": ("apollo-multipart.mjs", {}),
    },
    websocket=False,
)
js_client = SUBSCRIBERS.run
MODULES = ("graphql-sse", "@urql/core", "@apollo/client", "wonka", "rxjs")


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The clients exercise the wire, not the database: SQLite is enough here."""
    data = tmp_path_factory.mktemp("jsstreams")
    # The clients must skip keep-alives between results.
    return shared_settings(sqlite_url(data), data, http_stream_keepalive=0.5)


@pytest.fixture(scope="module")
def node() -> str:
    return node_with(*MODULES)


@pytest.fixture(params=sorted(SUBSCRIBERS.scripts))
def library(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
async def live(server: LiveServer) -> LiveServer:
    """The module's server, once the previous test's streams are all gone."""
    await all_closed(server)
    return server


async def result(client: JSClient) -> Line:
    """The next result (graphql-sse's `connected` notices skipped)."""
    line = await client.line()
    while line["event"] == "connected":
        line = await client.line()
    return line


def codes(line: Line) -> list[str]:
    """The error codes a client reported, whichever way it hands errors over."""
    payload = line["payload"]
    errors = payload if isinstance(payload, list) else payload.get("errors") or []
    return [e["extensions"]["code"] for e in errors]


async def test_a_js_client_receives_every_change_of_a_task(
    node: str, library: str, live: LiveServer, tenant: str
) -> None:
    t = Tenant(live, tenant)
    viewer = live.token("VIEWER", tenant=tenant)
    query = "subscription { taskUpdates { title status } }"
    async with js_client(node, library, live, viewer, query, count=2) as client:
        await subscribed(live, 1)
        task = await t.create_task("from python")
        await t.cancel_task(task["id"])
        first = await result(client)
        second = await result(client)
        assert await client.exit_code() == 0
    assert first["event"] == "next", first
    assert first["payload"] == {
        "data": {"taskUpdates": {"title": "from python", "status": "PENDING"}}
    }
    assert second["payload"]["data"]["taskUpdates"]["status"] == "CANCELLED"
    await all_closed(live)


async def test_a_js_client_replays_events_after_an_id_then_goes_live(
    node: str, library: str, live: LiveServer, tenant: str
) -> None:
    t = Tenant(live, tenant)
    for i in range(3):
        await t.create_task(f"old {i}")
    viewer = live.token("VIEWER", tenant=tenant)
    query = "subscription($after: ID) { events(after: $after) { id type } }"
    async with js_client(node, library, live, viewer, query, {"after": "1"}, count=3) as client:
        ids = [(await result(client))["payload"]["data"]["events"]["id"] for _ in range(2)]
        await subscribed(live, 1)
        await t.create_task("new")
        ids.append((await result(client))["payload"]["data"]["events"]["id"])
        assert await client.exit_code() == 0
    assert ids == ["2", "3", "4"]


async def test_a_js_client_sees_a_finished_stream_complete(
    node: str, library: str, live: LiveServer, tenant: str
) -> None:
    t = Tenant(live, tenant)
    workflow = await t.start_workflow("done", ["only"])
    await t.cancel_workflow(workflow)
    viewer = live.token("VIEWER", tenant=tenant)
    query = "subscription($w: ID!) { workflowProgress(workflowId: $w) { workflow { status } } }"
    async with js_client(node, library, live, viewer, query, {"w": workflow}) as client:
        state = await result(client)
        assert (await result(client))["event"] == "complete"
        assert await client.exit_code() == 0
    assert state["payload"]["data"]["workflowProgress"]["workflow"]["status"] == "CANCELLED"


async def test_a_js_client_gets_forbidden_for_system_metrics_as_a_viewer(
    node: str, library: str, live: LiveServer, tenant: str
) -> None:
    viewer = live.token("VIEWER", tenant=tenant)
    query = "subscription { systemMetrics { at } }"
    async with js_client(node, library, live, viewer, query) as client:
        line = await result(client)
        # graphql-sse hands the errors over as a result (a `next` event), urql and
        # Apollo as an error.
        expected = "next" if library.startswith("graphql-sse") else "error"
        assert line["event"] == expected, line
        assert codes(line) == ["FORBIDDEN"]


async def test_a_js_client_with_a_bad_token_is_refused_with_401(
    node: str, library: str, live: LiveServer
) -> None:
    query = "subscription { events { id } }"
    async with js_client(node, library, live, "not-a-token", query) as client:
        line = await result(client)
        assert line["event"] == "error", line
        assert await client.exit_code() == 1
    if library.startswith(("graphql-sse", "apollo")):
        assert line["payload"]["status"] == 401, line
    else:  # urql wraps the graphql-sse client's network error
        assert "401" in line["payload"]["message"], line


@pytest.mark.parametrize("library", ["graphql-sse", "apollo-multipart"])
async def test_a_js_client_learns_its_token_expired(
    node: str, library: str, live: LiveServer, tenant: str
) -> None:
    short = live.token("VIEWER", tenant=tenant, ttl=timedelta(seconds=2))
    query = "subscription { taskUpdates { id } }"
    async with js_client(node, library, live, short, query) as client:
        line = await result(client)
    assert codes(line) == ["UNAUTHENTICATED"], line
    if library == "apollo-multipart":  # a fatal error part
        assert line["event"] == "error" and line["payload"]["kind"] == "CombinedProtocolErrors"
    await all_closed(live)
