"""An operation that ends, however it ends, leaves nothing behind on the server."""

from __future__ import annotations

from api.metrics import Metrics
from tests.realtime.activity import Tenant
from tests.realtime.conftest import nothing_left, subscribed
from tests.realtime.wire import Protocol, Socket
from tests.support.server import LiveServer

EVENTS = "subscription { events { id } }"
TASKS = "subscription { taskUpdates { id } }"
AGENTS = "subscription { agentStatus { id } }"
WORKFLOW = "subscription($w: ID!) { workflowProgress(workflowId: $w) { event { id } } }"
METRICS = "subscription { systemMetrics(intervalSeconds: 0.1) { subscriptions } }"


def _gauges(server: LiveServer) -> tuple[int, int, int]:
    """(operations on the bus, subscriptions gauge, sockets gauge).

    The first is 0 or 1 here: identical operations may share one bus subscription.
    """
    rt = server.runtime
    return (
        min(rt.bus.subscriber_count, 1),
        Metrics.value(rt.metrics.subscriptions),
        Metrics.value(rt.metrics.sockets),
    )


async def test_operations_completed_by_the_client_leave_no_subscriber_behind(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    t = Tenant(server, tenant)
    workflow = await t.start_workflow("w", ["a"])
    operator = server.token("OPERATOR", tenant=tenant)
    ws = await Socket.open(server.ws_url, operator, protocol=protocol)
    await ws.subscribe("events", EVENTS)
    await ws.subscribe("tasks", TASKS)
    await ws.subscribe("agents", AGENTS)
    await ws.subscribe("workflow", WORKFLOW, {"w": workflow})
    await ws.subscribe("metrics", METRICS)
    await ws.field("workflow")
    await ws.field("metrics")
    await subscribed(server, 4)
    assert _gauges(server) == (1, 4, 1)

    for op in ("events", "tasks", "agents", "workflow", "metrics"):
        await ws.stop(op)
    await subscribed(server, 0)
    assert _gauges(server) == (0, 0, 1)
    await ws.close()
    await nothing_left(server)


async def test_clients_that_disconnect_with_operations_running_leave_nothing_behind(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    operator = server.token("OPERATOR", tenant=tenant)
    polite = await Socket.open(server.ws_url, viewer, protocol=protocol)
    dropped = await Socket.open(server.ws_url, viewer, protocol=protocol)
    busy = await Socket.open(server.ws_url, operator, protocol=protocol)
    for ws in (polite, dropped, busy):
        for op in ("a", "b", "c"):
            await ws.subscribe(op, EVENTS)
    await busy.subscribe("metrics", METRICS)
    await busy.field("metrics")
    await subscribed(server, 9)
    assert _gauges(server) == (1, 9, 3)
    # Events queued for the sockets when they go.
    await Tenant(server, tenant).create_task("in flight")

    await polite.close()  # a closing handshake
    dropped.abort()  # the network fails: no handshake at all
    await subscribed(server, 3)
    assert _gauges(server)[2] == 1
    busy.abort()
    await nothing_left(server)
    await dropped.close()
    await busy.close()


async def test_operations_that_end_on_their_own_or_by_error_leave_nothing_behind(
    server: LiveServer, tenant: str
) -> None:
    t = Tenant(server, tenant)
    workflow = await t.start_workflow("w", ["a"])
    agent = await t.register_agent()
    async with await Socket.open(server.ws_url, server.token("VIEWER", tenant=tenant)) as ws:
        await ws.subscribe("workflow", WORKFLOW, {"w": workflow})
        await ws.subscribe("missing", 'subscription { taskUpdates(taskId: "nope") { id } }')
        await ws.subscribe("bad", 'subscription { events(after: "x") { id } }')
        await ws.field("workflow")
        assert (await ws.error("missing"))["extensions"]["code"] == "NOT_FOUND"
        assert (await ws.error("bad"))["extensions"]["code"] == "BAD_USER_INPUT"
        await subscribed(server, 1)
        task = await agent.claim()
        assert task is not None
        await agent.complete(task)
        while (await ws.message("workflow"))["type"] != "complete":
            pass
        await subscribed(server, 0)
        assert _gauges(server) == (0, 0, 1)
        # The ids are free again (PROTOCOL.md: an id may be reused once complete).
        await ws.subscribe("workflow", EVENTS)
        await ws.subscribe("missing", EVENTS)
        await subscribed(server, 2)
    await nothing_left(server)
