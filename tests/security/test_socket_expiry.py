"""A socket lives no longer than its token; the client resumes from its last event id."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import jwt
import websockets

from tests.security.support import closed_with
from tests.support.graphql import WSClient, data, gql
from tests.support.server import LiveServer

CREATE = "mutation($t: String!) { createTask(input: {title: $t}) { id } }"
EVENTS = "subscription($after: ID) { events(after: $after) { id type task { title } } }"


def exp_of(token: str) -> float:
    return float(jwt.decode(token, options={"verify_signature": False})["exp"])


async def create(server: LiveServer, token: str, *titles: str) -> None:
    for title in titles:
        data(await gql(server.url, CREATE, {"t": title}, token=token))


async def legacy_connect(server: LiveServer, token: str) -> websockets.ClientConnection:
    ws = await websockets.connect(server.ws_url, subprotocols=["graphql-ws"])  # type: ignore[list-item]
    await ws.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    )
    ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert ack["type"] == "connection_ack", ack
    return ws


async def test_a_socket_is_closed_with_4403_at_exp_and_the_client_resumes_without_loss(
    server: LiveServer, tenant: str
) -> None:
    operator = server.token("OPERATOR", sub="op", tenant=tenant)
    short = server.token("VIEWER", sub="watcher", tenant=tenant, ttl=timedelta(seconds=3))
    exp = exp_of(short)
    await create(server, operator, "one", "two")

    ws = await WSClient.connect(server.ws_url, short)
    legacy = await legacy_connect(server, short)
    await ws.subscribe("e", EVENTS, {"after": "0"})
    seen: list[dict[str, Any]] = []
    for _ in range(2):
        seen.append((await ws.next_for("e"))["payload"]["data"]["events"])
    await create(server, operator, "three")
    seen.append((await ws.next_for("e"))["payload"]["data"]["events"])
    last_id = seen[-1]["id"]

    codes = await asyncio.gather(
        closed_with(ws.ws, within=exp - time.time() + 3),
        closed_with(legacy, within=exp - time.time() + 3),
    )
    closed_at = time.time()
    assert list(codes) == [4403, 4403]
    assert ws.ws.close_reason == "Token expired"
    assert exp - 0.05 <= closed_at <= exp + 1.0, f"closed {closed_at - exp:+.3f}s from exp"

    # Events that happen while the client is away...
    await create(server, operator, "four", "five")
    fresh = server.token("VIEWER", sub="watcher", tenant=tenant)
    async with await WSClient.connect(server.ws_url, fresh) as again:
        await again.subscribe("e", EVENTS, {"after": last_id})
        for _ in range(2):
            seen.append((await again.next_for("e"))["payload"]["data"]["events"])
        # ...then live ones, over the same operation.
        await create(server, operator, "six")
        seen.append((await again.next_for("e"))["payload"]["data"]["events"])

    assert [e["id"] for e in seen] == ["1", "2", "3", "4", "5", "6"]
    assert [e["task"]["title"] for e in seen] == ["one", "two", "three", "four", "five", "six"]


async def test_a_token_accepted_within_leeway_closes_its_socket_at_once(
    server: LiveServer, tenant: str
) -> None:
    """JWT_LEEWAY lets a just-expired token in; an open socket gets no leeway."""
    late = server.token("VIEWER", tenant=tenant, ttl=timedelta(seconds=-3))
    assert data(await gql(server.url, "{ me { subject } }", token=late))
    started = time.monotonic()
    ws = await WSClient.connect(server.ws_url, late)
    assert await closed_with(ws.ws, within=3) == 4403
    # Well inside the 7 s of leeway left, the bound a socket granted leeway would meet.
    assert time.monotonic() - started < 5.0
