"""Minimal GraphQL clients for tests: HTTP POST and graphql-transport-ws."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets

from tests.support.waiting import PATIENCE


async def gql(
    url: str,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
) -> dict[str, Any]:
    """POST a document; returns the whole response body (data and errors)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            url, json={"query": query, "variables": variables or {}}, headers=headers
        )
    body: dict[str, Any] = response.json()
    return body


def data(body: dict[str, Any]) -> dict[str, Any]:
    """The data of a response that must have no errors."""
    assert not body.get("errors"), body.get("errors")
    result: dict[str, Any] = body["data"]
    return result


def error_code(body: dict[str, Any]) -> str:
    errors = body.get("errors") or []
    assert errors, f"expected an error, got {body}"
    code: str = errors[0]["extensions"]["code"]
    return code


class WSClient:
    """A graphql-transport-ws client that exposes the raw protocol for assertions."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def connect(
        cls, url: str, token: str | None = None, *, init: bool = True, **kwargs: Any
    ) -> WSClient:
        ws = await websockets.connect(url, subprotocols=["graphql-transport-ws"], **kwargs)  # type: ignore[list-item]
        client = cls(ws)
        if init:
            payload = {"authorization": f"Bearer {token}"} if token else {}
            await client.send({"type": "connection_init", "payload": payload})
            ack = await client.recv()
            assert ack["type"] == "connection_ack", ack
        return client

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self, within: float = PATIENCE) -> dict[str, Any]:
        """The next message, or TimeoutError after ``within`` seconds."""
        async with asyncio.timeout(within):
            raw = await self.ws.recv()
        message: dict[str, Any] = json.loads(raw)
        return message

    async def subscribe(self, id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        await self.send(
            {
                "id": id,
                "type": "subscribe",
                "payload": {"query": query, "variables": variables or {}},
            }
        )

    async def next_for(self, id: str, within: float = PATIENCE) -> dict[str, Any]:
        """The next message for one operation (others are dropped)."""
        async with asyncio.timeout(within):
            while True:
                message = await self.recv(within)
                if message.get("id") == id:
                    return message

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> WSClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
