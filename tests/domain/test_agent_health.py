"""Agents: ONLINE on register, BUSY while holding, heartbeats, and the health sweeper."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from api.app import build_runtime
from api.auth.principal import Principal
from api.domain import AgentState, AgentStatus, EventType, TaskStatus
from api.errors import Forbidden, NotFound
from api.runtime import Runtime
from api.settings import Settings
from tests.domain.helpers import (
    as_agent,
    events,
    everything,
    principal,
    register,
    set_heartbeat,
)
from tests.support.databases import fresh_database

# With the default timeouts (30 s unhealthy, 120 s offline) these are unambiguous.
UNHEALTHY_AGO = timedelta(seconds=60)
OFFLINE_AGO = timedelta(seconds=600)


async def _agent(runtime: Runtime, tenant: str, id: str) -> AgentState:
    return (await runtime.reads.agents_by_id(tenant, [id]))[id]


async def _status_changes(runtime: Runtime, tenant: str, agent_id: str) -> list[tuple[str, str]]:
    return [
        (e.data["from"], e.data["to"])
        for e in await events(runtime, tenant)
        if e.type is EventType.AGENT_STATUS_CHANGED and e.agent_id == agent_id
    ]


async def test_registered_agent_is_online_and_announced(
    runtime: Runtime, operator: Principal
) -> None:
    agent, token = await runtime.agents.register(
        operator, name=" scanner ", capabilities=["b", "a", "a"], metadata={"zone": "eu"}
    )

    assert agent.status is AgentStatus.ONLINE
    assert (agent.name, agent.capabilities, agent.metadata) == (
        "scanner",
        ["a", "b"],
        {"zone": "eu"},
    )
    assert agent.last_heartbeat_at == agent.registered_at
    claims = await runtime.verifier.verify(token)
    assert (claims.subject, claims.tenant, claims.agent_id) == (
        f"agent:{agent.id}",
        operator.tenant,
        agent.id,
    )
    assert [r.value for r in claims.roles] == ["AGENT"]
    log = await events(runtime, operator.tenant)
    assert [(e.type, e.agent_id) for e in log] == [(EventType.AGENT_REGISTERED, agent.id)]


async def test_agent_is_busy_while_holding_a_task(runtime: Runtime, operator: Principal) -> None:
    agent = await register(runtime, operator)
    task = await runtime.tasks.create(
        operator, title="t", capability=None, priority=0, input=None, max_attempts=3
    )

    await runtime.tasks.claim(as_agent(agent), agent.id)
    busy = await _agent(runtime, operator.tenant, agent.id)
    await runtime.tasks.complete(as_agent(agent), task.id, None)
    free = await _agent(runtime, operator.tenant, agent.id)

    assert (busy.status, busy.current_task_id) == (AgentStatus.BUSY, task.id)
    assert (free.status, free.current_task_id) == (AgentStatus.ONLINE, None)
    assert await _status_changes(runtime, operator.tenant, agent.id) == [
        ("ONLINE", "BUSY"),
        ("BUSY", "ONLINE"),
    ]


async def test_heartbeat_publishes_nothing_when_status_is_unchanged(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator)
    before = len(await events(runtime, operator.tenant))

    beat = await runtime.agents.heartbeat(as_agent(agent), agent.id)

    assert beat.status is AgentStatus.ONLINE
    assert beat.last_heartbeat_at is not None and beat.last_heartbeat_at > agent.last_heartbeat_at  # type: ignore[operator]
    assert len(await events(runtime, operator.tenant)) == before


async def test_heartbeat_revives_an_unhealthy_agent_once(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator)
    await set_heartbeat(runtime, agent.id, UNHEALTHY_AGO)
    await runtime.agents.sweep()
    assert (await _agent(runtime, operator.tenant, agent.id)).status is AgentStatus.UNHEALTHY

    await runtime.agents.heartbeat(as_agent(agent), agent.id)
    await runtime.agents.heartbeat(as_agent(agent), agent.id)

    assert (await _agent(runtime, operator.tenant, agent.id)).status is AgentStatus.ONLINE
    assert await _status_changes(runtime, operator.tenant, agent.id) == [
        ("ONLINE", "UNHEALTHY"),
        ("UNHEALTHY", "ONLINE"),
    ]


async def test_unhealthy_busy_agent_comes_back_busy(runtime: Runtime, operator: Principal) -> None:
    agent = await register(runtime, operator)
    await runtime.tasks.create(
        operator, title="t", capability=None, priority=0, input=None, max_attempts=3
    )
    await runtime.tasks.claim(as_agent(agent), agent.id)
    await set_heartbeat(runtime, agent.id, UNHEALTHY_AGO)
    await runtime.agents.sweep()

    back = await runtime.agents.heartbeat(as_agent(agent), agent.id)

    assert back.status is AgentStatus.BUSY
    assert await _status_changes(runtime, operator.tenant, agent.id) == [
        ("ONLINE", "BUSY"),
        ("BUSY", "UNHEALTHY"),
        ("UNHEALTHY", "BUSY"),
    ]


async def test_heartbeat_only_as_itself(runtime: Runtime, operator: Principal) -> None:
    agent = await register(runtime, operator, "a")
    other = await register(runtime, operator, "b")
    before = await everything(runtime, operator.tenant)

    with pytest.raises(Forbidden):
        await runtime.agents.heartbeat(as_agent(other), agent.id)
    with pytest.raises(NotFound):
        await runtime.agents.heartbeat(as_agent(agent), "no-such-agent")
    foreign = principal(f"{operator.tenant}x", *as_agent(agent).roles, agent_id=agent.id)
    with pytest.raises(NotFound):
        await runtime.agents.heartbeat(foreign, agent.id)

    assert await everything(runtime, operator.tenant) == before


async def test_sweeper_marks_silent_agent_unhealthy_once(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator)
    fresh = await register(runtime, operator, "fresh")
    await set_heartbeat(runtime, agent.id, UNHEALTHY_AGO)

    await runtime.agents.sweep()
    await runtime.agents.sweep()

    assert (await _agent(runtime, operator.tenant, agent.id)).status is AgentStatus.UNHEALTHY
    assert (await _agent(runtime, operator.tenant, fresh.id)).status is AgentStatus.ONLINE
    assert await _status_changes(runtime, operator.tenant, agent.id) == [("ONLINE", "UNHEALTHY")]
    change = [e for e in await events(runtime, operator.tenant) if e.agent_id == agent.id][-1]
    assert change.actor == "system:sweeper"
    assert change.snapshots.agent is not None
    assert change.snapshots.agent.status is AgentStatus.UNHEALTHY


async def test_offline_agent_task_is_requeued(runtime: Runtime, operator: Principal) -> None:
    agent = await register(runtime, operator)
    task = await runtime.tasks.create(
        operator, title="t", capability=None, priority=0, input=None, max_attempts=3
    )
    await runtime.tasks.claim(as_agent(agent), agent.id)
    await set_heartbeat(runtime, agent.id, OFFLINE_AGO)

    await runtime.agents.sweep()

    gone = await _agent(runtime, operator.tenant, agent.id)
    assert (gone.status, gone.current_task_id) == (AgentStatus.OFFLINE, None)
    requeued = (await runtime.reads.tasks_by_id(operator.tenant, [task.id]))[task.id]
    assert (requeued.status, requeued.agent_id, requeued.attempts) == (TaskStatus.PENDING, None, 1)
    last_two = (await events(runtime, operator.tenant))[-2:]
    assert [(e.type, e.actor) for e in last_two] == [
        (EventType.AGENT_STATUS_CHANGED, "system:sweeper"),
        (EventType.TASK_REQUEUED, "system:sweeper"),
    ]
    offline = last_two[0].snapshots.agent
    assert offline is not None
    assert (offline.status, offline.current_task_id) == (AgentStatus.OFFLINE, None)
    assert last_two[0].data == {"from": "BUSY", "to": "OFFLINE", "reason": "heartbeat timeout"}
    # Another agent picks the task up.
    rescuer = await register(runtime, operator, "rescuer")
    got = await runtime.tasks.claim(as_agent(rescuer), rescuer.id)
    assert got is not None and (got.id, got.attempts) == (task.id, 2)


async def test_offline_agent_task_out_of_attempts_fails(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator)
    task = await runtime.tasks.create(
        operator, title="t", capability=None, priority=0, input=None, max_attempts=1
    )
    await runtime.tasks.claim(as_agent(agent), agent.id)
    await set_heartbeat(runtime, agent.id, OFFLINE_AGO)

    await runtime.agents.sweep()

    failed = (await runtime.reads.tasks_by_id(operator.tenant, [task.id]))[task.id]
    assert failed.status is TaskStatus.FAILED and failed.finished_at is not None
    assert failed.error is not None and "offline" in failed.error
    assert (await events(runtime, operator.tenant))[-1].type is EventType.TASK_FAILED


async def test_unhealthy_then_offline_is_two_transitions(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator)
    await set_heartbeat(runtime, agent.id, UNHEALTHY_AGO)
    await runtime.agents.sweep()
    await set_heartbeat(runtime, agent.id, OFFLINE_AGO)
    await runtime.agents.sweep()
    await runtime.agents.sweep()

    assert await _status_changes(runtime, operator.tenant, agent.id) == [
        ("ONLINE", "UNHEALTHY"),
        ("UNHEALTHY", "OFFLINE"),
    ]


async def test_offline_agent_comes_back_online_on_heartbeat(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator)
    await set_heartbeat(runtime, agent.id, OFFLINE_AGO)
    await runtime.agents.sweep()

    back = await runtime.agents.heartbeat(as_agent(agent), agent.id)

    assert back.status is AgentStatus.ONLINE
    assert await _status_changes(runtime, operator.tenant, agent.id) == [
        ("ONLINE", "OFFLINE"),
        ("OFFLINE", "ONLINE"),
    ]


@pytest.fixture
async def quick(settings: Settings, tmp_path: Path) -> AsyncIterator[Runtime]:
    """Services with real, short health timeouts, on a database of their own.

    The sweeper sweeps every tenant: on the shared database it would also take
    every other test's agents offline, one transaction each.
    """
    from api.db.migrate import upgrade

    async with fresh_database(settings.resolved_database_url, tmp_path) as url:
        rt = build_runtime(
            settings.model_copy(
                update={"database_url": url, "heartbeat_timeout": 0.6, "offline_after": 1.4}
            )
        )
        await upgrade(rt.db)
        await rt.bus.start()
        try:
            yield rt
        finally:
            await rt.bus.stop()
            await rt.db.close()


async def test_real_short_timeouts_take_an_agent_unhealthy_then_offline(
    quick: Runtime, operator: Principal
) -> None:
    agent = await register(quick, operator)
    await quick.agents.sweep()
    assert (await _agent(quick, operator.tenant, agent.id)).status is AgentStatus.ONLINE

    await asyncio.sleep(0.7)
    await quick.agents.sweep()
    assert (await _agent(quick, operator.tenant, agent.id)).status is AgentStatus.UNHEALTHY

    await asyncio.sleep(0.8)
    await quick.agents.sweep()
    assert (await _agent(quick, operator.tenant, agent.id)).status is AgentStatus.OFFLINE


async def test_two_sweepers_emit_each_transition_once(
    settings: Settings, runtime: Runtime, operator: Principal
) -> None:
    """Two processes' sweepers on one database race on the same agents."""
    from api.db.migrate import upgrade

    other = build_runtime(settings)
    await upgrade(other.db)
    try:
        agents = [await register(runtime, operator, f"a{i}") for i in range(8)]
        for i in range(4):
            await runtime.tasks.create(
                operator, title=f"t{i}", capability=None, priority=0, input=None, max_attempts=3
            )
            await runtime.tasks.claim(as_agent(agents[i]), agents[i].id)
        for agent in agents[:6]:
            await set_heartbeat(runtime, agent.id, OFFLINE_AGO)
        for agent in agents[6:]:
            await set_heartbeat(runtime, agent.id, UNHEALTHY_AGO)

        for _ in range(3):
            await asyncio.gather(
                runtime.agents.sweep(), other.agents.sweep(), runtime.agents.sweep()
            )

        log = await events(runtime, operator.tenant)
        changes = Counter(
            (e.agent_id, e.data["to"])
            for e in log
            if e.type is EventType.AGENT_STATUS_CHANGED and e.actor == "system:sweeper"
        )
        expected = {(a.id, "OFFLINE"): 1 for a in agents[:6]} | {
            (a.id, "UNHEALTHY"): 1 for a in agents[6:]
        }
        assert dict(changes) == expected
        requeued = Counter(e.task_id for e in log if e.type is EventType.TASK_REQUEUED)
        assert len(requeued) == 4 and set(requeued.values()) == {1}
        assert [e.id for e in log] == list(range(1, len(log) + 1))
    finally:
        await other.db.close()
