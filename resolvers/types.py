"""GraphQL object types, built from domain states.

Objects carry the event snapshots they came from, so nested fields inside a
subscription resolve from the event itself instead of the database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Generic, TypeVar, cast

import strawberry
from strawberry.scalars import JSON
from strawberry.types.nodes import SelectedField, Selection

from api.cluster.figures import MetricsScope
from api.db.paging import Page
from api.domain import (
    AgentState,
    AgentStatus,
    EventRecord,
    EventType,
    Role,
    Snapshots,
    TaskState,
    TaskStatus,
    WorkflowState,
    WorkflowStatus,
)
from resolvers.context import Info

# The domain enums are the GraphQL enums: registering them keeps one definition.
for _enum in (AgentStatus, EventType, Role, TaskStatus, WorkflowStatus):
    strawberry.enum(_enum)
strawberry.enum(
    MetricsScope,
    description="What systemMetrics' counters cover: the process that answered, or every "
    "live process sharing MARK1_REDIS_URL (others as of their last heartbeat).",
)

_EMPTY = Snapshots()


@strawberry.type
class Task:
    id: strawberry.ID
    title: str
    status: TaskStatus
    progress: float
    message: str | None
    priority: int
    capability: str | None
    input: JSON | None
    result: JSON | None
    error: str | None
    attempts: int
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    agent_id: strawberry.Private[str | None]
    workflow_id: strawberry.Private[str | None]
    snap: strawberry.Private[Snapshots]

    @strawberry.field
    async def agent(self, info: Info) -> Agent | None:
        if self.agent_id is None:
            return None
        if self.snap.agent is not None and self.snap.agent.id == self.agent_id:
            return Agent.of(self.snap.agent, self.snap)
        state = await info.context.agent(self.agent_id)
        return Agent.of(state) if state else None

    @strawberry.field
    async def workflow(self, info: Info) -> Workflow | None:
        if self.workflow_id is None:
            return None
        if self.snap.workflow is not None and self.snap.workflow.id == self.workflow_id:
            return Workflow.of(self.snap.workflow, self.snap)
        state = await info.context.workflow(self.workflow_id)
        return Workflow.of(state) if state else None

    @classmethod
    def of(cls, s: TaskState, snap: Snapshots = _EMPTY) -> Task:
        return cls(
            id=strawberry.ID(s.id),
            title=s.title,
            status=s.status,
            progress=s.progress,
            message=s.message,
            priority=s.priority,
            capability=s.capability,
            input=s.input,
            result=s.result,
            error=s.error,
            attempts=s.attempts,
            max_attempts=s.max_attempts,
            created_at=s.created_at,
            updated_at=s.updated_at,
            started_at=s.started_at,
            finished_at=s.finished_at,
            agent_id=s.agent_id,
            workflow_id=s.workflow_id,
            snap=snap,
        )


@strawberry.type
class Agent:
    id: strawberry.ID
    name: str
    capabilities: list[str]
    status: AgentStatus
    last_heartbeat_at: datetime | None
    registered_at: datetime
    metadata: JSON | None
    current_task_id: strawberry.Private[str | None]
    snap: strawberry.Private[Snapshots]

    @strawberry.field
    async def current_task(self, info: Info) -> Task | None:
        if self.current_task_id is None:
            return None
        if (snapped := self.snap.find_task(self.current_task_id)) is not None:
            return Task.of(snapped, self.snap)
        state = await info.context.task(self.current_task_id)
        return Task.of(state) if state else None

    @classmethod
    def of(cls, s: AgentState, snap: Snapshots = _EMPTY) -> Agent:
        return cls(
            id=strawberry.ID(s.id),
            name=s.name,
            capabilities=s.capabilities,
            status=s.status,
            last_heartbeat_at=s.last_heartbeat_at,
            registered_at=s.registered_at,
            metadata=s.metadata,
            current_task_id=s.current_task_id,
            snap=snap,
        )


@strawberry.type
class WorkflowStep:
    index: int
    name: str
    capability: str | None
    status: TaskStatus
    task_id: strawberry.Private[str | None]
    snap: strawberry.Private[Snapshots]

    @strawberry.field
    async def task(self, info: Info) -> Task | None:
        if self.task_id is None:
            return None
        if (snapped := self.snap.find_task(self.task_id)) is not None:
            return Task.of(snapped, self.snap)
        state = await info.context.task(self.task_id)
        return Task.of(state) if state else None


@strawberry.type
class Workflow:
    id: strawberry.ID
    name: str
    status: WorkflowStatus
    progress: float
    steps: list[WorkflowStep]
    current_step: int | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, s: WorkflowState, snap: Snapshots = _EMPTY) -> Workflow:
        return cls(
            id=strawberry.ID(s.id),
            name=s.name,
            status=s.status,
            progress=s.progress,
            steps=[
                WorkflowStep(
                    index=st.index,
                    name=st.name,
                    capability=st.capability,
                    status=st.status,
                    task_id=st.task_id,
                    snap=snap,
                )
                for st in s.steps
            ],
            current_step=s.current_step,
            created_at=s.created_at,
            updated_at=s.updated_at,
            finished_at=s.finished_at,
        )


@strawberry.type
class Event:
    id: strawberry.ID = strawberry.field(
        description="Per-tenant sequence number as a decimal string; also its cursor."
    )
    type: EventType
    occurred_at: datetime
    task_id: strawberry.ID | None
    agent_id: strawberry.ID | None
    workflow_id: strawberry.ID | None
    actor: str = strawberry.field(description="Subject of the token that made the change.")
    data: JSON | None
    record: strawberry.Private[EventRecord]

    @strawberry.field(description="The task as of this event.")
    def task(self) -> Task | None:
        s = self.record.snapshots
        return Task.of(s.task, s) if s.task else None

    @strawberry.field(description="The agent as of this event.")
    def agent(self) -> Agent | None:
        s = self.record.snapshots
        return Agent.of(s.agent, s) if s.agent else None

    @strawberry.field(description="The workflow as of this event.")
    def workflow(self) -> Workflow | None:
        s = self.record.snapshots
        return Workflow.of(s.workflow, s) if s.workflow else None

    @classmethod
    def of(cls, r: EventRecord) -> Event:
        return cls(
            id=strawberry.ID(str(r.id)),
            type=r.type,
            occurred_at=r.occurred_at,
            task_id=strawberry.ID(r.task_id) if r.task_id else None,
            agent_id=strawberry.ID(r.agent_id) if r.agent_id else None,
            workflow_id=strawberry.ID(r.workflow_id) if r.workflow_id else None,
            actor=r.actor,
            data=cast(JSON, r.data),
            record=r,
        )


@strawberry.type
class WorkflowProgress:
    workflow: Workflow
    step: WorkflowStep | None
    event: Event


@strawberry.type
class SystemMetrics:
    at: datetime
    scope: MetricsScope
    connections: int
    subscriptions: int
    events_published: int
    events_delivered: int
    tasks_by_status: JSON
    agents_by_status: JSON


@strawberry.type
class Viewer:
    subject: str
    roles: list[Role]
    tenant: str
    agent_id: strawberry.ID | None


@strawberry.type
class AgentRegistration:
    agent: Agent
    token: str


N = TypeVar("N")


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[N]):
    cursor: str
    node: N


@strawberry.type
class Connection(Generic[N]):
    edges: list[Edge[N]]
    page_info: PageInfo
    total_count: int


S = TypeVar("S")


def connection(page: Page[S], make: Callable[[S], N]) -> Connection[N]:
    """A Relay connection of GraphQL objects made from a page of states."""
    return Connection(
        edges=[Edge(cursor=c, node=make(item)) for c, item in page.items],
        page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        # Counted only when selected (selects_total_count), so never sent when None.
        total_count=page.total_count or 0,
    )


def selects_total_count(info: Info) -> bool:
    """Whether this connection field's selection asks for ``totalCount`` (directly, or in
    a fragment): a COUNT over the whole filter costs more than the page itself."""

    def asks(selections: Sequence[Selection]) -> bool:
        for selection in selections:
            if isinstance(selection, SelectedField):
                if selection.name == "totalCount":
                    return True
            elif asks(selection.selections):
                return True
        return False

    return any(asks(field.selections) for field in info.selected_fields)


# -- inputs ---------------------------------------------------------------


@strawberry.input
class EventFilter:
    types: list[EventType] | None = None
    task_id: strawberry.ID | None = None
    agent_id: strawberry.ID | None = None
    workflow_id: strawberry.ID | None = None
    since: datetime | None = None
    until: datetime | None = None


@strawberry.input
class CreateTaskInput:
    title: str
    capability: str | None = None
    priority: int | None = 0
    input: JSON | None = None
    max_attempts: int | None = 3


@strawberry.input
class RegisterAgentInput:
    name: str
    capabilities: list[str]
    metadata: JSON | None = None


@strawberry.input
class WorkflowStepInput:
    name: str
    capability: str | None = None
    input: JSON | None = None


@strawberry.input
class StartWorkflowInput:
    name: str
    steps: list[WorkflowStepInput]
