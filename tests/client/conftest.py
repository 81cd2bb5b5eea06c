"""Fixtures for SDK tests: clients on a live server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mark1_client import Mark1Client
from tests.support.server import LiveServer


@pytest.fixture
async def operator(server: LiveServer, tenant: str) -> AsyncIterator[Mark1Client]:
    async with Mark1Client(server.url, server.token("OPERATOR", tenant=tenant)) as client:
        yield client
