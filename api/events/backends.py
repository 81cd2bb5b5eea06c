"""broadcaster backends, with the defects that matter to us fixed.

The bus only needs: connect, subscribe to one channel, publish, and
``next_published`` that *raises* when the connection is lost (broadcaster's
own listeners die silently), so the supervisor can reconnect. Messages are
small doorbells (api/events/codec.py), so no payload limit applies here.

Every backend queues what the broker sends in an ``Inbox`` of fixed size
(broadcaster's queues are unbounded): a flood of messages, or a listener held
up, never grows the process. What does not fit is dropped and reported as
``Overflowed``; the bus then reads every tenant's head from the outbox, which
holds all the events the dropped doorbells named.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from broadcaster._backends.base import BroadcastBackend
from broadcaster._backends.memory import MemoryBackend
from broadcaster._backends.postgres import PostgresBackend
from broadcaster._backends.redis import RedisBackend
from broadcaster._base import Event

# How the bus's PostgreSQL connections name themselves in pg_stat_activity.
LISTEN_APPLICATION = "mark1-bus-listen"
NOTIFY_APPLICATION = "mark1-bus-notify"
# Broker messages waiting for the bus's listener, per process.
INBOX_CAPACITY = 10_000


class BackendLost(Exception):
    """The backend connection dropped; the listener must reconnect."""


class Overflowed(Exception):
    """Messages were dropped because the inbox was full; the outbox has their events."""


class Inbox:
    """A bounded queue of broker messages, read by the bus's one listener."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = INBOX_CAPACITY if capacity is None else capacity
        self._items: deque[Event] = deque()
        self._ready = asyncio.Event()
        self._overflowed = False
        self._failure: BaseException | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, event: Event) -> None:
        """Queue a message, or drop it when full; never waits (the broker's reader must not)."""
        if len(self._items) >= self.capacity:
            self._overflowed = True
        else:
            self._items.append(event)
        self._ready.set()

    def fail(self, error: BaseException) -> None:
        """The connection is gone: ``get`` raises BackendLost once the queue is drained."""
        self._failure = error
        self._ready.set()

    async def get(self) -> Event:
        """The next message; Overflowed once after a drop, BackendLost after a failure."""
        while True:
            if self._overflowed:
                self._overflowed = False
                raise Overflowed
            if self._items:
                return self._items.popleft()
            if self._failure is not None:
                raise BackendLost(str(self._failure) or type(self._failure).__name__)
            self._ready.clear()
            await self._ready.wait()


class BoundedMemoryBackend(MemoryBackend):
    """The in-process bus, through an inbox rather than an unbounded queue."""

    async def connect(self) -> None:
        self.inbox = Inbox()

    async def publish(self, channel: str, message: Any) -> None:
        if channel in self._subscribed:
            self.inbox.put(Event(channel=channel, message=message))

    async def next_published(self) -> Event:
        return await self.inbox.get()


class SupervisedRedisBackend(RedisBackend):
    """Redis pub/sub that subscribes before it listens and reports a dropped connection."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.inbox = Inbox()

    async def subscribe(self, channel: str) -> None:
        # broadcaster 0.3.1 sets the ready flag before SUBSCRIBE completes, so
        # with redis-py 8 its listener's listen() returns at once and it then
        # waits forever. Subscribe first, then let the listener run.
        await self._pubsub.subscribe(channel)
        self._ready.set()

    async def _pubsub_listener(self) -> None:
        # Replaces broadcaster's, which awaits an unbounded queue and dies silently.
        try:
            await self._ready.wait()
            async for message in self._pubsub.listen():
                if message["type"] == "message":
                    self.inbox.put(
                        Event(channel=message["channel"].decode(), message=message["data"].decode())
                    )
            raise BackendLost("the pub/sub connection stopped listening")
        except Exception as exc:
            self.inbox.fail(exc)
            raise

    async def next_published(self) -> Event:
        return await self.inbox.get()

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

        self.inbox = Inbox()
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

    def _listener(self, *args: Any) -> None:
        _connection, _pid, channel, payload = args
        self.inbox.put(Event(channel=channel, message=payload))

    def _on_terminated(self, _conn: Any) -> None:
        self.inbox.fail(ConnectionError("LISTEN connection lost"))

    async def publish(self, channel: str, message: str) -> None:
        await self._pool.execute("SELECT pg_notify($1, $2);", channel, message)

    async def next_published(self) -> Event:
        return await self.inbox.get()

    async def disconnect(self) -> None:
        # Also called on a connect that failed half-way, so either may be missing.
        pool = getattr(self, "_pool", None)
        if pool is not None:
            try:
                # Not wait_for, which on Python 3.11 can lose a cancellation.
                async with asyncio.timeout(5):
                    await pool.close()
            except (TimeoutError, OSError):
                pool.terminate()
        conn = getattr(self, "_conn", None)
        if conn is not None and not conn.is_closed():
            conn.terminate()


def pending(backend: BroadcastBackend | None) -> int:
    """Messages waiting in a backend's inbox (0 for one without)."""
    inbox = getattr(backend, "inbox", None)
    return len(inbox) if isinstance(inbox, Inbox) else 0


def make_backend(url: str) -> BroadcastBackend:
    """The backend for a ``MARK1_BROADCAST_URL``."""
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        return BoundedMemoryBackend(url)
    if scheme in ("redis", "rediss"):
        return SupervisedRedisBackend(url)
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        return SupervisedPostgresBackend(url.replace("postgresql+asyncpg://", "postgresql://"))
    raise ValueError(
        f"Unsupported MARK1_BROADCAST_URL scheme {scheme!r}: use memory://, redis:// or postgres://"
    )
