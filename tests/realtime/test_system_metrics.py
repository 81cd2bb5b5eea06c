"""``systemMetrics`` subscribers of one tenant and interval share one ticker (issue #8):
one set of GROUP BY queries per tick however many subscribe, at most one tick a second."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from datetime import datetime

from tests.realtime.activity import Tenant
from tests.realtime.wire import Protocol, Socket
from tests.support.server import LiveServer
from tests.support.statements import recorded
from tests.support.waiting import PATIENCE, until

METRICS = "subscription($s: Float) { systemMetrics(intervalSeconds: $s) { at tasksByStatus } }"


async def test_subscribers_share_one_set_of_queries_per_tick(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    await Tenant(server, tenant).create_task("counted")
    operator = server.token("OPERATOR", tenant=tenant)
    subscribers, ticks = 6, 3
    async with AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(
                await Socket.open(server.ws_url, operator, protocol=protocol)
            )
            for _ in range(subscribers)
        ]
        began = time.monotonic()
        for ws in sockets:
            await ws.subscribe("m", METRICS, {"s": 1})
        # Every subscriber is live once it has its first snapshot.
        for ws in sockets:
            assert (await ws.field("m", within=PATIENCE))["tasksByStatus"]["PENDING"] == 1
        with recorded(server, lambda s: "GROUP BY" in s.upper()) as statements:
            counting = time.monotonic()
            stamps = [
                [(await ws.field("m", within=PATIENCE))["at"] for _ in range(ticks)]
                for ws in sockets
            ]
            counted = time.monotonic() - counting
        await until(lambda: server.runtime.tickers.running == 1, what="one ticker")
        elapsed = time.monotonic() - began

    # One clock for everyone: a 1 s ticker cannot have made more ticks than this, while
    # a clock per subscriber would have sent each its own stamps (6 x 3 distinct ones).
    assert len({at for each in stamps for at in each}) <= elapsed + 2, (elapsed, stamps)
    # Two GROUP BYs (tasks, agents) per tick, not two per subscriber per tick.
    assert len(statements) <= 2 * (counted + 2), (
        counted,
        len(statements),
    )
    await until(lambda: server.runtime.tickers.running == 0, what="the ticker stopped")


async def test_intervals_under_a_second_count_as_one_second(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    operator = server.token("OPERATOR", tenant=tenant)
    async with await Socket.open(server.ws_url, operator, protocol=protocol) as ws:
        await ws.subscribe("fast", METRICS, {"s": 0.1})
        first = datetime.fromisoformat((await ws.field("fast", within=PATIENCE))["at"])
        second = datetime.fromisoformat((await ws.field("fast", within=PATIENCE))["at"])
        await ws.subscribe("zero", METRICS, {"s": 0})
        refused = await ws.failure("zero")
        await ws.subscribe("huge", METRICS, {"s": 3601})
        too_long = await ws.failure("huge")
    assert (second - first).total_seconds() >= 0.95
    assert refused["extensions"]["code"] == "BAD_USER_INPUT"
    assert too_long["extensions"]["code"] == "BAD_USER_INPUT"


async def test_different_tenants_and_intervals_get_tickers_of_their_own(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    await Tenant(server, tenant).create_task("mine")
    mine = server.token("OPERATOR", tenant=tenant)
    theirs = server.token("OPERATOR", tenant=f"{tenant}b")
    async with (
        await Socket.open(server.ws_url, mine, protocol=protocol) as a,
        await Socket.open(server.ws_url, theirs, protocol=protocol) as b,
    ):
        await a.subscribe("one", METRICS, {"s": 1})
        await a.subscribe("two", METRICS, {"s": 2})
        await b.subscribe("one", METRICS, {"s": 1})
        assert (await a.field("one", within=PATIENCE))["tasksByStatus"]["PENDING"] == 1
        assert (await a.field("two", within=PATIENCE))["tasksByStatus"]["PENDING"] == 1
        assert (await b.field("one", within=PATIENCE))["tasksByStatus"]["PENDING"] == 0
        await until(lambda: server.runtime.tickers.running == 3, what="three tickers")
        await a.stop("two")
        await until(lambda: server.runtime.tickers.running == 2, what="two tickers")
    await until(lambda: server.runtime.tickers.running == 0, what="no ticker left")
