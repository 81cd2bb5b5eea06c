"""Replay-then-live: one subscriber's gap-free, duplicate-free stream of events.

Join the bus first (buffering), then read the history after the cursor,
then drain the buffer skipping ids already sent — so nothing committed
around the switch is lost or sent twice (DESIGN: Delivery guarantees).

A caller that gets its live events elsewhere (a multiplexed operation joins
its group first: resolvers/multiplex.py) asks for the history alone, up to
an id it names: ids are committed in order (api/db/events.py), so every
event up to a head the bus has seen is already in the outbox.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from api.db.events import EventQuery
from api.domain import EventRecord
from api.events.bus import EventBus
from api.events.subscriber import Predicate

_REPLAY_BATCH = 500


class History(Protocol):
    """The outbox, read in id order."""

    async def events_after(
        self,
        tenant: str,
        after: int,
        limit: int,
        query: EventQuery | None = None,
        through: int | None = None,
    ) -> list[EventRecord]: ...


class StreamHooks(Protocol):
    """Bookkeeping the caller does as the stream goes live, delivers and ends."""

    # None: history after the cursor, then live. An id: the history after the cursor
    # up to and including that id, then the stream ends (the caller is live elsewhere).
    history_through: int | None

    def stream_started(self) -> None: ...

    def stream_ended(self) -> None: ...

    def delivering(self, record: EventRecord, *, live: bool) -> None: ...


async def replay_then_live(
    bus: EventBus,
    history: History,
    tenant: str,
    predicate: Predicate,
    *,
    capacity: int,
    hooks: StreamHooks,
    after: int | None = None,
    replay: EventQuery | None = None,
) -> AsyncGenerator[EventRecord, None]:
    """The tenant's matching events: history after ``after`` (when given), then live.

    Raises SlowConsumer (with the last id delivered) when the live buffer of
    ``capacity`` events overflows. Iterate it under ``contextlib.aclosing``: an
    abandoned generator leaves the bus only when the garbage collector finalizes it.
    """
    if hooks.history_through is not None:
        through = hooks.history_through
        async for record in _history(history, tenant, predicate, after, replay, through):
            hooks.delivering(record, live=False)
            yield record
        return
    async with bus.subscribe(tenant, predicate, capacity) as sub:
        hooks.stream_started()
        try:
            sub.last_delivered = after
            if after is not None:
                async for record in _history(history, tenant, predicate, after, replay):
                    hooks.delivering(record, live=False)
                    yield record
                    sub.last_delivered = record.id
                sub.skip_through(sub.last_delivered or after)
            while True:
                record = await sub.get()
                if sub.last_delivered is not None and record.id <= sub.last_delivered:
                    continue
                hooks.delivering(record, live=True)
                yield record
                sub.last_delivered = record.id
        finally:
            hooks.stream_ended()


async def _history(
    history: History,
    tenant: str,
    predicate: Predicate,
    after: int | None,
    replay: EventQuery | None,
    through: int | None = None,
) -> AsyncGenerator[EventRecord, None]:
    """The matching events committed after ``after`` (none when it is None) and up to
    ``through`` (when given), in id order."""
    if after is None:
        return
    scanned = after
    while True:
        batch = await history.events_after(tenant, scanned, _REPLAY_BATCH, replay, through)
        for record in batch:
            if predicate(record):
                yield record
        if len(batch) < _REPLAY_BATCH:
            return
        scanned = batch[-1].id
