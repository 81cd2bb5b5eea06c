"""The database handle: one async engine and its session factory per process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from sqlalchemy import event, make_url, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from api.db.outage import unavailable_when_unreachable
from api.db.sqlite import BUSY_TIMEOUT, inline_connector


class Database:
    """Owns the engine; created by the composition root, closed by the lifespan."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        connect_timeout: float = 5.0,
        pool_timeout: float = 5.0,
    ) -> None:
        """``connect_timeout`` and ``pool_timeout`` (PostgreSQL) bound how long a request
        waits for a connection while the database is away: it fails fast with UNAVAILABLE."""
        self.url = url
        self.engine: AsyncEngine = _make_engine(
            url, echo=echo, connect_timeout=connect_timeout, pool_timeout=pool_timeout
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads; nothing is committed, so an outage is UNAVAILABLE."""
        with unavailable_when_unreachable():
            async with self.sessions() as session:
                yield session

    async def ping(self) -> None:
        """Raise when the database cannot answer a trivial query."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_loads(value: Any) -> Any:
    # SQLite's NUMERIC affinity hands a top-level JSON number back as a number.
    return orjson.loads(value) if isinstance(value, str | bytes) else value


# JSON columns (event snapshots on every write) through orjson rather than the json module.
_JSON = {"json_serializer": _json_dumps, "json_deserializer": _json_loads}


def _make_engine(
    url: str, *, echo: bool, connect_timeout: float, pool_timeout: float
) -> AsyncEngine:
    if url.startswith("sqlite"):
        # One connection per process: SQLite serialises writers anyway, and a
        # single connection turns "database is locked" races into a plain queue.
        # Its calls run on the event loop's thread (api/db/sqlite.py).
        engine = create_async_engine(
            url,
            echo=echo,
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
            async_creator=inline_connector(make_url(url).database or ""),
            **_JSON,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(
        url,
        echo=echo,
        pool_size=10,
        max_overflow=20,
        pool_timeout=pool_timeout,
        connect_args={"timeout": connect_timeout},  # asyncpg: the whole connection set-up
        **_JSON,
    )
    _ping_when_idle(engine)
    return engine


PING_AFTER_IDLE = 1.0
"""Seconds a pooled connection may sit unused before its next checkout pings it."""


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled connection at checkout only when it sat idle for a while.

    ``pool_pre_ping`` pings at every checkout: with asyncpg a BEGIN, an empty
    statement and a ROLLBACK, about 400 µs of CPU on every transaction, for
    connections a busy server returned milliseconds ago. A connection idle past
    ``PING_AFTER_IDLE`` (across a database restart, say) is still pinged, and
    replaced when the ping fails, as ``pool_pre_ping`` does; one that broke
    while in use fails its statement, which invalidates the pool's older
    connections (SQLAlchemy's disconnect handling) and answers UNAVAILABLE.
    """
    dialect = engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["mark1_idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("mark1_idle_since")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out another (a new one).
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
