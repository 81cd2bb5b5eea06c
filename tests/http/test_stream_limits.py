"""HTTP subscription streams under the socket limits: slots per subject and SLOW_CONSUMER."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from api.metrics import Metrics
from api.settings import Settings
from tests.http.streams import (
    MULTIPART,
    SSE,
    all_closed,
    multipart,
    request_body,
    sse,
    streams_open,
    subscribed,
)
from tests.realtime.activity import PacedPublisher, Tenant, commit_tasks
from tests.realtime.conftest import serving
from tests.support.graphql import WSClient
from tests.support.server import LiveServer
from tests.support.waiting import until

TASKS = "subscription { taskUpdates { title status } }"
# ~60 KB a message: loopback send buffers take up to 4 MiB (tcp_wmem) before the
# server's writes wait, so some 70 of these fill them; the rest overflow the buffer.
BIG = "subscription { events { id task { input } } }"
EVENTS = 200
BUFFER = 20


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('limits') / 'mark1.db'}"


@pytest.fixture(scope="module")
def server(module_settings: Settings) -> Iterator[LiveServer]:
    """Tight limits: two connections per subject, small buffers, one mutation per subject."""
    with serving(
        module_settings,
        max_sockets_per_subject=2,
        subscriber_buffer=BUFFER,
        mutation_burst=1,
        mutation_rate=0.01,
        max_message_bytes=64 * 1024,
    ) as live:
        yield live


async def test_streams_and_sockets_share_the_subjects_connection_slots(
    server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", sub="one", tenant=tenant)
    async with httpx.AsyncClient(timeout=30) as client:
        socket_ = await WSClient.connect(server.ws_url, viewer)  # acknowledged: holds a slot
        async with sse(client, server, viewer, TASKS) as first:
            assert first.response.status_code == 200
            full = await client.post(
                server.url,
                json=request_body(TASKS),
                headers={"Accept": MULTIPART, "Authorization": f"Bearer {viewer}"},
            )
            assert full.status_code == 429
            assert full.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
            reserve = await client.put(server.url, headers={"Authorization": f"Bearer {viewer}"})
            assert reserve.status_code == 429
            # Another subject has slots of its own; systemMetrics counts every connection.
            operator = Tenant(server, tenant)
            metrics = await operator.run("{ systemMetrics { connections } }")
            assert metrics["systemMetrics"]["connections"] == 2
        await socket_.close()
        # Both gone on the server's side too: their slots are free again.
        await until(
            lambda: Metrics.value(server.runtime.metrics.sockets) == 0 and streams_open(server) == 0
        )
        async with multipart(client, server, viewer, TASKS) as parts:
            assert parts.response.status_code == 200
        await all_closed(server)


async def test_a_stream_whose_client_stops_reading_ends_with_slow_consumer_and_can_resume(
    server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    # A fixed receive window (no autotuning up to 32 MiB): the server's writes back up
    # once it and the send buffer are full; large enough to read back quickly.
    transport = httpx.AsyncHTTPTransport(
        socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)]
    )
    async with (
        httpx.AsyncClient(timeout=30, transport=transport) as stalled,
        sse(stalled, server, viewer, BIG) as stream,
    ):
        await subscribed(server, 1)
        await commit_tasks(
            server,
            tenant,
            EVENTS,
            # Paced, so the shared execution keeps up and the overflow is the stream's
            # own (a group that falls behind its bus buffer ends all its members).
            publisher=PacedPublisher(server.runtime.bus, pause=0.005),
            per_transaction=20,
            input={"blob": "x" * 60_000},
        )
        slow = server.runtime.metrics.slow_consumers
        await until(lambda: Metrics.value(slow) == 1, 60, "the stream to overflow")
        # Reading again: what was sent, then SLOW_CONSUMER, then complete.
        delivered: list[int] = []
        while (result := await stream.expect("next"))["data"] is not None:
            delivered.append(int(result["data"]["events"]["id"]))
        await stream.expect("complete")
        await stream.ended()
    (error,) = result["errors"]
    assert error["extensions"] == {"code": "SLOW_CONSUMER", "lastEventId": str(delivered[-1])}
    assert delivered == list(range(1, len(delivered) + 1))
    assert len(delivered) < EVENTS - BUFFER
    await all_closed(server)

    # Resuming after lastEventId loses nothing.
    query = "subscription($after: ID) { events(after: $after) { id } }"
    async with (
        httpx.AsyncClient(timeout=30) as client,
        sse(client, server, viewer, query, {"after": str(delivered[-1])}) as again,
    ):
        rest = [
            int((await again.expect("next"))["data"]["events"]["id"])
            for _ in range(EVENTS - len(delivered))
        ]
    assert delivered + rest == list(range(1, EVENTS + 1))
    await all_closed(server)


async def test_mutations_over_sse_are_rate_limited_and_bodies_over_the_limit_refused(
    server: LiveServer, tenant: str
) -> None:
    operator = server.token("OPERATOR", sub="busy", tenant=tenant)
    create = 'mutation { createTask(input: {title: "t"}) { title } }'
    async with httpx.AsyncClient(timeout=30) as client:
        async with sse(client, server, operator, create) as first:
            assert await first.expect("next") == {"data": {"createTask": {"title": "t"}}}
        async with sse(client, server, operator, create) as second:
            limited = await second.expect("next")
        huge = request_body("subscription { events { id } }", {"pad": "x" * 70_000})
        too_big = await client.post(
            server.url, json=huge, headers={"Accept": SSE, "Authorization": f"Bearer {operator}"}
        )
    (error,) = limited["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["extensions"]["retryAfter"] > 0
    assert too_big.status_code == 413
    await all_closed(server)


async def test_a_client_that_stops_reading_for_good_loses_its_stream_and_everything_it_held(
    module_settings: Settings, tenant: str
) -> None:
    with serving(module_settings, http_stream_keepalive=0.1, ws_ping_timeout=0.5) as server:
        viewer = server.token("VIEWER", tenant=tenant)
        transport = httpx.AsyncHTTPTransport(
            socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)]
        )
        async with (
            httpx.AsyncClient(timeout=30, transport=transport) as stalled,
            sse(stalled, server, viewer, BIG),
        ):
            await subscribed(server, 1)
            await commit_tasks(
                server,
                tenant,
                EVENTS,
                publisher=PacedPublisher(server.runtime.bus),
                per_transaction=20,
                input={"blob": "x" * 60_000},
            )
            # Never reads again: the server lets go of it all the same.
            await all_closed(server)
