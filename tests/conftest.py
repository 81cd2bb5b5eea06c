"""Shared fixtures: real databases (SQLite and PostgreSQL), real servers, tokens."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from api.app import build_runtime
from api.db.migrate import upgrade
from api.runtime import Runtime
from api.settings import Settings
from tests.support import databases
from tests.support.server import LiveServer, live_server, make_settings


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Every database test runs on SQLite and on PostgreSQL (tenants keep tests apart)."""
    with databases.database(request.param, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def tenant() -> str:
    """A tenant of its own for each test, so tests sharing a database never meet."""
    return f"t{secrets.token_hex(6)}"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    with live_server(settings) as live:
        yield live


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """The services with a started bus, without HTTP: for testing domain rules directly."""
    rt = build_runtime(settings)
    await upgrade(rt.db)
    await rt.bus.start()
    try:
        yield rt
    finally:
        await rt.bus.stop()
        await rt.db.close()
