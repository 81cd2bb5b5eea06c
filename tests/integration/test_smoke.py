"""The server answers over real HTTP and WebSocket."""

from __future__ import annotations

import httpx

from tests.support.graphql import WSClient, data, gql
from tests.support.server import LiveServer


async def test_task_created_over_http_reaches_a_subscriber(server: LiveServer, tenant: str) -> None:
    token = server.token("OPERATOR", tenant=tenant)
    async with await WSClient.connect(server.ws_url, token) as ws:
        await ws.subscribe("1", "subscription { taskUpdates { title status } }")
        body = await gql(
            server.url, 'mutation { createTask(input: {title: "hi"}) { id } }', token=token
        )
        data(body)
        message = await ws.next_for("1")
    assert message["payload"]["data"]["taskUpdates"] == {"title": "hi", "status": "PENDING"}


async def test_healthz_answers(server: LiveServer) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{server.base}/healthz")).status_code == 200
        ready = await client.get(f"{server.base}/readyz")
    assert ready.json()["checks"] == {"database": "ok", "bus": "ok"}
