"""Every root subscription over a real socket, in both WebSocket protocols."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from api.settings import Settings
from tests.realtime.activity import Tenant
from tests.realtime.conftest import serving, subscribed
from tests.realtime.wire import Protocol, Socket
from tests.support.databases import fresh_database
from tests.support.server import LiveServer

TASK_UPDATES = """
subscription($id: ID, $status: [TaskStatus!]) {
  taskUpdates(taskId: $id, status: $status) {
    id title status progress result agent { id name status } workflow { id }
  }
}"""

AGENT_STATUS = """
subscription($id: ID) { agentStatus(agentId: $id) { id name status capabilities } }"""

WORKFLOW_PROGRESS = """
subscription($id: ID!) {
  workflowProgress(workflowId: $id) {
    workflow { id status progress currentStep steps { index name status } }
    step { index name status }
    event { id type taskId workflowId }
  }
}"""

EVENTS = """
subscription($filter: EventFilter, $after: ID) {
  events(filter: $filter, after: $after) { id type taskId }
}"""


async def _until_complete(ws: Socket, op: str, limit: int = 50) -> list[Any]:
    """Results of ``op`` up to the server's ``complete``."""
    results: list[Any] = []
    for _ in range(limit):
        message = await ws.message(op)
        if message["type"] == "complete":
            return results
        assert message["type"] in ("next", "data"), message
        assert not message["payload"].get("errors"), message
        (value,) = message["payload"]["data"].values()
        results.append(value)
    raise AssertionError(f"{op!r} did not complete after {limit} results")


async def test_task_updates_follow_one_task_through_every_change(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    t = Tenant(server, tenant)
    watched = await t.create_task("watched")
    other = await t.create_task("other")
    agent = await t.register_agent("worker")
    viewer = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, viewer, protocol=protocol) as ws:
        await ws.subscribe("1", TASK_UPDATES, {"id": watched["id"]})
        await subscribed(server, 1)
        assert await agent.claim() == watched["id"]
        await agent.progress(watched["id"], 0.5)
        await agent.complete(watched["id"], {"answer": 42})
        await t.cancel_task(other["id"])
        updates = [await ws.field("1") for _ in range(3)]
        await ws.silent("1", 0.2)

    assert [(u["id"], u["status"], u["progress"]) for u in updates] == [
        (watched["id"], "RUNNING", 0.0),
        (watched["id"], "RUNNING", 0.5),
        (watched["id"], "SUCCEEDED", 1.0),
    ]
    assert updates[-1]["result"] == {"answer": 42}
    assert all(u["agent"] == {"id": agent.id, "name": "worker", "status": "BUSY"} for u in updates)
    assert all(u["workflow"] is None for u in updates)


async def test_task_updates_with_a_status_filter_send_only_those_states(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    t = Tenant(server, tenant)
    agent = await t.register_agent()
    viewer = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, viewer, protocol=protocol) as ws:
        await ws.subscribe("done", TASK_UPDATES, {"status": ["SUCCEEDED", "FAILED"]})
        await subscribed(server, 1)
        first = await t.create_task("first")
        second = await t.create_task("second")
        assert await agent.claim() == first["id"]
        await agent.progress(first["id"], 0.3)
        await agent.complete(first["id"])
        assert await agent.claim() == second["id"]
        await agent.fail(second["id"], "no luck", retry=False)
        done = [await ws.field("done") for _ in range(2)]
        await ws.silent("done", 0.2)

    assert [(u["title"], u["status"]) for u in done] == [
        ("first", "SUCCEEDED"),
        ("second", "FAILED"),
    ]


async def test_agent_status_sends_registration_and_every_status_change(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    t = Tenant(server, tenant)
    viewer = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, viewer, protocol=protocol) as ws:
        await ws.subscribe("all", AGENT_STATUS)
        await subscribed(server, 1)
        agent = await t.register_agent("alpha", ["gpu"])
        registered = await ws.field("all")
        await ws.subscribe("one", AGENT_STATUS, {"id": agent.id})
        await subscribed(server, 2)
        await t.register_agent("beta")
        task = await t.create_task("job")
        assert await agent.claim() == task["id"]
        await agent.complete(task["id"])
        one = [await ws.field("one") for _ in range(2)]
        everyone = [await ws.field("all") for _ in range(3)]
        await ws.silent("one", 0.2)

    assert registered == {
        "id": agent.id,
        "name": "alpha",
        "status": "ONLINE",
        "capabilities": ["gpu"],
    }
    assert [(a["name"], a["status"]) for a in one] == [("alpha", "BUSY"), ("alpha", "ONLINE")]
    assert [(a["name"], a["status"]) for a in everyone] == [
        ("beta", "ONLINE"),
        ("alpha", "BUSY"),
        ("alpha", "ONLINE"),
    ]


async def test_agent_status_follows_health_changes_made_by_the_sweeper(
    settings: Settings, tenant: str, tmp_path: Path
) -> None:
    # A database of its own: the sweeper acts on every tenant's agents, and on the shared
    # one it would first work through every earlier test's agents. The timeouts leave
    # seconds between the two transitions, so a loaded machine cannot skip UNHEALTHY.
    async with fresh_database(settings.resolved_database_url, tmp_path) as url:
        with serving(
            settings,
            database_url=url,
            heartbeat_timeout=1.0,
            offline_after=4.0,
            sweep_interval=0.05,
        ) as server:
            t = Tenant(server, tenant)
            viewer = server.token("VIEWER", tenant=tenant)
            async with await Socket.open(server.ws_url, viewer) as ws:
                await ws.subscribe("all", AGENT_STATUS)
                await subscribed(server, 1)
                agent = await t.register_agent("sleepy")
                statuses = [(await ws.field("all", within=20))["status"] for _ in range(3)]
                await agent.heartbeat()
                statuses.append((await ws.field("all", within=20))["status"])
                await ws.silent("all", 0.2)

    assert statuses == ["ONLINE", "UNHEALTHY", "OFFLINE", "ONLINE"]


async def test_workflow_progress_sends_current_state_then_every_change_then_completes(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    t = Tenant(server, tenant)
    workflow = await t.start_workflow("pipeline", ["fetch", "build"])
    agent = await t.register_agent()
    viewer = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, viewer, protocol=protocol) as ws:
        await ws.subscribe("w", WORKFLOW_PROGRESS, {"id": workflow})
        first = await ws.field("w")
        history = await t.event_ids({"workflowId": workflow})
        for _ in range(2):
            task = await agent.claim()
            assert task is not None
            await agent.complete(task, {"done": True})
        changes = await _until_complete(ws, "w")
    history_after = await t.event_ids({"workflowId": workflow})

    assert first["event"]["id"] == str(history[-1])
    assert first["event"]["type"] == "WORKFLOW_STEP_STARTED"
    assert first["step"] == {"index": 0, "name": "fetch", "status": "PENDING"}
    assert first["workflow"]["currentStep"] == 0
    assert first["workflow"]["status"] == "RUNNING"
    assert [c["event"]["type"] for c in changes] == [
        "TASK_STARTED",
        "TASK_SUCCEEDED",
        "WORKFLOW_STEP_COMPLETED",
        "TASK_CREATED",
        "WORKFLOW_STEP_STARTED",
        "TASK_STARTED",
        "TASK_SUCCEEDED",
        "WORKFLOW_STEP_COMPLETED",
        "WORKFLOW_SUCCEEDED",
    ]
    assert [int(c["event"]["id"]) for c in changes] == history_after[len(history) :]
    assert [c["step"]["index"] for c in changes] == [0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert all(c["event"]["workflowId"] == workflow for c in changes)
    assert [c["workflow"]["progress"] for c in changes][2] == 0.5
    assert changes[-1]["workflow"]["status"] == "SUCCEEDED"
    assert changes[-1]["workflow"]["progress"] == 1.0
    assert [s["status"] for s in changes[-1]["workflow"]["steps"]] == ["SUCCEEDED", "SUCCEEDED"]


async def test_workflow_progress_completes_after_a_failed_or_cancelled_workflow(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    t = Tenant(server, tenant)
    failing = await t.start_workflow("failing", ["only"])
    cancelled = await t.start_workflow("cancelled", ["a", "b"])
    agent = await t.register_agent()
    viewer = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, viewer, protocol=protocol) as ws:
        await ws.subscribe("f", WORKFLOW_PROGRESS, {"id": failing})
        await ws.subscribe("c", WORKFLOW_PROGRESS, {"id": cancelled})
        await ws.field("f")
        await ws.field("c")
        task = await agent.claim()
        assert task is not None
        await agent.fail(task, "broken", retry=False)
        await t.cancel_workflow(cancelled)
        failed = await _until_complete(ws, "f")
        stopped = await _until_complete(ws, "c")
        # A finished workflow: its final state, then complete at once.
        await ws.subscribe("again", WORKFLOW_PROGRESS, {"id": failing})
        again = await _until_complete(ws, "again")

    assert [m["event"]["type"] for m in failed] == [
        "TASK_STARTED",
        "TASK_FAILED",
        "WORKFLOW_FAILED",
    ]
    assert [m["event"]["type"] for m in stopped] == ["TASK_CANCELLED", "WORKFLOW_CANCELLED"]
    assert stopped[-1]["workflow"]["status"] == "CANCELLED"
    assert [m["event"]["type"] for m in again] == ["WORKFLOW_FAILED"]
    assert again[0]["workflow"]["status"] == "FAILED"


async def test_events_are_live_only_without_after_and_replayed_after_an_id(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    t = Tenant(server, tenant)
    tasks = [await t.create_task(f"task{i}") for i in range(3)]  # events 1, 2, 3
    viewer = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, viewer, protocol=protocol) as ws:
        await ws.subscribe("live", EVENTS)
        await ws.subscribe("null", EVENTS, {"after": None})
        await ws.subscribe("zero", EVENTS, {"after": "0"})
        await ws.subscribe("two", EVENTS, {"after": "2"})
        await subscribed(server, 4)
        await t.cancel_task(tasks[1]["id"])  # event 4
        await t.create_task("later")  # event 5
        got = {
            op: [await ws.field(op) for _ in range(n)]
            for op, n in [("live", 2), ("null", 2), ("zero", 5), ("two", 3)]
        }
        for op in got:
            await ws.silent(op, 0.1)

    assert [int(e["id"]) for e in got["live"]] == [4, 5]
    assert got["null"] == got["live"]
    assert [int(e["id"]) for e in got["zero"]] == [1, 2, 3, 4, 5]
    assert [int(e["id"]) for e in got["two"]] == [3, 4, 5]
    assert got["zero"][3] == {"id": "4", "type": "TASK_CANCELLED", "taskId": tasks[1]["id"]}
    assert [e["type"] for e in got["zero"]].count("TASK_CREATED") == 4


async def test_events_filter_selects_types_and_entities_in_replay_and_live(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    t = Tenant(server, tenant)
    first = await t.create_task("first")
    second = await t.create_task("second")
    await t.cancel_task(first["id"])
    viewer = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, viewer, protocol=protocol) as ws:
        cancelled = {"types": ["TASK_CANCELLED"]}
        await ws.subscribe("cancelled", EVENTS, {"filter": cancelled, "after": "0"})
        await ws.subscribe("second", EVENTS, {"filter": {"taskId": second["id"]}, "after": "0"})
        await subscribed(server, 2)
        await t.create_task("third")
        await t.cancel_task(second["id"])
        got_cancelled = [await ws.field("cancelled") for _ in range(2)]
        got_second = [await ws.field("second") for _ in range(2)]
        await ws.silent("cancelled", 0.2)
        await ws.silent("second", 0.01)

    assert [(e["type"], e["taskId"]) for e in got_cancelled] == [
        ("TASK_CANCELLED", first["id"]),
        ("TASK_CANCELLED", second["id"]),
    ]
    assert [e["type"] for e in got_second] == ["TASK_CREATED", "TASK_CANCELLED"]


async def test_system_metrics_sends_counters_every_interval_to_operators_and_admins(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    t = Tenant(server, tenant)
    await t.create_task("a")
    await t.create_task("b")
    await t.register_agent()
    query = """subscription { systemMetrics(intervalSeconds: 0.2) {
        at connections subscriptions eventsPublished eventsDelivered
        tasksByStatus agentsByStatus } }"""
    for role in ("OPERATOR", "ADMIN"):
        token = server.token(role, tenant=tenant)
        async with await Socket.open(server.ws_url, token, protocol=protocol) as ws:
            await ws.subscribe("m", query)
            first = await ws.field("m")
            second = await ws.field("m", within=3)
            await ws.stop("m")

        assert second["at"] > first["at"]
        assert first["connections"] >= 1
        assert first["eventsPublished"] >= 3
        assert first["tasksByStatus"]["PENDING"] == 2
        assert sum(first["tasksByStatus"].values()) == 2
        assert first["agentsByStatus"]["ONLINE"] == 1


async def test_a_bad_document_or_argument_ends_only_that_operation(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, viewer, protocol=protocol) as ws:
        await ws.subscribe("cursor", EVENTS, {"after": "not-a-number"})
        bad_cursor = await ws.failure("cursor")
        await ws.subscribe("interval", "subscription { systemMetrics(intervalSeconds: 0) { at } }")
        forbidden = await ws.failure("interval")
        await ws.subscribe("ok", EVENTS)
        await subscribed(server, 1)
        await Tenant(server, tenant).create_task("still working")
        assert (await ws.field("ok"))["type"] == "TASK_CREATED"

    assert bad_cursor["extensions"]["code"] == "BAD_USER_INPUT"
    assert forbidden["extensions"]["code"] == "FORBIDDEN"
