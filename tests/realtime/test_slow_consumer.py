"""One subscriber that stops reading never stalls the others, and ends with SLOW_CONSUMER."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from api.metrics import Metrics
from api.settings import Settings
from tests.realtime.activity import PacedPublisher, Tenant, commit_tasks
from tests.realtime.conftest import nothing_left, serving, subscribed
from tests.realtime.wire import Socket
from tests.support.waiting import until

EVENTS = 2000
FAST = 20
BUFFER = 50
# The stalled operation asks for the task's input: ~8 KB a message. Loopback send buffers
# autotune up to tcp_wmem's maximum (4 MiB here) before the server's writes block, so
# some 500 messages fill them and the rest of the 2,000 overflow the buffer.
SLOW = "subscription { events { id type task { id title input } } }"
IDS = "subscription($after: ID) { events(after: $after) { id } }"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Fan-out runs from the bus, not the database: 40,000 deliveries once are enough.

    (Resuming from the outbox is tested on both databases in test_delivery.)
    """
    yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('slow') / 'mark1.db'}"


async def _drain(ws: Socket, op: str, count: int, within: float) -> list[int]:
    """Ids of ``count`` results; stops early at anything else."""
    deadline = asyncio.get_running_loop().time() + within
    ids: list[int] = []
    while len(ids) < count:
        remaining = max(deadline - asyncio.get_running_loop().time(), 0.01)
        message = await ws.message(op, remaining)
        if message["type"] != "next":
            raise AssertionError(f"{op} after {len(ids)} results: {message}")
        ids.append(int(message["payload"]["data"]["events"]["id"]))
    return ids


async def test_a_stalled_subscriber_gets_slow_consumer_while_twenty_others_receive_everything(
    settings: Settings, tenant: str
) -> None:
    with serving(settings, subscriber_buffer=BUFFER, gap_check_interval=60) as server:
        t = Tenant(server, tenant)
        viewer = server.token("VIEWER", tenant=tenant)
        stalled = await Socket.open(server.ws_url, viewer, receive_buffer=4096)
        await stalled.subscribe("slow", SLOW)
        # A second operation on the same socket that matches (almost) nothing.
        await stalled.subscribe("few", "subscription { taskUpdates(status: [CANCELLED]) { id } }")
        fast = [await Socket.open(server.ws_url, viewer) for _ in range(FAST // 4)]
        for ws in fast:
            for op in "abcd":
                await ws.subscribe(op, IDS)
        await subscribed(server, FAST + 2)
        stalled.pause()

        writing = asyncio.create_task(
            commit_tasks(
                server,
                tenant,
                EVENTS,
                publisher=PacedPublisher(server.runtime.bus),
                per_transaction=100,
                input={"blob": "x" * 8000},
            )
        )
        started = asyncio.get_running_loop().time()
        received = await asyncio.gather(
            *(_drain(ws, op, EVENTS, within=60) for ws in fast for op in "abcd")
        )
        took = asyncio.get_running_loop().time() - started
        await writing
        assert all(ids == list(range(1, EVENTS + 1)) for ids in received)
        # The stalled operation's own execution may still be catching up.
        slow = server.runtime.metrics.slow_consumers
        await until(lambda: Metrics.value(slow) >= 1, 60, "the stalled operation to overflow")
        assert Metrics.value(slow) == 1

        # The stalled client reads again: what the server had sent, then SLOW_CONSUMER.
        stalled.resume()
        delivered: list[int] = []
        while True:
            message = await stalled.message("slow", within=10)
            if message["type"] != "next":
                break
            delivered.append(int(message["payload"]["data"]["events"]["id"]))
        assert message["type"] == "error", message
        (error,) = message["payload"]
        assert error["extensions"]["code"] == "SLOW_CONSUMER"
        assert error["extensions"]["lastEventId"] == str(delivered[-1])
        assert delivered == list(range(1, len(delivered) + 1))
        assert len(delivered) < EVENTS - BUFFER

        # The other operation on that socket goes on, and new ones work.
        cancelled = await t.create_task("to cancel")
        await t.cancel_task(cancelled["id"])
        assert await stalled.field("few") == {"id": cancelled["id"]}
        # Resuming from lastEventId loses nothing.
        await stalled.subscribe("resume", IDS, {"after": error["extensions"]["lastEventId"]})
        rest = await _drain(stalled, "resume", EVENTS + 2 - len(delivered), within=30)
        assert delivered + rest == list(range(1, EVENTS + 3))
        await stalled.silent("slow", 0.05)

        for ws in [stalled, *fast]:
            await ws.close()
        await nothing_left(server)
    print(f"{FAST} subscribers x {EVENTS} events in {took:.1f}s")
