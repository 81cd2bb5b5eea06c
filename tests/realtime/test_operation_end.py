"""An operation's end takes effect at once: no finalizer-driven cleanup, no silent failure.

After ``complete`` (or the legacy ``stop``) the server holds no bus subscriber
and no subscription gauge for the operation by the time it answers the next
message; a stream that ends on its own has let go before its ``complete``
arrives; and an operation that fails inside the server (the multiplexer
included) ends with ``error``, never with silence.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

import pytest

from api.metrics import Metrics
from tests.realtime.activity import Tenant
from tests.realtime.conftest import nothing_left, subscribed
from tests.realtime.wire import LEGACY_WS, TRANSPORT_WS, Protocol, Socket
from tests.support.server import LiveServer, live_server, make_settings
from tests.support.waiting import until

# Live-only fields run in a shared group on graphql-transport-ws; `after` runs alone.
OPERATIONS = {
    "events": "subscription { events { id } }",
    "taskUpdates": "subscription { taskUpdates { id } }",
    "agentStatus": "subscription { agentStatus { id } }",
    "events-after": 'subscription { events(after: "0") { id } }',
}
WORKFLOW = "subscription($w: ID!) { workflowProgress(workflowId: $w) { event { type } } }"


def _held(server: LiveServer) -> tuple[int, int]:
    """(bus subscribers, subscriptions gauge), read at this instant."""
    rt = server.runtime
    return rt.bus.subscriber_count, Metrics.value(rt.metrics.subscriptions)


async def _round_trip(ws: Socket) -> None:
    """One message the server answers only after handling everything sent before it."""
    if ws.protocol == TRANSPORT_WS:
        await ws.send({"type": "ping"})
        assert (await ws.control_message(within=30))["type"] == "pong"
    else:
        # The legacy protocol has no ping: an operation that fails validation answers.
        await ws.subscribe("probe", "subscription { nope }")
        assert (await ws.message("probe", within=30))["type"] == "error"


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_complete_frees_the_bus_subscriber_and_gauge_before_the_next_answer(
    server: LiveServer, tenant: str, protocol: Protocol, operation: str
) -> None:
    token = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, token, protocol=protocol) as ws:
        for op in ("a", "b"):  # two members: on graphql-transport-ws, one shared group
            await ws.subscribe(op, OPERATIONS[operation])
        await subscribed(server, 2, within=30)
        await until(lambda: _held(server)[0] >= 1, 30, "the operations on the bus")

        await ws.stop("a")
        await _round_trip(ws)
        assert _held(server)[1] == 1  # "b" still runs
        await ws.stop("b")
        await _round_trip(ws)
        assert _held(server) == (0, 0)
    await nothing_left(server, within=30)


async def test_a_stream_that_ends_on_its_own_lets_go_before_its_complete_arrives(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    t = Tenant(server, tenant)
    workflow = await t.start_workflow("w", ["a"])
    agent = await t.register_agent()
    token = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, token, protocol=protocol) as ws:
        await ws.subscribe("w", WORKFLOW, {"w": workflow})
        await ws.field("w", within=30)
        await subscribed(server, 1, within=30)
        task = await agent.claim()
        assert task is not None
        await agent.complete(task)
        while (await ws.message("w", within=30))["type"] != "complete":
            pass
        # The resolver returned inside the stream's `aclosing`: it left the bus first.
        assert _held(server) == (0, 0)
    await nothing_left(server, within=30)


def _drop_agents(path: Path) -> None:
    """The agent table goes away under the running server, as a botched manual
    migration would do: an execution that reads an agent raises."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("ALTER TABLE agent RENAME TO agent_gone")


@pytest.fixture
def broken_database(tmp_path: Path) -> tuple[str, Path]:
    """A SQLite database of this test's own, so the test may break its schema."""
    path = tmp_path / "broken.sqlite"
    return f"sqlite+aiosqlite:///{path}", path


async def test_a_shared_execution_that_fails_ends_its_operations_with_error(
    broken_database: tuple[str, Path],
    tmp_path: Path,
    tenant: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, path = broken_database
    with live_server(make_settings(url, tmp_path)) as server:
        # The agents table goes away under the running server, as a botched manual
        # migration would do: the group's execution raises when it reads an agent.
        _drop_agents(path)
        query = 'subscription { agentStatus(agentId: "a1") { id } }'
        token = server.token("VIEWER", tenant=tenant)
        async with await Socket.open(server.ws_url, token, protocol=TRANSPORT_WS) as ws:
            for op in ("a", "b"):
                await ws.subscribe(op, query)
            for op in ("a", "b"):
                message = await ws.message(op, within=30)
                assert message["type"] == "error", message
                assert message["payload"][0]["extensions"] == {"code": "INTERNAL"}
                assert "agent" not in message["payload"][0]["message"]  # masked
            await _round_trip(ws)  # the socket and the protocol go on
            assert _held(server) == (0, 0)
        await nothing_left(server, within=30)
    assert any(
        r.levelno >= logging.ERROR and "no such table: agent" in str(r.exc_info and r.exc_info[1])
        for r in caplog.records
        if r.name == "mark1.errors"
    ), "the failure was not logged"


async def test_an_operation_over_the_legacy_protocol_that_fails_ends_with_its_error(
    broken_database: tuple[str, Path], tmp_path: Path, tenant: str
) -> None:
    url, path = broken_database
    with live_server(make_settings(url, tmp_path)) as server:
        _drop_agents(path)
        token = server.token("VIEWER", tenant=tenant)
        async with await Socket.open(server.ws_url, token, protocol=LEGACY_WS) as ws:
            await ws.subscribe("a", 'subscription { agentStatus(agentId: "a1") { id } }')
            assert (await ws.failure("a", within=30))["extensions"] == {"code": "INTERNAL"}
            await _round_trip(ws)
            assert _held(server) == (0, 0)
        await nothing_left(server, within=30)


def _corrupt_event_data(path: Path, tenant: str) -> None:
    """Give the tenant's events data that is no JSON, as a broken producer outside this
    service could write it: reading the event back for the result raises."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE event SET data = '{\"n\": ' WHERE tenant = ?", (tenant,))


async def test_an_operation_whose_event_cannot_be_read_ends_with_error(
    broken_database: tuple[str, Path],
    tmp_path: Path,
    tenant: str,
    protocol: Protocol,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, path = broken_database
    with live_server(make_settings(url, tmp_path)) as server:
        await Tenant(server, tenant).create_task("t")
        _corrupt_event_data(path, tenant)
        token = server.token("VIEWER", tenant=tenant)
        async with await Socket.open(server.ws_url, token, protocol=protocol) as ws:
            await ws.subscribe("a", 'subscription { events(after: "0") { id data } }')
            assert (await ws.failure("a", within=30))["extensions"] == {"code": "INTERNAL"}
            await _round_trip(ws)
            assert _held(server) == (0, 0)
        await nothing_left(server, within=30)
    assert any(
        r.levelno >= logging.ERROR and r.name in ("mark1.operations", "mark1.errors")
        for r in caplog.records
    ), "the failure was not logged"
