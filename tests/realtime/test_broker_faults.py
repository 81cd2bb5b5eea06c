"""The broker fails, delivery does not: real server processes on PostgreSQL, a private
redis-server (killed, or stalled behind a proxy) or the LISTEN/NOTIFY bus (its
connection terminated). The outbox is the truth; the broker only a doorbell."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from api.events.backends import LISTEN_APPLICATION
from tests.ops.proxy import tcp_proxy
from tests.realtime.processes import Process, RedisServer, serve_clusters
from tests.realtime.traffic import EVENTS, Collector, Writer, collecting, p99, until_count
from tests.realtime.wire import Socket
from tests.support import databases
from tests.support.databases import PgDatabase
from tests.support.server import mint

# Small, so that tailing the outbox during an outage is quick to see (and the 2 s
# latency bound holds with room to spare on a loaded machine).
GAP_CHECK = "0.25"
# Writers here outpace the default mutation rate (50/s per subject) on a fast write path.
UNLIMITED_WRITES = {"mutation_rate": "1000000", "mutation_burst": "1000000"}
# Healthy and stalled alternate in short rounds: the machine's load comes in bursts, and
# both figures must see the same bursts for the comparison to mean anything.
ROUNDS = 6


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server, not started: the test starts, kills and restarts it."""
    redis = RedisServer.required(tmp_path)
    try:
        yield redis
    finally:
        redis.kill()


async def readyz(process: Process) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.get(f"http://127.0.0.1:{process.port}/readyz")
    return response.status_code, response.json()


async def until_bus(process: Process, state: str, within: float = 20) -> tuple[int, Any]:
    """Poll ``/readyz`` until it reports the bus ``state``; its status and body."""
    deadline = time.monotonic() + within
    while True:
        status, body = await readyz(process)
        if body["checks"]["bus"] == state:
            return status, body
        assert time.monotonic() < deadline, f"{process.url}: the bus stayed {body}"
        await asyncio.sleep(0.1)


async def subscribers(processes: list[Process], tenant: str, each: int) -> list[Socket]:
    """``each`` sockets on every process, subscribed to the tenant's events, all live."""
    sockets = []
    for process in processes:
        for _ in range(each):
            socket = await Socket.open(process.ws_url, process.token("VIEWER", tenant=tenant))
            await socket.subscribe("events", EVENTS)
            sockets.append(socket)
    for process in processes:
        deadline = time.monotonic() + 20
        while await process.gauge("mark1_subscriptions_active") != each:
            assert time.monotonic() < deadline, f"{process.url} never had {each} subscriptions"
            await asyncio.sleep(0.05)
    return sockets


def writers(processes: list[Process], tenant: str, count: int) -> list[Writer]:
    """``count`` operators (subjects of their own), each writing through every process."""
    urls = [p.url for p in processes]
    return [
        Writer(
            urls=urls[i % len(urls) :] + urls[: i % len(urls)],
            token=mint(processes[0].settings, "OPERATOR", sub=f"writer{i}", tenant=tenant),
            name=f"w{i}",
        )
        for i in range(count)
    ]


def assert_every_event_once_in_order(collectors: list[Collector], total: int) -> None:
    for collector in collectors:
        assert collector.ids == list(range(1, total + 1))


async def test_mutations_do_not_wait_on_a_stalled_broker_and_every_event_still_arrives(
    pg_database: PgDatabase, redis_server: RedisServer, tmp_path: Path, tenant: str
) -> None:
    """A black-holed Redis (accepts, never answers) costs a mutation nothing."""
    redis_server.start()
    with (
        tcp_proxy("127.0.0.1", redis_server.port) as proxy,
        serve_clusters(
            {"redis": f"redis://127.0.0.1:{proxy.port}/0"},
            size=2,
            database_url=pg_database.url,
            work_dir=tmp_path,
            gap_check_interval=GAP_CHECK,
            **UNLIMITED_WRITES,
        ) as running,
    ):
        a, b = running["redis"]
        sockets = await subscribers([a, b], tenant, 1)
        writer = writers([a], tenant, 1)[0]
        async with (
            collecting(sockets) as collectors,
            httpx.AsyncClient(trust_env=False, timeout=60) as client,
        ):
            for _ in range(30):  # warm-up: caches, pools, the first publishes
                await writer.create(client, a.url)
            # Rounds of healthy and stalled, so both figures see the same machine load.
            healthy: list[float] = []
            stalled: list[float] = []
            during: list[tuple[int, Any]] = []
            for _ in range(ROUNDS):
                healthy += [await writer.create(client, a.url) for _ in range(50)]
                proxy.stall()
                stalled += [await writer.create(client, a.url) for _ in range(50)]
                during.append(await until_bus(a, "degraded"))
                # The other process, whose doorbells are stuck too, tails the outbox.
                await until_count(collectors, writer.written, within=30)
                proxy.resume()

            await writer.create(client, a.url)
            await until_count(collectors, writer.written, within=30)
            await asyncio.sleep(1.0)  # two head checks: a duplicate would show now
        for socket in sockets:
            await socket.close()

    print(
        f"\ncreateTask p99: healthy {p99(healthy) * 1000:.1f} ms, broker stalled "
        f"{p99(stalled) * 1000:.1f} ms (max {max(stalled) * 1000:.1f} ms)"
    )
    # The measure is the ratio; 50 ms of slack absorbs a load burst landing in
    # one stalled round on a shared 2-core machine. A mutation that waited on the broker
    # would cost the 1 s publish timeout or more, far beyond either bound.
    assert p99(stalled) <= 2 * p99(healthy) + 0.05
    assert max(stalled) < 1.0
    degraded = {"status": "ready", "checks": {"database": "ok", "bus": "degraded"}}
    assert during == [(200, degraded)] * ROUNDS
    assert_every_event_once_in_order(collectors, writer.written)


async def _through_an_outage(
    processes: list[Process],
    tenant: str,
    fail: Any,
    restore: Any,
    *,
    outage: float,
) -> tuple[list[Collector], int, float]:
    """Four writers and two subscribers per process; ``fail()`` mid-stream, ``restore()``
    after ``outage`` seconds. Returns the collectors, the events written and the worst
    delivery delay of the events received during the outage."""
    sockets = await subscribers(processes, tenant, 2)
    async with collecting(sockets) as collectors:
        stop = asyncio.Event()
        team = writers(processes, tenant, 4)
        tasks = [asyncio.create_task(w.run(stop, pause=0.05)) for w in team]
        try:
            await until_count(collectors, 40, within=30)
            down_at = time.time()
            written_before = sum(w.written for w in team)
            await fail()
            await asyncio.sleep(outage)  # the outage itself: writers and subscribers go on
            up_at = time.time()
            assert sum(w.written for w in team) > written_before + 20, "writers kept writing"
            await restore()
            await until_count(collectors, sum(w.written for w in team) + 20, within=30)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        total = sum(w.written for w in team)
        await until_count(collectors, total, within=30)
        await asyncio.sleep(1.0)  # two head checks: a duplicate would show now
    for socket in sockets:
        await socket.close()
    worst = max(c.worst_delay(down_at, up_at) for c in collectors)
    return collectors, total, worst


@pytest.mark.timeout(300)
async def test_delivery_goes_on_in_order_through_a_redis_outage_across_two_processes(
    pg_database: PgDatabase, redis_server: RedisServer, tmp_path: Path, tenant: str
) -> None:
    redis_server.start()
    with serve_clusters(
        {"redis": redis_server.url},
        size=2,
        database_url=pg_database.url,
        work_dir=tmp_path,
        gap_check_interval=GAP_CHECK,
        **UNLIMITED_WRITES,
    ) as running:
        processes = running["redis"]
        seen: list[tuple[int, Any]] = []

        async def kill() -> None:
            redis_server.kill()
            for process in processes:
                seen.append(await until_bus(process, "degraded"))

        async def restart() -> None:
            redis_server.start()  # same port
            for process in processes:
                await until_bus(process, "ok")

        collectors, total, worst = await _through_an_outage(
            processes, tenant, kill, restart, outage=10
        )
        reconnects = [await p.gauge("mark1_bus_reconnects_total") for p in processes]

    print(f"\n{total} events, worst delay during the Redis outage {worst * 1000:.0f} ms")
    assert_every_event_once_in_order(collectors, total)
    assert worst <= 2.0
    assert seen == [(200, {"status": "ready", "checks": {"database": "ok", "bus": "degraded"}})] * 2
    assert all(r >= 1 for r in reconnects)


@pytest.mark.timeout(300)
async def test_delivery_goes_on_in_order_while_the_postgres_bus_connection_is_terminated(
    pg_database: PgDatabase, tmp_path: Path, tenant: str
) -> None:
    """The LISTEN connection killed by the database (pg_terminate_backend), again and
    again for several seconds: each process reconnects, and tails the outbox meanwhile."""
    url, name = pg_database
    bus_url = databases.PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    with serve_clusters(
        {"postgres": bus_url},
        size=2,
        database_url=url,
        work_dir=tmp_path,
        gap_check_interval=GAP_CHECK,
        **UNLIMITED_WRITES,
    ) as running:
        processes = running["postgres"]
        killed: list[int] = []
        stop = asyncio.Event()

        async def terminate_listeners() -> None:
            """Only our test database's bus listeners, found by their application name."""
            conn = await asyncpg.connect(databases.PG_ADMIN_DSN)
            try:
                while not stop.is_set():
                    killed.append(
                        await conn.fetchval(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                            " WHERE datname = $1 AND application_name = $2",
                            name,
                            LISTEN_APPLICATION,
                        )
                    )
                    await asyncio.sleep(0.2)
            finally:
                await conn.close()

        terminator: list[asyncio.Task[None]] = []

        async def fail() -> None:
            terminator.append(asyncio.create_task(terminate_listeners()))

        async def restore() -> None:
            stop.set()
            await terminator[0]
            for process in processes:
                await until_bus(process, "ok")

        collectors, total, worst = await _through_an_outage(
            processes, tenant, fail, restore, outage=5
        )
        reconnects = [await p.gauge("mark1_bus_reconnects_total") for p in processes]

    print(
        f"\n{total} events, {sum(killed)} listener connections terminated, worst delay "
        f"{worst * 1000:.0f} ms"
    )
    assert_every_event_once_in_order(collectors, total)
    assert worst <= 2.0
    assert sum(killed) >= 2
    assert all(r >= 1 for r in reconnects)


async def test_a_process_starts_and_serves_with_the_broker_down(
    pg_database: PgDatabase, redis_server: RedisServer, tmp_path: Path, tenant: str
) -> None:
    """Redis is not running at all when both processes start: they serve, degraded."""
    with serve_clusters(
        {"redis": redis_server.url},
        size=2,
        database_url=pg_database.url,
        work_dir=tmp_path,
        gap_check_interval=GAP_CHECK,
        **UNLIMITED_WRITES,
    ) as running:
        a, b = running["redis"]
        at_start = [await readyz(p) for p in (a, b)]
        sockets = await subscribers([a, b], tenant, 1)
        writer = writers([a, b], tenant, 1)[0]
        async with (
            collecting(sockets) as collectors,
            httpx.AsyncClient(trust_env=False, timeout=60) as client,
        ):
            for url in (a.url, b.url, a.url):
                await writer.create(client, url)
            await until_count(collectors, 3, within=20)

            redis_server.start()
            after = [await until_bus(p, "ok") for p in (a, b)]
            for url in (b.url, a.url):
                await writer.create(client, url)
            await until_count(collectors, 5, within=20)
            await asyncio.sleep(1.0)
        for socket in sockets:
            await socket.close()

    degraded = {"status": "ready", "checks": {"database": "ok", "bus": "degraded"}}
    assert at_start == [(200, degraded)] * 2
    assert after == [(200, {"status": "ready", "checks": {"database": "ok", "bus": "ok"}})] * 2
    assert_every_event_once_in_order(collectors, 5)
