"""Fixtures for the security suite: servers with hardened or tightened settings.

Authorization, limits and hostile input do not depend on the database engine,
so these tests run on SQLite only, except where a test asks for both with
``@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)``
(the masked-INTERNAL test drops a table on each engine).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import databases
from tests.support.server import LiveServer, live_server, make_settings


@pytest.fixture(scope="session")
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    kind = getattr(request, "param", "sqlite")
    with databases.database(kind, tmp_path_factory.mktemp("db")) as url:
        yield url


base_settings = make_settings


@pytest.fixture(scope="module")
def module_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One server for a whole module, with room for many mutations per subject, and
    agents that never time out (so no status change happens behind a test's back)."""
    settings = base_settings(
        database_url,
        tmp_path_factory.mktemp("data"),
        mutation_rate=10_000.0,
        mutation_burst=10_000,
        heartbeat_timeout=3600.0,
        offline_after=7200.0,
    )
    with live_server(settings) as live:
        yield live
