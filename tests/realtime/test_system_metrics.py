"""``systemMetrics`` subscribers of one tenant and interval share one ticker (issue #8):
one set of GROUP BY queries per tick however many subscribe, at most one tick a second."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import event

from tests.realtime.activity import Tenant
from tests.realtime.wire import Protocol, Socket, until
from tests.support.server import LiveServer

METRICS = "subscription($s: Float) { systemMetrics(intervalSeconds: $s) { at tasksByStatus } }"


@contextmanager
def counting_group_bys(server: LiveServer) -> Iterator[list[str]]:
    """The GROUP BY statements the server's engine runs (the metrics' counts)."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "GROUP BY" in statement.upper():
            seen.append(statement)

    engine = server.runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


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
        for ws in sockets:
            await ws.subscribe("m", METRICS, {"s": 1})
        # Every subscriber is live once it has its first snapshot.
        for ws in sockets:
            assert (await ws.field("m", within=10))["tasksByStatus"]["PENDING"] == 1
        with counting_group_bys(server) as statements:
            stamps = [
                [(await ws.field("m", within=10))["at"] for _ in range(ticks)] for ws in sockets
            ]
        await until(lambda: server.runtime.tickers.running == 1, 5, "one ticker")

    # The same few ticks reached everyone (one more when a subscriber joined just after
    # one) rather than a clock of each subscriber's own...
    assert len({at for each in stamps for at in each}) <= ticks + 1, stamps
    # ...from two GROUP BYs (tasks, agents) per tick, not two per subscriber per tick:
    # at most one more tick may have started while the last snapshots were read.
    assert 2 * (ticks - 1) <= len(statements) <= 2 * (ticks + 1), len(statements)
    await until(lambda: server.runtime.tickers.running == 0, 5, "the ticker stopped")


async def test_intervals_under_a_second_count_as_one_second(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    operator = server.token("OPERATOR", tenant=tenant)
    async with await Socket.open(server.ws_url, operator, protocol=protocol) as ws:
        await ws.subscribe("fast", METRICS, {"s": 0.1})
        first = datetime.fromisoformat((await ws.field("fast", within=10))["at"])
        second = datetime.fromisoformat((await ws.field("fast", within=10))["at"])
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
        assert (await a.field("one", within=10))["tasksByStatus"]["PENDING"] == 1
        assert (await a.field("two", within=10))["tasksByStatus"]["PENDING"] == 1
        assert (await b.field("one", within=10))["tasksByStatus"]["PENDING"] == 0
        await until(lambda: server.runtime.tickers.running == 3, 5, "three tickers")
        await a.stop("two")
        await until(lambda: server.runtime.tickers.running == 2, 5, "two tickers")
    await until(lambda: server.runtime.tickers.running == 0, 5, "no ticker left")
