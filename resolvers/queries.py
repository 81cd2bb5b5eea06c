"""Root query fields: thin calls into the read service."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import strawberry
from strawberry.scalars import JSON

from api.clock import utcnow
from api.cluster.figures import system_figures
from api.db.events import EventQuery
from api.domain import AgentStatus, Role, TaskStatus, WorkflowStatus
from api.errors import BadUserInput
from api.runtime import Runtime
from resolvers.context import Info
from resolvers.permissions import CanRead, IsOperator
from resolvers.types import (
    Agent,
    Connection,
    Event,
    EventFilter,
    SystemMetrics,
    Task,
    Viewer,
    Workflow,
    connection,
    selects_total_count,
)


def event_query(filter: EventFilter | None) -> EventQuery:
    if filter is None:
        return EventQuery()
    return EventQuery(
        types=frozenset(filter.types) if filter.types else None,
        task_id=filter.task_id,
        agent_id=filter.agent_id,
        workflow_id=filter.workflow_id,
        since=_instant(filter.since, "since"),
        until=_instant(filter.until, "until"),
    )


def _instant(value: datetime | None, field: str) -> datetime | None:
    """A filter time as aware UTC; a time without a zone names no instant."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise BadUserInput(f"{field} must be an ISO-8601 time with a zone, e.g. +00:00 or Z")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise BadUserInput(f"{field} is out of range") from exc


async def system_metrics(runtime: Runtime, tenant: str) -> SystemMetrics:
    """The counters (this process's, or every process's with Redis) and the tenant's
    tasks and agents by status (two GROUP BYs)."""
    tasks, agents = await runtime.reads.counts(tenant)
    figures = await system_figures(runtime.metrics, runtime.cluster, tenant)
    return SystemMetrics(
        at=utcnow(),
        scope=figures.scope,
        connections=figures.connections,
        subscriptions=figures.subscriptions,
        events_published=figures.events_published,
        events_delivered=figures.events_delivered,
        tasks_by_status=cast(JSON, tasks),
        agents_by_status=cast(JSON, agents),
    )


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[CanRead], description="The caller, as its token says.")
    def me(self, info: Info) -> Viewer:
        p = info.context.principal
        return Viewer(
            subject=p.subject,
            roles=[Role(r) for r in sorted(p.roles)],
            tenant=p.tenant,
            agent_id=strawberry.ID(p.agent_id) if p.agent_id else None,
        )

    @strawberry.field(permission_classes=[CanRead])
    async def task(self, info: Info, id: strawberry.ID) -> Task | None:
        state = await info.context.task(id)
        return Task.of(state) if state else None

    @strawberry.field(permission_classes=[CanRead], description="Newest first.")
    async def tasks(
        self,
        info: Info,
        status: list[TaskStatus] | None = None,
        agent_id: strawberry.ID | None = None,
        workflow_id: strawberry.ID | None = None,
        first: int | None = 50,
        after: str | None = None,
    ) -> Connection[Task]:
        page = await info.context.runtime.reads.tasks(
            info.context.principal.tenant,
            statuses=status,
            agent_id=agent_id,
            workflow_id=workflow_id,
            first=50 if first is None else first,
            after=after,
            count=selects_total_count(info),
        )
        return connection(page, Task.of)

    @strawberry.field(permission_classes=[CanRead])
    async def agent(self, info: Info, id: strawberry.ID) -> Agent | None:
        state = await info.context.agent(id)
        return Agent.of(state) if state else None

    @strawberry.field(permission_classes=[CanRead], description="Oldest registration first.")
    async def agents(
        self,
        info: Info,
        status: list[AgentStatus] | None = None,
        capability: str | None = None,
        first: int | None = 50,
        after: str | None = None,
    ) -> Connection[Agent]:
        page = await info.context.runtime.reads.agents(
            info.context.principal.tenant,
            statuses=status,
            capability=capability,
            first=50 if first is None else first,
            after=after,
            count=selects_total_count(info),
        )
        return connection(page, Agent.of)

    @strawberry.field(permission_classes=[CanRead])
    async def workflow(self, info: Info, id: strawberry.ID) -> Workflow | None:
        state = await info.context.workflow(id)
        return Workflow.of(state) if state else None

    @strawberry.field(permission_classes=[CanRead], description="Newest first.")
    async def workflows(
        self,
        info: Info,
        status: list[WorkflowStatus] | None = None,
        first: int | None = 50,
        after: str | None = None,
    ) -> Connection[Workflow]:
        page = await info.context.runtime.reads.workflows(
            info.context.principal.tenant,
            statuses=status,
            first=50 if first is None else first,
            after=after,
            count=selects_total_count(info),
        )
        return connection(page, Workflow.of)

    @strawberry.field(permission_classes=[CanRead], description="Event history, oldest first.")
    async def events(
        self,
        info: Info,
        filter: EventFilter | None = None,
        first: int | None = 100,
        after: str | None = None,
    ) -> Connection[Event]:
        page = await info.context.runtime.reads.events(
            info.context.principal.tenant,
            query=event_query(filter),
            first=100 if first is None else first,
            after=after,
            count=selects_total_count(info),
        )
        return connection(page, Event.of)

    @strawberry.field(permission_classes=[IsOperator])
    async def system_metrics(self, info: Info) -> SystemMetrics:
        return await system_metrics(info.context.runtime, info.context.principal.tenant)
