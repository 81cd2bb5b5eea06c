"""The database goes away under a running server, then comes back: fail fast, recover alone.

PostgreSQL is reached through a proxy the test cuts (open connections reset, new
ones refused) or black-holes (new connections accepted, never answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from api.db.engine import Database
from api.errors import Unavailable
from api.metrics import Metrics
from mark1_client import Mark1Client
from tests.ops.proxy import TcpProxy
from tests.realtime.wire import Socket
from tests.support.graphql import data, gql
from tests.support.server import LiveServer, live_server, make_settings
from tests.support.waiting import until

CREATE = "mutation($t: String!) { createTask(input: {title: $t}) { id } }"
COUNT = "{ tasks { totalCount } }"
METRICS = "subscription { systemMetrics(intervalSeconds: 1) { at } }"
UNAVAILABLE = {"code": "UNAVAILABLE", "retryAfter": Unavailable.RETRY_AFTER}
POOL_CONNECTIONS = 30  # api/db/engine.py: pool_size 10 + max_overflow 20

pytestmark = pytest.mark.postgres


async def timed(
    client: httpx.AsyncClient, url: str, query: str, variables: dict[str, Any], token: str
) -> tuple[Any, float]:
    """The response body of one request, and the seconds it took."""
    started = time.monotonic()
    response = await client.post(
        url,
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    return response.json(), time.monotonic() - started


def client() -> httpx.AsyncClient:
    """One client for many requests: each new one costs a TLS context, tens of ms of CPU."""
    return httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100))


async def readyz(live: LiveServer) -> int:
    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.get(f"{live.base}/readyz")).status_code


async def until_written(live: LiveServer, token: str, title: str, within: float = 20) -> str:
    """Create a task once the database is back (each try either fails whole or commits)."""
    deadline = time.monotonic() + within
    while True:
        body = await gql(live.url, CREATE, {"t": title}, token=token)
        if not body.get("errors"):
            return str(body["data"]["createTask"]["id"])
        assert body["errors"][0]["extensions"] == UNAVAILABLE, body
        assert time.monotonic() < deadline, f"the database did not come back: {body}"
        await asyncio.sleep(0.1)


async def live_socket(live: LiveServer, token: str) -> Socket:
    socket = await Socket.open(live.ws_url, token)
    await socket.subscribe("live", "subscription { events { id } }")
    gauge = live.runtime.metrics.subscriptions
    await until(lambda: Metrics.value(gauge) == 1, what="the subscription to go live")
    return socket


async def test_a_cut_database_answers_unavailable_at_once_and_everything_recovers_without_restart(
    postgres_via_proxy: tuple[str, TcpProxy],
    tmp_path: Path,
    tenant: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, proxy = postgres_via_proxy
    with live_server(make_settings(url, tmp_path)) as live:
        operator = live.token("OPERATOR", tenant=tenant)
        socket = await live_socket(live, operator)
        await socket.subscribe("metrics", METRICS)  # reads the database every second
        await socket.field("metrics")
        data(await gql(live.url, CREATE, {"t": "before"}, token=operator))
        assert (await socket.field("live"))["id"] == "1"

        proxy.cut()
        async with client() as http:
            write, write_took = await timed(http, live.url, CREATE, {"t": "during"}, operator)
            read, read_took = await timed(http, live.url, COUNT, {}, operator)
        down = await readyz(live)
        await socket.subscribe("replay", 'subscription { events(after: "0") { id } }')
        replay = await socket.error("replay")
        await socket.send({"type": "ping"})
        pong = await socket.control_message()  # the socket is still open, and answers

        # The SDK retries an UNAVAILABLE createTask (nothing was written) after retryAfter.
        async with Mark1Client(live.url, operator) as sdk:
            with caplog.at_level(logging.WARNING, logger="mark1_client"):
                creating = asyncio.create_task(sdk.create_task("after"))
                await until(lambda: "retrying in" in caplog.text, what="an UNAVAILABLE answer")
                proxy.start()  # on the same port
                restored = datetime.now(UTC)
                created = await asyncio.wait_for(creating, 30)
            up = await readyz(live)
            delivered = await socket.field("live")
            # systemMetrics skipped its ticks during the outage, and goes on.
            while datetime.fromisoformat((await socket.field("metrics"))["at"]) < restored:
                pass
            count = data(await gql(live.url, COUNT, token=operator))["tasks"]["totalCount"]
        await socket.close()

    print(
        f"\ncut: UNAVAILABLE in {write_took * 1000:.0f} ms (mutation), "
        f"{read_took * 1000:.0f} ms (query)"
    )
    assert (write["data"], write["errors"][0]["extensions"]) == (None, UNAVAILABLE)
    assert (read["data"], read["errors"][0]["extensions"]) == (None, UNAVAILABLE)
    assert write_took < 2 and read_took < 2
    assert replay["extensions"] == UNAVAILABLE
    assert (down, pong, up) == (503, {"type": "pong"}, 200)
    # Nothing was written during the outage; the retried createTask wrote once, and its
    # event arrives live.
    assert created.title == "after" and count == 2
    assert delivered["id"] == "2"


async def test_a_black_holed_database_answers_unavailable_within_the_connect_and_pool_timeouts(
    postgres_via_proxy: tuple[str, TcpProxy], tmp_path: Path, tenant: str
) -> None:
    """New connections are accepted and never answered: the connect timeout ends each
    attempt, and the requests queued behind the pool's 30 connections wait no longer
    than the pool timeout, not SQLAlchemy's default 30 s."""
    url, proxy = postgres_via_proxy
    settings = make_settings(url, tmp_path, db_connect_timeout=1.0, db_pool_timeout=1.0)
    with live_server(settings) as live:
        operator = live.token("OPERATOR", tenant=tenant)
        socket = await live_socket(live, live.token("VIEWER", tenant=tenant))
        data(await gql(live.url, CREATE, {"t": "before"}, token=operator))
        assert (await socket.field("live"))["id"] == "1"

        proxy.cut()  # every pooled connection dies...
        proxy.start()
        proxy.stall()  # ...and every new one hangs
        async with client() as http:
            started = time.monotonic()
            answers = await asyncio.gather(
                *(
                    timed(http, live.url, CREATE if i % 2 else COUNT, {"t": f"d{i}"}, operator)
                    for i in range(40)
                )
            )
            took = time.monotonic() - started

        proxy.resume()
        await until_written(live, operator, "after")
        delivered = await socket.field("live")
        await socket.close()

    print(f"\nblack hole: 40 requests all answered in {took:.2f} s (connect and pool 1 s)")
    assert [body["errors"][0]["extensions"] for body, _ in answers] == [UNAVAILABLE] * 40
    # connect 1 s + pool 1 s, with room for a loaded machine; far below 30 s.
    assert took < 5, " ".join(str(round(t, 2)) for t in sorted(t for _, t in answers))
    assert delivered["id"] == "2"


async def test_a_request_waits_for_a_pooled_connection_no_longer_than_the_pool_timeout(
    postgres_via_proxy: tuple[str, TcpProxy],
) -> None:
    """Every connection busy (here: held open by the test) is the other way a request
    could wait for SQLAlchemy's default 30 s."""
    url, _ = postgres_via_proxy
    db = Database(url, pool_timeout=0.5)
    try:
        async with contextlib.AsyncExitStack() as held:
            for _ in range(POOL_CONNECTIONS):
                session = await held.enter_async_context(db.session())
                await session.execute(text("SELECT 1"))  # checks a connection out
            started = time.monotonic()
            with pytest.raises(Unavailable):
                async with db.session() as session:
                    await session.execute(text("SELECT 1"))
            took = time.monotonic() - started
        async with db.session() as session:  # and the pool serves again once they are back
            assert (await session.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await db.close()

    assert 0.5 <= took < 2.5


async def test_a_pooled_connection_that_died_while_idle_is_replaced_at_checkout(
    pg_database: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections are pinged only after sitting idle (api/db/engine.py): one the server
    dropped meanwhile is replaced at checkout, and the statement never sees it."""
    monkeypatch.setattr("api.db.engine.PING_AFTER_IDLE", 0.0)
    db, admin = Database(pg_database.url), Database(pg_database.url)
    try:
        async with db.engine.connect() as conn:
            first = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with admin.engine.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            gone = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")

            async def ended() -> bool:
                return int((await conn.execute(gone, {"pid": first})).scalar_one()) == 0

            await until(ended, what="the pooled connection's backend to end")
        async with db.engine.connect() as conn:
            second = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert second != first
    finally:
        await db.close()
        await admin.close()
