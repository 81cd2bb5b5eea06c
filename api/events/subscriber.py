"""One subscription's bounded buffer between the bus listener and a socket."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from api.domain import EventRecord
from api.errors import SlowConsumer

Predicate = Callable[[EventRecord], bool]


class Subscriber:
    """Buffers the events one operation matches; never blocks the listener.

    When the buffer is full the subscriber is marked overflowed and its queue
    dropped: the client resumes from ``last_delivered`` instead of the whole
    process stalling for one slow socket.
    """

    def __init__(self, tenant: str, predicate: Predicate, capacity: int) -> None:
        self.tenant = tenant
        self.predicate = predicate
        self.capacity = capacity
        self.last_delivered: int | None = None
        self.overflowed = False
        self._queue: deque[EventRecord] = deque()
        self._ready = asyncio.Event()

    def offer(self, record: EventRecord) -> bool:
        """Queue a matching event; False when this subscriber just overflowed."""
        if self.overflowed or not self.predicate(record):
            return True
        if len(self._queue) >= self.capacity:
            self.overflowed = True
            self._queue.clear()
            self._ready.set()
            return False
        self._queue.append(record)
        self._ready.set()
        return True

    def skip_through(self, last_id: int) -> None:
        """Forget buffered events a replay already sent."""
        while self._queue and self._queue[0].id <= last_id:
            self._queue.popleft()

    async def get(self) -> EventRecord:
        while not self._queue:
            if self.overflowed:
                raise SlowConsumer(self.last_delivered)
            self._ready.clear()
            await self._ready.wait()
        if self.overflowed:
            raise SlowConsumer(self.last_delivered)
        return self._queue.popleft()
