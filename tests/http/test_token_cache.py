"""Verified tokens are cached by their text (issue #8), never past their ``exp``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.support.graphql import error_code
from tests.support.server import LiveServer, live_server, make_settings


@pytest.fixture(scope="module")
def strict_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """No leeway: a token is good until its exp, to the second."""
    settings = make_settings(database_url, tmp_path_factory.mktemp("data"), jwt_leeway=0)
    with live_server(settings) as live:
        yield live


async def _me(client: httpx.AsyncClient, server: LiveServer, token: str) -> dict[str, object]:
    reply = await client.post(
        server.url,
        json={"query": "{ me { subject } }"},
        headers={"Authorization": f"Bearer {token}"},
    )
    body: dict[str, object] = reply.json()
    return body


async def test_a_cached_token_is_refused_once_it_expires(
    strict_server: LiveServer, tenant: str, tmp_path: Path
) -> None:
    token = strict_server.token(
        "VIEWER", sub="short-lived", tenant=tenant, ttl=timedelta(seconds=3)
    )
    expires = time.time() + 3
    async with httpx.AsyncClient(timeout=30) as client:
        # Accepted (and so cached) while valid, more than once.
        for _ in range(2):
            assert (await _me(client, strict_server, token))["data"] == {
                "me": {"subject": "short-lived"}
            }
        deadline = time.monotonic() + 60
        while True:
            body = await _me(client, strict_server, token)
            if body.get("errors"):
                break
            assert time.monotonic() < deadline, "the expired token was still accepted"
            await asyncio.sleep(0.2)
    assert error_code(body) == "UNAUTHENTICATED"
    # exp is whole seconds (rounded down when minted): refused no earlier than it.
    assert time.time() >= expires - 1
