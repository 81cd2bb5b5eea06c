"""Real databases for tests: a SQLite file, or a fresh PostgreSQL database."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import NamedTuple

import asyncpg
import pytest

PG_ADMIN_DSN = os.environ.get("MARK1_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("MARK1_TEST_REDIS", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(service: str, reachable: bool) -> None:
    """Skip with a reason on a laptop; fail under CI, where the service must be there."""
    if reachable:
        return
    message = f"{service} is not reachable"
    if IN_CI:
        pytest.fail(f"{message}, and CI=true requires it")
    pytest.skip(f"{message}: start it to run this test")


async def _pg_reachable() -> bool:
    try:
        conn = await asyncio.wait_for(asyncpg.connect(PG_ADMIN_DSN), 3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


def postgres_reachable() -> bool:
    return asyncio.run(_pg_reachable())


def redis_reachable() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except redis.RedisError:
        return False


async def _create_pg(name: str) -> str:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"


async def _drop_pg(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _new_name() -> str:
    return f"mark1_test_{uuid.uuid4().hex[:12]}"


def create_pg_database() -> tuple[str, str]:
    """A new empty database; returns (sqlalchemy url, name)."""
    name = _new_name()
    return asyncio.run(_create_pg(name)), name


def drop_pg_database(name: str) -> None:
    asyncio.run(_drop_pg(name))


class PgDatabase(NamedTuple):
    url: str  # SQLAlchemy's (postgresql+asyncpg://)
    name: str  # for a LISTEN/NOTIFY bus url or the admin connection


@contextmanager
def fresh_pg_database() -> Iterator[PgDatabase]:
    """A new empty PostgreSQL database, dropped afterwards (skipped, or failed under CI,
    when unreachable): for tests that run several processes or installs on it."""
    require("PostgreSQL", postgres_reachable())
    url, name = create_pg_database()
    try:
        yield PgDatabase(url, name)
    finally:
        drop_pg_database(name)


def sqlite_url(directory: Path) -> str:
    """A SQLite file in ``directory``."""
    return f"sqlite+aiosqlite:///{directory / 'mark1.db'}"


@asynccontextmanager
async def fresh_database(database_url: str, directory: Path) -> AsyncIterator[str]:
    """An empty database of the same kind as ``database_url``, dropped afterwards.

    For tests whose server's background jobs act on every tenant (the heartbeat
    sweeper) or that count process-wide figures: on the shared database they would
    meet every earlier test's agents and events.
    """
    if database_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{directory / f'{_new_name()}.db'}"
        return
    name = _new_name()
    url = await _create_pg(name)
    try:
        yield url
    finally:
        await _drop_pg(name)


@contextmanager
def database(kind: str, directory: Path) -> Iterator[str]:
    """A database of its own: a SQLite file in ``directory``, or a fresh PostgreSQL
    database dropped afterwards (skipped, or failed under CI, when unreachable)."""
    if kind == "sqlite":
        yield sqlite_url(directory)
        return
    with fresh_pg_database() as pg:
        yield pg.url
