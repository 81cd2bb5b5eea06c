"""The event bus: publish after commit, one supervised listener per process, fan-out.

Every process listens to one broadcast channel that carries all tenants'
events. Per tenant the listener expects ids in sequence; an id that is not
``last + 1`` means a publish was lost or overtaken, and the missing ids are
read from the outbox before fanning out further. A periodic head check
catches a lost *last* event, and a reconnect after the backend dropped fills
everything that committed meanwhile. So subscribers get every event, once,
in id order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

from broadcaster._backends.base import BroadcastBackend

from api.domain import EventRecord
from api.events.backends import BackendLost, make_backend
from api.events.codec import EventRef, decode, encode
from api.events.subscriber import Predicate, Subscriber
from api.metrics import Metrics

log = logging.getLogger(__name__)

_FILL_BATCH = 500


class EventSource(Protocol):
    """Where the bus reads what the broadcast channel lost: the outbox."""

    async def events_after(self, tenant: str, after: int, limit: int) -> list[EventRecord]: ...

    async def heads(self) -> dict[str, int]: ...


class EventBus:
    """Publishes committed events and fans them out to this process's subscribers."""

    def __init__(
        self,
        url: str,
        source: EventSource,
        metrics: Metrics,
        *,
        channel: str = "mark1_events",
        gap_check_interval: float = 2.0,
        backend_factory: Callable[[str], tuple[BroadcastBackend, int | None]] = make_backend,
    ) -> None:
        self.url = url
        self.channel = channel
        self._source = source
        self._metrics = metrics
        self._gap_check_interval = gap_check_interval
        self._backend_factory = backend_factory
        self._backend: BroadcastBackend | None = None
        self._max_bytes: int | None = None
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._last_seen: dict[str, int] = {}
        self._dispatch_lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        """Connect, learn every tenant's head, and start listening."""
        await self._connect()
        self._last_seen = await self._source.heads()
        self._tasks = [
            asyncio.create_task(self._listen(), name="mark1-bus-listener"),
            asyncio.create_task(self._check_heads(), name="mark1-bus-gap-check"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self._disconnect()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def _connect(self) -> None:
        backend, self._max_bytes = self._backend_factory(self.url)
        try:
            await backend.connect()
            await backend.subscribe(self.channel)
        except BaseException:
            # A half-made backend holds a listener task and sockets: free them, or every
            # failed attempt during an outage leaks a task.
            with contextlib.suppress(Exception):
                await backend.disconnect()
            raise
        self._backend = backend
        self._connected.set()

    async def _disconnect(self) -> None:
        self._connected.clear()
        backend, self._backend = self._backend, None
        if backend is not None:
            with contextlib.suppress(Exception):
                await backend.disconnect()

    # -- publishing ------------------------------------------------------

    async def publish(self, records: Sequence[EventRecord]) -> None:
        """Announce committed events; a lost publish is filled from the outbox."""
        for record in records:
            self._metrics.published(record.tenant)
        backend = self._backend
        if backend is None:
            return
        try:
            for record in records:
                await backend.publish(self.channel, encode(record, max_bytes=self._max_bytes))
        except Exception as exc:
            log.warning("bus publish failed (%s); subscribers will catch up from the outbox", exc)

    # -- subscribing -----------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(
        self, tenant: str, predicate: Predicate, capacity: int
    ) -> AsyncIterator[Subscriber]:
        """Receive a tenant's matching events from now on; always unsubscribes."""
        subscriber = Subscriber(tenant, predicate, capacity)
        self._subscribers.setdefault(tenant, set()).add(subscriber)
        try:
            yield subscriber
        finally:
            group = self._subscribers.get(tenant)
            if group is not None:
                group.discard(subscriber)
                if not group:
                    del self._subscribers[tenant]

    @property
    def subscriber_count(self) -> int:
        return sum(len(group) for group in self._subscribers.values())

    def last_seen(self, tenant: str) -> int:
        return self._last_seen.get(tenant, 0)

    # -- listening -------------------------------------------------------

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                if self._backend is None:
                    await self._connect()
                    self._metrics.bus_reconnects.inc()
                    log.info("bus reconnected to %s", _redact(self.url))
                    await self._fill_all()
                backoff = 0.1
                assert self._backend is not None
                while True:
                    message = await self._backend.next_published()
                    await self._receive(decode(message.message))
            except asyncio.CancelledError:
                raise
            except (BackendLost, OSError, ConnectionError) as exc:
                log.warning("bus backend lost (%s); reconnecting in %.1fs", exc, backoff)
            except Exception:
                log.exception("bus listener error; reconnecting in %.1fs", backoff)
            await self._disconnect()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _receive(self, item: EventRecord | EventRef) -> None:
        async with self._dispatch_lock:
            last = self._last_seen.get(item.tenant, 0)
            if item.id <= last:
                return  # already delivered (filled from the outbox, or a duplicate)
            if isinstance(item, EventRef) or item.id > last + 1:
                await self._fill(item.tenant, upto=item.id)
            if isinstance(item, EventRef) or item.id != self._last_seen.get(item.tenant, 0) + 1:
                # The fill dispatched it already (dispatching it again would count it twice
                # against every subscriber's buffer), or could not reach it yet: then the
                # head check fills the rest in order, rather than skipping the gap for good.
                return
            self._dispatch(item)

    async def _check_heads(self) -> None:
        """Catch a lost last publish: nothing after it would reveal the gap."""
        while True:
            await asyncio.sleep(self._gap_check_interval)
            if not self.connected:
                continue
            try:
                await self._fill_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("bus head check failed: %s", exc)

    async def _fill_all(self) -> None:
        heads = await self._source.heads()
        for tenant, head in heads.items():
            if head > self._last_seen.get(tenant, 0):
                async with self._dispatch_lock:
                    await self._fill(tenant, upto=head)

    async def _fill(self, tenant: str, *, upto: int) -> None:
        """Dispatch a tenant's events from the outbox up to and including ``upto``."""
        while self._last_seen.get(tenant, 0) < upto:
            after = self._last_seen.get(tenant, 0)
            batch = await self._source.events_after(tenant, after, min(_FILL_BATCH, upto - after))
            if not batch:
                return  # not committed yet: the head check will come back to it
            self._metrics.gaps_filled.inc(len(batch))
            for record in batch:
                self._dispatch(record)

    def _dispatch(self, record: EventRecord) -> None:
        self._last_seen[record.tenant] = record.id
        for subscriber in list(self._subscribers.get(record.tenant, ())):
            if not subscriber.offer(record):
                self._metrics.slow_consumers.inc()


def _redact(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"
