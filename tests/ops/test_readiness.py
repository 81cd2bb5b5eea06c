"""``/healthz`` answers while the process lives; ``/readyz`` checks the database and the bus."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from api.http.ops import READY_TIMEOUT
from api.settings import Settings
from tests.ops.proxy import TcpProxy, tcp_proxy
from tests.support import databases
from tests.support.server import LiveServer, live_server


async def probe(live: LiveServer, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(f"{live.base}{path}")


async def until_status(live: LiveServer, status: int, within: float = 15) -> dict[str, Any]:
    """Poll ``/readyz`` until it answers ``status``; its body."""
    deadline = time.monotonic() + within
    while True:
        response = await probe(live, "/readyz")
        if response.status_code == status:
            body: dict[str, Any] = response.json()
            return body
        assert time.monotonic() < deadline, f"/readyz stayed {response.status_code}"
        await asyncio.sleep(0.1)


async def until_bus(live: LiveServer, state: str, within: float = 15) -> tuple[int, Any]:
    """Poll ``/readyz`` until it reports the bus ``state``; its status and body."""
    deadline = time.monotonic() + within
    while True:
        response = await probe(live, "/readyz")
        if response.json()["checks"]["bus"] == state:
            return response.status_code, response.json()
        assert time.monotonic() < deadline, f"the bus stayed {response.json()['checks']['bus']}"
        await asyncio.sleep(0.1)


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    databases.require("Redis", databases.redis_reachable())
    target = urlsplit(databases.REDIS_URL)
    with tcp_proxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        yield proxy


async def test_healthz_and_readyz_answer_ok_when_everything_is_up(server: LiveServer) -> None:
    health = await probe(server, "/healthz")
    ready = await probe(server, "/readyz")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "bus": "ok"}}


@pytest.mark.redis
async def test_readyz_stays_200_reporting_the_bus_degraded_while_it_is_down_and_recovers(
    settings: Settings, redis_proxy: TcpProxy
) -> None:
    """Without the broker the process still delivers, from the outbox: it can serve."""
    bus_url = f"redis://127.0.0.1:{redis_proxy.port}/0"
    channel = f"mark1_test_{secrets.token_hex(6)}"
    update = {"broadcast_url": bus_url, "broadcast_channel": channel}
    with live_server(settings.model_copy(update=update)) as live:
        await until_bus(live, "ok")
        redis_proxy.cut()
        down = await until_bus(live, "degraded")
        redis_proxy.start()  # same port again
        up = await until_bus(live, "ok")

    assert down == (200, {"status": "ready", "checks": {"database": "ok", "bus": "degraded"}})
    assert up == (200, {"status": "ready", "checks": {"database": "ok", "bus": "ok"}})


@pytest.mark.postgres
async def test_readyz_is_503_while_the_database_is_down_and_recovers(
    settings: Settings, postgres_via_proxy: tuple[str, TcpProxy]
) -> None:
    url, proxy = postgres_via_proxy
    with live_server(settings.model_copy(update={"database_url": url})) as live:
        await until_status(live, 200)
        proxy.cut()
        down = await until_status(live, 503)
        proxy.start()
        up = await until_status(live, 200)

    assert down["status"] == "not ready"
    assert down["checks"]["bus"] == "ok"
    assert down["checks"]["database"].startswith("error: ")
    assert up["checks"] == {"database": "ok", "bus": "ok"}


@pytest.mark.postgres
async def test_readyz_answers_503_in_time_when_the_database_hangs(
    settings: Settings, postgres_via_proxy: tuple[str, TcpProxy]
) -> None:
    url, proxy = postgres_via_proxy
    with live_server(settings.model_copy(update={"database_url": url})) as live:
        await until_status(live, 200)
        proxy.stall()
        started = time.monotonic()
        try:
            hung = await probe(live, "/readyz")
        finally:
            proxy.resume()
        took = time.monotonic() - started
        up = await until_status(live, 200)

    assert hung.status_code == 503
    assert hung.json()["checks"]["database"] == "error: TimeoutError"
    assert took < READY_TIMEOUT + 2
    assert up["checks"] == {"database": "ok", "bus": "ok"}
