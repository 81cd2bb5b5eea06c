"""Reads, always scoped to the caller's tenant: lookups, pages, history, counts."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from api.db import agents as agent_rows
from api.db import events as event_rows
from api.db import tasks as task_rows
from api.db import workflows as workflow_rows
from api.db.engine import Database
from api.db.events import EventQuery
from api.db.paging import Page, check_first, make_page
from api.domain import (
    AgentState,
    AgentStatus,
    EventRecord,
    TaskState,
    TaskStatus,
    WorkflowState,
    WorkflowStatus,
)
from api.errors import BadUserInput, EventsPruned
from api.services import validation


class ReadService:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def tasks_by_id(self, tenant: str, ids: Sequence[str]) -> dict[str, TaskState]:
        async with self._db.session() as s:
            rows = await task_rows.get_tasks(s, tenant=tenant, ids=ids)
        return {r.id: task_rows.task_state(r) for r in rows}

    async def agents_by_id(self, tenant: str, ids: Sequence[str]) -> dict[str, AgentState]:
        async with self._db.session() as s:
            rows = await agent_rows.get_agents(s, tenant=tenant, ids=ids)
        return {r.id: agent_rows.agent_state(r) for r in rows}

    async def workflows_by_id(self, tenant: str, ids: Sequence[str]) -> dict[str, WorkflowState]:
        async with self._db.session() as s:
            states = await workflow_rows.load_states(s, tenant=tenant, ids=ids)
        return {w.id: w for w in states}

    async def tasks(
        self,
        tenant: str,
        *,
        statuses: Sequence[TaskStatus] | None,
        agent_id: str | None,
        workflow_id: str | None,
        first: int,
        after: str | None,
        count: bool = True,
    ) -> Page[TaskState]:
        async with self._db.session() as s:
            page = await task_rows.page_tasks(
                s,
                tenant=tenant,
                statuses=statuses,
                agent_id=agent_id,
                workflow_id=workflow_id,
                first=check_first(first),
                after=after,
                count=count,
            )
        return Page(
            items=[(c, task_rows.task_state(r)) for c, r in page.items],
            has_next_page=page.has_next_page,
            total_count=page.total_count,
        )

    async def agents(
        self,
        tenant: str,
        *,
        statuses: Sequence[AgentStatus] | None,
        capability: str | None,
        first: int,
        after: str | None,
        count: bool = True,
    ) -> Page[AgentState]:
        capability = validation.capability(capability)
        async with self._db.session() as s:
            page = await agent_rows.page_agents(
                s,
                tenant=tenant,
                statuses=statuses,
                capability=capability,
                first=check_first(first),
                after=after,
                count=count,
            )
        return Page(
            items=[(c, agent_rows.agent_state(r)) for c, r in page.items],
            has_next_page=page.has_next_page,
            total_count=page.total_count,
        )

    async def workflows(
        self,
        tenant: str,
        *,
        statuses: Sequence[WorkflowStatus] | None,
        first: int,
        after: str | None,
        count: bool = True,
    ) -> Page[WorkflowState]:
        async with self._db.session() as s:
            return await workflow_rows.page_workflows(
                s,
                tenant=tenant,
                statuses=statuses,
                first=check_first(first),
                after=after,
                count=count,
            )

    async def events(
        self, tenant: str, *, query: EventQuery, first: int, after: str | None, count: bool = True
    ) -> Page[EventRecord]:
        """History, oldest first; a cursor is the event id itself. ``count``: also the
        total (a COUNT over the tenant's whole history: only when the client asks)."""
        first = check_first(first)
        after_id = parse_event_id(after)
        async with self._db.session() as s:
            rows = await event_rows.list_events(
                s, tenant=tenant, query=query, after=after_id, limit=first + 1
            )
            await _not_pruned(s, tenant, after_id)
            total = await event_rows.count_events(s, tenant=tenant, query=query) if count else None
        return make_page(rows, first, lambda r: str(r.id), total)

    async def events_after(
        self,
        tenant: str,
        after: int,
        limit: int,
        query: EventQuery | None = None,
        through: int | None = None,
    ) -> list[EventRecord]:
        async with self._db.session() as s:
            records = await event_rows.list_events(
                s,
                tenant=tenant,
                query=query or EventQuery(),
                after=after,
                limit=limit,
                through=through,
            )
            await _not_pruned(s, tenant, after)
        return records

    async def latest_event(self, tenant: str, query: EventQuery) -> EventRecord | None:
        async with self._db.session() as s:
            return await event_rows.latest_event(s, tenant=tenant, query=query)

    async def heads(self) -> dict[str, int]:
        async with self._db.session() as s:
            return await event_rows.heads(s)

    async def counts(self, tenant: str) -> tuple[dict[str, int], dict[str, int]]:
        """Tasks and agents by status."""
        async with self._db.session() as s:
            return (
                await task_rows.count_by_status(s, tenant=tenant),
                await agent_rows.count_by_status(s, tenant=tenant),
            )


async def _not_pruned(session: AsyncSession, tenant: str, after: int | None) -> None:
    """Raise EventsPruned when events after the cursor ``after`` were pruned.

    Asked after reading the events: a prune only ever moves the oldest kept id
    up, so one that finished before the read shows here, and the read cannot
    have skipped its events unnoticed. ``after`` 0 means "from the start of what
    is kept" and is never refused.
    """
    if not after:
        return
    oldest = await event_rows.oldest_event_id(session, tenant=tenant)
    if oldest is not None and oldest > after + 1:
        raise EventsPruned(after, oldest)


def parse_event_id(value: str | None) -> int | None:
    """An event cursor: a non-negative decimal id, or None for 'from the start'."""
    if value is None:
        return None
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise BadUserInput(f"invalid event cursor {value[:100]!r}: expected a decimal event id")
    return int(value)
