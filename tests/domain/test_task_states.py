"""The task state machine: each legal transition; each illegal one is CONFLICT, writing nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from api.auth.principal import Principal
from api.domain import AgentStatus, EventType, TaskState, TaskStatus
from api.errors import Conflict
from api.metrics import Metrics
from api.runtime import Runtime
from tests.domain.helpers import as_agent, events, everything, register, set_heartbeat


async def create(runtime: Runtime, operator: Principal, **overrides: Any) -> TaskState:
    fields: dict[str, Any] = {
        "title": "job",
        "capability": None,
        "priority": 0,
        "input": {"n": 1},
        "max_attempts": 3,
    }
    fields.update(overrides)
    return await runtime.tasks.create(operator, **fields)


async def test_created_task_is_pending_with_one_event(
    runtime: Runtime, operator: Principal
) -> None:
    task = await create(runtime, operator, title="  spaced  ", priority=7)

    assert task.status is TaskStatus.PENDING
    assert (task.title, task.priority, task.attempts, task.progress) == ("spaced", 7, 0, 0.0)
    assert task.agent_id is None and task.started_at is None and task.finished_at is None
    log = await events(runtime, operator.tenant)
    assert [(e.type, e.task_id, e.actor) for e in log] == [
        (EventType.TASK_CREATED, task.id, "operator")
    ]
    assert log[0].snapshots.task == task


async def test_claim_progress_complete_walks_pending_running_succeeded(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator)
    me = as_agent(agent)
    task = await create(runtime, operator)

    running = await runtime.tasks.claim(me, agent.id)
    assert running is not None and running.id == task.id
    assert running.status is TaskStatus.RUNNING
    assert (running.agent_id, running.attempts) == (agent.id, 1)
    assert running.started_at is not None
    assert (await runtime.reads.agents_by_id(operator.tenant, [agent.id]))[
        agent.id
    ].status is AgentStatus.BUSY

    progressed = await runtime.tasks.report_progress(me, task.id, 0.5, "half way")
    assert (progressed.status, progressed.progress, progressed.message) == (
        TaskStatus.RUNNING,
        0.5,
        "half way",
    )
    # Agents may re-estimate downwards: any value in 0..1 is accepted.
    await runtime.tasks.report_progress(me, task.id, 0.25, None)

    done = await runtime.tasks.complete(me, task.id, {"answer": 42})
    assert done.status is TaskStatus.SUCCEEDED
    assert (done.result, done.progress) == ({"answer": 42}, 1.0)
    assert done.finished_at is not None
    holder = (await runtime.reads.agents_by_id(operator.tenant, [agent.id]))[agent.id]
    assert (holder.status, holder.current_task_id) == (AgentStatus.ONLINE, None)

    task_events = [e.type for e in await events(runtime, operator.tenant) if e.task_id == task.id]
    assert task_events == [
        EventType.TASK_CREATED,
        EventType.TASK_STARTED,
        EventType.TASK_PROGRESS,
        EventType.TASK_PROGRESS,
        EventType.TASK_SUCCEEDED,
    ]


async def test_claim_and_complete_events_carry_the_states_they_commit(
    runtime: Runtime, operator: Principal
) -> None:
    """Each event's payload, exactly: the agent's status change (with the task it now
    holds attached) before TASK_STARTED, and TASK_SUCCEEDED before the agent's release."""
    agent = await register(runtime, operator)
    me = as_agent(agent)
    task = await create(runtime, operator)
    start = len(await events(runtime, operator.tenant))

    running = await runtime.tasks.claim(me, agent.id)
    assert running is not None
    busy = (await runtime.reads.agents_by_id(operator.tenant, [agent.id]))[agent.id]
    done = await runtime.tasks.complete(me, task.id, {"answer": [4, 2.0], "z": None, "a": "x"})
    online = (await runtime.reads.agents_by_id(operator.tenant, [agent.id]))[agent.id]

    assert (busy.status, busy.current_task_id) == (AgentStatus.BUSY, task.id)
    assert (online.status, online.current_task_id) == (AgentStatus.ONLINE, None)
    assert done.result == {"answer": [4, 2.0], "z": None, "a": "x"}
    assert list(done.result) == ["answer", "z", "a"]
    log = (await events(runtime, operator.tenant))[start:]
    claimed_at, completed_at = log[0].occurred_at, log[2].occurred_at
    assert busy.last_heartbeat_at == claimed_at == running.started_at == running.updated_at
    assert done.finished_at == done.updated_at == completed_at
    got = [
        (e.type, e.task_id, e.agent_id, e.workflow_id, e.data, e.snapshots.model_dump())
        for e in log
    ]
    assert got == [
        (
            EventType.AGENT_STATUS_CHANGED,
            None,
            agent.id,
            None,
            {"from": "ONLINE", "to": "BUSY"},
            {
                "task": None,
                "agent": busy.model_dump(),
                "workflow": None,
                "related": [running.model_dump()],
            },
        ),
        (
            EventType.TASK_STARTED,
            task.id,
            agent.id,
            None,
            {},
            {
                "task": running.model_dump(),
                "agent": busy.model_dump(),
                "workflow": None,
                "related": [],
            },
        ),
        (
            EventType.TASK_SUCCEEDED,
            task.id,
            agent.id,
            None,
            {},
            {
                "task": done.model_dump(),
                "agent": busy.model_dump(),
                "workflow": None,
                "related": [],
            },
        ),
        (
            EventType.AGENT_STATUS_CHANGED,
            None,
            agent.id,
            None,
            {"from": "BUSY", "to": "ONLINE"},
            {"task": None, "agent": online.model_dump(), "workflow": None, "related": []},
        ),
    ]
    assert [e.id for e in log] == list(range(log[0].id, log[0].id + 4))


async def test_an_unhealthy_agent_that_claims_is_busy_and_one_with_nothing_to_do_is_online(
    runtime: Runtime, operator: Principal
) -> None:
    idle = await register(runtime, operator, "idle")
    worker = await register(runtime, operator, "worker", capabilities=["gpu"])
    task = await create(runtime, operator, capability="gpu")
    for agent in (idle, worker):
        await set_heartbeat(runtime, agent.id, timedelta(seconds=60))  # timeout: 30 s
    await runtime.agents.sweep()
    start = len(await events(runtime, operator.tenant))

    assert await runtime.tasks.claim(as_agent(idle), idle.id) is None
    running = await runtime.tasks.claim(as_agent(worker), worker.id)

    assert running is not None and running.id == task.id
    log = (await events(runtime, operator.tenant))[start:]
    assert [(e.type, e.agent_id, e.data) for e in log] == [
        (EventType.AGENT_STATUS_CHANGED, idle.id, {"from": "UNHEALTHY", "to": "ONLINE"}),
        (EventType.AGENT_STATUS_CHANGED, worker.id, {"from": "UNHEALTHY", "to": "BUSY"}),
        (EventType.TASK_STARTED, worker.id, {}),
    ]
    states = await runtime.reads.agents_by_id(operator.tenant, [idle.id, worker.id])
    assert log[0].snapshots.agent == states[idle.id]
    assert states[idle.id].last_heartbeat_at == log[0].occurred_at
    assert log[1].snapshots.related == [running]
    assert log[1].snapshots.agent == log[2].snapshots.agent == states[worker.id]


async def test_fail_with_retry_and_attempts_left_requeues(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator)
    me = as_agent(agent)
    task = await create(runtime, operator, max_attempts=2)
    await runtime.tasks.claim(me, agent.id)

    requeued = await runtime.tasks.fail(me, task.id, "flaky", True)

    assert requeued.status is TaskStatus.PENDING
    assert (requeued.attempts, requeued.error, requeued.agent_id) == (1, "flaky", None)
    assert requeued.finished_at is None
    holder = (await runtime.reads.agents_by_id(operator.tenant, [agent.id]))[agent.id]
    assert (holder.status, holder.current_task_id) == (AgentStatus.ONLINE, None)
    last = (await events(runtime, operator.tenant))[-2:]
    assert [e.type for e in last] == [EventType.TASK_REQUEUED, EventType.AGENT_STATUS_CHANGED]
    # The requeued task can be claimed again, and counts a second attempt.
    again = await runtime.tasks.claim(me, agent.id)
    assert again is not None and (again.id, again.attempts) == (task.id, 2)


async def test_fail_out_of_attempts_is_failed_for_good(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator)
    me = as_agent(agent)
    task = await create(runtime, operator, max_attempts=2)
    for _ in range(2):
        await runtime.tasks.claim(me, agent.id)
        last = await runtime.tasks.fail(me, task.id, "broken", True)

    assert last.status is TaskStatus.FAILED
    assert (last.attempts, last.error) == (2, "broken")
    assert last.finished_at is not None
    assert await runtime.tasks.claim(me, agent.id) is None
    types = [e.type for e in await events(runtime, operator.tenant) if e.task_id == task.id]
    assert types == [
        EventType.TASK_CREATED,
        EventType.TASK_STARTED,
        EventType.TASK_REQUEUED,
        EventType.TASK_STARTED,
        EventType.TASK_FAILED,
    ]


async def test_fail_without_retry_fails_even_with_attempts_left(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator)
    task = await create(runtime, operator, max_attempts=5)
    await runtime.tasks.claim(as_agent(agent), agent.id)

    failed = await runtime.tasks.fail(as_agent(agent), task.id, "fatal", False)

    assert (failed.status, failed.attempts) == (TaskStatus.FAILED, 1)


async def test_cancel_pending_task(runtime: Runtime, operator: Principal) -> None:
    task = await create(runtime, operator)

    cancelled = await runtime.tasks.cancel(operator, task.id)

    assert cancelled.status is TaskStatus.CANCELLED
    assert cancelled.finished_at is not None
    assert (await events(runtime, operator.tenant))[-1].type is EventType.TASK_CANCELLED


async def test_cancel_running_task_releases_its_agent(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator)
    task = await create(runtime, operator)
    await runtime.tasks.claim(as_agent(agent), agent.id)

    cancelled = await runtime.tasks.cancel(operator, task.id)

    assert cancelled.status is TaskStatus.CANCELLED
    holder = (await runtime.reads.agents_by_id(operator.tenant, [agent.id]))[agent.id]
    assert (holder.status, holder.current_task_id) == (AgentStatus.ONLINE, None)
    tail = [(e.type, e.agent_id) for e in (await events(runtime, operator.tenant))[-2:]]
    assert tail == [
        (EventType.TASK_CANCELLED, agent.id),
        (EventType.AGENT_STATUS_CHANGED, agent.id),
    ]
    # The agent is free to take new work.
    await create(runtime, operator, title="next")
    assert await runtime.tasks.claim(as_agent(agent), agent.id) is not None


Setup = Callable[[Runtime, Principal, Principal], Awaitable[TaskState]]


async def _pending(runtime: Runtime, operator: Principal, me: Principal) -> TaskState:
    return await create(runtime, operator)


async def _succeeded(runtime: Runtime, operator: Principal, me: Principal) -> TaskState:
    task = await create(runtime, operator)
    assert me.agent_id is not None
    await runtime.tasks.claim(me, me.agent_id)
    return await runtime.tasks.complete(me, task.id, None)


async def _failed(runtime: Runtime, operator: Principal, me: Principal) -> TaskState:
    task = await create(runtime, operator, max_attempts=1)
    assert me.agent_id is not None
    await runtime.tasks.claim(me, me.agent_id)
    return await runtime.tasks.fail(me, task.id, "no", True)


async def _cancelled_pending(runtime: Runtime, operator: Principal, me: Principal) -> TaskState:
    task = await create(runtime, operator)
    return await runtime.tasks.cancel(operator, task.id)


async def _cancelled_running(runtime: Runtime, operator: Principal, me: Principal) -> TaskState:
    task = await create(runtime, operator)
    assert me.agent_id is not None
    await runtime.tasks.claim(me, me.agent_id)
    return await runtime.tasks.cancel(operator, task.id)


Action = Callable[[Runtime, Principal, Principal, str], Awaitable[object]]

ACTIONS: dict[str, Action] = {
    "complete": lambda rt, op, me, id: rt.tasks.complete(me, id, {"x": 1}),
    "fail-retry": lambda rt, op, me, id: rt.tasks.fail(me, id, "e", True),
    "fail-final": lambda rt, op, me, id: rt.tasks.fail(me, id, "e", False),
    "progress": lambda rt, op, me, id: rt.tasks.report_progress(me, id, 0.5, None),
    "cancel": lambda rt, op, me, id: rt.tasks.cancel(op, id),
}


@pytest.mark.parametrize(
    ("setup", "illegal"),
    [
        (_pending, ["complete", "fail-retry", "fail-final", "progress"]),
        (_succeeded, list(ACTIONS)),
        (_failed, list(ACTIONS)),
        (_cancelled_pending, list(ACTIONS)),
        (_cancelled_running, list(ACTIONS)),
    ],
    ids=["PENDING", "SUCCEEDED", "FAILED", "CANCELLED-from-PENDING", "CANCELLED-from-RUNNING"],
)
async def test_illegal_transition_is_conflict_and_writes_nothing(
    runtime: Runtime, operator: Principal, setup: Setup, illegal: list[str]
) -> None:
    agent = await register(runtime, operator)
    me = as_agent(agent)
    task = await setup(runtime, operator, me)
    before = await everything(runtime, operator.tenant)
    published = Metrics.value(runtime.metrics.events_published)

    for name in illegal:
        with pytest.raises(Conflict):
            await ACTIONS[name](runtime, operator, me, task.id)

    assert await everything(runtime, operator.tenant) == before
    assert Metrics.value(runtime.metrics.events_published) == published


async def test_claim_while_holding_a_task_is_conflict_and_writes_nothing(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator)
    await create(runtime, operator, title="first")
    await create(runtime, operator, title="second")
    await runtime.tasks.claim(as_agent(agent), agent.id)
    before = await everything(runtime, operator.tenant)

    with pytest.raises(Conflict):
        await runtime.tasks.claim(as_agent(agent), agent.id)

    assert await everything(runtime, operator.tenant) == before


async def test_claim_with_nothing_to_do_returns_none_and_writes_no_event(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator)
    count = len(await events(runtime, operator.tenant))

    assert await runtime.tasks.claim(as_agent(agent), agent.id) is None

    assert len(await events(runtime, operator.tenant)) == count


async def test_racing_transitions_on_one_task_end_it_exactly_once(
    runtime: Runtime, operator: Principal
) -> None:
    """cancel vs complete vs a duplicate complete: one wins, the others are CONFLICT."""
    agents = [await register(runtime, operator, f"a{i}") for i in range(8)]
    held = []
    for agent in agents:
        task = await create(runtime, operator)
        await runtime.tasks.claim(as_agent(agent), agent.id)
        held.append((agent, task))

    async def attempt(call: Awaitable[object]) -> str:
        try:
            await call
        except Conflict:
            return "conflict"
        return "ok"

    outcomes = await asyncio.gather(
        *(
            attempt(call)
            for agent, task in held
            for call in (
                runtime.tasks.complete(as_agent(agent), task.id, 1),
                runtime.tasks.cancel(operator, task.id),
                runtime.tasks.complete(as_agent(agent), task.id, 2),
                runtime.tasks.fail(as_agent(agent), task.id, "x", False),
            )
        )
    )

    assert outcomes.count("ok") == len(held)
    log = await events(runtime, operator.tenant)
    ends = {EventType.TASK_SUCCEEDED, EventType.TASK_CANCELLED, EventType.TASK_FAILED}
    for agent, task in held:
        mine = [e for e in log if e.task_id == task.id and e.type in ends]
        assert len(mine) == 1, [e.type for e in mine]
        final = (await runtime.reads.tasks_by_id(operator.tenant, [task.id]))[task.id]
        assert final.status.value == mine[0].type.value.removeprefix("TASK_")
        holder = (await runtime.reads.agents_by_id(operator.tenant, [agent.id]))[agent.id]
        assert (holder.status, holder.current_task_id) == (AgentStatus.ONLINE, None)


async def test_cancel_racing_a_claim_never_strands_the_agent(
    runtime: Runtime, operator: Principal
) -> None:
    """The task may change hands between cancel's first look and its lock: the new
    holder is released too, never left BUSY on a cancelled task."""
    pairs = []
    for i in range(10):
        agent = await register(runtime, operator, f"a{i}", capabilities=[f"c{i}"])
        pairs.append((agent, await create(runtime, operator, capability=f"c{i}")))

    async def cancel(task_id: str) -> None:
        with contextlib.suppress(Conflict):
            await runtime.tasks.cancel(operator, task_id)

    await asyncio.gather(
        *(
            coro
            for agent, task in pairs
            for coro in (runtime.tasks.claim(as_agent(agent), agent.id), cancel(task.id))
        )
    )

    for agent, task in pairs:
        final = (await runtime.reads.tasks_by_id(operator.tenant, [task.id]))[task.id]
        holder = (await runtime.reads.agents_by_id(operator.tenant, [agent.id]))[agent.id]
        assert final.status is TaskStatus.CANCELLED
        assert (holder.status, holder.current_task_id) == (AgentStatus.ONLINE, None)
