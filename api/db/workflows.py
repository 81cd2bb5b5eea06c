"""Workflow queries and row/state conversion."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from api.db.models import WorkflowRow, WorkflowStepRow
from api.db.paging import Page, after_clause, encode_cursor, make_page
from api.domain import StepState, TaskStatus, WorkflowState, WorkflowStatus


def workflow_state(row: WorkflowRow, steps: Sequence[WorkflowStepRow]) -> WorkflowState:
    return WorkflowState(
        id=row.id,
        tenant=row.tenant,
        name=row.name,
        status=WorkflowStatus(row.status),
        progress=row.progress,
        steps=[
            StepState(
                index=s.index,
                name=s.name,
                capability=s.capability,
                status=TaskStatus(s.status),
                task_id=s.task_id,
            )
            for s in sorted(steps, key=lambda s: s.index)
        ],
        current_step=row.current_step,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )


async def get_workflow(
    session: AsyncSession, *, tenant: str, id: str, for_update: bool = False
) -> WorkflowRow | None:
    stmt = select(WorkflowRow).where(WorkflowRow.tenant == tenant, WorkflowRow.id == id)
    if for_update:
        # populate_existing: a row this session already loaded (a peek before taking
        # the lock) is refreshed from the locked row, not served stale from the identity map.
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_steps(session: AsyncSession, *, workflow_ids: Sequence[str]) -> list[WorkflowStepRow]:
    stmt = (
        select(WorkflowStepRow)
        .where(WorkflowStepRow.workflow_id.in_(workflow_ids))  # type: ignore[attr-defined]
        .order_by(WorkflowStepRow.workflow_id, WorkflowStepRow.index)  # type: ignore[arg-type]
    )
    return list((await session.execute(stmt)).scalars())


async def load_states(
    session: AsyncSession, *, tenant: str, ids: Sequence[str]
) -> list[WorkflowState]:
    rows = (
        await session.execute(
            select(WorkflowRow).where(WorkflowRow.tenant == tenant, WorkflowRow.id.in_(ids))  # type: ignore[attr-defined]
        )
    ).scalars()
    return await _with_steps(session, list(rows))


async def _with_steps(session: AsyncSession, rows: list[WorkflowRow]) -> list[WorkflowState]:
    steps = await get_steps(session, workflow_ids=[r.id for r in rows])
    by_workflow: dict[str, list[WorkflowStepRow]] = {}
    for step in steps:
        by_workflow.setdefault(step.workflow_id, []).append(step)
    return [workflow_state(r, by_workflow.get(r.id, [])) for r in rows]


async def page_workflows(
    session: AsyncSession,
    *,
    tenant: str,
    statuses: Sequence[WorkflowStatus] | None,
    first: int,
    after: str | None,
    count: bool = True,
) -> Page[WorkflowState]:
    """Newest first, so workflows started while paging never shift later pages."""
    conditions = [WorkflowRow.tenant == tenant]
    if statuses:
        conditions.append(WorkflowRow.status.in_([s.value for s in statuses]))  # type: ignore[attr-defined]
    total = (
        (
            await session.execute(select(func.count()).select_from(WorkflowRow).where(*conditions))
        ).scalar_one()
        if count
        else None
    )
    stmt = select(WorkflowRow).where(*conditions)
    if after is not None:  # an empty cursor is invalid, not the first page
        stmt = stmt.where(
            after_clause(WorkflowRow.created_at, WorkflowRow.id, after, descending=True)
        )
    stmt = stmt.order_by(WorkflowRow.created_at.desc(), WorkflowRow.id.desc()).limit(first + 1)  # type: ignore[attr-defined]
    rows = list((await session.execute(stmt)).scalars().all())
    states = await _with_steps(session, rows)
    return make_page(states, first, lambda s: encode_cursor(s.created_at, s.id), total)
