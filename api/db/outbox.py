"""The outbox as the event bus reads it: this install's id, tenants' heads, id ranges."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping

from sqlalchemy import and_, or_, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from api.db.engine import Database
from api.db.events import event_record
from api.db.models import EventRow, InstallRow, TenantCounter
from api.domain import EventRecord

# Tenants per query: keeps one statement's OR list (and its bind parameters) small.
_TENANTS_PER_QUERY = 100


class OutboxReader:
    """Reads for the bus: one session per call, every call one or a few statements."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # Test hook: seconds the database spends before each read of these tenants'
        # events, to show that one tenant's slow read holds up no other tenant.
        self.slow_tenants: dict[str, float] = {}

    async def install_id(self) -> str:
        """The id every process of this install shares: a row the migrations created."""
        async with self._db.session() as s:
            found = (await s.execute(select(InstallRow.id))).scalars().first()
        if found is None:
            raise RuntimeError("the database has no install id: run `mark1 db upgrade`")
        return found

    async def heads(self, tenants: Collection[str] | None = None) -> dict[str, int]:
        """Last committed event id of the given tenants (of every tenant when None)."""
        stmt = select(TenantCounter.tenant, TenantCounter.last_event_id)
        async with self._db.session() as s:
            if tenants is None:
                rows = list((await s.execute(stmt)).all())
            else:
                wanted = list(tenants)
                rows = []
                for start in range(0, len(wanted), _TENANTS_PER_QUERY):
                    chunk = wanted[start : start + _TENANTS_PER_QUERY]
                    where = col(TenantCounter.tenant).in_(chunk)
                    rows += (await s.execute(stmt.where(where))).all()
        return {tenant: int(last) for tenant, last in rows}

    async def events_in(self, ranges: Mapping[str, tuple[int, int]]) -> list[EventRecord]:
        """Events with ``after < id <= upto`` per tenant, by tenant then id."""
        items = list(ranges.items())
        found: list[EventRecord] = []
        async with self._db.session() as s:
            if self.slow_tenants:
                await _linger(s, max(self.slow_tenants.get(t, 0.0) for t in ranges))
            for start in range(0, len(items), _TENANTS_PER_QUERY):
                chunk = items[start : start + _TENANTS_PER_QUERY]
                where = or_(
                    *(
                        and_(
                            col(EventRow.tenant) == tenant,
                            col(EventRow.id) > after,
                            col(EventRow.id) <= upto,
                        )
                        for tenant, (after, upto) in chunk
                    )
                )
                stmt = (
                    select(EventRow).where(where).order_by(col(EventRow.tenant), col(EventRow.id))
                )
                found += [event_record(row) for row in (await s.execute(stmt)).scalars()]
        return found


async def _linger(s: AsyncSession, seconds: float) -> None:
    """Hold the session's connection busy for ``seconds``: the database sleeps (PostgreSQL)."""
    if seconds <= 0:
        return
    if s.get_bind().dialect.name == "postgresql":
        await s.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": seconds})
    else:
        await s.execute(text("SELECT 1"))
        await asyncio.sleep(seconds)
