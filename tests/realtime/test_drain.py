"""SIGTERM drains a process: out of rotation at once, its sockets closed with 1012 a few at
a time over MARK1_DRAIN_SECONDS, and gone within that time; its clients resume on another
process with nothing lost and nothing repeated, while writers keep writing.

Real ``mark1 serve`` processes on PostgreSQL and Redis behind a TCP load balancer that
health-checks ``/readyz`` (tests/support/balancer.py). The clients are the ones people
use: ``mark1 watch`` (the Python SDK), the dashboard's graphql-ws set-up (npm
graphql-ws, tests/clients/dashboard-events.mjs) and plain graphql-transport-ws sockets
that resume after their last event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tests.realtime.processes import ROOT, Process, serve_clusters
from tests.realtime.traffic import Writer
from tests.support import databases
from tests.support.balancer import Balancer, balancing
from tests.support.databases import PgDatabase
from tests.support.node import CLIENTS, node_with
from tests.support.server import mint
from tests.support.waiting import until

DRAIN = 2.0  # MARK1_DRAIN_SECONDS: short, so the test is too
SPREAD = 0.6 * DRAIN  # api/drain.py: the sockets are closed over this share of it
EVENTS = "subscription($after: ID) { events(after: $after) { id } }"
# The dashboard's own document (frontend-example/src/dashboard/components/EventList.tsx).
DASHBOARD = (
    "subscription EventStream($filter: EventFilter, $after: ID) "
    "{ events(filter: $filter, after: $after) { id type occurredAt } }"
)
WATCH_EVENT = re.compile(r"  #(\d+)  ")
WATCH_CLOSE = re.compile(r"connection closed \((\d+)")
SETTINGS = {
    "drain_seconds": str(DRAIN),
    "gap_check_interval": "0.5",
    "mutation_rate": "1000000",
    "mutation_burst": "1000000",
}


@pytest.fixture
def cluster_database(pg_database: PgDatabase) -> str:
    """A fresh PostgreSQL database, for processes that also share the local Redis."""
    databases.require("Redis", databases.redis_reachable())
    return pg_database.url


@pytest.fixture
def node() -> str:
    return node_with("graphql-ws")


# -- the clients ---------------------------------------------------------------


@dataclass
class Follower:
    """A graphql-transport-ws client that resubscribes after its last event on every
    reconnect, as the SDK and the dashboard do; it notes how each socket ended."""

    url: str
    token: str
    ids: list[int] = field(default_factory=list)
    closes: list[tuple[int | None, float]] = field(default_factory=list)  # (code, when)
    refused: int = 0

    async def run(self) -> None:
        while True:
            try:
                await self._once()
            except ConnectionClosed as exc:
                self.closes.append((exc.rcvd.code if exc.rcvd else None, time.time()))
            except (InvalidHandshake, OSError, TimeoutError) as exc:
                self.refused += 1  # a draining process answers the upgrade with 503
                assert not isinstance(exc, InvalidStatus) or exc.response.status_code == 503
            await asyncio.sleep(random.uniform(0.05, 0.2))

    async def _once(self) -> None:
        async with websockets.connect(
            self.url, subprotocols=["graphql-transport-ws"], open_timeout=5, compression=None
        ) as ws:  # type: ignore[list-item]
            auth = {"authorization": f"Bearer {self.token}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": auth}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            after = str(self.ids[-1]) if self.ids else "0"
            payload = {"query": EVENTS, "variables": {"after": after}}
            await ws.send(json.dumps({"id": "e", "type": "subscribe", "payload": payload}))
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif message["type"] == "next":
                    self.ids.append(int(message["payload"]["data"]["events"]["id"]))
                else:
                    raise AssertionError(f"unexpected {message}")


@dataclass
class Lines:
    """A client process; its stdout and stderr lines, as they come."""

    proc: asyncio.subprocess.Process
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    async def read(self) -> None:
        async def collect(stream: asyncio.StreamReader | None, sink: list[str]) -> None:
            assert stream is not None
            while line := await stream.readline():
                sink.append(line.decode().rstrip("\n"))

        await asyncio.gather(
            collect(self.proc.stdout, self.stdout), collect(self.proc.stderr, self.stderr)
        )


@contextlib.asynccontextmanager
async def running(*command: str, cwd: Path, **env: str) -> AsyncIterator[Lines]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MARK1_")}
    proc = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env={**clean, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    lines = Lines(proc)
    reader = asyncio.create_task(lines.read())
    try:
        yield lines
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await reader


def dashboard_ids(lines: Lines) -> list[int]:
    return [int(e["id"]) for e in map(json.loads, lines.stdout) if e["event"] == "next"]


def dashboard_closes(lines: Lines) -> list[tuple[int | None, float]]:
    found = map(json.loads, lines.stdout)
    return [(e["code"], e["at"]) for e in found if e["event"] == "closed"]


def watch_ids(lines: Lines) -> list[int]:
    return [int(m.group(1)) for line in lines.stdout if (m := WATCH_EVENT.search(line))]


# -- helpers ---------------------------------------------------------------------


async def gauge(process: Process, name: str, value: float) -> None:
    deadline = time.monotonic() + 30
    while (seen := await process.gauge(name)) != value:
        assert time.monotonic() < deadline, f"{name} stayed {seen}, not {value}"
        await asyncio.sleep(0.05)


async def status(url: str) -> int:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        return (await client.get(url)).status_code


async def exited(process: Process, since: float, within: float = 30) -> float:
    """Seconds from ``since`` until the process has exited."""
    deadline = time.monotonic() + within
    while process.proc.poll() is None:
        assert time.monotonic() < deadline, "the draining process did not exit"
        await asyncio.sleep(0.01)
    return time.monotonic() - since


async def write(writer: Writer, url: str, stop: asyncio.Event) -> None:
    """Create tasks through the load balancer until stopped. A new connection for each,
    so the balancer picks a ready process each time (the draining one stops being one)."""
    no_keepalive = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(trust_env=False, timeout=30, limits=no_keepalive) as client:
        while not stop.is_set():
            await writer.create(client, url)  # fails the test on any error
            await asyncio.sleep(0.03)


def assert_spread(times: list[float]) -> None:
    """Closed a few at a time over the window, not all in the same instant."""
    times = sorted(times)
    assert times[-1] - times[0] >= SPREAD / 2, times
    window = SPREAD / 4
    busiest = max(sum(1 for t in times if start <= t < start + window) for start in times)
    assert busiest <= len(times) / 2, times


# -- the tests ----------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_sigterm_moves_every_client_to_the_other_process_with_nothing_lost_or_repeated(
    cluster_database: str, tmp_path: Path, tenant: str, node: str
) -> None:
    with serve_clusters(
        {"redis": databases.REDIS_URL},
        size=2,
        database_url=cluster_database,
        work_dir=tmp_path,
        **SETTINGS,
    ) as clusters:
        a, b = clusters["redis"]
        viewer = a.token("VIEWER", tenant=tenant)
        # At first the balancer sends everything to `a`, the process the test will stop.
        with balancing([a.port]) as balancer:
            async with (
                running(
                    node,
                    str(CLIENTS / "dashboard-events.mjs"),
                    cwd=CLIENTS,
                    MARK1_WS_URL=balancer.ws_url,
                    MARK1_TOKEN=viewer,
                    MARK1_QUERY=DASHBOARD,
                    MARK1_VARIABLES=json.dumps({"filter": None, "after": "0"}),
                    MARK1_TIMEOUT="90",
                ) as dashboard,
                running(
                    sys.executable,
                    "-m",
                    "api.cli.main",
                    "watch",
                    "events",
                    "--url",
                    balancer.url,
                    "--after",
                    "0",
                    cwd=ROOT,
                    MARK1_TOKEN=viewer,
                ) as watch,
            ):
                followers = [Follower(balancer.ws_url, viewer) for _ in range(8)]
                following = [asyncio.create_task(f.run()) for f in followers]
                try:
                    await _drain_under_traffic(a, b, balancer, tenant, followers, dashboard, watch)
                finally:
                    for task in following:
                        task.cancel()
                    await asyncio.gather(*following, return_exceptions=True)


async def _drain_under_traffic(
    a: Process,
    b: Process,
    balancer: Balancer,
    tenant: str,
    followers: list[Follower],
    dashboard: Lines,
    watch: Lines,
) -> None:
    sockets = len(followers) + 2
    await gauge(a, "mark1_subscriptions_active", sockets)  # every client is on `a`
    balancer.backends.append(b.port)
    await until(lambda: b.port in balancer.ready, what="b in rotation")

    operator = mint(a.settings, "OPERATOR", sub="writer", tenant=tenant)
    writers = [Writer([balancer.url], operator, f"w{i}") for i in range(2)]
    stop = asyncio.Event()
    writing = [asyncio.create_task(write(w, balancer.url, stop)) for w in writers]
    clients: dict[str, Any] = {f"follower {i}": f for i, f in enumerate(followers)}

    def received() -> dict[str, list[int]]:
        got = {name: f.ids for name, f in clients.items()}
        return {**got, "dashboard": dashboard_ids(dashboard), "watch": watch_ids(watch)}

    try:
        await until(lambda: min(map(len, received().values())) >= 10, 30, "events flowing")

        sigterm_at = time.monotonic()
        sigterm_wall = time.time()
        a.proc.send_signal(signal.SIGTERM)
        ready_then = await status(f"http://127.0.0.1:{a.port}/readyz")
        ready_took = time.monotonic() - sigterm_at
        with pytest.raises(InvalidStatus) as refused:  # no new sockets
            await websockets.connect(a.ws_url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
        # A mutation arriving at the draining process is still served.
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            direct = Writer([a.url], operator, "direct")
            await direct.create(client, a.url)
        took = await exited(a, sigterm_at)

        # Writers go on through `b` alone; every client must get past the drain there.
        written = sum(w.written for w in writers)
        await until(lambda: min(map(len, received().values())) >= written + 10, 30, "resumed")
    finally:
        stop.set()
        await asyncio.gather(*writing)
    total = sum(w.written for w in writers) + direct.written
    await until(lambda: min(map(len, received().values())) >= total, 30, "every event")
    await asyncio.sleep(1.0)  # two head checks: a duplicate would show now

    closes = [close for f in followers for close in f.closes] + dashboard_closes(dashboard)
    offsets = sorted(round(at - sigterm_wall, 2) for _, at in closes)
    print(
        f"\nreadyz 503 after {ready_took * 1000:.0f} ms; sockets closed at {offsets} s; "
        f"exited {took:.2f} s after SIGTERM (MARK1_DRAIN_SECONDS={DRAIN:g}); {total} events"
    )
    assert ready_then == 503 and ready_took < 0.5
    assert refused.value.response.status_code == 503
    assert took < DRAIN
    for name, ids in received().items():
        assert ids == list(range(1, total + 1)), name

    assert [code for code, _ in closes] == [1012] * (sockets - 1)
    assert [int(m.group(1)) for line in watch.stderr if (m := WATCH_CLOSE.search(line))] == [1012]
    assert all(sigterm_wall <= at <= sigterm_wall + DRAIN for _, at in closes)
    assert_spread([at for _, at in closes])


@pytest.mark.timeout(120)
async def test_each_worker_of_serve_workers_drains_its_own_sockets(
    cluster_database: str, tmp_path: Path, tenant: str
) -> None:
    with serve_clusters(
        {"redis": databases.REDIS_URL},
        size=1,
        database_url=cluster_database,
        work_dir=tmp_path,
        workers="2",
        **SETTINGS,
    ) as clusters:
        (server,) = clusters["redis"]
        await until(
            lambda: server.output().count("Application startup complete") == 2,
            what="both workers started",
        )
        viewer = server.token("VIEWER", tenant=tenant)
        followers = [Follower(server.ws_url, viewer) for _ in range(10)]
        following = [asyncio.create_task(f.run()) for f in followers]
        try:
            await until(lambda: server.output().count("[accepted]") >= 10, what="sockets open")
            sigterm_at = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            took = await exited(server, sigterm_at)
        finally:
            for task in following:
                task.cancel()
            await asyncio.gather(*following, return_exceptions=True)
        output = server.output()

    drains = re.findall(r"draining: (\d+) sockets", output)
    print(f"\nworkers drained {drains} sockets; exited {took:.2f} s after SIGTERM")
    assert len(drains) == 2 and sum(map(int, drains)) == 10
    closes = [close for f in followers for close in f.closes]
    assert [code for code, _ in closes] == [1012] * 10
    assert_spread([at for _, at in closes])
    assert took < DRAIN
