"""A subscription sent over plain HTTP is refused clearly, not executed."""

from __future__ import annotations

import httpx

from tests.support.server import LiveServer


async def test_a_subscription_over_http_gets_400_saying_to_use_websocket(
    server: LiveServer,
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            server.url,
            json={"query": "subscription { events { id } }"},
            headers={"Authorization": f"Bearer {server.token('VIEWER')}"},
        )
    assert response.status_code == 400
    assert "WebSocket" in response.text
