"""Helpers for service-level tests: principals, agents, and a view of all a tenant holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col

from api.auth.principal import Principal
from api.db.events import EventQuery
from api.db.models import AgentRow, EventRow, TaskRow, TenantCounter, WorkflowRow, WorkflowStepRow
from api.domain import AgentState, EventRecord, Role
from api.runtime import Runtime

FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


def principal(
    tenant: str, *roles: Role, subject: str = "tester", agent_id: str | None = None
) -> Principal:
    return Principal(
        subject=subject,
        roles=frozenset(roles),
        tenant=tenant,
        agent_id=agent_id,
        expires_at=FAR_FUTURE,
    )


def as_agent(agent: AgentState) -> Principal:
    """The principal a registered agent's own token carries."""
    return principal(agent.tenant, Role.AGENT, subject=f"agent:{agent.id}", agent_id=agent.id)


async def register(
    runtime: Runtime,
    operator: Principal,
    name: str = "worker",
    capabilities: list[str] | None = None,
) -> AgentState:
    agent, _token = await runtime.agents.register(
        operator, name=name, capabilities=capabilities or [], metadata=None
    )
    return agent


async def events(
    runtime: Runtime, tenant: str, query: EventQuery | None = None
) -> list[EventRecord]:
    """A tenant's whole event log, oldest first."""
    return await runtime.reads.events_after(tenant, 0, 100_000, query)


async def everything(runtime: Runtime, tenant: str) -> dict[str, list[dict[str, Any]]]:
    """Every row a tenant owns, in a stable order: equal before and after means nothing written."""
    tables: dict[str, Any] = {
        "task": (TaskRow, TaskRow.id),
        "agent": (AgentRow, AgentRow.id),
        "workflow": (WorkflowRow, WorkflowRow.id),
        "workflow_step": (WorkflowStepRow, WorkflowStepRow.workflow_id),
        "event": (EventRow, EventRow.id),
        "tenant_counter": (TenantCounter, TenantCounter.tenant),
    }
    found: dict[str, list[dict[str, Any]]] = {}
    async with runtime.db.session() as session:
        for name, (model, order) in tables.items():
            stmt = select(model.__table__).where(model.__table__.c.tenant == tenant)
            rows = (await session.execute(stmt.order_by(order))).mappings().all()
            found[name] = [dict(r) for r in rows]
    return found


async def set_heartbeat(runtime: Runtime, agent_id: str, ago: timedelta) -> None:
    """Time travel: the agent's last sign of life was ``ago`` before now."""
    async with runtime.db.sessions() as session, session.begin():
        await session.execute(
            update(AgentRow)
            .where(col(AgentRow.id) == agent_id)
            .values(last_heartbeat_at=datetime.now(UTC) - ago)
        )
