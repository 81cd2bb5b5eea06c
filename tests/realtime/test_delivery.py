"""Delivery guarantees: replay then live with no gap or duplicate, resume, lost publishes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from api.domain import EventRecord
from api.events.bus import EventBus
from api.metrics import Metrics
from api.settings import Settings
from tests.realtime.activity import DroppingPublisher, Tenant, commit_tasks
from tests.realtime.conftest import nothing_left, serving, subscribed
from tests.realtime.wire import Socket
from tests.support.server import LiveServer
from tests.support.waiting import until

IDS = "subscription($after: ID) { events(after: $after) { id } }"


async def _write(tenant: Tenant, count: int) -> None:
    for i in range(count):
        await tenant.create_task(f"w{i}")


def _writers(server: LiveServer, tenant: str, count: int, each: int) -> list[asyncio.Task[None]]:
    """``count`` operators creating ``each`` tasks at once, over HTTP."""
    return [
        asyncio.create_task(_write(Tenant(server, tenant, sub=f"writer{i}"), each))
        for i in range(count)
    ]


async def _ids(ws: Socket, op: str, count: int, within: float = 20) -> list[int]:
    deadline = asyncio.get_running_loop().time() + within
    ids = []
    for _ in range(count):
        remaining = max(deadline - asyncio.get_running_loop().time(), 0.01)
        ids.append(int((await ws.field(op, remaining))["id"]))
    return ids


async def test_events_after_replays_then_goes_live_with_no_gap_or_duplicate_while_writers_run(
    server: LiveServer, tenant: str
) -> None:
    # More history than one replay batch (500), committed 100 per transaction.
    await commit_tasks(server, tenant, 520, publisher=server.runtime.bus, per_transaction=100)
    writers = _writers(server, tenant, 4, 20)
    bus = server.runtime.bus
    viewer = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, viewer) as ws:
        await until(lambda: bus.last_seen(tenant) >= 525, what="the writers under way")
        await ws.subscribe("all", IDS, {"after": "0"})
        await ws.subscribe("tail", IDS, {"after": "510"})
        await ws.subscribe("live", IDS)
        await subscribed(server, 3)
        joined_at = bus.last_seen(tenant)
        assert not all(w.done() for w in writers), "the writers must still be writing"
        await asyncio.gather(*writers)
        every = await _ids(ws, "all", 600)
        tail = await _ids(ws, "tail", 90)
        live_first = int((await ws.field("live"))["id"])
        await ws.silent("all", 0.2)
        await ws.silent("tail", 0.01)
    history = await Tenant(server, tenant).event_ids()

    assert every == history == list(range(1, 601))
    assert tail == list(range(511, 601))
    assert live_first <= joined_at + 1  # live only: nothing before it joined, nothing missed


async def test_a_dropped_socket_resumes_from_its_last_event_id_without_loss_under_four_writers(
    server: LiveServer, tenant: str
) -> None:
    writers = _writers(server, tenant, 4, 25)
    viewer = server.token("VIEWER", tenant=tenant)
    first = await Socket.open(server.ws_url, viewer)
    await first.subscribe("s", IDS, {"after": "0"})
    received = await _ids(first, "s", 30)
    first.abort()  # the network fails mid-stream: no close handshake
    assert not all(w.done() for w in writers), "the drop must happen while writers write"
    async with await Socket.open(server.ws_url, viewer) as second:
        await second.subscribe("s", IDS, {"after": str(received[-1])})
        await asyncio.gather(*writers)
        received += await _ids(second, "s", 100 - len(received))
        await second.silent("s", 0.2)
    history = await Tenant(server, tenant).event_ids()

    assert received == history == list(range(1, 101))
    await first.close()
    await nothing_left(server)


async def test_a_lost_publish_is_filled_from_the_outbox_when_the_next_event_reveals_the_gap(
    settings: Settings, tenant: str
) -> None:
    # No periodic head check here: only the next id can reveal the gap.
    with serving(settings, gap_check_interval=60) as server:
        viewer = server.token("VIEWER", tenant=tenant)
        async with await Socket.open(server.ws_url, viewer) as ws:
            await ws.subscribe("live", IDS)
            await ws.subscribe("tasks", "subscription { taskUpdates { title } }")
            await subscribed(server, 2)
            filled = Metrics.value(server.runtime.metrics.gaps_filled)
            lossy = DroppingPublisher(server.runtime.bus, drop={1})
            await commit_tasks(server, tenant, 4, publisher=lossy)
            ids = await _ids(
                ws,
                "live",
                4,
            )
            titles = [(await ws.field("tasks"))["title"] for _ in range(4)]
            await ws.silent("live", 0.2)
        assert Metrics.value(server.runtime.metrics.gaps_filled) > filled

    assert lossy.dropped == [2]
    assert ids == [1, 2, 3, 4]
    assert titles == ["t0", "t1", "t2", "t3"]


async def test_a_lost_last_publish_is_delivered_by_the_periodic_head_check(
    server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, viewer) as ws:
        await ws.subscribe("live", IDS)
        await subscribed(server, 1)
        lossy = DroppingPublisher(server.runtime.bus, drop={2})
        await commit_tasks(server, tenant, 3, publisher=lossy)
        ids = await _ids(
            ws,
            "live",
            3,
        )  # head check every 0.5 s
        await ws.silent("live", 0.2)
    assert lossy.dropped == [3]
    assert ids == [1, 2, 3]


class ReorderingPublisher:
    """Announces a transaction's events last first, then all of them again."""

    def __init__(self, inner: EventBus) -> None:
        self.inner = inner

    async def publish(self, records: Sequence[EventRecord]) -> None:
        for record in [*reversed(records), *records]:
            await self.inner.publish([record])


async def test_reordered_and_repeated_publishes_are_delivered_once_in_order_within_the_buffer(
    settings: Settings, tenant: str
) -> None:
    # A buffer exactly as large as the batch: an event counted twice would overflow it.
    with serving(settings, gap_check_interval=60, subscriber_buffer=3) as server:
        viewer = server.token("VIEWER", tenant=tenant)
        async with await Socket.open(server.ws_url, viewer) as ws:
            await ws.subscribe("live", IDS)
            await subscribed(server, 1)
            await commit_tasks(
                server,
                tenant,
                3,
                publisher=ReorderingPublisher(server.runtime.bus),
                per_transaction=3,
            )
            ids = await _ids(
                ws,
                "live",
                3,
            )
            await ws.silent("live", 0.3)
        assert Metrics.value(server.runtime.metrics.slow_consumers) == 0
    assert ids == [1, 2, 3]
