"""Limits and counters that hold across processes: with MARK1_REDIS_URL, the mutation
token bucket and the sockets per subject are shared by every process, and
systemMetrics sums them all; while Redis does not answer, each process counts
for itself (degraded, logged) rather than refusing anyone."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets

from tests.realtime.processes import RedisServer, serve_clusters
from tests.support.databases import PgDatabase
from tests.support.graphql import data, gql
from tests.support.server import LiveServer, live_server, make_settings
from tests.support.waiting import PATIENCE

CREATE = 'mutation { createTask(input: {title: "t"}) { id } }'
SYSTEM_METRICS = "{ systemMetrics { scope connections eventsPublished } }"
# One token every 20 s: a refusal cannot depend on how fast the machine is.
LIMITS = {
    "mutation_rate": "0.05",
    "mutation_burst": "3",
    "max_sockets_per_subject": "2",
    "cluster_heartbeat": "0.2",  # a crashed process stops counting within a second
}


async def _open(url: str, token: str) -> websockets.ClientConnection | int | None:
    """A socket the server acknowledged, or the code it closed the socket with."""
    ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
    init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
    await ws.send(json.dumps(init))
    try:
        async with asyncio.timeout(PATIENCE):
            reply = await ws.recv()
    except websockets.ConnectionClosed:
        return ws.close_code
    assert '"connection_ack"' in str(reply), reply
    return ws


async def _admitted(url: str, token: str) -> websockets.ClientConnection:
    opened = await _open(url, token)
    assert not isinstance(opened, int | None), f"refused with {opened}"
    return opened


async def _eventually_admitted(url: str, token: str) -> websockets.ClientConnection:
    """Until a socket is admitted (a slot freed elsewhere takes a moment to count)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        opened = await _open(url, token)
        if not isinstance(opened, int | None):
            return opened
        assert opened == 4403 and time.monotonic() < deadline, f"still refused ({opened})"
        await asyncio.sleep(0.05)


async def _system_metrics(url: str, token: str, **expected: Any) -> dict[str, Any]:
    """systemMetrics once it reports ``expected`` (other processes report by heartbeat)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        got: dict[str, Any] = data(await gql(url, SYSTEM_METRICS, token=token))["systemMetrics"]
        if all(got[k] == v for k, v in expected.items()) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


@pytest.mark.postgres
async def test_two_serve_processes_share_one_subjects_mutation_rate_and_socket_limit(
    pg_database: PgDatabase, redis_server: RedisServer, tmp_path: Path, tenant: str
) -> None:
    with serve_clusters(
        {"redis": redis_server.url},
        size=2,
        database_url=pg_database.url,
        work_dir=tmp_path,
        redis_url=redis_server.url,
        **LIMITS,
    ) as running:
        a, b = running["redis"]
        operator = a.token("OPERATOR", tenant=tenant)  # one subject, valid on both
        viewer = a.token("VIEWER", tenant=tenant)

        spent = [await gql(a.url, CREATE, token=operator) for _ in range(3)]
        on_b = await gql(b.url, CREATE, token=operator)

        first = await _admitted(a.ws_url, viewer)
        second = await _admitted(b.ws_url, viewer)
        third = [await _open(a.ws_url, viewer), await _open(b.ws_url, viewer)]
        await second.close()  # B gives its slot back: A may take it
        again = await _eventually_admitted(a.ws_url, viewer)
        seen_from_b = await _system_metrics(b.url, operator, connections=2, eventsPublished=3)

        a.proc.kill()  # a crash holding two slots: they stop counting within a second
        a.proc.wait()
        after_crash = await _eventually_admitted(b.ws_url, viewer)
        for ws in (first, again, after_crash):
            await ws.close()

    assert [data(r)["createTask"]["id"] for r in spent]
    (error,) = on_b["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert 0 < error["extensions"]["retryAfter"] <= 20
    assert third == [4403, 4403]
    assert seen_from_b == {"scope": "CLUSTER", "connections": 2, "eventsPublished": 3}


async def test_limits_fall_back_to_per_process_while_redis_is_down_and_are_shared_when_it_is_back(
    redis_server: RedisServer,
    tmp_path: Path,
    tenant: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'mark1.db'}",
        tmp_path,
        redis_url=redis_server.url,
        **{**LIMITS, "max_sockets_per_subject": 1},
    )
    with live_server(settings) as server:
        operator = server.token("OPERATOR", tenant=tenant, sub="alice")
        viewer = server.token("VIEWER", tenant=tenant, sub="bob")
        shared = await _system_metrics(server.url, operator, scope="CLUSTER")
        data(await gql(server.url, CREATE, token=operator))  # one of Redis's 3 tokens

        redis_server.kill()
        while_down = [await gql(server.url, CREATE, token=operator) for _ in range(4)]
        alone = await _system_metrics(server.url, operator)
        socket = await _admitted(server.ws_url, viewer)  # counted here meanwhile
        degraded_logged = "does not answer" in caplog.text

        redis_server.start()
        back = await _system_metrics(server.url, operator, scope="CLUSTER")
        mirrored = await _held_in_redis(server, redis_server.url)
        refused = await _open(server.ws_url, viewer)
        await socket.close()
        back_logged = "answers again" in caplog.text

    assert shared["scope"] == "CLUSTER"
    # Served, not refused: the process's own bucket of 3 (Redis's held 1 spent) gives
    # out after three, as a single process would.
    codes = [r["errors"][0]["extensions"]["code"] if "errors" in r else None for r in while_down]
    assert codes == [None, None, None, "RATE_LIMITED"]
    assert alone["scope"] == "PROCESS"
    assert degraded_logged
    assert back["scope"] == "CLUSTER"
    assert back_logged
    assert mirrored == {"s:bob": "1"}  # rewritten whole when Redis came back
    assert refused == 4403


async def _held_in_redis(server: LiveServer, url: str) -> dict[str, str]:
    """The socket counts this process mirrors into Redis, once written."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    store = server.runtime.cluster
    assert store is not None
    key = f"mark1:{{{server.runtime.bus.install}}}:proc:{store.process}"
    try:
        await until_async(lambda: client.hexists(key, "s:bob"))
        held: dict[str, str] = await client.hgetall(key)  # type: ignore[misc]
    finally:
        await client.aclose()
    return {k: v for k, v in held.items() if k.startswith("s:")}


async def until_async(condition: Any, within: float = PATIENCE) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
