"""Task queries and row/state conversion."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, bindparam, func, insert, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col, select

from api.db.direct import Statement
from api.db.models import TaskRow
from api.db.paging import Page, after_clause, encode_cursor, make_page
from api.domain import TaskState, TaskStatus


def task_state(row: TaskRow) -> TaskState:
    return TaskState(
        id=row.id,
        tenant=row.tenant,
        title=row.title,
        status=TaskStatus(row.status),
        progress=row.progress,
        message=row.message,
        priority=row.priority,
        capability=row.capability,
        input=row.input,
        result=row.result,
        error=row.error,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        agent_id=row.agent_id,
        workflow_id=row.workflow_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


_TASK = TaskRow.__table__.c  # type: ignore[attr-defined]

# The hot path's statements, built once: constructing a statement costs more than
# running it on SQLite. Run on the session's connection (Core), not through the ORM,
# and on SQLite straight on its driver (api/db/direct.py).
_INSERT = Statement(
    insert(TaskRow.__table__),  # type: ignore[attr-defined]
    column_keys=[*TaskState.model_fields, "step_index"],
)
_PEEK_HOLDER = Statement(
    select(_TASK.status, _TASK.agent_id).where(
        _TASK.tenant == bindparam("p_tenant"), _TASK.id == bindparam("p_id")
    )
)
# A RUNNING task still held by the agent ``p_holder``: the guard of every change its holder makes.
_HELD = (
    _TASK.tenant == bindparam("p_tenant"),
    _TASK.id == bindparam("p_id"),
    _TASK.status == TaskStatus.RUNNING.value,
    _TASK.agent_id == bindparam("p_holder"),
)
_UPDATE_PROGRESS = Statement(
    update(TaskRow.__table__)  # type: ignore[attr-defined]
    .where(*_HELD)
    .values(
        progress=bindparam("p_progress"),
        message=bindparam("p_message"),
        updated_at=bindparam("p_now"),
    )
    .returning(*_TASK)
)


_NEXT_CLAIMABLE = (
    select(_TASK.id, _TASK.workflow_id)
    .where(
        _TASK.tenant == bindparam("p_tenant"),
        _TASK.status == TaskStatus.PENDING.value,
        or_(
            _TASK.capability.is_(None),
            _TASK.capability.in_(bindparam("p_capabilities", expanding=True)),
        ),
    )
    .order_by(_TASK.priority.desc(), _TASK.created_at, _TASK.id)
    .limit(1)
    .with_for_update(skip_locked=True)
)
_START = Statement(
    update(TaskRow.__table__)  # type: ignore[attr-defined]
    .where(
        _TASK.tenant == bindparam("p_tenant"),
        _TASK.id == bindparam("p_id"),
        _TASK.status == TaskStatus.PENDING.value,
    )
    .values(
        status=TaskStatus.RUNNING.value,
        agent_id=bindparam("p_agent"),
        attempts=_TASK.attempts + 1,
        progress=0.0,
        message=None,
        started_at=bindparam("p_now"),
        updated_at=bindparam("p_now"),
    )
    .returning(*_TASK)
)
_SUCCEED = Statement(
    update(TaskRow.__table__)  # type: ignore[attr-defined]
    .where(*_HELD, _TASK.workflow_id.is_(None))
    .values(
        status=TaskStatus.SUCCEEDED.value,
        # A None result is written as SQL NULL; a row inserted without one holds JSON null.
        # Both read back as None, and nothing filters on the column.
        result=bindparam("p_result", type_=JSON(none_as_null=True)),
        progress=1.0,
        finished_at=bindparam("p_now"),
        updated_at=bindparam("p_now"),
    )
    .returning(*_TASK)
)


async def insert_task(conn: AsyncConnection, task: TaskState) -> None:
    """Insert a task outside any workflow, from its state (no ORM object to build and flush)."""
    row = task.model_dump()
    row["status"] = task.status.value
    row["step_index"] = None
    await _INSERT.execute_many(conn, [row])


async def peek_holder(
    conn: AsyncConnection, *, tenant: str, id: str
) -> tuple[str, str | None] | None:
    """(status, agent_id) of a task, unlocked; None when there is no such task."""
    row = await _PEEK_HOLDER.first(conn, {"p_tenant": tenant, "p_id": id})
    return None if row is None else (row["status"], row["agent_id"])


async def update_progress(
    conn: AsyncConnection,
    *,
    tenant: str,
    id: str,
    holder: str,
    progress: float,
    message: str | None,
    now: datetime,
) -> TaskState | None:
    """Set a RUNNING task's progress, only while ``holder`` holds it; its new state, or None."""
    params = {
        "p_tenant": tenant,
        "p_id": id,
        "p_holder": holder,
        "p_progress": progress,
        "p_message": message,
        "p_now": now,
    }
    row = await _UPDATE_PROGRESS.first(conn, params)
    return None if row is None else TaskState.model_validate(row)


async def lock_next_claimable(
    conn: AsyncConnection, *, tenant: str, capabilities: Sequence[str]
) -> tuple[str, str | None] | None:
    """(id, workflow_id) of the task ``next_claimable`` would lock, locked the same way."""
    params = {"p_tenant": tenant, "p_capabilities": list(capabilities)}
    row = (await conn.execute(_NEXT_CLAIMABLE, params)).first()
    return None if row is None else (row[0], row[1])


async def start(
    conn: AsyncConnection, *, tenant: str, id: str, agent_id: str, now: datetime
) -> TaskState | None:
    """Start a new attempt of a PENDING task held by ``agent_id``; its new state, or None."""
    params = {"p_tenant": tenant, "p_id": id, "p_agent": agent_id, "p_now": now}
    row = await _START.first(conn, params)
    return None if row is None else TaskState.model_validate(row)


async def succeed(
    conn: AsyncConnection, *, tenant: str, id: str, holder: str, result: Any, now: datetime
) -> TaskState | None:
    """Mark a RUNNING task outside any workflow SUCCEEDED, only while ``holder`` holds it;
    its new state, or None (nothing written)."""
    params = {"p_tenant": tenant, "p_id": id, "p_holder": holder, "p_result": result, "p_now": now}
    row = await _SUCCEED.first(conn, params)
    return None if row is None else TaskState.model_validate(row)


async def get_task(
    session: AsyncSession, *, tenant: str, id: str, for_update: bool = False
) -> TaskRow | None:
    stmt = select(TaskRow).where(TaskRow.tenant == tenant, TaskRow.id == id)
    if for_update:
        # populate_existing: a row this session already loaded (a peek before taking
        # the lock) is refreshed from the locked row, not served stale from the identity map.
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_tasks(session: AsyncSession, *, tenant: str, ids: Sequence[str]) -> list[TaskRow]:
    stmt = select(TaskRow).where(TaskRow.tenant == tenant, TaskRow.id.in_(ids))  # type: ignore[attr-defined]
    return list((await session.execute(stmt)).scalars())


async def step_task_id(
    session: AsyncSession, *, tenant: str, workflow_id: str, step_index: int
) -> str | None:
    """The task of one workflow step, read fresh (a step keeps its task across retries)."""
    stmt = select(TaskRow.id).where(
        TaskRow.tenant == tenant,
        TaskRow.workflow_id == workflow_id,
        TaskRow.step_index == step_index,
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def next_claimable(
    session: AsyncSession, *, tenant: str, capabilities: Sequence[str]
) -> TaskRow | None:
    """The highest-priority, oldest PENDING task the agent can do, locked for this transaction.

    SKIP LOCKED lets racing claimers on PostgreSQL move on to the next task
    instead of queueing behind one another; SQLite serialises writers anyway.
    """
    stmt = (
        select(TaskRow)
        .where(
            TaskRow.tenant == tenant,
            TaskRow.status == TaskStatus.PENDING.value,
            or_(
                TaskRow.capability.is_(None),  # type: ignore[union-attr]
                TaskRow.capability.in_(list(capabilities)),  # type: ignore[union-attr]
            ),
        )
        .order_by(col(TaskRow.priority).desc(), col(TaskRow.created_at), col(TaskRow.id))
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def page_tasks(
    session: AsyncSession,
    *,
    tenant: str,
    statuses: Sequence[TaskStatus] | None,
    agent_id: str | None,
    workflow_id: str | None,
    first: int,
    after: str | None,
    count: bool = True,
) -> Page[TaskRow]:
    """Newest first, so tasks created while paging never shift later pages."""
    conditions = [TaskRow.tenant == tenant]
    if statuses:
        conditions.append(TaskRow.status.in_([s.value for s in statuses]))  # type: ignore[attr-defined]
    if agent_id is not None:
        conditions.append(TaskRow.agent_id == agent_id)
    if workflow_id is not None:
        conditions.append(TaskRow.workflow_id == workflow_id)
    total = (
        (
            await session.execute(select(func.count()).select_from(TaskRow).where(*conditions))
        ).scalar_one()
        if count
        else None
    )
    stmt = select(TaskRow).where(*conditions)
    if after is not None:  # an empty cursor is invalid, not the first page
        stmt = stmt.where(after_clause(TaskRow.created_at, TaskRow.id, after, descending=True))
    stmt = stmt.order_by(TaskRow.created_at.desc(), TaskRow.id.desc()).limit(first + 1)  # type: ignore[attr-defined]
    rows = (await session.execute(stmt)).scalars().all()
    return make_page(rows, first, lambda r: encode_cursor(r.created_at, r.id), total)


async def count_by_status(session: AsyncSession, *, tenant: str) -> dict[str, int]:
    stmt = (
        select(TaskRow.status, func.count())
        .where(TaskRow.tenant == tenant)
        .group_by(TaskRow.status)
    )
    counts = {status.value: 0 for status in TaskStatus}
    counts.update({status: n for status, n in (await session.execute(stmt)).all()})
    return counts
