"""claimTask: atomic under races, highest priority then oldest, capability matching."""

from __future__ import annotations

import asyncio
from collections import Counter

from api.auth.principal import Principal
from api.db import tasks as task_rows
from api.domain import AgentState, EventType, TaskStatus
from api.runtime import Runtime
from tests.domain.helpers import as_agent, events, register


async def _create(runtime: Runtime, operator: Principal, title: str, **kw: object) -> str:
    fields: dict[str, object] = {
        "capability": None,
        "priority": 0,
        "input": None,
        "max_attempts": 3,
    }
    fields.update(kw)
    task = await runtime.tasks.create(operator, title=title, **fields)  # type: ignore[arg-type]
    return task.id


async def test_claim_is_atomic_under_race(runtime: Runtime, operator: Principal) -> None:
    agents = [await register(runtime, operator, f"a{i}") for i in range(20)]
    created = {await _create(runtime, operator, f"t{i}") for i in range(50)}

    async def work(agent: AgentState) -> list[str]:
        me, done = as_agent(agent), []
        while (task := await runtime.tasks.claim(me, agent.id)) is not None:
            assert task.agent_id == agent.id
            done.append(task.id)
            await runtime.tasks.complete(me, task.id, {"by": agent.id})
        return done

    results = await asyncio.gather(*(work(a) for a in agents))

    claimed = [task_id for done in results for task_id in done]
    assert sorted(claimed) == sorted(created)  # every task once: none twice, none lost
    log = await events(runtime, operator.tenant)
    started = Counter(e.task_id for e in log if e.type is EventType.TASK_STARTED)
    assert set(started) == created and set(started.values()) == {1}
    page = await runtime.reads.tasks(
        operator.tenant, statuses=None, agent_id=None, workflow_id=None, first=100, after=None
    )
    assert {t.status for _, t in page.items} == {TaskStatus.SUCCEEDED}
    assert all(t.attempts == 1 and t.result == {"by": t.agent_id} for _, t in page.items)


async def test_racing_claimers_never_share_a_task(runtime: Runtime, operator: Principal) -> None:
    agents = [await register(runtime, operator, f"a{i}") for i in range(20)]
    created = {await _create(runtime, operator, f"t{i}") for i in range(5)}

    got = await asyncio.gather(*(runtime.tasks.claim(as_agent(a), a.id) for a in agents))

    winners = [t for t in got if t is not None]
    assert sorted(t.id for t in winners) == sorted(created)
    assert len({t.agent_id for t in winners}) == 5


async def test_claim_takes_highest_priority_then_oldest(
    runtime: Runtime, operator: Principal
) -> None:
    low = await _create(runtime, operator, "low", priority=-1)
    normal = await _create(runtime, operator, "normal", priority=0)
    urgent_old = await _create(runtime, operator, "urgent-old", priority=5)
    top = await _create(runtime, operator, "top", priority=10)
    urgent_new = await _create(runtime, operator, "urgent-new", priority=5)
    agent = await register(runtime, operator)
    me = as_agent(agent)

    order = []
    while (task := await runtime.tasks.claim(me, agent.id)) is not None:
        order.append(task.id)
        await runtime.tasks.complete(me, task.id, None)

    assert order == [top, urgent_old, urgent_new, normal, low]


async def test_requeued_task_keeps_its_place_by_age(runtime: Runtime, operator: Principal) -> None:
    older = await _create(runtime, operator, "older")
    newer = await _create(runtime, operator, "newer")
    agent = await register(runtime, operator)
    me = as_agent(agent)
    task = await runtime.tasks.claim(me, agent.id)
    assert task is not None and task.id == older
    await runtime.tasks.fail(me, older, "retry me", True)

    again = await runtime.tasks.claim(me, agent.id)

    assert again is not None and again.id == older != newer


async def test_task_needing_a_capability_goes_only_to_agents_that_have_it(
    runtime: Runtime, operator: Principal
) -> None:
    gpu_task = await _create(runtime, operator, "render", capability="gpu", priority=10)
    plain = await register(runtime, operator, "plain", capabilities=["cpu"])
    near_miss = await register(runtime, operator, "near", capabilities=["gpu-small", "GPU"])
    gpu = await register(runtime, operator, "gpu", capabilities=["cpu", "gpu"])

    assert await runtime.tasks.claim(as_agent(plain), plain.id) is None
    assert await runtime.tasks.claim(as_agent(near_miss), near_miss.id) is None
    got = await runtime.tasks.claim(as_agent(gpu), gpu.id)

    assert got is not None and got.id == gpu_task


async def test_task_needing_no_capability_goes_to_anyone(
    runtime: Runtime, operator: Principal
) -> None:
    gpu = await register(runtime, operator, "gpu", capabilities=["gpu"])
    bare = await register(runtime, operator, "bare", capabilities=[])
    first = await _create(runtime, operator, "anything-1")
    second = await _create(runtime, operator, "anything-2")

    a = await runtime.tasks.claim(as_agent(gpu), gpu.id)
    b = await runtime.tasks.claim(as_agent(bare), bare.id)

    assert a is not None and b is not None
    assert (a.id, b.id) == (first, second)


async def test_capable_agent_skips_tasks_it_cannot_do(
    runtime: Runtime, operator: Principal
) -> None:
    await _create(runtime, operator, "needs-gpu", capability="gpu", priority=100)
    doable = await _create(runtime, operator, "needs-cpu", capability="cpu", priority=1)
    cpu = await register(runtime, operator, "cpu", capabilities=["cpu"])

    got = await runtime.tasks.claim(as_agent(cpu), cpu.id)

    assert got is not None and got.id == doable


async def test_claim_never_reaches_into_another_tenant(
    runtime: Runtime, operator: Principal, tenant: str
) -> None:
    from api.domain import Role
    from tests.domain.helpers import principal

    other = principal(f"{tenant}-other", Role.OPERATOR)
    await _create(runtime, other, "theirs")
    agent = await register(runtime, operator)

    assert await runtime.tasks.claim(as_agent(agent), agent.id) is None


async def test_the_claim_reads_its_order_from_the_index(runtime: Runtime, tenant: str) -> None:
    """The next claimable task comes from one index entry, not a sort of the queue
    (migration 0003): the plan has no sort step on either database."""
    statement = task_rows._NEXT_CLAIMABLE.params(p_tenant=tenant, p_capabilities=["gpu"])
    async with runtime.db.engine.connect() as conn:
        dialect = conn.dialect
        sql = str(
            statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        ).replace(" FOR UPDATE SKIP LOCKED", "")
        if dialect.name == "sqlite":
            plan = [row[-1] for row in await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
            assert not any("TEMP B-TREE" in step for step in plan), plan
            assert any("ix_task_claim" in step for step in plan), plan
        else:
            # On a small table a scan and a sort can be the cheaper plan: rule both out,
            # so the planner sorts only when no index gives the order.
            for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                await conn.exec_driver_sql(f"SET LOCAL {setting} = off")
            plan = [row[0] for row in await conn.exec_driver_sql(f"EXPLAIN {sql}")]
            assert not any("Sort" in step for step in plan), plan
            assert any("ix_task_claim" in step for step in plan), plan
