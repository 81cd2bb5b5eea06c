"""One real server per module and database: tests stay apart by tenant, and stay fast."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from api.settings import Settings
from tests.http.helpers import Api
from tests.http.streams import all_closed
from tests.support.server import LiveServer, live_server, shared_settings


@pytest.fixture(scope="module")
def module_settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return shared_settings(database_url, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def server(module_settings: Settings) -> Iterator[LiveServer]:
    """The real app under uvicorn on a free loopback port, shared by the module's tests."""
    with live_server(module_settings) as live:
        yield live


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """A plain client, once the previous test's HTTP streams are all gone: a stream the
    server leaked shows here."""
    await all_closed(server)
    async with httpx.AsyncClient(timeout=30) as c:
        yield c


@pytest.fixture
async def api(server: LiveServer, tenant: str) -> AsyncIterator[Api]:
    """A client of the shared server acting in this test's own tenant."""
    async with Api(server, tenant) as client:
        yield client
