"""The schema's types as frozen dataclasses; ``codec`` builds selections and decodes from them.

Field names are the schema's in snake_case; ``typename`` names the GraphQL
type a dataclass mirrors. A dataclass may select a subset of its type's
fields (the ``*Ref`` types: enough to follow a link). ``tests/client`` checks
every field and enum here against ``schema.graphql``, so drift fails a test.

Types nested in an ``Event`` are snapshots without links: the server resolves
them from the event itself, with no database read per subscriber.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

JSON = Any  # the JSON scalar: whatever the JSON document holds

T = TypeVar("T")


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


class MetricsScope(StrEnum):
    """What systemMetrics' counters cover: one process, or every process sharing Redis."""

    PROCESS = "PROCESS"
    CLUSTER = "CLUSTER"


# -- links: just enough of an entity to follow it ----------------------------


@dataclass(frozen=True)
class TaskRef:
    typename: ClassVar[str] = "Task"
    id: str
    title: str
    status: TaskStatus


@dataclass(frozen=True)
class AgentRef:
    typename: ClassVar[str] = "Agent"
    id: str
    name: str
    status: AgentStatus


@dataclass(frozen=True)
class WorkflowRef:
    typename: ClassVar[str] = "Workflow"
    id: str
    name: str
    status: WorkflowStatus


# -- snapshots: an entity's own fields, as events carry them -------------------


@dataclass(frozen=True)
class TaskSnapshot:
    typename: ClassVar[str] = "Task"
    id: str
    title: str
    status: TaskStatus
    progress: float
    message: str | None
    priority: int
    capability: str | None
    input: JSON
    result: JSON
    error: str | None
    attempts: int
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class AgentSnapshot:
    typename: ClassVar[str] = "Agent"
    id: str
    name: str
    capabilities: list[str]
    status: AgentStatus
    last_heartbeat_at: datetime | None
    registered_at: datetime
    metadata: JSON


@dataclass(frozen=True)
class WorkflowStepSnapshot:
    typename: ClassVar[str] = "WorkflowStep"
    index: int
    name: str
    capability: str | None
    status: TaskStatus


@dataclass(frozen=True)
class _WorkflowFields:
    typename: ClassVar[str] = "Workflow"
    id: str
    name: str
    status: WorkflowStatus
    progress: float
    current_step: int | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class WorkflowSnapshot(_WorkflowFields):
    steps: list[WorkflowStepSnapshot]


# -- what queries and mutations return: snapshots plus links -------------------


@dataclass(frozen=True)
class Task(TaskSnapshot):
    agent: AgentRef | None
    workflow: WorkflowRef | None


@dataclass(frozen=True)
class Agent(AgentSnapshot):
    current_task: TaskRef | None


@dataclass(frozen=True)
class WorkflowStep(WorkflowStepSnapshot):
    task: TaskRef | None


@dataclass(frozen=True)
class Workflow(_WorkflowFields):
    steps: list[WorkflowStep]


@dataclass(frozen=True)
class Event:
    typename: ClassVar[str] = "Event"
    id: str  # per-tenant sequence number as a decimal string; also its cursor
    type: EventType
    occurred_at: datetime
    task_id: str | None
    agent_id: str | None
    workflow_id: str | None
    actor: str
    data: JSON
    task: TaskSnapshot | None  # as of this event
    agent: AgentSnapshot | None
    workflow: WorkflowSnapshot | None


@dataclass(frozen=True)
class Viewer:
    typename: ClassVar[str] = "Viewer"
    subject: str
    roles: list[Role]
    tenant: str
    agent_id: str | None


@dataclass(frozen=True)
class AgentRegistration:
    typename: ClassVar[str] = "AgentRegistration"
    agent: Agent
    token: str


@dataclass(frozen=True)
class SystemMetrics:
    typename: ClassVar[str] = "SystemMetrics"
    at: datetime
    scope: MetricsScope
    connections: int
    subscriptions: int
    events_published: int
    events_delivered: int
    tasks_by_status: JSON
    agents_by_status: JSON


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a Relay connection: the nodes, and where the next page starts."""

    items: list[T]
    has_next_page: bool
    end_cursor: str | None
    total_count: int


# -- inputs ---------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilter:
    """Which events to see; every field narrows (schema input ``EventFilter``)."""

    typename: ClassVar[str] = "EventFilter"
    types: list[EventType] | None = None
    task_id: str | None = None
    agent_id: str | None = None
    workflow_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class WorkflowStepInput:
    """One step of ``start_workflow`` (schema input ``WorkflowStepInput``)."""

    typename: ClassVar[str] = "WorkflowStepInput"
    name: str
    capability: str | None = None
    input: JSON = field(default=None)


# Every output dataclass, for the schema check and the selection builder.
OUTPUT_TYPES: tuple[type, ...] = (
    TaskRef,
    AgentRef,
    WorkflowRef,
    TaskSnapshot,
    AgentSnapshot,
    WorkflowStepSnapshot,
    WorkflowSnapshot,
    Task,
    Agent,
    WorkflowStep,
    Workflow,
    Event,
    Viewer,
    AgentRegistration,
    SystemMetrics,
)
INPUT_TYPES: tuple[type, ...] = (EventFilter, WorkflowStepInput)
ENUMS: tuple[type[StrEnum], ...] = (
    TaskStatus,
    AgentStatus,
    WorkflowStatus,
    Role,
    EventType,
    MetricsScope,
)
