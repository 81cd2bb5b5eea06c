"""Tenants never see each other's events on any subscription; roles gate what they may watch."""

from __future__ import annotations

import secrets

from tests.realtime.activity import Tenant
from tests.realtime.conftest import subscribed
from tests.realtime.wire import Protocol, Socket
from tests.support.server import LiveServer

SUBSCRIPTIONS = {
    "tasks": "subscription { taskUpdates { id title status } }",
    "agents": "subscription { agentStatus { id name status } }",
    "events": 'subscription { events(after: "0") { id type taskId agentId workflowId } }',
    "live": "subscription { events { id type taskId agentId workflowId } }",
}
WORKFLOW = """subscription($id: ID!) {
  workflowProgress(workflowId: $id) { workflow { id name status } event { id type } } }"""
METRICS = """subscription {
  systemMetrics(intervalSeconds: 0.1) { tasksByStatus agentsByStatus } }"""


async def _busy(tenant: Tenant, label: str) -> dict[str, str]:
    """A bit of everything in a tenant: a task run by an agent, and a workflow step."""
    workflow = await tenant.start_workflow(f"{label}-flow", ["one", "two"])
    task = await tenant.create_task(f"{label}-task")
    agent = await tenant.register_agent(f"{label}-agent")
    claimed = await agent.claim()  # the workflow's step task is the oldest
    assert claimed is not None
    await agent.complete(claimed)
    return {"workflow": workflow, "task": task["id"], "agent": agent.id}


async def test_a_tenant_never_receives_another_tenants_events_on_any_subscription(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    mine = Tenant(server, tenant)
    theirs = Tenant(server, f"{tenant}b")
    my_workflow = await mine.start_workflow("mine", ["only"])
    await theirs.create_task("their history")
    viewer = server.token("VIEWER", tenant=tenant)
    operator = server.token("OPERATOR", tenant=tenant)
    async with (
        await Socket.open(server.ws_url, viewer, protocol=protocol) as ws,
        await Socket.open(server.ws_url, operator, protocol=protocol) as ops,
    ):
        for op, query in SUBSCRIPTIONS.items():
            await ws.subscribe(op, query)
        await ws.subscribe("workflow", WORKFLOW, {"id": my_workflow})
        await ops.subscribe("metrics", METRICS)
        # My own history (workflow start: 3 events) arrives, then the current state.
        history = [await ws.field("events") for _ in range(3)]
        start = await ws.field("workflow")
        await subscribed(server, len(SUBSCRIPTIONS) + 1)  # and the workflow's

        their = await _busy(theirs, "theirs")
        for op in (*SUBSCRIPTIONS, "workflow"):
            await ws.silent(op, 0.05)
        await ws.silent("events", 0.3)

        # My own activity arrives on every subscription, and it is the first thing there.
        agent = await mine.register_agent("my-agent")
        assert (await ws.field("agents"))["name"] == "my-agent"
        task = await mine.create_task("my-task")
        assert (await ws.field("tasks"))["title"] == "my-task"
        claimed = await agent.claim()
        assert claimed is not None
        await agent.complete(claimed)
        live = [await ws.field("live") for _ in range(2)]
        my_ids = {task["id"], agent.id, my_workflow, claimed}
        seen = [await ops.field("metrics")]
        while seen[-1]["tasksByStatus"]["SUCCEEDED"] == 0 and len(seen) < 50:
            seen.append(await ops.field("metrics"))
        assert start["workflow"]["name"] == "mine"
        progress = await ws.field("workflow")

    assert [e["type"] for e in history] == [
        "WORKFLOW_STARTED",
        "TASK_CREATED",
        "WORKFLOW_STEP_STARTED",
    ]
    assert [e["type"] for e in live] == ["AGENT_REGISTERED", "TASK_CREATED"]
    assert live[0]["agentId"] == agent.id
    assert progress["workflow"]["id"] == my_workflow
    assert progress["event"]["type"] == "TASK_STARTED"
    for value in their.values():
        assert value not in my_ids
    # Theirs has 3 tasks and 1 agent; mine at most 2 (the step task and my-task) and 1.
    assert all(sum(m["tasksByStatus"].values()) <= 2 for m in seen)
    assert all(sum(m["agentsByStatus"].values()) <= 1 for m in seen)
    assert seen[-1]["tasksByStatus"] == {
        "PENDING": 1,
        "RUNNING": 0,
        "SUCCEEDED": 1,
        "FAILED": 0,
        "CANCELLED": 0,
    }
    assert seen[-1]["agentsByStatus"]["ONLINE"] == 1


async def test_another_tenants_ids_are_not_found_on_subscriptions(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    theirs = Tenant(server, f"{tenant}b")
    their = await _busy(theirs, "theirs")
    viewer = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, viewer, protocol=protocol) as ws:
        await ws.subscribe(
            "t", "subscription($id: ID) { taskUpdates(taskId: $id) { id } }", {"id": their["task"]}
        )
        await ws.subscribe(
            "a",
            "subscription($id: ID) { agentStatus(agentId: $id) { id } }",
            {"id": their["agent"]},
        )
        await ws.subscribe("w", WORKFLOW, {"id": their["workflow"]})
        await ws.subscribe(
            "e",
            'subscription($id: ID) { events(filter: {taskId: $id}, after: "0") { id } }',
            {"id": their["task"]},
        )
        codes = [(await ws.failure(op))["extensions"]["code"] for op in "taw"]
        # events by another tenant's id is no error: it simply never matches anything.
        await ws.silent("e", 0.3)
    assert codes == ["NOT_FOUND", "NOT_FOUND", "NOT_FOUND"]


async def test_a_viewer_can_subscribe_but_not_to_system_metrics(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, viewer, protocol=protocol) as ws:
        await ws.subscribe("metrics", METRICS)
        error = await ws.failure("metrics")
        await ws.subscribe("tasks", SUBSCRIPTIONS["tasks"])
        await subscribed(server, 1)
        await Tenant(server, tenant).create_task("seen by a viewer")
        assert (await ws.field("tasks"))["title"] == "seen by a viewer"
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert "data" not in error


async def test_an_agent_token_watches_only_its_own_tenant(server: LiveServer, tenant: str) -> None:
    mine = Tenant(server, tenant)
    theirs = Tenant(server, f"{tenant}b")
    agent = await mine.register_agent("watcher")
    async with await Socket.open(server.ws_url, agent.token) as ws:
        await ws.subscribe("metrics", METRICS)
        assert (await ws.failure("metrics"))["extensions"]["code"] == "FORBIDDEN"
        await ws.subscribe("tasks", SUBSCRIPTIONS["tasks"])
        await subscribed(server, 1)
        await theirs.create_task(secrets.token_hex(4))
        await ws.silent("tasks", 0.2)
        await mine.create_task("for the agent")
        assert (await ws.field("tasks"))["title"] == "for the agent"
