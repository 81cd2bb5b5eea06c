"""Domain states and enums shared by services, the event bus and the GraphQL layer.

States are immutable snapshots: services return them, events carry them, and
subscriptions render them without going back to the database.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class AgentStatus(StrEnum):
    ONLINE = "ONLINE"
    BUSY = "BUSY"
    UNHEALTHY = "UNHEALTHY"
    OFFLINE = "OFFLINE"


class WorkflowStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class Role(StrEnum):
    VIEWER = "VIEWER"
    OPERATOR = "OPERATOR"
    AGENT = "AGENT"
    ADMIN = "ADMIN"


class EventType(StrEnum):
    TASK_CREATED = "TASK_CREATED"
    TASK_STARTED = "TASK_STARTED"
    TASK_PROGRESS = "TASK_PROGRESS"
    TASK_SUCCEEDED = "TASK_SUCCEEDED"
    TASK_FAILED = "TASK_FAILED"
    TASK_CANCELLED = "TASK_CANCELLED"
    TASK_REQUEUED = "TASK_REQUEUED"
    AGENT_REGISTERED = "AGENT_REGISTERED"
    AGENT_STATUS_CHANGED = "AGENT_STATUS_CHANGED"
    WORKFLOW_STARTED = "WORKFLOW_STARTED"
    WORKFLOW_STEP_STARTED = "WORKFLOW_STEP_STARTED"
    WORKFLOW_STEP_COMPLETED = "WORKFLOW_STEP_COMPLETED"
    WORKFLOW_SUCCEEDED = "WORKFLOW_SUCCEEDED"
    WORKFLOW_FAILED = "WORKFLOW_FAILED"
    WORKFLOW_CANCELLED = "WORKFLOW_CANCELLED"


TERMINAL_WORKFLOW = frozenset(
    {WorkflowStatus.SUCCEEDED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED}
)
TERMINAL_WORKFLOW_EVENTS = frozenset(
    {EventType.WORKFLOW_SUCCEEDED, EventType.WORKFLOW_FAILED, EventType.WORKFLOW_CANCELLED}
)


class _State(BaseModel):
    model_config = ConfigDict(frozen=True)


class TaskState(_State):
    id: str
    tenant: str
    title: str
    status: TaskStatus
    progress: float
    message: str | None
    priority: int
    capability: str | None
    input: Any
    result: Any
    error: str | None
    attempts: int
    max_attempts: int
    agent_id: str | None
    workflow_id: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class AgentState(_State):
    id: str
    tenant: str
    name: str
    capabilities: list[str]
    status: AgentStatus
    last_heartbeat_at: datetime | None
    registered_at: datetime
    current_task_id: str | None
    metadata: Any


class StepState(_State):
    index: int
    name: str
    capability: str | None
    status: TaskStatus
    task_id: str | None


class WorkflowState(_State):
    id: str
    tenant: str
    name: str
    status: WorkflowStatus
    progress: float
    steps: list[StepState]
    current_step: int | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class Snapshots(_State):
    """Entity states as of one event, so subscribers never query the database."""

    task: TaskState | None = None
    agent: AgentState | None = None
    workflow: WorkflowState | None = None
    # Tasks the entities point at (the agent's current task, the workflow's step
    # tasks), so nested fields render from the event too. Not the event's task.
    related: list[TaskState] = []

    def find_task(self, id: str) -> TaskState | None:
        if self.task is not None and self.task.id == id:
            return self.task
        return next((t for t in self.related if t.id == id), None)


class EventRecord(_State):
    """One row of the event log: a change, its actor, and the states it produced."""

    id: int
    tenant: str
    type: EventType
    occurred_at: datetime
    actor: str
    task_id: str | None
    agent_id: str | None
    workflow_id: str | None
    data: dict[str, Any]
    snapshots: Snapshots
