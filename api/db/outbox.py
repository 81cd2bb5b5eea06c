"""The outbox as the event bus reads it: this install's id, tenants' heads, id ranges."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sqlalchemy import and_, or_
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
