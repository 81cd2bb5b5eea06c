"""One transaction of domain work: state changes and their events commit together.

The transactional outbox: a service mutates rows and calls ``tx.emit``; ids
are allocated and Event rows written just before commit (keeping the
tenant's counter lock short), and the events are published only after the
commit succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from api.clock import utcnow
from api.db import events as event_store
from api.db import tasks as task_rows
from api.db.engine import Database
from api.db.outage import unavailable_when_unreachable
from api.domain import AgentState, EventRecord, EventType, Snapshots, TaskState, WorkflowState

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRIES = 5


class Publisher(Protocol):
    async def publish(self, records: Sequence[EventRecord]) -> None: ...


@dataclass
class _Pending:
    type: EventType
    snapshots: Snapshots
    task_id: str | None
    agent_id: str | None
    workflow_id: str | None
    data: dict[str, Any]
    related_given: bool = False


class Tx:
    """What a service sees inside a transaction.

    The transaction is the connection's; an ORM session joins it only when a service
    asks for one (``session``): the common paths run Core statements alone and skip
    the session's set-up, state tracking and commit machinery.
    """

    def __init__(self, connection: AsyncConnection, *, tenant: str, actor: str, now: datetime):
        self._connection = connection
        self._session: AsyncSession | None = None
        self.tenant = tenant
        self.actor = actor
        self.now = now
        self._pending: list[_Pending] = []

    @property
    def session(self) -> AsyncSession:
        """An ORM session in this transaction (it neither commits nor rolls it back)."""
        if self._session is None:
            self._session = AsyncSession(bind=self._connection, expire_on_commit=False)
        return self._session

    async def connection(self) -> AsyncConnection:
        """The transaction's connection, for Core statements."""
        return self._connection

    async def begin(self) -> None:
        await self._connection.start()
        await self._connection.begin()

    async def commit(self) -> None:
        """Flush what the session still holds, then commit the connection's transaction."""
        session = self._session
        if session is not None and (session.new or session.dirty or session.deleted):
            await session.flush()
        await self._connection.commit()

    async def close(self) -> None:
        """Release the session and the connection (rolling back what was not committed)."""
        if self._session is not None:
            await self._session.close()
        if self._connection.sync_connection is not None:
            await self._connection.close()

    def emit(
        self,
        type: EventType,
        *,
        task: TaskState | None = None,
        agent: AgentState | None = None,
        workflow: WorkflowState | None = None,
        data: dict[str, Any] | None = None,
        related: list[TaskState] | None = None,
    ) -> None:
        """Record one change; its id is assigned at commit, in emit order.

        ``related``: the tasks the agent and workflow point at, as they will commit,
        when the caller already has them (Core paths); otherwise they are read at commit.
        """
        self._pending.append(
            _Pending(
                type=type,
                snapshots=Snapshots(
                    task=task, agent=agent, workflow=workflow, related=related or []
                ),
                task_id=task.id if task else None,
                agent_id=agent.id if agent else (task.agent_id if task else None),
                workflow_id=workflow.id if workflow else (task.workflow_id if task else None),
                data=data or {},
                related_given=related is not None,
            )
        )

    async def _attach_related(self) -> None:
        """Give each event the tasks its agent and workflow point at (one query)."""
        wanted: dict[int, set[str]] = {}
        for i, p in enumerate(self._pending):
            if p.related_given:
                continue
            ids = set()
            if p.snapshots.agent and p.snapshots.agent.current_task_id:
                ids.add(p.snapshots.agent.current_task_id)
            if p.snapshots.workflow:
                ids.update(st.task_id for st in p.snapshots.workflow.steps if st.task_id)
            if p.snapshots.task:
                ids.discard(p.snapshots.task.id)
            if ids:
                wanted[i] = ids
        if not wanted:
            return
        await self.session.flush()
        all_ids = sorted(set().union(*wanted.values()))
        rows = await task_rows.get_tasks(self.session, tenant=self.tenant, ids=all_ids)
        states = {r.id: task_rows.task_state(r) for r in rows}
        for i, ids in wanted.items():
            p = self._pending[i]
            related = [states[t] for t in sorted(ids) if t in states]
            p.snapshots = p.snapshots.model_copy(update={"related": related})

    async def _write_events(self) -> list[EventRecord]:
        if not self._pending:
            return []
        await self._attach_related()
        last = await event_store.allocate_ids(
            self._session, self._connection, tenant=self.tenant, count=len(self._pending)
        )
        first = last - len(self._pending) + 1
        records = [
            EventRecord(
                id=first + i,
                tenant=self.tenant,
                type=p.type,
                occurred_at=self.now,
                actor=self.actor,
                task_id=p.task_id,
                agent_id=p.agent_id,
                workflow_id=p.workflow_id,
                data=p.data,
                snapshots=p.snapshots,
            )
            for i, p in enumerate(self._pending)
        ]
        await event_store.insert_events(await self.connection(), records)
        return records


class UnitOfWork:
    """Runs a service function in a transaction, retrying deadlocks, then publishes."""

    def __init__(self, db: Database, publisher: Publisher) -> None:
        self._db = db
        self._publisher = publisher

    async def run(self, tenant: str, actor: str, work: Callable[[Tx], Awaitable[T]]) -> T:
        for attempt in range(_RETRIES):
            tx = Tx(self._db.engine.connect(), tenant=tenant, actor=actor, now=utcnow())
            try:
                # Until the commit, an outage is UNAVAILABLE: nothing was written. A
                # connection lost during the commit leaves the outcome unknown, and
                # stays INTERNAL, so no client retries what may have happened.
                with unavailable_when_unreachable():
                    await tx.begin()
                    result = await work(tx)
                    records = await tx._write_events()
                await tx.commit()
            except (OperationalError, DBAPIError) as exc:
                if attempt + 1 < _RETRIES and _is_retryable(exc):
                    log.info("retrying transaction after %s", type(exc.orig).__name__)
                    # Jittered, so the transactions that deadlocked do not collide again.
                    await asyncio.sleep(random.uniform(0.5, 1.5) * 0.01 * (attempt + 1))
                    continue
                raise
            finally:
                await tx.close()
            if records:
                await self._publisher.publish(records)
            return result
        raise AssertionError("unreachable")


def _is_retryable(exc: DBAPIError) -> bool:
    text = f"{type(exc.orig).__name__} {exc.orig}".lower()
    return any(
        marker in text
        for marker in (
            "deadlock",
            "serializationerror",
            "could not serialize",
            "database is locked",
        )
    )
