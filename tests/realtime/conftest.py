"""Fixtures for the realtime tests: both WebSocket protocols, servers with other settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from api.metrics import Metrics
from api.settings import Settings
from tests.realtime.processes import RedisServer
from tests.realtime.wire import PROTOCOLS, Protocol
from tests.support.server import LiveServer, live_server, make_settings
from tests.support.waiting import PATIENCE, until


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One configuration per module and database; tests keep apart by tenant."""
    return make_settings(database_url, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def shared_server(settings: Settings) -> Iterator[LiveServer]:
    with live_server(settings) as live:
        yield live


@pytest.fixture
async def server(shared_server: LiveServer) -> LiveServer:
    """The module's server, once the previous test's sockets are gone: a leak shows here."""
    await nothing_left(shared_server)
    return shared_server


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> Protocol:
    """Each test taking this runs over graphql-transport-ws and the legacy graphql-ws."""
    value: Protocol = request.param
    return value


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server, started: a test may publish on its channels by hand, or
    kill and restart it."""
    with RedisServer.required(tmp_path) as redis:
        yield redis


@contextmanager
def serving(settings: Settings, **overrides: Any) -> Iterator[LiveServer]:
    """A live server with some settings changed."""
    with live_server(settings.model_copy(update=overrides)) as live:
        yield live


async def subscribed(server: LiveServer, count: int, within: float = PATIENCE) -> None:
    """Wait until exactly ``count`` subscription operations receive live events.

    Reads the ``subscriptions`` gauge (active operations, counted once each has joined
    the bus), so it holds however operations share bus subscriptions.
    """
    gauge = server.runtime.metrics.subscriptions
    await until(
        lambda: Metrics.value(gauge) == count,
        within,
        f"{count} live subscriptions (have {Metrics.value(gauge)})",
    )


async def nothing_left(server: LiveServer, within: float = PATIENCE) -> None:
    """Wait until the server holds no subscriber, subscription or socket."""
    rt = server.runtime

    def clean() -> bool:
        return (
            rt.bus.subscriber_count == 0
            and Metrics.value(rt.metrics.subscriptions) == 0
            and Metrics.value(rt.metrics.sockets) == 0
        )

    await until(
        clean,
        within,
        f"no leftovers (bus={rt.bus.subscriber_count},"
        f" subscriptions={Metrics.value(rt.metrics.subscriptions)},"
        f" sockets={Metrics.value(rt.metrics.sockets)})",
    )
