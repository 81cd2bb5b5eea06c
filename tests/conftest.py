"""Shared fixtures: real databases (SQLite and PostgreSQL), real servers, tokens."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

from api.app import build_runtime
from api.db.migrate import upgrade
from api.runtime import Runtime
from api.settings import Settings
from tests.support import databases, server_logs
from tests.support.server import LiveServer, live_server, make_settings


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Every database test runs on SQLite and on PostgreSQL (tenants keep tests apart)."""
    with databases.database(request.param, tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture
def pg_database() -> Iterator[databases.PgDatabase]:
    """A fresh PostgreSQL database of the test's own: for tests that run several
    processes or installs, whose background jobs act on every tenant."""
    with databases.fresh_pg_database() as pg:
        yield pg


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


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    server_logs.test_started()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test's report carries the logs of the server processes it used."""
    report = yield
    if report.failed:
        for title, text in server_logs.sections():
            report.sections.append((title, text))
    return report
