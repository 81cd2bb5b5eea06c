"""Workflows: steps in order, each step's task fed the previous result, progress, and the end."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from api.auth.principal import Principal
from api.db.events import EventQuery
from api.domain import AgentState, EventType, TaskState, TaskStatus, WorkflowState, WorkflowStatus
from api.errors import BadUserInput, Conflict, NotFound
from api.runtime import Runtime
from api.services.workflows import StepInput
from tests.domain.helpers import as_agent, events, everything, register

STEPS = [
    StepInput("fetch", None, {"url": "https://example.org"}),
    StepInput("parse", "cpu", None),
    StepInput("store", None, [1, 2]),
]


async def _workflow(runtime: Runtime, tenant: str, id: str) -> WorkflowState:
    return (await runtime.reads.workflows_by_id(tenant, [id]))[id]


async def _task(runtime: Runtime, tenant: str, id: str) -> TaskState:
    return (await runtime.reads.tasks_by_id(tenant, [id]))[id]


async def _step_task(runtime: Runtime, agent: AgentState) -> TaskState:
    task = await runtime.tasks.claim(as_agent(agent), agent.id)
    assert task is not None
    return task


async def test_steps_run_in_order_and_feed_the_previous_result(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator, capabilities=["cpu"])
    started = await runtime.workflows.start(operator, name="pipeline", steps=STEPS)

    assert (started.status, started.progress, started.current_step) == (
        WorkflowStatus.RUNNING,
        0.0,
        0,
    )
    assert [(s.index, s.name, s.capability, s.status) for s in started.steps] == [
        (0, "fetch", None, TaskStatus.PENDING),
        (1, "parse", "cpu", TaskStatus.PENDING),
        (2, "store", None, TaskStatus.PENDING),
    ]
    assert started.steps[0].task_id is not None
    assert started.steps[1].task_id is None and started.steps[2].task_id is None

    first = await _step_task(runtime, agent)
    assert first.id == started.steps[0].task_id
    assert first.input == {"input": {"url": "https://example.org"}, "previous": None}
    assert first.workflow_id == started.id
    assert (await _workflow(runtime, operator.tenant, started.id)).steps[0].status is (
        TaskStatus.RUNNING
    )
    await runtime.tasks.complete(as_agent(agent), first.id, {"page": "<html>"})

    after_one = await _workflow(runtime, operator.tenant, started.id)
    assert after_one.progress == pytest.approx(1 / 3)
    assert after_one.current_step == 1
    assert [s.status for s in after_one.steps] == [
        TaskStatus.SUCCEEDED,
        TaskStatus.PENDING,
        TaskStatus.PENDING,
    ]

    second = await _step_task(runtime, agent)
    assert second.id == after_one.steps[1].task_id
    assert (second.capability, second.input) == (
        "cpu",
        {"input": None, "previous": {"page": "<html>"}},
    )
    await runtime.tasks.complete(as_agent(agent), second.id, ["rows"])
    assert (await _workflow(runtime, operator.tenant, started.id)).progress == pytest.approx(2 / 3)

    third = await _step_task(runtime, agent)
    assert third.input == {"input": [1, 2], "previous": ["rows"]}
    await runtime.tasks.complete(as_agent(agent), third.id, None)

    done = await _workflow(runtime, operator.tenant, started.id)
    assert (done.status, done.progress) == (WorkflowStatus.SUCCEEDED, 1.0)
    assert done.finished_at is not None
    assert {s.status for s in done.steps} == {TaskStatus.SUCCEEDED}
    assert await runtime.tasks.claim(as_agent(agent), agent.id) is None


async def test_workflow_events_come_in_order_with_the_workflow_id(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator, capabilities=["cpu"])
    wf = await runtime.workflows.start(operator, name="two", steps=STEPS[:2])
    for _ in range(2):
        task = await _step_task(runtime, agent)
        await runtime.tasks.complete(as_agent(agent), task.id, {"ok": True})

    log = await events(runtime, operator.tenant, EventQuery(workflow_id=wf.id))

    assert [e.type for e in log] == [
        EventType.WORKFLOW_STARTED,
        EventType.TASK_CREATED,
        EventType.WORKFLOW_STEP_STARTED,
        EventType.TASK_STARTED,
        EventType.TASK_SUCCEEDED,
        EventType.WORKFLOW_STEP_COMPLETED,
        EventType.TASK_CREATED,
        EventType.WORKFLOW_STEP_STARTED,
        EventType.TASK_STARTED,
        EventType.TASK_SUCCEEDED,
        EventType.WORKFLOW_STEP_COMPLETED,
        EventType.WORKFLOW_SUCCEEDED,
    ]
    for e in log:
        assert e.workflow_id == wf.id
        assert e.snapshots.workflow is not None and e.snapshots.workflow.id == wf.id
        if e.type.name.startswith("TASK_"):
            assert e.snapshots.task is not None and e.task_id == e.snapshots.task.id
    steps = [(e.type, e.data.get("step")) for e in log if e.type.name.startswith("WORKFLOW_STEP")]
    assert steps == [
        (EventType.WORKFLOW_STEP_STARTED, 0),
        (EventType.WORKFLOW_STEP_COMPLETED, 0),
        (EventType.WORKFLOW_STEP_STARTED, 1),
        (EventType.WORKFLOW_STEP_COMPLETED, 1),
    ]
    progress = [e.snapshots.workflow.progress for e in log if e.snapshots.workflow]
    assert progress[-1] == 1.0 and progress == sorted(progress)
    # The workflow's updatedAt is the time of its latest event.
    final = await _workflow(runtime, operator.tenant, wf.id)
    assert final.updated_at == log[-1].occurred_at


async def test_step_failing_for_good_fails_the_workflow(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator, capabilities=["cpu"])
    wf = await runtime.workflows.start(operator, name="doomed", steps=STEPS)
    first = await _step_task(runtime, agent)
    await runtime.tasks.complete(as_agent(agent), first.id, None)
    second = await _step_task(runtime, agent)

    # A retryable failure requeues the step; the workflow keeps running.
    await runtime.tasks.fail(as_agent(agent), second.id, "hiccup", True)
    wf_mid = await _workflow(runtime, operator.tenant, wf.id)
    assert wf_mid.status is WorkflowStatus.RUNNING
    assert wf_mid.steps[1].status is TaskStatus.PENDING

    again = await _step_task(runtime, agent)
    assert again.id == second.id
    await runtime.tasks.fail(as_agent(agent), second.id, "fatal", False)

    failed = await _workflow(runtime, operator.tenant, wf.id)
    assert failed.status is WorkflowStatus.FAILED
    assert failed.finished_at is not None
    assert failed.progress == pytest.approx(1 / 3)
    assert [s.status for s in failed.steps] == [
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.PENDING,
    ]
    assert failed.steps[2].task_id is None  # the third step never started
    tail = [e.type for e in await events(runtime, operator.tenant, EventQuery(workflow_id=wf.id))]
    assert tail[-2:] == [EventType.TASK_FAILED, EventType.WORKFLOW_FAILED]


async def test_cancel_workflow_cancels_its_running_step(
    runtime: Runtime, operator: Principal
) -> None:
    agent = await register(runtime, operator)
    wf = await runtime.workflows.start(operator, name="stop me", steps=STEPS[:1] + STEPS[2:])
    task = await _step_task(runtime, agent)

    cancelled = await runtime.workflows.cancel(operator, wf.id)

    assert cancelled.status is WorkflowStatus.CANCELLED
    assert cancelled.finished_at is not None
    assert cancelled.steps[0].status is TaskStatus.CANCELLED
    assert (await _task(runtime, operator.tenant, task.id)).status is TaskStatus.CANCELLED
    freed = (await runtime.reads.agents_by_id(operator.tenant, [agent.id]))[agent.id]
    assert (freed.status.value, freed.current_task_id) == ("ONLINE", None)
    log = await events(runtime, operator.tenant)
    assert [e.type for e in log[-3:]] == [
        EventType.TASK_CANCELLED,
        EventType.AGENT_STATUS_CHANGED,
        EventType.WORKFLOW_CANCELLED,
    ]
    # The holder can no longer report on the cancelled task.
    with pytest.raises(Conflict):
        await runtime.tasks.complete(as_agent(agent), task.id, None)


async def test_cancel_workflow_with_pending_step(runtime: Runtime, operator: Principal) -> None:
    wf = await runtime.workflows.start(operator, name="idle", steps=STEPS)

    cancelled = await runtime.workflows.cancel(operator, wf.id)

    assert cancelled.status is WorkflowStatus.CANCELLED
    task_id = cancelled.steps[0].task_id
    assert task_id is not None
    assert (await _task(runtime, operator.tenant, task_id)).status is TaskStatus.CANCELLED


async def test_cancelling_a_step_task_cancels_its_workflow(
    runtime: Runtime, operator: Principal
) -> None:
    wf = await runtime.workflows.start(operator, name="via task", steps=STEPS)
    assert wf.steps[0].task_id is not None

    await runtime.tasks.cancel(operator, wf.steps[0].task_id)

    assert (await _workflow(runtime, operator.tenant, wf.id)).status is WorkflowStatus.CANCELLED


@pytest.mark.parametrize("end", ["SUCCEEDED", "CANCELLED"])
async def test_cancel_finished_workflow_is_conflict_and_writes_nothing(
    runtime: Runtime, operator: Principal, end: str
) -> None:
    agent = await register(runtime, operator)
    wf = await runtime.workflows.start(operator, name="w", steps=STEPS[:1])
    if end == "SUCCEEDED":
        task = await _step_task(runtime, agent)
        await runtime.tasks.complete(as_agent(agent), task.id, None)
    else:
        await runtime.workflows.cancel(operator, wf.id)
    before = await everything(runtime, operator.tenant)

    with pytest.raises(Conflict):
        await runtime.workflows.cancel(operator, wf.id)

    assert await everything(runtime, operator.tenant) == before


async def test_bad_workflows_are_refused_and_write_nothing(
    runtime: Runtime, operator: Principal
) -> None:
    before = await everything(runtime, operator.tenant)

    with pytest.raises(BadUserInput, match="at least one step"):
        await runtime.workflows.start(operator, name="empty", steps=[])
    with pytest.raises(BadUserInput):
        await runtime.workflows.start(operator, name=" ", steps=STEPS)
    with pytest.raises(BadUserInput):
        await runtime.workflows.start(operator, name="x" * 201, steps=STEPS)
    with pytest.raises(BadUserInput):
        await runtime.workflows.start(
            operator, name="many", steps=[StepInput(f"s{i}", None, None) for i in range(51)]
        )
    with pytest.raises(NotFound):
        await runtime.workflows.cancel(operator, "no-such-workflow")

    assert await everything(runtime, operator.tenant) == before


async def test_cancel_racing_a_step_completion_leaves_no_live_task(
    runtime: Runtime, operator: Principal
) -> None:
    """Whichever commits first, a cancelled workflow has no PENDING or RUNNING task left."""
    agents = [await register(runtime, operator, f"a{i}") for i in range(10)]
    flows = []
    for agent in agents:
        wf = await runtime.workflows.start(operator, name="race", steps=STEPS[:1] + STEPS[2:])
        task = await _step_task(runtime, agent)
        flows.append((wf, agent, task))

    async def cancel(id: str) -> None:
        with contextlib.suppress(Conflict):
            await runtime.workflows.cancel(operator, id)

    async def complete(agent: AgentState, task_id: str) -> None:
        with contextlib.suppress(Conflict):
            await runtime.tasks.complete(as_agent(agent), task_id, "done")

    await asyncio.gather(
        *(coro for wf, agent, task in flows for coro in (complete(agent, task.id), cancel(wf.id)))
    )

    for wf, _, _ in flows:
        final = await _workflow(runtime, operator.tenant, wf.id)
        assert final.status is WorkflowStatus.CANCELLED
        tasks = await runtime.reads.tasks(
            operator.tenant, statuses=None, agent_id=None, workflow_id=wf.id, first=10, after=None
        )
        live = [t for _, t in tasks.items if t.status in (TaskStatus.PENDING, TaskStatus.RUNNING)]
        assert live == [], (final, live)
