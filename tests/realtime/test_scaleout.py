"""Scale-out for real: server processes sharing PostgreSQL and a Redis or PostgreSQL bus."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from api.metrics import Metrics
from api.settings import Settings
from tests.realtime.activity import Tenant, on_server
from tests.realtime.conftest import serving, subscribed
from tests.realtime.processes import Process, RedisServer, serve_clusters
from tests.realtime.wire import Socket
from tests.support import databases
from tests.support.waiting import PATIENCE, until

EVENTS = "subscription($after: ID) { events(after: $after) { id type } }"
TASKS = "subscription { taskUpdates { title status } }"


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[Process]]]:
    """Two processes on a Redis bus and two on a PostgreSQL bus, over one fresh database."""
    databases.require("PostgreSQL", databases.postgres_reachable())
    url, name = databases.create_pg_database()
    buses = {"postgres": databases.PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"}
    if databases.redis_reachable():
        buses["redis"] = databases.REDIS_URL
    try:
        with serve_clusters(
            buses, size=2, database_url=url, work_dir=tmp_path_factory.mktemp("serve")
        ) as running:
            yield running
    finally:
        databases.drop_pg_database(name)


class _Peer:
    """Enough of a LiveServer for ``Tenant``: where to send mutations."""

    def __init__(self, process: Process) -> None:
        self.url = process.url
        self._process = process

    def token(self, *roles: str, sub: str = "tester", tenant: str = "default") -> str:
        return self._process.token(*roles, tenant=tenant)


async def _until_subscribed(process: Process, count: int, within: float = PATIENCE) -> None:
    """Another process: read its subscriptions gauge from /metrics."""
    deadline = asyncio.get_running_loop().time() + within
    while await process.gauge("mark1_subscriptions_active") != count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{process.url} never had {count} live subscriptions")
        await asyncio.sleep(0.02)


async def _crosses_processes(a: Process, b: Process, tenant: str) -> None:
    viewer_b = b.token("VIEWER", tenant=tenant)
    viewer_a = a.token("VIEWER", tenant=tenant)
    async with (
        await Socket.open(b.ws_url, viewer_b) as on_b,
        await Socket.open(a.ws_url, viewer_a) as on_a,
    ):
        await on_b.subscribe("events", EVENTS)
        await on_b.subscribe("tasks", TASKS)
        await on_a.subscribe("events", EVENTS)
        for process, count in ((a, 1), (b, 2)):
            await _until_subscribed(process, count)
        through_a = Tenant(_Peer(a), tenant)  # type: ignore[arg-type]
        through_b = Tenant(_Peer(b), tenant)  # type: ignore[arg-type]
        task = await through_a.create_task("made on A")
        assert await on_b.field("tasks", within=10) == {"title": "made on A", "status": "PENDING"}
        await through_b.cancel_task(task["id"])
        assert await on_b.field("tasks", within=10) == {
            "title": "made on A",
            "status": "CANCELLED",
        }
        on_b_events = [await on_b.field("events", within=10) for _ in range(2)]
        on_a_events = [await on_a.field("events", within=10) for _ in range(2)]
        # Each event once, on each process.
        await on_b.silent("events", 0.3)
        await on_a.silent("events", 0.01)
    assert (
        on_b_events
        == on_a_events
        == [
            {"id": "1", "type": "TASK_CREATED"},
            {"id": "2", "type": "TASK_CANCELLED"},
        ]
    )


async def test_a_change_made_through_one_process_reaches_a_subscriber_on_another_over_redis(
    clusters: dict[str, list[Process]], tenant: str
) -> None:
    databases.require("Redis", "redis" in clusters)
    a, b = clusters["redis"]
    await _crosses_processes(a, b, tenant)


async def test_a_change_made_through_one_process_reaches_a_subscriber_on_another_over_postgres(
    clusters: dict[str, list[Process]], tenant: str
) -> None:
    a, b = clusters["postgres"]
    await _crosses_processes(a, b, tenant)


async def test_a_redis_restart_loses_no_event_committed_while_it_was_down(
    settings: Settings, tenant: str, tmp_path: Path
) -> None:
    with RedisServer.required(tmp_path) as redis:
        bus = {"broadcast_url": redis.url, "gap_check_interval": 0.5}
        with serving(settings, **bus) as writer, serving(settings, **bus) as reader:
            t = Tenant(writer, tenant)
            viewer = reader.token("VIEWER", tenant=tenant)
            async with await Socket.open(reader.ws_url, viewer) as ws:
                await ws.subscribe("events", EVENTS)
                await subscribed(reader, 1)
                for i in range(3):
                    await t.create_task(f"before {i}")
                before = [await ws.field("events") for _ in range(3)]

                redis.kill()
                for i in range(5):
                    await t.create_task(f"during {i}")
                await asyncio.sleep(0.5)  # reconnect attempts fail meanwhile
                redis.start()
                for i in range(2):
                    await t.create_task(f"after {i}")
                rest = [await ws.field("events", within=15) for _ in range(7)]
                await ws.silent("events", 0.5)
            servers = (writer, reader)
            # Delivery did not wait for the bus (the outbox is tailed meanwhile): the
            # reconnect may still be under way.
            await until(
                lambda: all(Metrics.value(s.runtime.metrics.bus_reconnects) for s in servers),
                what="both listeners reconnected",
            )
            reconnects = [Metrics.value(s.runtime.metrics.bus_reconnects) for s in servers]
            listeners = [await on_server(s, _redis_listeners()) for s in servers]
    ids = [int(e["id"]) for e in before + rest]
    assert ids == list(range(1, 11))
    assert all(r >= 1 for r in reconnects)
    assert listeners == [1, 1], "failed reconnect attempts left listener tasks behind"


async def _redis_listeners() -> int:
    """Tasks reading Redis pub/sub on the running loop."""
    names = [getattr(t.get_coro(), "__qualname__", "") for t in asyncio.all_tasks()]
    return sum(1 for name in names if name.endswith("_pubsub_listener"))


@dataclass
class Workers:
    """One `mark1 serve --workers 2` on PostgreSQL and Redis, and where its workers
    write their metrics samples (set by the test, as an operator may)."""

    server: Process
    samples: Path


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    databases.require("PostgreSQL", databases.postgres_reachable())
    databases.require("Redis", databases.redis_reachable())
    url, name = databases.create_pg_database()
    work_dir = tmp_path_factory.mktemp("workers")
    samples = work_dir / "metrics"
    try:
        with serve_clusters(
            {"redis": databases.REDIS_URL},
            size=1,
            database_url=url,
            work_dir=work_dir,
            environ={"PROMETHEUS_MULTIPROC_DIR": str(samples)},
            workers="2",
        ) as running:
            (server,) = running["redis"]
            yield Workers(server, samples)
    finally:
        databases.drop_pg_database(name)


async def _both_started(server: Process) -> None:
    # /readyz answered from one worker; under load the other may still be starting.
    await until(
        lambda: server.output().count("Application startup complete") == 2,
        what="both workers started",
    )


async def test_serve_with_two_workers_fans_out_to_sockets_on_every_worker(
    two_workers: Workers, tenant: str
) -> None:
    """`mark1 serve --workers 2` on a shared bus: every socket, whichever worker took it,
    gets the change."""
    server = two_workers.server
    await _both_started(server)
    viewer = server.token("VIEWER", tenant=tenant)
    sockets = [await Socket.open(server.ws_url, viewer) for _ in range(6)]
    try:
        for socket in sockets:
            await socket.subscribe("tasks", TASKS)
        # A scrape sums the workers' gauges, so it shows all six live on either worker.
        await _until_subscribed(server, 6)
        writer = Tenant(_Peer(server), tenant)  # type: ignore[arg-type]
        await writer.create_task("two workers")
        for socket in sockets:
            assert await socket.field("tasks") == {"title": "two workers", "status": "PENDING"}
    finally:
        for socket in sockets:
            await socket.close()
    assert server.output().count("Application startup complete") == 2


async def test_a_scrape_with_two_workers_counts_the_events_both_workers_published(
    two_workers: Workers, tenant: str
) -> None:
    """`mark1 serve --workers 2`: whichever worker answers /metrics sums every worker's."""
    server, samples = two_workers.server, two_workers.samples
    await _both_started(server)
    writer = Tenant(_Peer(server), tenant)  # type: ignore[arg-type]
    before = sum(_published_by_worker(samples).values())
    created = 0
    deadline = asyncio.get_running_loop().time() + PATIENCE
    # Each mutation on a connection of its own, a few at once: the kernel hands each
    # to whichever worker accepts first, until both have published some here.
    while True:
        by_worker = _published_by_worker(samples)
        if created and len([n for n in by_worker.values() if n]) == 2:
            break
        assert asyncio.get_running_loop().time() < deadline, by_worker
        await asyncio.gather(*(writer.create_task(f"w{i}") for i in range(4)))
        created += 4
    scraped = [await server.gauge("mark1_events_published_total") for _ in range(4)]

    assert sum(by_worker.values()) == before + created
    assert scraped == [before + created] * 4


def _published_by_worker(samples: Path) -> dict[str, float]:
    """Each worker's own count of events published, from the file it writes."""
    from prometheus_client.multiprocess import MultiProcessCollector

    counts = {}
    for file in samples.glob("counter_*.db"):
        families = MultiProcessCollector.merge([str(file)], accumulate=False)  # type: ignore[no-untyped-call]
        counts[file.stem] = sum(
            s.value
            for family in families
            for s in family.samples
            if s.name == "mark1_events_published_total"
        )
    return counts


def test_serve_refuses_several_workers_on_the_in_memory_bus(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "api.cli.main", "serve", "--workers", "2"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "MARK1_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "needs a shared bus" in run.stderr
