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
from tests.support.server import LiveServer, live_server

TEST_SECRET = secrets.token_urlsafe(48)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Every database test runs on SQLite and on PostgreSQL (tenants keep tests apart)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'mark1.db'}"
        return
    databases.require("PostgreSQL", databases.postgres_reachable())
    url, name = databases.create_pg_database()
    try:
        yield url
    finally:
        databases.drop_pg_database(name)


@pytest.fixture
def tenant() -> str:
    """A tenant of its own for each test, so tests sharing a database never meet."""
    return f"t{secrets.token_hex(6)}"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        database_url=database_url,
        jwt_secret=TEST_SECRET,  # type: ignore[arg-type]
        broadcast_url="memory://",
        broadcast_channel=f"mark1_test_{secrets.token_hex(6)}",
        gap_check_interval=0.5,
        sweep_interval=0.2,
    )


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
