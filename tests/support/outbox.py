"""A database's outbox set up and read directly: events written by the real services,
backdated, and the ids each tenant still holds."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlmodel import col

from api.app import build_runtime
from api.db.migrate import upgrade
from api.db.models import EventRow
from api.domain import Role
from tests.domain.helpers import principal
from tests.support.server import make_settings


async def seed(database_url: str, data_dir: Path, counts: dict[str, int]) -> None:
    """``counts[tenant]`` events (``createTask``) in each tenant, on a migrated database."""
    runtime = build_runtime(make_settings(database_url, data_dir))
    await upgrade(runtime.db)
    await runtime.bus.start()
    try:
        for tenant, count in counts.items():
            operator = principal(tenant, Role.OPERATOR)
            for i in range(count):
                await runtime.tasks.create(
                    operator,
                    title=f"task {i}",
                    capability=None,
                    priority=0,
                    input=None,
                    max_attempts=3,
                )
    finally:
        await runtime.bus.stop()
        await runtime.db.close()


async def backdate(database_url: str, tenant: str, *, through: int, to: datetime) -> None:
    """Events 1..``through`` of ``tenant`` occurred at ``to``."""
    runtime = build_runtime(make_settings(database_url, "."))
    try:
        async with runtime.db.sessions.begin() as session:
            await session.execute(
                update(EventRow)
                .where(col(EventRow.tenant) == tenant, col(EventRow.id) <= through)
                .values(occurred_at=to)
            )
    finally:
        await runtime.db.close()


async def event_ids(database_url: str) -> dict[str, list[int]]:
    """The ids each tenant's outbox holds, in order."""
    runtime = build_runtime(make_settings(database_url, "."))
    try:
        async with runtime.db.session() as session:
            rows = (
                await session.execute(
                    select(EventRow.tenant, EventRow.id).order_by(
                        col(EventRow.tenant), col(EventRow.id)
                    )
                )
            ).all()
    finally:
        await runtime.db.close()
    found: dict[str, list[int]] = {}
    for tenant, event_id in rows:
        found.setdefault(tenant, []).append(int(event_id))
    return found
