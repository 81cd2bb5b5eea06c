"""broadcaster backends, with the defects that matter to us fixed.

The bus only needs: connect, subscribe to one channel, publish, and
``next_published`` that *raises* when the connection is lost (broadcaster's
own listeners die silently), so the supervisor can reconnect. Messages are
small doorbells (api/events/codec.py), so no payload limit applies here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from broadcaster._backends.base import BroadcastBackend
from broadcaster._backends.memory import MemoryBackend
from broadcaster._backends.postgres import PostgresBackend
from broadcaster._backends.redis import RedisBackend
from broadcaster._base import Event

# How the bus's PostgreSQL connections name themselves in pg_stat_activity.
LISTEN_APPLICATION = "mark1-bus-listen"
NOTIFY_APPLICATION = "mark1-bus-notify"


class BackendLost(Exception):
    """The backend connection dropped; the listener must reconnect."""


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class SupervisedRedisBackend(RedisBackend):
    """Redis pub/sub that subscribes before it listens and reports a dropped connection."""

    async def subscribe(self, channel: str) -> None:
        # broadcaster 0.3.1 sets the ready flag before SUBSCRIBE completes, so
        # with redis-py 8 its listener's listen() returns at once and it then
        # waits forever. Subscribe first, then let the listener run.
        await self._pubsub.subscribe(channel)
        self._ready.set()

    async def _pubsub_listener(self) -> None:
        try:
            await super()._pubsub_listener()
        except Exception as exc:
            self._queue.put_nowait(_Failure(exc))  # type: ignore[arg-type]
            raise

    async def next_published(self) -> Event:
        item: Any = await self._queue.get()
        if isinstance(item, _Failure):
            raise BackendLost(str(item.error)) from item.error
        return item  # type: ignore[no-any-return]

    async def disconnect(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
        try:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        finally:
            await self._conn.aclose()


class SupervisedPostgresBackend(PostgresBackend):
    """LISTEN on one connection, NOTIFY through a small pool, and notice a drop."""

    async def connect(self) -> None:
        import asyncpg

        self._listen_queue: asyncio.Queue[Event] = asyncio.Queue()
        self._conn = await asyncpg.connect(
            self._url, server_settings={"application_name": LISTEN_APPLICATION}
        )
        self._conn.add_termination_listener(self._on_terminated)
        self._pool = await asyncpg.create_pool(
            self._url,
            min_size=1,
            max_size=4,
            server_settings={"application_name": NOTIFY_APPLICATION},
        )

    def _on_terminated(self, _conn: Any) -> None:
        self._listen_queue.put_nowait(_Failure(ConnectionError("LISTEN connection lost")))  # type: ignore[arg-type]

    async def publish(self, channel: str, message: str) -> None:
        await self._pool.execute("SELECT pg_notify($1, $2);", channel, message)

    async def next_published(self) -> Event:
        item: Any = await self._listen_queue.get()
        if isinstance(item, _Failure):
            raise BackendLost(str(item.error))
        return item  # type: ignore[no-any-return]

    async def disconnect(self) -> None:
        # Also called on a connect that failed half-way, so either may be missing.
        pool = getattr(self, "_pool", None)
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=5)
            except (TimeoutError, OSError):
                pool.terminate()
        conn = getattr(self, "_conn", None)
        if conn is not None and not conn.is_closed():
            conn.terminate()


def make_backend(url: str) -> BroadcastBackend:
    """The backend for a ``MARK1_BROADCAST_URL``."""
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        return MemoryBackend(url)
    if scheme in ("redis", "rediss"):
        return SupervisedRedisBackend(url)
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        return SupervisedPostgresBackend(url.replace("postgresql+asyncpg://", "postgresql://"))
    raise ValueError(
        f"Unsupported MARK1_BROADCAST_URL scheme {scheme!r}: use memory://, redis:// or postgres://"
    )
