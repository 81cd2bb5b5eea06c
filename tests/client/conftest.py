"""Helpers for SDK tests: clients on a live server, and waiting for conditions."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from mark1_client import Mark1Client
from tests.support.server import LiveServer


async def until(
    condition: Callable[[], bool | Awaitable[bool]], what: str, within: float = 30
) -> None:
    """Poll ``condition`` (sync or async) until true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def operator(server: LiveServer, tenant: str) -> AsyncIterator[Mark1Client]:
    async with Mark1Client(server.url, server.token("OPERATOR", tenant=tenant)) as client:
        yield client
