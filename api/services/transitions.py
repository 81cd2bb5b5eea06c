"""Row-level steps shared by the task, agent and workflow services, inside one Tx.

Lock order everywhere: agent, then task, then workflow, then the event
counter (taken last, at commit) — so concurrent transactions never deadlock
on each other's rows.
"""

from __future__ import annotations

import uuid
from typing import Any

from api.auth.principal import Principal
from api.db import agents as agent_rows
from api.db import tasks as task_rows
from api.db import workflows as workflow_rows
from api.db.models import AgentRow, TaskRow, WorkflowRow
from api.domain import (
    AgentState,
    AgentStatus,
    EventType,
    TaskState,
    TaskStatus,
    WorkflowState,
)
from api.errors import Forbidden, NotFound
from api.services.unit import Tx


def new_id() -> str:
    return str(uuid.uuid4())


def insert_task(
    tx: Tx,
    *,
    title: str,
    capability: str | None,
    priority: int,
    input: Any,
    max_attempts: int,
    workflow_id: str | None = None,
    step_index: int | None = None,
) -> TaskRow:
    row = TaskRow(
        id=new_id(),
        tenant=tx.tenant,
        title=title,
        status=TaskStatus.PENDING.value,
        progress=0.0,
        priority=priority,
        capability=capability,
        input=input,
        attempts=0,
        max_attempts=max_attempts,
        workflow_id=workflow_id,
        step_index=step_index,
        created_at=tx.now,
        updated_at=tx.now,
    )
    tx.session.add(row)
    return row


async def workflow_snapshot(tx: Tx, row: WorkflowRow) -> WorkflowState:
    await tx.session.flush()
    steps = await workflow_rows.get_steps(tx.session, workflow_ids=[row.id])
    return workflow_rows.workflow_state(row, steps)


async def emit_task(
    tx: Tx,
    type: EventType,
    task: TaskRow,
    *,
    agent: AgentRow | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Emit a task event carrying the task, its agent and its workflow as they are now."""
    if agent is None and task.agent_id is not None:
        agent = await agent_rows.get_agent(tx.session, tenant=tx.tenant, id=task.agent_id)
    await emit_task_state(
        tx,
        type,
        task_rows.task_state(task),
        agent=agent_rows.agent_state(agent) if agent is not None else None,
        data=data,
    )


async def emit_task_state(
    tx: Tx,
    type: EventType,
    task: TaskState,
    *,
    agent: AgentState | None,
    data: dict[str, Any] | None = None,
) -> None:
    """``emit_task`` for states already read (Core paths); adds the task's workflow."""
    workflow = None
    if task.workflow_id is not None:
        wf_row = await workflow_rows.get_workflow(tx.session, tenant=tx.tenant, id=task.workflow_id)
        if wf_row is not None:
            workflow = await workflow_snapshot(tx, wf_row)
    tx.emit(type, task=task, agent=agent, workflow=workflow, data=data)


def set_agent_status(tx: Tx, agent: AgentRow, status: AgentStatus) -> bool:
    """Change an agent's status and emit AGENT_STATUS_CHANGED; False when unchanged."""
    if agent.status == status.value:
        return False
    previous = agent.status
    agent.status = status.value
    tx.emit(
        EventType.AGENT_STATUS_CHANGED,
        agent=agent_rows.agent_state(agent),
        data={"from": previous, "to": status.value},
    )
    return True


def release_agent(tx: Tx, agent: AgentRow | None) -> None:
    """The agent no longer holds a task: BUSY becomes ONLINE."""
    if agent is None:
        return
    agent.current_task_id = None
    if agent.status == AgentStatus.BUSY.value:
        set_agent_status(tx, agent, AgentStatus.ONLINE)


async def sync_step(tx: Tx, task: TaskRow) -> WorkflowRow | None:
    """Mirror a step task's status onto its workflow step; returns the locked workflow."""
    if task.workflow_id is None or task.step_index is None:
        return None
    workflow = await workflow_rows.get_workflow(
        tx.session, tenant=tx.tenant, id=task.workflow_id, for_update=True
    )
    if workflow is None:
        return None
    for step in await workflow_rows.get_steps(tx.session, workflow_ids=[workflow.id]):
        if step.index == task.step_index:
            step.status = task.status
    workflow.updated_at = tx.now
    return workflow


async def lock_task(tx: Tx, id: str) -> tuple[AgentRow | None, TaskRow]:
    """Lock a task and its holder in the global lock order (agent first).

    The holder is known only from an unlocked peek; when the task changed hands
    before its lock was taken, the new holder is locked too (the task cannot
    change hands again while we hold it). The agent is returned only while it
    still holds this task.
    """
    peek = await task_rows.get_task(tx.session, tenant=tx.tenant, id=id)
    if peek is None:
        raise NotFound("Task", id)
    holder = peek.agent_id
    while True:
        agent = None
        if holder is not None:
            agent = await agent_rows.get_agent(
                tx.session, tenant=tx.tenant, id=holder, for_update=True
            )
        task = await task_rows.get_task(tx.session, tenant=tx.tenant, id=id, for_update=True)
        assert task is not None
        if task.agent_id == holder:
            break
        holder = task.agent_id
    if agent is not None and agent.current_task_id != task.id:
        agent = None
    return agent, task


async def load_agent_for(tx: Tx, principal: Principal, agent_id: str) -> AgentRow:
    """The agent the caller acts as, locked; another tenant's agent is NOT_FOUND."""
    agent = await agent_rows.get_agent(tx.session, tenant=tx.tenant, id=agent_id, for_update=True)
    if agent is None:
        raise NotFound("Agent", agent_id)
    if not principal.acts_as(agent_id):
        raise Forbidden("An agent token may only act as its own agent")
    return agent
