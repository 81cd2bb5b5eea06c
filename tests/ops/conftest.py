"""Fixtures of the operations tests: a database behind a proxy the test can cut."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.ops.proxy import TcpProxy, tcp_proxy
from tests.support import databases


@pytest.fixture
def postgres_via_proxy() -> Iterator[tuple[str, TcpProxy]]:
    """A fresh PostgreSQL database reached through a proxy the test can cut."""
    databases.require("PostgreSQL", databases.postgres_reachable())
    url, name = databases.create_pg_database()
    target = urlsplit(url)
    try:
        with tcp_proxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
            netloc = f"{target.username}@127.0.0.1:{proxy.port}"
            yield target._replace(netloc=netloc).geturl(), proxy
    finally:
        databases.drop_pg_database(name)
