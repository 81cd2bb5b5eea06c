"""Fixtures for the security suite: servers with hardened or tightened settings.

Authorization, limits and hostile input do not depend on the database engine,
so these tests run on SQLite only, except where a test asks for both with
``@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)``
(the masked-INTERNAL test drops a table on each engine).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from api.settings import Settings
from tests.conftest import TEST_SECRET
from tests.support import databases
from tests.support.server import LiveServer, live_server


@pytest.fixture(scope="session")
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'mark1.db'}"
        return
    databases.require("PostgreSQL", databases.postgres_reachable())
    url, name = databases.create_pg_database()
    try:
        yield url
    finally:
        databases.drop_pg_database(name)


def base_settings(database_url: str, data_dir: object, **overrides: Any) -> Settings:
    """Test settings (fresh bus channel, fast sweeps) with ``overrides`` applied and
    validated, as they would be from the environment."""
    fields: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "jwt_secret": TEST_SECRET,
        "broadcast_url": "memory://",
        "broadcast_channel": f"mark1_test_{secrets.token_hex(6)}",
        "gap_check_interval": 0.5,
        "sweep_interval": 0.2,
    }
    return Settings(_env_file=None, **{**fields, **overrides})


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
