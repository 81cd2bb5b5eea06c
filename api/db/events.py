"""The event log: id allocation in commit order, inserts, history reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, bindparam, func, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col, select

from api.db.direct import Statement
from api.db.models import EventRow, TenantCounter
from api.domain import EventRecord, EventType, Snapshots


@dataclass(frozen=True)
class EventQuery:
    """The filters of ``events`` (history query and subscription)."""

    types: frozenset[EventType] | None = None
    task_id: str | None = None
    agent_id: str | None = None
    workflow_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, event: EventRecord) -> bool:
        return (
            (self.types is None or event.type in self.types)
            and (self.task_id is None or event.task_id == self.task_id)
            and (self.agent_id is None or event.agent_id == self.agent_id)
            and (self.workflow_id is None or event.workflow_id == self.workflow_id)
            and (self.since is None or event.occurred_at >= self.since)
            and (self.until is None or event.occurred_at <= self.until)
        )


def event_record(row: EventRow) -> EventRecord:
    return EventRecord(
        id=row.id,
        tenant=row.tenant,
        type=EventType(row.type),
        occurred_at=row.occurred_at,
        actor=row.actor,
        task_id=row.task_id,
        agent_id=row.agent_id,
        workflow_id=row.workflow_id,
        data=row.data or {},
        snapshots=Snapshots.model_validate(row.snapshots),
    )


_ALLOCATE = Statement(
    update(TenantCounter.__table__)  # type: ignore[attr-defined]
    .where(col(TenantCounter.tenant) == bindparam("p_tenant"))
    .values(last_event_id=col(TenantCounter.last_event_id) + bindparam("p_count"))
    .returning(col(TenantCounter.last_event_id))
)
_INSERT_EVENTS = Statement(
    insert(EventRow.__table__),  # type: ignore[attr-defined]
    column_keys=[
        "tenant",
        "id",
        "type",
        "occurred_at",
        "actor",
        "task_id",
        "agent_id",
        "workflow_id",
        "data",
        "snapshots",
    ],
)


async def allocate_ids(
    session: AsyncSession | None, conn: AsyncConnection, *, tenant: str, count: int
) -> int:
    """Reserve ``count`` consecutive ids for a tenant; returns the last.

    The UPDATE row-locks the tenant's counter until commit, so ids are handed
    out in commit order and a reader never sees id n+1 before id n. ``session``:
    the transaction's ORM session, if it has one; its pending changes go first.
    """
    if session is not None and (session.new or session.dirty or session.deleted):
        await session.flush()  # as autoflush would have done
    params = {"p_tenant": tenant, "p_count": count}
    last = await _ALLOCATE.scalar(conn, params)
    if last is None:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        await conn.execute(
            insert(TenantCounter)
            .values(tenant=tenant, last_event_id=0)
            .on_conflict_do_nothing(index_elements=["tenant"])
        )
        last = await _ALLOCATE.scalar(conn, params)
        assert last is not None  # the row exists now
    return int(last)


async def insert_events(conn: AsyncConnection, records: Sequence[EventRecord]) -> None:
    """One Core INSERT for the transaction's events (no ORM objects: nothing reads them back)."""
    await _INSERT_EVENTS.execute_many(
        conn,
        [
            {
                "tenant": r.tenant,
                "id": r.id,
                "type": r.type.value,
                "occurred_at": r.occurred_at,
                "actor": r.actor,
                "task_id": r.task_id,
                "agent_id": r.agent_id,
                "workflow_id": r.workflow_id,
                "data": r.data,
                "snapshots": r.snapshots.model_dump(mode="json"),
            }
            for r in records
        ],
    )


def _filtered(tenant: str, query: EventQuery, after: int | None) -> list[ColumnElement[bool]]:
    conditions = [col(EventRow.tenant) == tenant]
    if after is not None:
        conditions.append(col(EventRow.id) > after)
    if query.types:
        conditions.append(col(EventRow.type).in_([t.value for t in query.types]))
    if query.task_id is not None:
        conditions.append(col(EventRow.task_id) == query.task_id)
    if query.agent_id is not None:
        conditions.append(col(EventRow.agent_id) == query.agent_id)
    if query.workflow_id is not None:
        conditions.append(col(EventRow.workflow_id) == query.workflow_id)
    if query.since is not None:
        conditions.append(col(EventRow.occurred_at) >= query.since)
    if query.until is not None:
        conditions.append(col(EventRow.occurred_at) <= query.until)
    return conditions


async def list_events(
    session: AsyncSession,
    *,
    tenant: str,
    query: EventQuery,
    after: int | None,
    limit: int,
    through: int | None = None,
) -> list[EventRecord]:
    """Events after an id (and up to ``through``, when given), oldest first."""
    conditions = _filtered(tenant, query, after)
    if through is not None:
        conditions.append(col(EventRow.id) <= through)
    stmt = (
        select(EventRow)
        .where(*conditions)
        .order_by(EventRow.id)  # type: ignore[arg-type]
        .limit(limit)
    )
    return [event_record(r) for r in (await session.execute(stmt)).scalars()]


async def oldest_event_id(session: AsyncSession, *, tenant: str) -> int | None:
    """The oldest id kept (older ones were pruned: api/db/retention.py); None without events."""
    stmt = select(func.min(EventRow.id)).where(col(EventRow.tenant) == tenant)
    found = (await session.execute(stmt)).scalar_one_or_none()
    return None if found is None else int(found)


async def count_events(session: AsyncSession, *, tenant: str, query: EventQuery) -> int:
    stmt = select(func.count()).select_from(EventRow).where(*_filtered(tenant, query, None))
    return int((await session.execute(stmt)).scalar_one())


async def latest_event(
    session: AsyncSession, *, tenant: str, query: EventQuery
) -> EventRecord | None:
    stmt = (
        select(EventRow)
        .where(*_filtered(tenant, query, None))
        .order_by(EventRow.id.desc())  # type: ignore[attr-defined]
        .limit(1)
    )
    row = (await session.execute(stmt)).scalar_one_or_none()
    return None if row is None else event_record(row)


async def heads(session: AsyncSession) -> dict[str, int]:
    """Last allocated event id of every tenant (committed ids only)."""
    rows = (await session.execute(select(TenantCounter.tenant, TenantCounter.last_event_id))).all()
    return {tenant: int(last) for tenant, last in rows}
