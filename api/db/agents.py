"""Agent queries and row/state conversion."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, String, bindparam, cast, func, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col, select

from api.db.direct import Statement
from api.db.models import AgentRow
from api.db.paging import Page, after_clause, encode_cursor, make_page
from api.domain import AgentState, AgentStatus


def agent_state(row: AgentRow) -> AgentState:
    return AgentState(
        id=row.id,
        tenant=row.tenant,
        name=row.name,
        capabilities=list(row.capabilities),
        status=AgentStatus(row.status),
        last_heartbeat_at=row.last_heartbeat_at,
        registered_at=row.registered_at,
        current_task_id=row.current_task_id,
        metadata=row.metadata_,
    )


_AGENT = AgentRow.__table__.c  # type: ignore[attr-defined]

# Built once, run on the session's connection (Core): see api/db/tasks.py.
_LOCK_AGENT = Statement(
    select(AgentRow.__table__)  # type: ignore[attr-defined]
    .where(_AGENT.tenant == bindparam("p_tenant"), _AGENT.id == bindparam("p_id"))
    .with_for_update()
)
# A heartbeat that changes nothing but its time: the agent is ONLINE or BUSY.
_TOUCH_HEARTBEAT = Statement(
    update(AgentRow.__table__)  # type: ignore[attr-defined]
    .where(
        _AGENT.tenant == bindparam("p_tenant"),
        _AGENT.id == bindparam("p_id"),
        or_(_AGENT.status == AgentStatus.ONLINE.value, _AGENT.status == AgentStatus.BUSY.value),
    )
    .values(last_heartbeat_at=bindparam("p_now"))
    .returning(*_AGENT)
)

_CLAIMED = Statement(
    update(AgentRow.__table__)  # type: ignore[attr-defined]
    .where(_AGENT.tenant == bindparam("p_tenant"), _AGENT.id == bindparam("p_id"))
    .values(
        status=bindparam("p_status"),
        current_task_id=bindparam("p_task"),
        last_heartbeat_at=bindparam("p_now"),
    )
    .returning(*_AGENT)
)
_RELEASED = Statement(
    update(AgentRow.__table__)  # type: ignore[attr-defined]
    .where(_AGENT.tenant == bindparam("p_tenant"), _AGENT.id == bindparam("p_id"))
    .values(status=bindparam("p_status"), current_task_id=None)
    .returning(*_AGENT)
)


async def lock_agent_state(conn: AsyncConnection, *, tenant: str, id: str) -> AgentState | None:
    """An agent's state, row-locked for this transaction."""
    row = await _LOCK_AGENT.first(conn, {"p_tenant": tenant, "p_id": id})
    return None if row is None else AgentState.model_validate(row)


async def touch_heartbeat(
    conn: AsyncConnection, *, tenant: str, id: str, now: datetime
) -> AgentState | None:
    """Record a heartbeat of an ONLINE or BUSY agent; its state, or None (nothing written)."""
    params = {"p_tenant": tenant, "p_id": id, "p_now": now}
    row = await _TOUCH_HEARTBEAT.first(conn, params)
    return None if row is None else AgentState.model_validate(row)


async def set_claimed(
    conn: AsyncConnection,
    *,
    tenant: str,
    id: str,
    status: AgentStatus,
    task_id: str | None,
    now: datetime,
) -> AgentState | None:
    """An agent's claim: its status, the task it now holds (or none) and a heartbeat."""
    params = {
        "p_tenant": tenant,
        "p_id": id,
        "p_status": status.value,
        "p_task": task_id,
        "p_now": now,
    }
    row = await _CLAIMED.first(conn, params)
    return None if row is None else AgentState.model_validate(row)


async def set_released(
    conn: AsyncConnection, *, tenant: str, id: str, status: AgentStatus
) -> AgentState | None:
    """The agent holds no task any more, with ``status``; its new state, or None."""
    params = {"p_tenant": tenant, "p_id": id, "p_status": status.value}
    row = await _RELEASED.first(conn, params)
    return None if row is None else AgentState.model_validate(row)


async def get_agent(
    session: AsyncSession, *, tenant: str, id: str, for_update: bool = False
) -> AgentRow | None:
    stmt = select(AgentRow).where(AgentRow.tenant == tenant, AgentRow.id == id)
    if for_update:
        # populate_existing: a row this session already loaded (a peek before taking
        # the lock) is refreshed from the locked row, not served stale from the identity map.
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_agents(session: AsyncSession, *, tenant: str, ids: Sequence[str]) -> list[AgentRow]:
    stmt = select(AgentRow).where(AgentRow.tenant == tenant, AgentRow.id.in_(ids))  # type: ignore[attr-defined]
    return list((await session.execute(stmt)).scalars())


async def page_agents(
    session: AsyncSession,
    *,
    tenant: str,
    statuses: Sequence[AgentStatus] | None,
    capability: str | None,
    first: int,
    after: str | None,
    count: bool = True,
) -> Page[AgentRow]:
    """Oldest registration first; new agents land on the last page."""
    conditions: list[ColumnElement[bool]] = [col(AgentRow.tenant) == tenant]
    if statuses:
        conditions.append(col(AgentRow.status).in_([s.value for s in statuses]))
    if capability is not None:
        # The quoted name inside the JSON text; autoescape makes `_` and `%` literal.
        conditions.append(
            cast(AgentRow.capabilities, String).contains(f'"{capability}"', autoescape=True)
        )
    total = (
        (
            await session.execute(select(func.count()).select_from(AgentRow).where(*conditions))
        ).scalar_one()
        if count
        else None
    )
    stmt = select(AgentRow).where(*conditions)
    if after is not None:  # an empty cursor is invalid, not the first page
        stmt = stmt.where(
            after_clause(AgentRow.registered_at, AgentRow.id, after, descending=False)
        )
    stmt = stmt.order_by(AgentRow.registered_at, AgentRow.id).limit(first + 1)  # type: ignore[arg-type]
    rows = (await session.execute(stmt)).scalars().all()
    return make_page(rows, first, lambda r: encode_cursor(r.registered_at, r.id), total)


async def stale_agent_ids(
    session: AsyncSession, *, statuses: Sequence[AgentStatus], cutoff: datetime
) -> list[tuple[str, str]]:
    """(tenant, id) of agents in one of the statuses whose last heartbeat is before cutoff."""
    stmt = select(AgentRow.tenant, AgentRow.id).where(
        AgentRow.status.in_([s.value for s in statuses]),  # type: ignore[attr-defined]
        AgentRow.last_heartbeat_at < cutoff,  # type: ignore[operator]
    )
    return [(tenant, id) for tenant, id in (await session.execute(stmt)).all()]


async def transition_if_stale(
    session: AsyncSession,
    *,
    tenant: str,
    id: str,
    from_statuses: Sequence[AgentStatus],
    to_status: AgentStatus,
    cutoff: datetime,
) -> bool:
    """Conditionally move an agent to a new status; True only for the one caller that did.

    The condition is re-checked under the row lock the UPDATE takes, so several
    sweepers racing on the same agent emit the transition exactly once.
    """
    stmt = (
        update(AgentRow)
        .where(
            col(AgentRow.tenant) == tenant,
            col(AgentRow.id) == id,
            col(AgentRow.status).in_([s.value for s in from_statuses]),
            col(AgentRow.last_heartbeat_at) < cutoff,
        )
        .values(status=to_status.value)
        .returning(col(AgentRow.id))
    )
    return (await session.execute(stmt)).first() is not None


async def count_by_status(session: AsyncSession, *, tenant: str) -> dict[str, int]:
    stmt = (
        select(AgentRow.status, func.count())
        .where(AgentRow.tenant == tenant)
        .group_by(AgentRow.status)
    )
    counts = {status.value: 0 for status in AgentStatus}
    counts.update({status: n for status, n in (await session.execute(stmt)).all()})
    return counts
