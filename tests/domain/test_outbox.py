"""The transactional outbox: per-tenant ids in commit order, actors, and application time."""

from __future__ import annotations

import asyncio
from datetime import UTC

import pytest
from sqlalchemy import text

from api.auth.principal import Principal
from api.db.engine import Database
from api.domain import Role
from api.errors import Conflict
from api.runtime import Runtime
from tests.domain.helpers import as_agent, events, principal, register

WRITERS = 8
MUTATIONS = 25


async def test_event_ids_are_contiguous_per_tenant_under_concurrent_writers(
    runtime: Runtime, tenant: str, database_url: str
) -> None:
    tenants = [tenant, f"{tenant}-b"]
    done = asyncio.Event()
    seen_states = 0
    violations: list[tuple[str, list[int]]] = []

    async def writer(n: int) -> None:
        who = principal(tenants[n % 2], Role.OPERATOR, subject=f"writer-{n}")
        task_id = None
        for i in range(MUTATIONS):
            if task_id is None:
                task_id = (
                    await runtime.tasks.create(
                        who,
                        title=f"w{n}-{i}",
                        capability=None,
                        priority=0,
                        input=None,
                        max_attempts=1,
                    )
                ).id
            else:
                await runtime.tasks.cancel(who, task_id)
                task_id = None
            # On SQLite a mutation never waits (its driver runs on this thread): let
            # the reader poll between mutations, as it would between requests.
            await asyncio.sleep(0)

    async def reader() -> None:
        """Polls the log as a client would: an id never shows while a smaller one is missing."""
        nonlocal seen_states
        db = Database(database_url)
        try:
            async with db.engine.connect() as conn:
                while not done.is_set():
                    for t in tenants:
                        rows = await conn.execute(
                            text("SELECT id FROM event WHERE tenant = :t"), {"t": t}
                        )
                        ids = sorted(r[0] for r in rows)
                        if ids != list(range(1, len(ids) + 1)):
                            violations.append((t, ids))
                        seen_states += 1
                    await conn.rollback()  # a fresh snapshot for the next poll
                    await asyncio.sleep(0)
        finally:
            await db.close()

    polling = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(WRITERS)))
    done.set()
    await polling

    assert violations == []
    assert seen_states > 2
    for t in tenants:
        ids = [e.id for e in await events(runtime, t)]
        assert ids == list(range(1, WRITERS // 2 * MUTATIONS + 1))
    assert (await runtime.reads.heads())[tenant] == WRITERS // 2 * MUTATIONS


async def test_refused_change_uses_no_event_id(runtime: Runtime, operator: Principal) -> None:
    task = await runtime.tasks.create(
        operator, title="t", capability=None, priority=0, input=None, max_attempts=1
    )
    await runtime.tasks.cancel(operator, task.id)
    for _ in range(3):
        with pytest.raises(Conflict):
            await runtime.tasks.cancel(operator, task.id)
    await runtime.tasks.create(
        operator, title="u", capability=None, priority=0, input=None, max_attempts=1
    )

    assert [e.id for e in await events(runtime, operator.tenant)] == [1, 2, 3]


async def test_every_event_records_its_actor(runtime: Runtime, operator: Principal) -> None:
    agent = await register(runtime, operator)
    task = await runtime.tasks.create(
        operator, title="t", capability=None, priority=0, input=None, max_attempts=1
    )
    await runtime.tasks.claim(as_agent(agent), agent.id)
    await runtime.tasks.complete(as_agent(agent), task.id, None)

    log = await events(runtime, operator.tenant)

    assert [(e.type.value, e.actor) for e in log] == [
        ("AGENT_REGISTERED", "operator"),
        ("TASK_CREATED", "operator"),
        ("AGENT_STATUS_CHANGED", f"agent:{agent.id}"),
        ("TASK_STARTED", f"agent:{agent.id}"),
        ("TASK_SUCCEEDED", f"agent:{agent.id}"),
        ("AGENT_STATUS_CHANGED", f"agent:{agent.id}"),
    ]


async def test_updated_at_is_the_time_of_the_event_that_changed_it(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator)
    me = as_agent(agent)
    task = await runtime.tasks.create(
        operator, title="t", capability=None, priority=0, input=None, max_attempts=2
    )
    steps = [
        lambda: runtime.tasks.claim(me, agent.id),
        lambda: runtime.tasks.report_progress(me, task.id, 0.3, "x"),
        lambda: runtime.tasks.fail(me, task.id, "again", True),
        lambda: runtime.tasks.claim(me, agent.id),
        lambda: runtime.tasks.complete(me, task.id, 1),
    ]
    states = [task]
    for step in steps:
        state = await step()
        assert state is not None
        states.append(state)

    task_events = [e for e in await events(runtime, operator.tenant) if e.task_id == task.id]
    assert len(task_events) == len(states)
    for state, event in zip(states, task_events, strict=True):
        assert state.updated_at == event.occurred_at
        assert event.snapshots.task is not None
        assert event.snapshots.task.updated_at == event.occurred_at
        assert event.occurred_at.tzinfo is not None
        assert event.occurred_at.utcoffset() == UTC.utcoffset(None)
    stored = (await runtime.reads.tasks_by_id(operator.tenant, [task.id]))[task.id]
    assert stored.updated_at == task_events[-1].occurred_at
    assert stored.started_at == task_events[4].occurred_at
    assert stored.finished_at == task_events[-1].occurred_at
    times = [e.occurred_at for e in task_events]
    assert times == sorted(times) and len(set(times)) == len(times)
