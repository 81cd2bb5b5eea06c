"""Workflows: ordered steps, each becoming a task once the previous one succeeded."""

from __future__ import annotations

from typing import Any

from api.auth.principal import Principal
from api.db import tasks as task_rows
from api.db import workflows as workflow_rows
from api.db.models import AgentRow, TaskRow, WorkflowRow, WorkflowStepRow
from api.domain import (
    TERMINAL_WORKFLOW,
    EventType,
    TaskStatus,
    WorkflowState,
    WorkflowStatus,
)
from api.errors import BadUserInput, Conflict, NotFound
from api.services import transitions, validation
from api.services.unit import Tx, UnitOfWork

STEP_MAX_ATTEMPTS = 3


class StepInput:
    """One requested step, validated."""

    def __init__(self, name: str, capability: str | None, input: Any) -> None:
        self.name = validation.text(name, field="step name", max_length=validation.MAX_NAME)
        self.capability = validation.capability(capability)
        self.input = validation.json_value(input, field="step input", object_only=False)


class WorkflowService:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def start(
        self, principal: Principal, *, name: str, steps: list[StepInput]
    ) -> WorkflowState:
        name = validation.text(name, field="name", max_length=validation.MAX_NAME)
        if not steps:
            raise BadUserInput("a workflow needs at least one step")
        if len(steps) > validation.MAX_STEPS:
            raise BadUserInput(f"a workflow has at most {validation.MAX_STEPS} steps")

        async def work(tx: Tx) -> WorkflowState:
            workflow = WorkflowRow(
                id=transitions.new_id(),
                tenant=tx.tenant,
                name=name,
                status=WorkflowStatus.RUNNING.value,
                progress=0.0,
                current_step=None,
                created_at=tx.now,
                updated_at=tx.now,
            )
            tx.session.add(workflow)
            for index, step in enumerate(steps):
                tx.session.add(
                    WorkflowStepRow(
                        workflow_id=workflow.id,
                        index=index,
                        tenant=tx.tenant,
                        name=step.name,
                        capability=step.capability,
                        input=step.input,
                        status=TaskStatus.PENDING.value,
                    )
                )
            tx.emit(
                EventType.WORKFLOW_STARTED,
                workflow=await transitions.workflow_snapshot(tx, workflow),
            )
            await start_step(tx, workflow, 0, previous=None)
            return await transitions.workflow_snapshot(tx, workflow)

        return await self._uow.run(principal.tenant, principal.subject, work)

    async def cancel(self, principal: Principal, id: str) -> WorkflowState:
        async def work(tx: Tx) -> WorkflowState:
            peek = await workflow_rows.get_workflow(tx.session, tenant=tx.tenant, id=id)
            if peek is None:
                raise NotFound("Workflow", id)
            task_id = await _current_task_id(tx, peek)
            while True:
                # Lock order: agent, task, workflow.
                agent: AgentRow | None = None
                task: TaskRow | None = None
                if task_id is not None:
                    agent, task = await transitions.lock_task(tx, task_id)
                workflow = await workflow_rows.get_workflow(
                    tx.session, tenant=tx.tenant, id=id, for_update=True
                )
                assert workflow is not None
                current = await _current_task_id(tx, workflow)
                if current == task_id:
                    break
                # A step ended and the next one started before the lock: cancel that one,
                # or it would run on in a cancelled workflow.
                task_id = current
            if WorkflowStatus(workflow.status) in TERMINAL_WORKFLOW:
                raise Conflict(f"workflow is already {workflow.status}")
            if task is not None and task.status in (TaskStatus.PENDING, TaskStatus.RUNNING):
                task.status = TaskStatus.CANCELLED.value
                task.finished_at = tx.now
                task.updated_at = tx.now
                await transitions.sync_step(tx, task)
                await transitions.emit_task(tx, EventType.TASK_CANCELLED, task, agent=agent)
                transitions.release_agent(tx, agent)
            await finish(tx, workflow, WorkflowStatus.CANCELLED)
            return await transitions.workflow_snapshot(tx, workflow)

        return await self._uow.run(principal.tenant, principal.subject, work)


async def _current_task_id(tx: Tx, workflow: WorkflowRow) -> str | None:
    if workflow.current_step is None:
        return None
    return await task_rows.step_task_id(
        tx.session, tenant=tx.tenant, workflow_id=workflow.id, step_index=workflow.current_step
    )


async def start_step(tx: Tx, workflow: WorkflowRow, index: int, *, previous: Any) -> None:
    """Make step ``index`` current: create its task, then WORKFLOW_STEP_STARTED."""
    steps = await workflow_rows.get_steps(tx.session, workflow_ids=[workflow.id])
    step = next(s for s in steps if s.index == index)
    task = transitions.insert_task(
        tx,
        title=f"{workflow.name} / {step.name}",
        capability=step.capability,
        priority=0,
        input={"input": step.input, "previous": previous},
        max_attempts=STEP_MAX_ATTEMPTS,
        workflow_id=workflow.id,
        step_index=index,
    )
    step.task_id = task.id
    step.status = TaskStatus.PENDING.value
    workflow.current_step = index
    workflow.updated_at = tx.now
    await transitions.emit_task(tx, EventType.TASK_CREATED, task)
    tx.emit(
        EventType.WORKFLOW_STEP_STARTED,
        workflow=await transitions.workflow_snapshot(tx, workflow),
        data={"step": index, "taskId": task.id},
    )


async def on_step_succeeded(tx: Tx, workflow: WorkflowRow, task: TaskRow) -> None:
    """Step done: count it, then start the next step or finish the workflow."""
    if WorkflowStatus(workflow.status) in TERMINAL_WORKFLOW or task.step_index is None:
        return
    steps = await workflow_rows.get_steps(tx.session, workflow_ids=[workflow.id])
    done = sum(1 for s in steps if s.status == TaskStatus.SUCCEEDED.value)
    workflow.progress = done / len(steps)
    workflow.updated_at = tx.now
    tx.emit(
        EventType.WORKFLOW_STEP_COMPLETED,
        workflow=await transitions.workflow_snapshot(tx, workflow),
        data={"step": task.step_index, "taskId": task.id},
    )
    if task.step_index + 1 < len(steps):
        await start_step(tx, workflow, task.step_index + 1, previous=task.result)
    else:
        await finish(tx, workflow, WorkflowStatus.SUCCEEDED)


async def finish(tx: Tx, workflow: WorkflowRow, status: WorkflowStatus) -> None:
    """Move a workflow to a terminal status, once."""
    if WorkflowStatus(workflow.status) in TERMINAL_WORKFLOW:
        return
    workflow.status = status.value
    workflow.finished_at = tx.now
    workflow.updated_at = tx.now
    event = {
        WorkflowStatus.SUCCEEDED: EventType.WORKFLOW_SUCCEEDED,
        WorkflowStatus.FAILED: EventType.WORKFLOW_FAILED,
        WorkflowStatus.CANCELLED: EventType.WORKFLOW_CANCELLED,
    }[status]
    tx.emit(event, workflow=await transitions.workflow_snapshot(tx, workflow))
