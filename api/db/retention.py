"""Pruning the outbox: old events deleted in bounded batches, never a tenant's newest.

A tenant's ids are one sequence with no holes, and a prune removes only a
prefix of it (everything below one id), so what is gone is one number per
tenant: the oldest id still kept. ``events(after:)`` and the ``events`` query
compare a cursor with it and answer EVENTS_PRUNED rather than skip silently
(api/services/reads.py). The newest event of every tenant stays: the id
counter lives in its own row, but keeping one event means a tenant that has
ever written always has an oldest kept id to compare with.

A cutoff in time becomes, per tenant, the first id that occurred at or after
it: events are kept from there on, so nothing newer than the cutoff is ever
deleted (commit times are taken before the counter's lock, so a few events
just older than the cutoff may stay).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, text
from sqlalchemy.engine import CursorResult
from sqlmodel import col, select

from api.db.engine import Database
from api.db.models import EventRow, TenantCounter

BATCH = 1000  # rows per DELETE: each batch is one short transaction
_LOCK_KEY = 0x4D41524B32  # "MARK2": one advisory lock for pruning, across processes

Cutoff = int | datetime


@dataclass(frozen=True)
class TenantPrune:
    """What pruning one tenant deletes: ids ``oldest`` up to (not including) ``keep_from``."""

    tenant: str
    oldest: int
    keep_from: int

    @property
    def count(self) -> int:
        return self.keep_from - self.oldest


@dataclass(frozen=True)
class Progress:
    """Reported after every batch."""

    tenant: str
    tenant_deleted: int
    tenant_planned: int
    deleted: int
    planned: int


async def plan(db: Database, *, before: Cutoff, tenant: str | None = None) -> list[TenantPrune]:
    """What a prune with this cutoff deletes, tenant by tenant (nothing is deleted)."""
    plans = []
    async with db.session() as s:
        if tenant is None:
            tenants = list((await s.execute(select(TenantCounter.tenant))).scalars())
        else:
            tenants = [tenant]
        for name in sorted(tenants):
            of_tenant = col(EventRow.tenant) == name
            bounds = select(func.min(EventRow.id), func.max(EventRow.id)).where(of_tenant)
            oldest, newest = (await s.execute(bounds)).one()
            if oldest is None:
                continue
            keep_from = before if isinstance(before, int) else None
            if isinstance(before, datetime):
                first_new = (
                    select(EventRow.id)
                    .where(of_tenant, col(EventRow.occurred_at) >= before)
                    .order_by(col(EventRow.id))
                    .limit(1)
                )
                keep_from = (await s.execute(first_new)).scalar_one_or_none()
            keep_from = newest if keep_from is None else min(keep_from, newest)
            if keep_from > oldest:
                plans.append(TenantPrune(name, int(oldest), int(keep_from)))
    return plans


async def prune(
    db: Database,
    *,
    before: Cutoff,
    tenant: str | None = None,
    batch: int = BATCH,
    progress: Callable[[Progress], None] | None = None,
) -> int:
    """Delete the events ``plan`` names, ``batch`` ids per transaction; returns how many."""
    plans = await plan(db, before=before, tenant=tenant)
    planned = sum(p.count for p in plans)
    deleted = 0
    for p in plans:
        done = 0
        for low in range(p.oldest, p.keep_from, batch):
            high = min(low + batch, p.keep_from)
            async with db.sessions.begin() as s:
                result = await s.execute(
                    delete(EventRow).where(
                        col(EventRow.tenant) == p.tenant,
                        col(EventRow.id) >= low,
                        col(EventRow.id) < high,
                    )
                )
            assert isinstance(result, CursorResult)
            done += result.rowcount
            deleted += result.rowcount
            if progress is not None:
                progress(Progress(p.tenant, done, p.count, deleted, planned))
            # SQLite runs on the loop's thread (api/db/sqlite.py): let requests in between.
            await asyncio.sleep(0)
    return deleted


@asynccontextmanager
async def exclusive(db: Database, *, wait: bool) -> AsyncIterator[bool]:
    """One pruner at a time across processes (a PostgreSQL advisory lock held on a
    connection of its own); yields False when another holds it and ``wait`` is False.

    SQLite serves one process and has one connection: nothing to take there.
    """
    if db.url.startswith("sqlite"):
        yield True
        return
    async with db.engine.connect() as conn:
        take = "pg_advisory_lock" if wait else "pg_try_advisory_lock"
        got = (await conn.execute(text(f"SELECT {take}(:k)"), {"k": _LOCK_KEY})).scalar()
        held = got is None or bool(got)  # pg_advisory_lock returns void (None)
        await conn.commit()
        try:
            yield held
        finally:
            if held:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                await conn.commit()
