"""Ringing the bus's doorbell after commit, off the request path.

A mutation only notes "tenant T is now at id N" here and returns; one task per
process sends the doorbells, each send bounded by a timeout. Pending doorbells
coalesce per tenant (a later id supersedes an earlier one), so the queue holds
at most one entry per tenant, and at most ``max_tenants`` of those. When the
broker is slow, stalled or gone, doorbells are dropped: the outbox is the
truth, and every process's head check delivers what no doorbell announced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from api.metrics import Metrics

log = logging.getLogger(__name__)

Send = Callable[[str, int], Awaitable[None]]


class Announcer:
    """A bounded, coalescing queue of doorbells and the task that sends them."""

    def __init__(
        self, send: Send, metrics: Metrics, *, timeout: float, max_tenants: int = 10_000
    ) -> None:
        self._send = send
        self._metrics = metrics
        self._timeout = timeout
        self._max_tenants = max_tenants
        self._pending: dict[str, int] = {}
        self._ready = asyncio.Event()
        self.failing = False

    def announce(self, tenant: str, upto: int) -> None:
        """Queue a doorbell; never waits."""
        if tenant in self._pending:
            self._pending[tenant] = max(self._pending[tenant], upto)
        elif len(self._pending) < self._max_tenants:
            self._pending[tenant] = upto
        else:
            self._metrics.doorbells_dropped.inc()
            return
        self._ready.set()

    async def run(self) -> None:
        """Send what is pending, forever; one failed send drops the rest of the round."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            pending, self._pending = self._pending, {}
            for sent, (tenant, upto) in enumerate(pending.items()):
                try:
                    # Not wait_for: on Python 3.11 it can swallow a cancellation that
                    # arrives as the send completes, and stop() would then wait forever.
                    async with asyncio.timeout(self._timeout):
                        await self._send(tenant, upto)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # The next round gets its own try: a broker that is back is noticed
                    # at the next commit, and a stalled one costs one timeout per round.
                    self._metrics.doorbells_dropped.inc(len(pending) - sent)
                    if not self.failing:
                        log.warning(
                            "bus publish failed (%s); delivery goes on from the outbox",
                            type(exc).__name__ if isinstance(exc, TimeoutError) else exc,
                        )
                    self.failing = True
                    break
            else:
                if self.failing and pending:
                    log.info("bus publishing again")
                    self.failing = False
