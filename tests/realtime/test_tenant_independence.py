"""No tenant waits for another, and every queue between broker and socket is bounded.

Two server processes (in-process, each its own engine and bus) share one PostgreSQL
database: a writer commits, a reader fans out what the bus tells it. The reader's
outbox reads are slowed for real — PostgreSQL sleeps before one tenant's read — or
its database is stalled behind a TCP proxy while the bus is flooded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from api.events import backends
from api.events import bus as bus_module
from api.events.bus import _MAX_RECENT
from api.metrics import Metrics
from tests.ops.proxy import tcp_proxy
from tests.realtime.activity import Tenant, server_loop
from tests.realtime.conftest import subscribed
from tests.realtime.processes import RedisServer
from tests.realtime.wire import Socket
from tests.support import databases
from tests.support.databases import PgDatabase
from tests.support.server import LiveServer, live_server, make_settings
from tests.support.waiting import until

EVENTS = "subscription { events { id task { title } } }"
# PostgreSQL sleeps this long before each read of the slow tenant's events.
SLOW_READ = 4.0
INBOX = 500
HINTS = 1_000
BATCH = INBOX - 100


def _through(url: str, port: int) -> str:
    """The same database, reached through a proxy listening on ``port``."""
    scheme, rest = url.split("://", 1)
    user, path = rest.split("@", 1)
    return f"{scheme}://{user}@127.0.0.1:{port}/{path.split('/', 1)[1]}"


@pytest.mark.postgres
async def test_a_slow_outbox_read_for_one_tenant_holds_up_no_other_tenant(
    pg_database: PgDatabase, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url, name = pg_database
    listen_notify = databases.PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    settings = make_settings(url, tmp_path_factory.mktemp("data"), broadcast_url=listen_notify)
    with live_server(settings) as writer, live_server(settings) as reader:
        slow, quick = Tenant(writer, "slow"), Tenant(writer, "quick")
        async with (
            await Socket.open(reader.ws_url, reader.token("VIEWER", tenant="slow")) as on_slow,
            await Socket.open(reader.ws_url, reader.token("VIEWER", tenant="quick")) as on_quick,
        ):
            await on_slow.subscribe("events", EVENTS)
            await on_quick.subscribe("events", EVENTS)
            await subscribed(reader, 2)
            reader.runtime.outbox.slow_tenants["slow"] = SLOW_READ

            await slow.create_task("held up")
            await until(lambda: reader.runtime.bus.backlog()["reads"] == 1, what="the slow read")
            started = time.monotonic()
            await quick.create_task("not held up")
            quick_event = await on_quick.field("events", within=SLOW_READ)
            quick_latency = time.monotonic() - started
            slow_pending = on_slow.pending("events")  # the slow read is still under way

            slow_event = await on_slow.field("events", within=SLOW_READ + 10)
            slow_latency = time.monotonic() - started

    print(f"\nother tenant delivered in {quick_latency * 1000:.0f} ms during a {SLOW_READ} s read")
    assert quick_event == {"id": "1", "task": {"title": "not held up"}}
    assert slow_event == {"id": "1", "task": {"title": "held up"}}
    # The other tenant's event came while the slow read was still under way (had reads
    # been serialised, it would have waited the whole SLOW_READ behind it).
    assert slow_pending == 0
    assert quick_latency < SLOW_READ
    assert slow_latency > SLOW_READ / 2


async def _flood(client: aioredis.Redis, channel: str, messages: list[bytes]) -> None:
    async with client.pipeline(transaction=False) as pipe:
        for message in messages:
            pipe.publish(channel, message)
        await pipe.execute()


def _doorbells(install: str, first: int, last: int) -> list[bytes]:
    """Doorbells of the reader's install, each for a tenant of its own."""
    return [
        orjson.dumps({"i": install, "t": f"flood{i}", "e": 1 + i % 7}) for i in range(first, last)
    ]


class Peaks:
    """The largest size each of a server's bus queues reached while it was watched."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.seen: dict[str, int] = {}

    def sample(self) -> dict[str, int]:
        now = self.server.runtime.bus.backlog()
        for queue, size in now.items():
            self.seen[queue] = max(self.seen.get(queue, 0), size)
        return now

    async def during(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work``, sampling all the while."""
        task = asyncio.create_task(work)
        while not task.done():
            self.sample()
            await asyncio.sleep(0.005)
        await task


@pytest.mark.postgres
async def test_a_flood_of_doorbells_while_the_database_is_stalled_stays_bounded_and_loses_nothing(
    pg_database: PgDatabase,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Smaller bounds than in production, so that a short flood reaches them.
    monkeypatch.setattr(backends, "INBOX_CAPACITY", INBOX)
    monkeypatch.setattr(bus_module, "_MAX_HINTS", HINTS)
    url, _ = pg_database
    settings = make_settings(url, tmp_path_factory.mktemp("data"), broadcast_url=redis_server.url)
    with (
        tcp_proxy("127.0.0.1", 5432) as proxy,
        live_server(settings) as writer,
        live_server(
            settings.model_copy(update={"database_url": _through(url, proxy.port)})
        ) as reader,
    ):
        t = Tenant(writer, "flooded")
        async with await Socket.open(reader.ws_url, reader.token("VIEWER", tenant="flooded")) as ws:
            await ws.subscribe("events", EVENTS)
            await subscribed(reader, 1)
            peaks = Peaks(reader)
            install = reader.runtime.bus.install

            proxy.stall()  # the reader's database hangs: every outbox read waits
            for i in range(20):
                await t.create_task(f"during {i}")
            # Well-formed doorbells of this install: first a burst while the reader's loop
            # is busy, which overflows its inbox; then more tenants than it keeps notes of.
            channel = settings.broadcast_channel
            redis = aioredis.Redis.from_url(redis_server.url)
            server_loop(reader).call_soon_threadsafe(time.sleep, 1.0)  # a busy process
            await peaks.during(_flood(redis, channel, _doorbells(install, 0, 5_000)))
            await until(lambda: Metrics.value(reader.runtime.metrics.bus_overflows) > 0)
            for first in range(5_000, 5_000 + 2 * HINTS, BATCH):  # paced: none of these is dropped
                flood = _doorbells(install, first, first + BATCH)
                await peaks.during(_flood(redis, channel, flood))
                noted = min(first + BATCH - 5_000, HINTS)
                await until(lambda n=noted: peaks.sample()["doorbells"] >= n, what=f"{noted} noted")
            assert peaks.sample()["doorbells"] == HINTS
            await redis.aclose()
            gauge = await _gauge(reader, 'mark1_bus_pending{queue="doorbells"}', HINTS)
            overflows = Metrics.value(reader.runtime.metrics.bus_overflows)
            await ws.silent("events", 0.5)  # nothing can be read yet

            proxy.resume()
            got = [await ws.field("events", within=30) for _ in range(20)]
            await ws.silent("events", 1.2)  # two head checks: a duplicate would show now

    print(f"\npeak backlog during the flood: {peaks.seen}, inbox overflows: {overflows}")
    assert [e["task"]["title"] for e in got] == [f"during {i}" for i in range(20)]
    assert [int(e["id"]) for e in got] == list(range(1, 21))
    assert peaks.seen["doorbells"] == HINTS  # reached, and held at, its bound
    assert gauge == HINTS
    assert 0 < peaks.seen["inbox"] <= INBOX
    assert overflows > 0  # dropped, and read back from the outbox instead
    assert peaks.seen["held"] <= _MAX_RECENT
    assert peaks.seen["reads"] <= 1


async def _gauge(server: LiveServer, sample: str, expected: float) -> float:
    """A sample of the server's /metrics once it reads ``expected`` (the watcher reports
    every half second); the last value read when it never does."""
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        deadline = time.monotonic() + 10
        while True:
            text = (await client.get(f"{server.base}/metrics")).text
            value = next(
                (float(line.split()[1]) for line in text.splitlines() if line.startswith(sample)),
                -1.0,
            )
            if value == expected or time.monotonic() > deadline:
                return value
            await asyncio.sleep(0.05)
