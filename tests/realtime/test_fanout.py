"""Fan-out does no database work per subscriber: events carry the snapshots they render."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from api.db.engine import Database
from api.domain import Role
from api.services.reads import ReadService
from api.services.workflows import StepInput
from api.settings import Settings
from tests.realtime.activity import on_server, principal
from tests.realtime.conftest import serving, subscribed
from tests.realtime.wire import Socket
from tests.support.server import LiveServer
from tests.support.statements import recorded

SOCKETS = 10
STEPS = 12  # about eight events a step: some hundred events in all

# Nested fields are what could reach for the database; a few leaves each keep the cost of
# executing some 7,000 results down.
TASK = "id status agent { id status } workflow { id currentStep }"
AGENT = "id status"
WORKFLOW = "id status steps { index status }"

Event = dict[str, Any]

# What a dashboard watches, nested fields included, and which events each one gets.
DOCUMENTS: dict[str, tuple[str, Callable[[Event], bool]]] = {
    "tasks": (
        f"subscription {{ taskUpdates {{ {TASK} }} }}",
        lambda e: e["type"].startswith("TASK_"),
    ),
    "agents": (
        f"subscription {{ agentStatus {{ {AGENT} }} }}",
        lambda e: e["type"].startswith("AGENT_"),
    ),
    "workflow": (
        f"subscription($w: ID!) {{ workflowProgress(workflowId: $w) {{"
        f" workflow {{ {WORKFLOW} }} step {{ index status }}"
        f" event {{ id type task {{ {TASK} }} workflow {{ id status }} }} }} }}",
        lambda e: e["workflowId"] is not None,
    ),
    "events": (
        f"subscription {{ events {{ id type task {{ {TASK} }} agent {{ {AGENT} }}"
        f" workflow {{ {WORKFLOW} }} }} }}",
        lambda e: True,
    ),
    "progress": (
        f"subscription {{ events(filter: {{types: [TASK_PROGRESS]}}) {{ id task {{ {TASK} }} }} }}",
        lambda e: e["type"] == "TASK_PROGRESS",
    ),
}


@pytest.fixture(scope="module")
def quiet_server(settings: Settings) -> Iterator[LiveServer]:
    """No head checks or sweeps: every SELECT counted comes from the work under test.

    The intervals outlast the module however slow the machine is (at 60 s a sweep once
    landed inside a counting window on a loaded machine).
    """
    with serving(settings, gap_check_interval=86_400, sweep_interval=86_400) as server:
        yield server


def _tables(selects: list[str]) -> Counter[str]:
    """SELECT statements counted by the table they read."""
    counts: Counter[str] = Counter()
    for statement in selects:
        table = re.search(r"\bFROM\s+(\w+)", statement, re.IGNORECASE)
        counts[table.group(1) if table else "-"] += 1
    return counts


def _is_select(statement: str) -> bool:
    return statement.lstrip().upper().startswith("SELECT")


async def _settled(counts: list[str], quiet: float = 0.15, within: float = 10) -> None:
    """Wait until no SELECT has run for ``quiet`` seconds (subscribe-time reads are done)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last = len(counts)
    while loop.time() < deadline:
        await asyncio.sleep(quiet)
        if len(counts) == last:
            return
        last = len(counts)
    raise AssertionError("the server kept querying")


async def _start(server: LiveServer, tenant: str) -> tuple[str, str]:
    """A workflow of STEPS steps and an agent to work on it."""
    rt = server.runtime
    admin = principal(tenant, Role.ADMIN)

    async def go() -> tuple[str, str]:
        steps = [StepInput(f"s{i}", None, None) for i in range(STEPS)]
        workflow = await rt.workflows.start(admin, name="fan-out", steps=steps)
        agent, _ = await rt.agents.register(admin, name="worker", capabilities=[], metadata=None)
        return workflow.id, agent.id

    return await on_server(server, go())


async def _work(server: LiveServer, tenant: str, agent_id: str) -> None:
    """The agent works through every step: claim, report progress, complete."""
    rt = server.runtime
    admin = principal(tenant, Role.ADMIN)

    async def go() -> None:
        for step in range(STEPS):
            task = await rt.tasks.claim(admin, agent_id)
            assert task is not None
            await rt.tasks.report_progress(admin, task.id, 0.5, f"step {step}")
            await rt.tasks.complete(admin, task.id, {"step": step})

    await on_server(server, go())


async def _baseline(server: LiveServer, tenant: str) -> Counter[str]:
    """The SELECTs the same work needs with nobody watching."""
    _, agent = await _start(server, tenant)
    with recorded(server, _is_select) as counts:
        await _work(server, tenant, agent)
    return _tables(counts)


async def _watch(
    server: LiveServer,
    tenant: str,
    documents: dict[str, tuple[str, Callable[[Event], bool]]],
    weights: dict[str, int],
    sockets: int,
) -> tuple[Counter[str], int]:
    """Run the work while each socket holds ``weights[name]`` operations of each document.

    Returns the SELECTs counted and the number of messages delivered; asserts every
    operation received exactly the events it matches.
    """
    workflow, agent = await _start(server, tenant)
    head = len(await _history(server, tenant, after=0))
    viewer = server.token("VIEWER", tenant=tenant)
    opened = [await Socket.open(server.ws_url, viewer) for _ in range(sockets)]
    ops = [
        (ws, f"{name}.{n}", name)
        for ws in opened
        for name, count in weights.items()
        for n in range(count)
    ]
    try:
        with recorded(server, _is_select) as counts:
            for ws, op, name in ops:
                await ws.subscribe(op, documents[name][0], {"w": workflow})
            for ws, op, name in ops:
                if name == "workflow":
                    await ws.field(op)  # its current state, read when it subscribed
            await subscribed(server, len(ops))
            await _settled(counts)
            counts.clear()
            await _work(server, tenant, agent)
            history = await _history(server, tenant, after=head)
            # taskUpdates and agentStatus send the entity (its id), the others the event.
            key = {"tasks": "taskId", "agents": "agentId"}
            expected = {
                name: [e[key.get(name, "id")] for e in history if match(e)]
                for name, (_, match) in documents.items()
            }
            delivered = await asyncio.gather(
                *(_receive(ws, op, len(expected[name])) for ws, op, name in ops)
            )
            counted = _tables(counts)
        for (_, op, name), got in zip(ops, delivered, strict=True):
            assert got == expected[name], f"{op} got {got}, expected {expected[name]}"
        for ws, op, name in ops:
            if name == "workflow":
                await ws.completed(op)  # WORKFLOW_SUCCEEDED ends it
    finally:
        for ws in opened:
            await ws.close()
    return counted, sum(len(d) for d in delivered)


async def _history(server: LiveServer, tenant: str, *, after: int) -> list[Event]:
    """The tenant's events, read through an engine of our own (the server's is counted)."""
    db = Database(server.settings.resolved_database_url)
    try:
        records = await ReadService(db).events_after(tenant, after, 10_000)
    finally:
        await db.close()
    return [
        {
            "id": str(r.id),
            "type": r.type.value,
            "taskId": r.task_id,
            "agentId": r.agent_id,
            "workflowId": r.workflow_id,
        }
        for r in records
    ]


async def _receive(ws: Socket, op: str, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        value = await ws.field(op, within=30)
        ids.append(value["id"] if "id" in value else value["event"]["id"])
    return ids


async def test_a_hundred_subscribers_cause_no_select_beyond_what_the_writes_need(
    quiet_server: LiveServer, tenant: str
) -> None:
    baseline = await _baseline(quiet_server, f"{tenant}q")
    # Ten operations a socket, four of them following every event.
    weights = {"events": 4, "tasks": 2, "workflow": 2, "agents": 1, "progress": 1}
    watched, delivered = await _watch(quiet_server, tenant, DOCUMENTS, weights, SOCKETS)

    assert delivered > 6000  # 40 x ~100 events, and 60 operations that match some of them
    assert watched == baseline, f"subscribers added SELECTs: {watched - baseline}"


async def test_current_task_and_step_tasks_render_from_the_event_not_the_database(
    quiet_server: LiveServer, tenant: str
) -> None:
    documents = {
        "agents": (
            "subscription { agentStatus { id status currentTask { id status } } }",
            DOCUMENTS["agents"][1],
        ),
        "workflow": (
            "subscription($w: ID!) { workflowProgress(workflowId: $w) {"
            " workflow { steps { index task { id status } } } step { task { id status } }"
            " event { id } } }",
            DOCUMENTS["workflow"][1],
        ),
    }
    baseline = await _baseline(quiet_server, f"{tenant}q")
    watched, _ = await _watch(quiet_server, tenant, documents, {"agents": 1, "workflow": 1}, 1)
    assert watched == baseline, f"subscribers added SELECTs: {watched - baseline}"
