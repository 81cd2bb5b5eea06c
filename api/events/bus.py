"""The event bus: a doorbell between processes, the outbox as the truth, fan-out.

After commit a process notes its new events (its own subscribers get them at
once) and rings the broker's doorbell off the request path
(api/events/announcer.py). Bus messages carry only (install, tenant, id):
every process reads the events themselves from the outbox, in one batched
read per tick for all its subscribers, and only up to each tenant's committed
head — so a message on the channel can neither inject nor suppress an event,
and installs sharing a channel ignore each other.

Every ``gap_check_interval`` the process also reads every tenant's head,
whether the broker is up or not: that catches a lost doorbell, and while the
broker is down (or stalled) it is the outbox tailing that keeps subscribers
fed.

No tenant waits for another: one task reads the heads, and each tenant with
events to fetch gets a reader of its own (at most ``max_reads`` at a time), so
a gap fill or a slow read for one tenant holds up no other tenant's fan-out.
Each tenant's events are dispatched in id order, once: an event goes out only
when its id is above the tenant's last dispatched id.

Every queue between the broker and the subscribers has a fixed bound: the
backend's inbox, the tenants doorbells named, this process's own events held
for dispatch, one pending read per tenant, each subscriber's buffer. What
would not fit is dropped and read back from the outbox (the truth), so a
stalled database or a flood of messages leaves the process's memory bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Literal, Protocol

from broadcaster._backends.base import BroadcastBackend

from api.domain import EventRecord
from api.events.announcer import Announcer
from api.events.backends import BackendLost, Overflowed, make_backend, pending
from api.events.codec import Doorbell, decode, encode
from api.events.subscriber import Predicate, Subscriber
from api.metrics import Metrics

log = logging.getLogger(__name__)

# Ids read per tenant per tick: a tenant far behind cannot crowd the others out.
_READ_BATCH = 500
# Tenants noted between two ticks; beyond it the next tick reads every head instead.
_MAX_HINTS = 10_000
# Own events held until dispatched; beyond it they are read back from the outbox.
_MAX_RECENT = 10_000
# Tenants whose events are being read at once (each read is one tenant's).
_MAX_READS = 8

Health = Literal["ok", "degraded"]


class Outbox(Protocol):
    """Where the bus reads events: the database (api/db/outbox.py)."""

    async def install_id(self) -> str: ...

    async def heads(self, tenants: Collection[str] | None = None) -> dict[str, int]: ...

    async def events_in(self, ranges: Mapping[str, tuple[int, int]]) -> list[EventRecord]: ...


class EventBus:
    """Publishes committed events and fans them out to this process's subscribers."""

    def __init__(
        self,
        url: str,
        outbox: Outbox,
        metrics: Metrics,
        *,
        channel: str = "mark1_events",
        gap_check_interval: float = 2.0,
        publish_timeout: float = 1.0,
        connect_timeout: float = 5.0,
        backend_factory: Callable[[str], BroadcastBackend] = make_backend,
        max_reads: int = _MAX_READS,
    ) -> None:
        self.url = url
        self.channel = channel
        self.install = ""
        self._outbox = outbox
        self._metrics = metrics
        self._gap_check_interval = gap_check_interval
        self._connect_timeout = connect_timeout
        self._backend_factory = backend_factory
        self._backend: BroadcastBackend | None = None
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._last_seen: dict[str, int] = {}
        # Tenants a doorbell named (untrusted: checked against the heads before reading).
        self._hinted: dict[str, int] = {}
        # This process's own committed events, not yet dispatched (trusted).
        self._recent: dict[str, dict[int, EventRecord]] = {}
        self._recent_count = 0
        self._read_all_heads = True
        # Per tenant with subscribers and events to fetch: the head to read up to, its reader.
        self._wanted: dict[str, int] = {}
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._reads = asyncio.Semaphore(max_reads)
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._announcer = Announcer(self._ring, metrics, timeout=publish_timeout)
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        """Learn the install id and every tenant's head; then serve, broker or not."""
        self.install = await self._outbox.install_id()
        self._last_seen = await self._outbox.heads()
        self._read_all_heads = False
        try:
            await self._connect()
        except Exception as exc:
            log.warning(
                "bus %s unreachable (%s); serving degraded: tailing the outbox every %.1fs",
                _redact(self.url),
                _describe(exc),
                self._gap_check_interval,
            )
        self._tasks = [
            asyncio.create_task(self._listen(), name="mark1-bus-listener"),
            asyncio.create_task(self._pump(), name="mark1-bus-pump"),
            asyncio.create_task(self._announcer.run(), name="mark1-bus-announcer"),
            asyncio.create_task(self._watch(), name="mark1-bus-watch"),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._readers.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self._disconnect()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def health(self) -> Health:
        """``degraded`` while the broker is gone or not taking publishes: the process
        still delivers everything, from the outbox, within ``gap_check_interval``."""
        return "ok" if self.connected and not self._announcer.failing else "degraded"

    async def _connect(self) -> None:
        backend = self._backend_factory(self.url)
        try:
            # A black-holed broker accepts the connection and never answers.
            async with asyncio.timeout(self._connect_timeout):
                await backend.connect()
                await backend.subscribe(self.channel)
        except BaseException:
            # A half-made backend holds a listener task and sockets: free them, or every
            # failed attempt during an outage leaks a task.
            await self._close(backend)
            raise
        self._backend = backend
        self._connected.set()

    async def _disconnect(self) -> None:
        self._connected.clear()
        backend, self._backend = self._backend, None
        if backend is not None:
            await self._close(backend)

    async def _close(self, backend: BroadcastBackend) -> None:
        """Disconnect, within the connect timeout even when the peer hangs."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._connect_timeout):
                await backend.disconnect()

    # -- publishing ------------------------------------------------------

    async def publish(self, records: Sequence[EventRecord]) -> None:
        """Note committed events for this process's subscribers and queue the doorbell.

        Never waits on the broker (DESIGN: Scale-out): a mutation's latency does not
        depend on the broker's health.
        """
        heads: dict[str, int] = {}
        for record in records:
            self._metrics.published(record.tenant)
            heads[record.tenant] = max(heads.get(record.tenant, 0), record.id)
            if record.id > self._last_seen.get(record.tenant, 0):
                self._remember(record)
        for tenant, upto in heads.items():
            self._announcer.announce(tenant, upto)
        self._wake.set()

    def _remember(self, record: EventRecord) -> None:
        if self._recent_count >= _MAX_RECENT:
            self._recent.clear()  # the outbox has them all
            self._recent_count = 0
        held = self._recent.setdefault(record.tenant, {})
        if record.id not in held:
            held[record.id] = record
            self._recent_count += 1

    async def _ring(self, tenant: str, upto: int) -> None:
        backend = self._backend
        if backend is None:
            raise BackendLost("not connected")
        bell = Doorbell(install=self.install, tenant=tenant, id=upto)
        await backend.publish(self.channel, encode(bell))

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

    def backlog(self) -> dict[str, int]:
        """What waits between the broker and the subscribers, by queue; each is bounded."""
        return {
            "inbox": pending(self._backend),
            "doorbells": len(self._hinted),
            "held": self._recent_count,
            "reads": len(self._readers),
        }

    async def _watch(self) -> None:
        """Report the backlog as gauges, also while the database or the loop is stalled."""
        gauge = self._metrics.bus_pending
        while True:
            for queue, size in self.backlog().items():
                gauge.labels(queue).set(size)
            await asyncio.sleep(min(self._gap_check_interval, 1.0))

    # -- listening -------------------------------------------------------

    async def _listen(self) -> None:
        """Hold the broker connection and note doorbells; reconnect with jittered backoff."""
        backoff = 0.1
        while True:
            try:
                if self._backend is None:
                    await self._connect()
                    self._metrics.bus_reconnects.inc()
                    self._announcer.failing = False
                    log.info("bus connected to %s", _redact(self.url))
                    self._read_all_heads = True  # whatever committed while it was away
                    self._wake.set()
                backoff = 0.1
                assert self._backend is not None
                while True:
                    try:
                        message = await self._backend.next_published()
                    except Overflowed:
                        # Doorbells were dropped: every head tells what they said.
                        self._metrics.bus_overflows.inc()
                        self._read_all_heads = True
                        self._wake.set()
                        continue
                    self._note(decode(message.message))
            except asyncio.CancelledError:
                raise
            except (BackendLost, OSError, ConnectionError, TimeoutError) as exc:
                log.warning("bus backend lost (%s); reconnecting", _describe(exc))
            except Exception:
                log.exception("bus listener error; reconnecting")
            await self._disconnect()
            # Full jitter: many processes that lost the broker together do not all
            # come back in the same instant.
            await asyncio.sleep(random.uniform(backoff / 2, backoff))
            backoff = min(backoff * 2, 5.0)

    def _note(self, bell: Doorbell | None) -> None:
        if bell is None or bell.install != self.install:
            self._metrics.bus_rejected.inc()
            return
        if bell.id <= self._last_seen.get(bell.tenant, 0):
            return  # our own, echoed back, or already delivered
        if bell.tenant in self._hinted:
            self._hinted[bell.tenant] = max(self._hinted[bell.tenant], bell.id)
        elif len(self._hinted) < _MAX_HINTS:
            self._hinted[bell.tenant] = bell.id
        else:
            self._read_all_heads = True
        self._wake.set()

    # -- delivering ------------------------------------------------------

    async def _pump(self) -> None:
        """The one task that reads heads: on a doorbell, and every gap_check_interval."""
        loop = asyncio.get_running_loop()
        next_check = loop.time() + self._gap_check_interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(next_check - loop.time(), 0)):
                    await self._wake.wait()
            self._wake.clear()
            if loop.time() >= next_check:
                self._read_all_heads = True
                next_check = loop.time() + self._gap_check_interval
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The database is away: keep what is known, retry with every head.
                log.warning("bus could not read the outbox: %s", _describe(exc))
                self._read_all_heads = True
                await asyncio.sleep(min(self._gap_check_interval, 1.0))

    async def _tick(self) -> None:
        hinted, self._hinted = self._hinted, {}
        # Our own commits, when every event since the last one seen is at hand: no read.
        for tenant in list(self._recent):
            if not self._dispatch_recent(tenant):
                hinted[tenant] = max(hinted.get(tenant, 0), max(self._recent[tenant]))
        if self._read_all_heads:
            self._read_all_heads = False
            heads = await self._outbox.heads()
        else:
            wanted = [t for t, upto in hinted.items() if upto > self._last_seen.get(t, 0)]
            if not wanted:
                return
            heads = await self._outbox.heads(wanted)
        for tenant, head in heads.items():
            if head <= self._last_seen.get(tenant, 0):
                continue
            if tenant not in self._subscribers:
                self._advance(tenant, head)  # nobody here to read them for
                continue
            self._want(tenant, head)

    def _want(self, tenant: str, head: int) -> None:
        """Have ``tenant``'s events up to its committed ``head`` read, by its own reader."""
        self._wanted[tenant] = max(self._wanted.get(tenant, 0), head)
        if tenant not in self._readers:
            self._readers[tenant] = asyncio.create_task(self._read(tenant), name="mark1-bus-reader")

    async def _read(self, tenant: str) -> None:
        """Read and dispatch one tenant's events up to the head it was told, in batches."""
        try:
            while tenant in self._subscribers:
                last = self._last_seen.get(tenant, 0)
                head = self._wanted.get(tenant, 0)
                if head <= last:
                    return
                upto = min(head, last + _READ_BATCH)
                async with self._reads:
                    records = await self._outbox.events_in({tenant: (last, upto)})
                self._metrics.gaps_filled.inc(len(records))
                for record in records:
                    if record.id > self._last_seen.get(tenant, 0):
                        self._dispatch(record)
                # Ids up to a committed head that the read did not return are gone for good.
                self._advance(tenant, upto)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The next head check starts a new reader; until then, no retry storm.
            log.warning("bus could not read the outbox: %s", _describe(exc))
            self._read_all_heads = True
            await asyncio.sleep(min(self._gap_check_interval, 1.0))
        finally:
            del self._readers[tenant]
            self._wanted.pop(tenant, None)

    def _dispatch_recent(self, tenant: str) -> bool:
        """Dispatch this process's own events of ``tenant`` if none is missing before them."""
        held = self._recent[tenant]
        last = self._last_seen.get(tenant, 0)
        upto = max(held)
        if upto <= last:
            self._advance(tenant, last)
            return True
        if upto - last > len(held) or any(i not in held for i in range(last + 1, upto + 1)):
            return False
        for i in range(last + 1, upto + 1):
            self._dispatch(held[i])
        self._advance(tenant, upto)
        return True

    def _advance(self, tenant: str, upto: int) -> None:
        if upto > self._last_seen.get(tenant, 0):
            self._last_seen[tenant] = upto
        held = self._recent.get(tenant)
        if held is not None:
            for i in [i for i in held if i <= upto]:
                del held[i]
                self._recent_count -= 1
            if not held:
                del self._recent[tenant]

    def _dispatch(self, record: EventRecord) -> None:
        self._last_seen[record.tenant] = record.id
        for subscriber in list(self._subscribers.get(record.tenant, ())):
            if not subscriber.offer(record):
                self._metrics.slow_consumers.inc()


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _redact(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"
