"""Steady traffic for fault tests: writers creating tasks, and subscribers timing every event.

Writers keep one HTTP connection each (so a measured latency is the mutation's,
not a TCP handshake's) and spread their mutations over several processes.
Each subscriber socket has a collector task that takes events as they arrive
and timestamps them against the event's own ``occurredAt`` (set by the server
before commit on this same machine): an upper bound on the delivery latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from tests.realtime.wire import Socket

CREATE = "mutation($input: CreateTaskInput!) { createTask(input: $input) { id } }"
EVENTS = "subscription { events { id occurredAt } }"


@dataclass
class Writer:
    """One operator creating tasks in turn through each of ``urls`` until stopped."""

    urls: list[str]
    token: str
    name: str
    latencies: list[float] = field(default_factory=list)
    written: int = 0

    async def create(self, client: httpx.AsyncClient, url: str) -> float:
        """Create one task; the seconds it took."""
        body = {"query": CREATE, "variables": {"input": {"title": f"{self.name}-{self.written}"}}}
        started = time.perf_counter()
        response = await client.post(
            url, json=body, headers={"Authorization": f"Bearer {self.token}"}
        )
        took = time.perf_counter() - started
        payload = response.json()
        assert response.status_code == 200 and not payload.get("errors"), payload
        self.written += 1
        return took

    async def run(self, stop: asyncio.Event, pause: float = 0.02) -> None:
        async with httpx.AsyncClient(trust_env=False, timeout=60) as client:
            while not stop.is_set():
                self.latencies.append(
                    await self.create(client, self.urls[self.written % len(self.urls)])
                )
                await asyncio.sleep(pause)


@dataclass
class Collector:
    """Every event one subscription receives, with how long after its commit it came."""

    socket: Socket
    op: str = "events"
    ids: list[int] = field(default_factory=list)
    delays: list[tuple[float, float]] = field(default_factory=list)  # (received at, delay)

    async def run(self) -> None:
        while True:
            event = await self.socket.field(self.op, within=3600)
            now = time.time()
            self.ids.append(int(event["id"]))
            occurred = datetime.fromisoformat(event["occurredAt"]).timestamp()
            self.delays.append((now, now - occurred))

    def worst_delay(self, since: float, until: float) -> float:
        """The longest delay of an event received between two wall-clock times."""
        return max((d for at, d in self.delays if since <= at <= until), default=0.0)


@contextlib.asynccontextmanager
async def collecting(sockets: list[Socket]) -> Any:
    """Collectors running over ``sockets`` for the duration of the block."""
    collectors = [Collector(s) for s in sockets]
    tasks = [asyncio.create_task(c.run()) for c in collectors]
    try:
        yield collectors
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def until_count(collectors: list[Collector], count: int, within: float) -> None:
    """Wait until every collector holds ``count`` events (or more: a duplicate shows then)."""
    deadline = time.monotonic() + within
    while any(len(c.ids) < count for c in collectors):
        if time.monotonic() > deadline:
            have = [len(c.ids) for c in collectors]
            raise AssertionError(f"subscribers have {have} events of {count} after {within}s")
        await asyncio.sleep(0.05)


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
