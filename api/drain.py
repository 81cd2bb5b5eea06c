"""Graceful drain on SIGTERM: out of rotation first, sockets closed over a window, then exit.

The order, within ``DRAIN_SECONDS`` (README: Scale-out):

1. At once the process is ``draining``: ``/readyz`` answers 503 and a new
   WebSocket upgrade gets HTTP 503, so load balancers and reconnecting clients
   go elsewhere. HTTP requests are still served: those a load balancer sends
   before it notices are not refused, and mutations in flight finish.
2. Over the first ``SPREAD`` of the time, the open sockets are closed with
   1012 (Service Restart) one at a time, in random order, at even intervals
   (the first at once):
   their clients reconnect to other processes, and replay what they missed,
   a few at a time rather than all in the same instant.
3. Then the signal goes on to the server (uvicorn's own handler): it stops
   listening, gives requests in flight ``GRACE`` of the time to finish
   (its ``timeout_graceful_shutdown``), and the lifespan closes the rest.

A second SIGTERM goes straight to the server. Each ``--workers`` process
drains its own sockets: uvicorn's supervisor passes SIGTERM on to every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

SPREAD = 0.6  # of DRAIN_SECONDS: sockets closed over this share
GRACE = 0.2  # of DRAIN_SECONDS: requests in flight once the server stops listening
# The remaining 0.2 is the lifespan shutdown's: bus, jobs and database close.

_Handler = Callable[[int, FrameType | None], Any] | int | None
Close = Callable[[], Awaitable[None]]


def grace_seconds(drain_seconds: float) -> float:
    """How long the server waits for requests in flight after it stops listening."""
    return drain_seconds * GRACE


class Drain:
    """The open sockets of this process, and closing them when the process must stop."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._sockets: set[Close] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: _Handler = None
        self._ours: _Handler = None

    @property
    def draining(self) -> bool:
        return self._task is not None

    @property
    def grace(self) -> float:
        """How long anything in flight may still take once its turn to close has come."""
        return grace_seconds(self.seconds)

    @contextlib.contextmanager
    def holding(self, close: Close) -> Iterator[None]:
        """While the block runs, a socket is open that ``close()`` closes with 1012."""
        self._sockets.add(close)
        try:
            yield
        finally:
            self._sockets.discard(close)

    # -- lifecycle (the lifespan's) ----------------------------------------

    def attach(self) -> None:
        """Serve drain requests from this event loop; in the main thread, take SIGTERM.

        SIGTERM drains, then goes on to the handler it replaced (uvicorn's). Only the
        main thread may set signal handlers: elsewhere (a test server in a thread)
        ``request`` is the only way in.
        """
        self._loop = asyncio.get_running_loop()
        if threading.current_thread() is not threading.main_thread():
            return

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            self.request()

        self._previous = signal.getsignal(signal.SIGTERM)
        self._ours = on_sigterm
        signal.signal(signal.SIGTERM, on_sigterm)

    async def stop(self) -> None:
        """At shutdown: SIGTERM back to its previous handler, and no drain left running."""
        self._give_back_sigterm()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- draining ------------------------------------------------------------

    def request(self) -> None:
        """Drain (from any thread, or a signal handler); asked again, stop at once."""
        if self._loop is None:
            raise RuntimeError("Drain.request() before the lifespan attached the drain")
        # A fresh context: a signal lands inside whatever request was running, and
        # the drain's log lines must not carry that request's ids.
        self._loop.call_soon_threadsafe(self._requested, context=contextvars.Context())

    def _requested(self) -> None:
        if self._task is not None:
            log.info("asked to stop again: stopping now")
            self._pass_on()
            return
        log.info("draining: %d sockets to close over %.1fs", len(self._sockets), self._window)
        self._task = asyncio.get_running_loop().create_task(self._close_all())
        self._task.add_done_callback(lambda _: self._pass_on())

    @property
    def _window(self) -> float:
        return self.seconds * SPREAD

    async def _close_all(self) -> None:
        """Close every open socket with 1012, evenly spread over the window."""
        sockets = list(self._sockets)
        random.shuffle(sockets)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i, close in enumerate(sockets):
            # The first at once: a lone socket (a laptop, a test) holds nothing up.
            at = started + self._window * i / len(sockets)
            await asyncio.sleep(max(at - loop.time(), 0))
            if close in self._sockets:
                # A task each: a socket that is slow to close must not hold up the rest.
                task = loop.create_task(_quietly(close))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=self.grace)

    def _pass_on(self) -> None:
        """The server's own SIGTERM handling takes over: stop listening, finish, exit."""
        if self._ours is None:
            return  # not ours to pass on: a test server in a thread keeps running
        self._give_back_sigterm()
        signal.raise_signal(signal.SIGTERM)

    def _give_back_sigterm(self) -> None:
        if self._ours is not None and signal.getsignal(signal.SIGTERM) is self._ours:
            signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)
        self._ours = None


async def _quietly(close: Close) -> None:
    with contextlib.suppress(Exception):  # the socket may have gone meanwhile
        await close()
