"""A subscription sent over plain HTTP (no event-stream or multipart Accept) is refused
clearly, not executed."""

from __future__ import annotations

import httpx

from tests.support.server import LiveServer


async def test_a_subscription_over_http_gets_400_naming_the_transports_that_run_it(
    server: LiveServer,
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            server.url,
            json={"query": "subscription { events { id } }"},
            headers={"Authorization": f"Bearer {server.token('VIEWER')}"},
        )
    assert response.status_code == 400
    for way in ("WebSocket", "text/event-stream", "multipart/mixed"):
        assert way in response.text
