"""Periodic values shared by every subscriber of one key: one producer, any number of readers.

``systemMetrics`` subscriptions of one tenant and interval would each run the
same GROUP BY queries on every tick; here they share one ticker (issue #8).
The ticker starts with its first subscriber and stops with its last. Each
subscriber holds at most the newest value: one that reads slowly skips ticks
instead of queueing them. A subscriber that joins a running ticker gets its
latest value at once. While the database is unreachable the ticks are skipped:
the streams stay open and go on when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from api.errors import Unavailable

V = TypeVar("V")


@dataclass(eq=False)
class _Ticker(Generic[V]):
    members: set[asyncio.Queue[V | BaseException]] = field(default_factory=set)
    latest: V | None = None
    task: asyncio.Task[None] | None = None


class Tickers:
    """The running tickers, by key (e.g. tenant and interval)."""

    def __init__(self) -> None:
        self._running: dict[Hashable, _Ticker[Any]] = {}

    @property
    def running(self) -> int:
        return len(self._running)

    async def stream(
        self, key: Hashable, interval: float, produce: Callable[[], Awaitable[V]]
    ) -> AsyncGenerator[V, None]:
        """Every value the key's ticker produces from now on; ``produce`` is used only
        when this call starts the ticker. An error from ``produce`` ends every stream
        (UNAVAILABLE only skips the tick)."""
        found: _Ticker[V] | None = self._running.get(key)
        ticker: _Ticker[V] = found if found is not None else _Ticker()
        if found is None:
            self._running[key] = ticker
            ticker.task = asyncio.create_task(self._tick(key, ticker, interval, produce))
        inbox: asyncio.Queue[V | BaseException] = asyncio.Queue(maxsize=1)
        ticker.members.add(inbox)
        try:
            if ticker.latest is not None:
                yield ticker.latest
            while True:
                value = await inbox.get()
                if isinstance(value, BaseException):
                    raise value
                yield value
        finally:
            ticker.members.discard(inbox)
            if not ticker.members and self._running.get(key) is ticker:
                del self._running[key]
                if ticker.task is not None:
                    ticker.task.cancel()

    async def _tick(
        self,
        key: Hashable,
        ticker: _Ticker[V],
        interval: float,
        produce: Callable[[], Awaitable[V]],
    ) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            try:
                value = await produce()
            except Unavailable:
                pass  # the database is away: no value this tick; the streams go on
            except Exception as exc:
                # This ticker is done: the next subscriber starts a fresh one.
                if self._running.get(key) is ticker:
                    del self._running[key]
                self._send(ticker, exc)
                return
            else:
                ticker.latest = value
                self._send(ticker, value)
            # Steady ticks: the time spent producing does not stretch the interval.
            due = max(due + interval, loop.time())
            await asyncio.sleep(due - loop.time())

    @staticmethod
    def _send(ticker: _Ticker[V], value: V | BaseException) -> None:
        for inbox in list(ticker.members):
            with contextlib.suppress(asyncio.QueueEmpty):
                inbox.get_nowait()  # a slow reader skips to the newest value
            inbox.put_nowait(value)
