"""Tasks: the state machine, atomic claiming, and what a task's end means for its workflow."""

from __future__ import annotations

from typing import Any

from api.auth.principal import Principal
from api.db import agents as agent_rows
from api.db import tasks as task_rows
from api.db.models import AgentRow, TaskRow
from api.domain import (
    AgentState,
    AgentStatus,
    EventType,
    Role,
    TaskState,
    TaskStatus,
    WorkflowStatus,
)
from api.errors import Conflict, Forbidden
from api.services import transitions, validation, workflows
from api.services.unit import Tx, UnitOfWork


class TaskService:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def create(
        self,
        principal: Principal,
        *,
        title: str,
        capability: str | None,
        priority: int,
        input: Any,
        max_attempts: int,
    ) -> TaskState:
        title = validation.text(title, field="title", max_length=validation.MAX_TITLE)
        capability = validation.capability(capability)
        priority = validation.in_range(priority, field="priority", bounds=validation.PRIORITY_RANGE)
        max_attempts = validation.in_range(
            max_attempts, field="maxAttempts", bounds=validation.ATTEMPTS_RANGE
        )
        input = validation.json_value(input, field="input", object_only=False)

        async def work(tx: Tx) -> TaskState:
            task = TaskState(
                id=transitions.new_id(),
                tenant=tx.tenant,
                title=title,
                status=TaskStatus.PENDING,
                progress=0.0,
                message=None,
                priority=priority,
                capability=capability,
                input=input,
                result=None,
                error=None,
                attempts=0,
                max_attempts=max_attempts,
                agent_id=None,
                workflow_id=None,
                created_at=tx.now,
                updated_at=tx.now,
                started_at=None,
                finished_at=None,
            )
            await task_rows.insert_task(await tx.connection(), task)
            tx.emit(EventType.TASK_CREATED, task=task)
            return task

        return await self._uow.run(principal.tenant, principal.subject, work)

    async def cancel(self, principal: Principal, id: str) -> TaskState:
        async def work(tx: Tx) -> TaskState:
            agent, task = await transitions.lock_task(tx, id)
            if task.status not in (TaskStatus.PENDING, TaskStatus.RUNNING):
                raise Conflict(f"cannot cancel a {task.status} task")
            task.status = TaskStatus.CANCELLED.value
            task.finished_at = tx.now
            task.updated_at = tx.now
            workflow = await transitions.sync_step(tx, task)
            await transitions.emit_task(tx, EventType.TASK_CANCELLED, task, agent=agent)
            transitions.release_agent(tx, agent)
            if workflow is not None:
                await workflows.finish(tx, workflow, WorkflowStatus.CANCELLED)
            return task_rows.task_state(task)

        return await self._uow.run(principal.tenant, principal.subject, work)

    async def claim(self, principal: Principal, agent_id: str) -> TaskState | None:
        async def work(tx: Tx) -> TaskState | None:
            claimed = await _claim_plain(tx, principal, agent_id)
            if not isinstance(claimed, _Unusual):
                return claimed
            # No such agent, someone else's, already holding a task, or the next task is
            # a workflow step: the ORM path raises the precise error or syncs the step.
            agent = await transitions.load_agent_for(tx, principal, agent_id)
            if agent.current_task_id is not None:
                raise Conflict("agent already holds a task; complete or fail it first")
            task = await task_rows.next_claimable(
                tx.session, tenant=tx.tenant, capabilities=agent.capabilities
            )
            agent.last_heartbeat_at = tx.now
            if task is None:
                if agent.status in (AgentStatus.UNHEALTHY.value, AgentStatus.OFFLINE.value):
                    transitions.set_agent_status(tx, agent, AgentStatus.ONLINE)
                return None
            task.status = TaskStatus.RUNNING.value
            task.agent_id = agent.id
            task.attempts += 1
            task.progress = 0.0
            task.message = None
            task.started_at = tx.now
            task.updated_at = tx.now
            agent.current_task_id = task.id
            await transitions.sync_step(tx, task)
            transitions.set_agent_status(tx, agent, AgentStatus.BUSY)
            await transitions.emit_task(tx, EventType.TASK_STARTED, task, agent=agent)
            return task_rows.task_state(task)

        return await self._uow.run(principal.tenant, principal.subject, work)

    async def report_progress(
        self, principal: Principal, task_id: str, progress: float, message: str | None
    ) -> TaskState:
        progress = validation.fraction(progress, field="progress")
        message = validation.optional_text(
            message, field="message", max_length=validation.MAX_MESSAGE
        )

        async def work(tx: Tx) -> TaskState:
            reported = await _report_held(tx, principal, task_id, progress, message)
            if reported is not None:
                return reported
            # Anything unusual (no such task, not RUNNING, not the caller's, changed
            # hands meanwhile) takes the ORM path, which raises the precise error.
            agent, task = await _lock_held_task(tx, principal, task_id)
            task.progress = progress
            task.message = message
            task.updated_at = tx.now
            await transitions.emit_task(
                tx, EventType.TASK_PROGRESS, task, agent=agent, data={"progress": progress}
            )
            return task_rows.task_state(task)

        return await self._uow.run(principal.tenant, principal.subject, work)

    async def complete(self, principal: Principal, task_id: str, result: Any) -> TaskState:
        result = validation.json_value(result, field="result", object_only=False)

        async def work(tx: Tx) -> TaskState:
            completed = await _complete_held(tx, principal, task_id, result)
            if completed is not None:
                return completed
            agent, task = await _lock_held_task(tx, principal, task_id)
            task.status = TaskStatus.SUCCEEDED.value
            task.result = result
            task.progress = 1.0
            task.finished_at = tx.now
            task.updated_at = tx.now
            workflow = await transitions.sync_step(tx, task)
            await transitions.emit_task(tx, EventType.TASK_SUCCEEDED, task, agent=agent)
            transitions.release_agent(tx, agent)
            if workflow is not None:
                await workflows.on_step_succeeded(tx, workflow, task)
            return task_rows.task_state(task)

        return await self._uow.run(principal.tenant, principal.subject, work)

    async def fail(self, principal: Principal, task_id: str, error: str, retry: bool) -> TaskState:
        error = validation.text(error, field="error", max_length=validation.MAX_ERROR)

        async def work(tx: Tx) -> TaskState:
            agent, task = await _lock_held_task(tx, principal, task_id)
            await end_attempt(tx, task, agent, error=error, retry=retry)
            transitions.release_agent(tx, agent)
            return task_rows.task_state(task)

        return await self._uow.run(principal.tenant, principal.subject, work)


async def end_attempt(
    tx: Tx, task: TaskRow, agent: AgentRow | None, *, error: str, retry: bool
) -> None:
    """A running attempt failed: requeue while attempts are left, else fail for good."""
    task.error = error
    task.updated_at = tx.now
    if retry and task.attempts < task.max_attempts:
        task.status = TaskStatus.PENDING.value
        task.agent_id = None
        task.progress = 0.0
        await transitions.sync_step(tx, task)
        await transitions.emit_task(
            tx, EventType.TASK_REQUEUED, task, data={"error": error, "attempt": task.attempts}
        )
        return
    task.status = TaskStatus.FAILED.value
    task.finished_at = tx.now
    workflow = await transitions.sync_step(tx, task)
    await transitions.emit_task(tx, EventType.TASK_FAILED, task, agent=agent, data={"error": error})
    if workflow is not None:
        await workflows.finish(tx, workflow, WorkflowStatus.FAILED)


async def _report_held(
    tx: Tx, principal: Principal, task_id: str, progress: float, message: str | None
) -> TaskState | None:
    """The common case of reportProgress in Core statements: lock the holder (lock order:
    agent first), then update the task only while it is RUNNING and still held by it.

    None when the case is not the common one; nothing was written then.
    """
    agent = await _lock_holder(tx, principal, task_id)
    if agent is None:
        return None
    task = await task_rows.update_progress(
        await tx.connection(),
        tenant=tx.tenant,
        id=task_id,
        holder=agent.id,
        progress=progress,
        message=message,
        now=tx.now,
    )
    if task is None:
        return None
    await transitions.emit_task_state(
        tx, EventType.TASK_PROGRESS, task, agent=agent, data={"progress": progress}
    )
    return task


class _Unusual:
    """``_claim_plain``'s answer when the claim is not the common case (None is a claim
    that found no task)."""


_UNUSUAL = _Unusual()


async def _claim_plain(tx: Tx, principal: Principal, agent_id: str) -> TaskState | _Unusual | None:
    """The common case of claimTask in Core statements: lock the agent, then lock and
    start the next task outside any workflow (lock order: agent, then task).

    Two agents racing for one task: on PostgreSQL the loser's SKIP LOCKED passes the
    winner's locked row, on SQLite the single connection runs one transaction at a
    time, and ``start`` writes only a task that is still PENDING. ``_UNUSUAL`` when
    the case is not the common one; nothing was written then.
    """
    if not principal.acts_as(agent_id):
        return _UNUSUAL
    agent = await agent_rows.lock_agent_state(await tx.connection(), tenant=tx.tenant, id=agent_id)
    if agent is None or agent.current_task_id is not None:
        return _UNUSUAL
    found = await task_rows.lock_next_claimable(
        await tx.connection(), tenant=tx.tenant, capabilities=agent.capabilities
    )
    if found is None:
        status = agent.status
        if status in (AgentStatus.UNHEALTHY, AgentStatus.OFFLINE):
            status = AgentStatus.ONLINE
        touched = await agent_rows.set_claimed(
            await tx.connection(),
            tenant=tx.tenant,
            id=agent_id,
            status=status,
            task_id=None,
            now=tx.now,
        )
        assert touched is not None  # locked above
        _emit_status(tx, agent.status, touched)
        return None
    task_id, workflow_id = found
    if workflow_id is not None:
        return _UNUSUAL
    task = await task_rows.start(
        await tx.connection(), tenant=tx.tenant, id=task_id, agent_id=agent_id, now=tx.now
    )
    if task is None:
        return _UNUSUAL
    busy = await agent_rows.set_claimed(
        await tx.connection(),
        tenant=tx.tenant,
        id=agent_id,
        status=AgentStatus.BUSY,
        task_id=task.id,
        now=tx.now,
    )
    assert busy is not None  # locked above
    _emit_status(tx, agent.status, busy, holding=task)
    await transitions.emit_task_state(tx, EventType.TASK_STARTED, task, agent=busy)
    return task


async def _complete_held(
    tx: Tx, principal: Principal, task_id: str, result: Any
) -> TaskState | None:
    """The common case of completeTask in Core statements: lock the holder, mark the task
    SUCCEEDED while it is RUNNING, held by it and outside any workflow, release the agent.

    None when the case is not the common one; nothing was written then.
    """
    agent = await _lock_holder(tx, principal, task_id)
    if agent is None:
        return None
    task = await task_rows.succeed(
        await tx.connection(),
        tenant=tx.tenant,
        id=task_id,
        holder=agent.id,
        result=result,
        now=tx.now,
    )
    if task is None:
        return None
    await transitions.emit_task_state(tx, EventType.TASK_SUCCEEDED, task, agent=agent)
    status = AgentStatus.ONLINE if agent.status is AgentStatus.BUSY else agent.status
    released = await agent_rows.set_released(
        await tx.connection(), tenant=tx.tenant, id=agent.id, status=status
    )
    assert released is not None  # locked above
    _emit_status(tx, agent.status, released)
    return task


def _emit_status(
    tx: Tx, previous: AgentStatus, agent: AgentState, *, holding: TaskState | None = None
) -> None:
    """AGENT_STATUS_CHANGED when ``agent`` left ``previous``, as ``set_agent_status`` emits
    it; ``holding`` is the task the agent now holds, as it will commit."""
    if agent.status is previous:
        return
    tx.emit(
        EventType.AGENT_STATUS_CHANGED,
        agent=agent,
        data={"from": previous.value, "to": agent.status.value},
        related=[holding] if holding is not None else [],
    )


async def _lock_holder(tx: Tx, principal: Principal, task_id: str) -> AgentState | None:
    """The agent holding ``task_id``, locked (lock order: agent, then task), when the
    caller may act for it; None otherwise, with nothing written."""
    holder = await _holder(tx, principal, task_id)
    if holder is None:
        return None
    agent = await agent_rows.lock_agent_state(await tx.connection(), tenant=tx.tenant, id=holder)
    if agent is None or agent.current_task_id != task_id:
        return None
    return agent


async def _holder(tx: Tx, principal: Principal, task_id: str) -> str | None:
    """The agent to lock first for a change to a task its holder makes (lock order: agent,
    then task); None when the caller cannot be it.

    An agent's token acts only as its own agent, so that is the only holder it can
    change the task for: no read needed (the task's UPDATE checks the holder). An
    admin acts for any agent: the holder is read, unlocked, from the task.
    """
    if not principal.is_admin:
        return principal.agent_id if Role.AGENT in principal.roles else None
    peek = await task_rows.peek_holder(await tx.connection(), tenant=tx.tenant, id=task_id)
    if peek is None or peek[0] != TaskStatus.RUNNING:
        return None
    return peek[1]


async def _lock_held_task(
    tx: Tx, principal: Principal, task_id: str
) -> tuple[AgentRow | None, TaskRow]:
    """A RUNNING task the caller's agent holds (admins may act for any agent)."""
    agent, task = await transitions.lock_task(tx, task_id)
    if task.status != TaskStatus.RUNNING:
        raise Conflict(f"task is {task.status}, not RUNNING")
    if task.agent_id is None or not principal.acts_as(task.agent_id):
        raise Forbidden("only the agent holding this task may report on it")
    return agent, task
