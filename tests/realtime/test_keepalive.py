"""The transport keepalive: a client that stops reading is closed with 1011, on a schedule
set by MARK1_WS_PING_INTERVAL and MARK1_WS_PING_TIMEOUT."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.cli.server import uvicorn_config
from api.metrics import Metrics
from api.settings import Settings
from tests.realtime.activity import PacedPublisher, Tenant, commit_tasks
from tests.realtime.conftest import nothing_left, serving, subscribed
from tests.realtime.wire import Protocol, Socket
from tests.support.server import make_settings
from tests.support.waiting import until

BUFFER = 20
# ~2 KB a message: a few dozen fill the socket buffers and the server's writes block.
SLOW = "subscription { events { id type task { id title input } } }"
EVENTS = "subscription { events { id } }"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The keepalive is the transport's business: one database is enough."""
    yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('keepalive') / 'mark1.db'}"


def test_the_ping_settings_reach_uvicorn(tmp_path: Path) -> None:
    """`mark1 serve` and the test servers build uvicorn's config with uvicorn_config."""
    defaults = make_settings("sqlite+aiosqlite://", tmp_path)
    config = uvicorn_config(defaults, object())
    assert (config.ws_ping_interval, config.ws_ping_timeout) == (20.0, 20.0)
    tuned = make_settings("sqlite+aiosqlite://", tmp_path, ws_ping_interval=3, ws_ping_timeout=4)
    config = uvicorn_config(tuned, object())
    assert (config.ws_ping_interval, config.ws_ping_timeout) == (3.0, 4.0)


@pytest.mark.parametrize("name", ["ws_ping_interval", "ws_ping_timeout"])
@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_ping_settings_must_be_positive_seconds(
    name: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"MARK1_{name.upper()}", value)
    with pytest.raises(ValueError, match=name):
        Settings(_env_file=None, data_dir=tmp_path)


async def test_a_client_that_stops_reading_is_closed_with_1011_after_interval_plus_timeout(
    settings: Settings, tenant: str, protocol: Protocol
) -> None:
    with serving(settings, ws_ping_interval=0.5, ws_ping_timeout=0.5) as server:
        t = Tenant(server, tenant)
        viewer = server.token("VIEWER", tenant=tenant)
        reader = await Socket.open(server.ws_url, viewer, protocol=protocol)
        stalled = await Socket.open(server.ws_url, viewer, protocol=protocol, receive_buffer=4096)
        await stalled.subscribe("e", EVENTS)
        await subscribed(server, 1, within=30)
        stalled.pause()
        loop = asyncio.get_running_loop()
        for _ in range(3):  # its websockets library stops reading once a message waits
            await t.create_task()
        started = loop.time()
        # Well under the default 20 s interval: the short settings are the ones in force.
        await until(lambda: Metrics.value(server.runtime.metrics.sockets) == 1, 15, "a close")
        took = loop.time() - started

        stalled.resume()
        for _ in range(3):
            await stalled.next("e", within=30)
        assert await stalled.closed(within=30) == (1011, "keepalive ping timeout")
        await stalled.close()
        # A client that reads (its library answers pings) keeps its socket.
        await reader.subscribe("e", EVENTS)
        await subscribed(server, 1, within=30)
        await t.create_task()
        await reader.next("e", within=30)
        await reader.close()
        await nothing_left(server, within=30)
    print(f"{protocol}: closed {took:.1f}s after the last event (interval 0.5 s, timeout 0.5 s)")


async def test_a_flooded_client_that_never_reads_again_is_dropped_and_frees_its_subscription(
    settings: Settings, tenant: str
) -> None:
    with serving(
        settings, subscriber_buffer=BUFFER, ws_ping_interval=0.5, ws_ping_timeout=0.5
    ) as server:
        viewer = server.token("VIEWER", tenant=tenant)
        stalled = await Socket.open(server.ws_url, viewer, receive_buffer=4096)
        await stalled.subscribe("slow", SLOW)
        await subscribed(server, 1, within=30)
        stalled.pause()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await commit_tasks(
            server,
            tenant,
            200,
            publisher=PacedPublisher(server.runtime.bus),
            per_transaction=100,
            input={"blob": "x" * 2000},
        )
        await nothing_left(server, within=15)
        took = loop.time() - started

        # What it would find on reading again: results, then the end of the connection.
        # SLOW_CONSUMER waited behind the unread results, and the close frame too: both
        # were still in the server's buffers when the keepalive dropped the connection.
        stalled.resume()
        code, _ = await stalled.closed(within=30)
        assert code in (1011, None)  # None: no close frame arrived (1006)
        while stalled.pending("slow"):
            message = await stalled.message("slow")
            assert message["type"] == "next" or (
                message["type"] == "error"
                and message["payload"][0]["extensions"]["code"] == "SLOW_CONSUMER"
            ), message
        await stalled.close()
    print(f"flooded client dropped {took:.1f}s after the flood began")
