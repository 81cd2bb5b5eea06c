"""A raw WebSocket GraphQL client for both protocols, sorting messages per operation.

``Socket`` speaks graphql-transport-ws (``subscribe``/``next``/``error``/``complete``)
or the legacy graphql-ws (``start``/``data``/``error``/``stop``/``complete``, ``ka``)
and exposes every wire message, so tests can assert exact messages and close codes.
Every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import defaultdict
from typing import Any, Literal
from urllib.parse import urlparse

import websockets
from websockets.exceptions import ConnectionClosed

from tests.support.waiting import PATIENCE

Protocol = Literal["graphql-transport-ws", "graphql-ws"]

TRANSPORT_WS: Protocol = "graphql-transport-ws"
LEGACY_WS: Protocol = "graphql-ws"
PROTOCOLS: tuple[Protocol, ...] = (TRANSPORT_WS, LEGACY_WS)

Message = dict[str, Any]


class ProtocolError(AssertionError):
    """The server sent something the test did not expect."""


class Socket:
    """One WebSocket; a reader task files incoming messages by operation id."""

    def __init__(self, ws: websockets.ClientConnection, protocol: Protocol) -> None:
        self.ws = ws
        self.protocol = protocol
        self.control: asyncio.Queue[Message] = asyncio.Queue()
        self._ops: defaultdict[str, asyncio.Queue[Message]] = defaultdict(asyncio.Queue)
        self._reading = asyncio.Event()
        self._reading.set()
        self._closed = asyncio.Event()
        self.keep_alives = 0
        self._reader = asyncio.create_task(self._read())

    # -- opening ----------------------------------------------------------

    @classmethod
    async def open(
        cls,
        url: str,
        token: str | None = None,
        *,
        protocol: Protocol = TRANSPORT_WS,
        init: bool = True,
        payload: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        receive_buffer: int | None = None,
    ) -> Socket:
        """Connect, and (unless ``init=False``) send connection_init and await the ack.

        ``receive_buffer`` shrinks the kernel's receive buffer, so a client that
        stops reading pushes back on the server after a few kilobytes.
        """
        kwargs: dict[str, Any] = {
            "subprotocols": [protocol],
            "open_timeout": 10,
            "close_timeout": 2,
            "additional_headers": headers or {},
            # Small JSON messages gain nothing from permessage-deflate; it only costs CPU
            # on both ends (the JS client tests keep it on, as browsers do).
            "compression": None,
        }
        if receive_buffer is not None:
            parsed = urlparse(url)
            raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            raw.setblocking(False)
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(raw, (parsed.hostname, parsed.port)), 10
            )
            # websockets pauses reading its transport once this many messages wait unread.
            kwargs.update(sock=raw, max_queue=1)
        ws = await websockets.connect(url, **kwargs)
        client = cls(ws, protocol)
        if init:
            if payload is None:
                payload = {"authorization": f"Bearer {token}"} if token else {}
            await client.send({"type": "connection_init", "payload": payload})
            ack = await client.control_message()
            if ack["type"] != "connection_ack":
                await client.close()
                raise ProtocolError(f"expected connection_ack, got {ack}")
        return client

    async def __aenter__(self) -> Socket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- reading ----------------------------------------------------------

    async def _read(self) -> None:
        try:
            while True:
                await self._reading.wait()
                raw = await self.ws.recv()
                message: Message = json.loads(raw)
                if message.get("type") == "ka":
                    self.keep_alives += 1
                    continue
                op = message.get("id")
                if op is None:
                    self.control.put_nowait(message)
                else:
                    self._ops[str(op)].put_nowait(message)
        except ConnectionClosed:
            pass
        finally:
            self._closed.set()

    def pause(self) -> None:
        """Stop reading: the server's writes back up into the socket buffers."""
        self._reading.clear()

    def resume(self) -> None:
        self._reading.set()

    async def control_message(self, within: float = PATIENCE) -> Message:
        """The next message without an operation id (ack, pong, connection_error)."""
        return await _get(self.control, within, "a control message")

    async def message(self, op: str, within: float = PATIENCE) -> Message:
        """The next message for operation ``op``, whatever its type."""
        return await _get(self._ops[op], within, f"a message for operation {op!r}")

    async def next(self, op: str, within: float = PATIENCE) -> Any:
        """The data of the next result for ``op``; fails on errors or completion."""
        message = await self.message(op, within)
        if message["type"] not in ("next", "data"):
            raise ProtocolError(f"expected a result for {op!r}, got {message}")
        payload = message["payload"]
        if payload.get("errors"):
            raise ProtocolError(f"result for {op!r} has errors: {payload['errors']}")
        return payload["data"]

    async def field(self, op: str, within: float = PATIENCE) -> Any:
        """The one root field of the next result for ``op``."""
        data = await self.next(op, within)
        (value,) = data.values()
        return value

    async def error(self, op: str, within: float = PATIENCE) -> dict[str, Any]:
        """The first GraphQL error that ends ``op`` (an ``error`` message)."""
        message = await self.message(op, within)
        if message["type"] != "error":
            raise ProtocolError(f"expected an error for {op!r}, got {message}")
        payload = message["payload"]
        # graphql-transport-ws sends a list of errors; the legacy protocol one error.
        first: dict[str, Any] = payload[0] if isinstance(payload, list) else payload
        return first

    async def failure(self, op: str, within: float = PATIENCE) -> dict[str, Any]:
        """The first error of an operation that ends because of it.

        graphql-transport-ws ends it with one ``error`` message (PROTOCOL.md). The
        legacy protocol sends ``error`` only for a document that does not validate;
        an error raised by the resolver arrives, as in subscriptions-transport-ws's
        own server, as ``data`` with null data and the errors, then ``complete``.
        """
        message = await self.message(op, within)
        if self.protocol == TRANSPORT_WS or message["type"] == "error":
            if message["type"] != "error":
                raise ProtocolError(f"expected an error for {op!r}, got {message}")
            payload = message["payload"]
            return payload[0] if isinstance(payload, list) else payload  # type: ignore[no-any-return]
        if message["type"] != "data" or message["payload"].get("data") is not None:
            raise ProtocolError(f"expected data with errors for {op!r}, got {message}")
        await self.completed(op, within)
        first: dict[str, Any] = message["payload"]["errors"][0]
        return first

    async def completed(self, op: str, within: float = PATIENCE) -> None:
        message = await self.message(op, within)
        if message["type"] != "complete":
            raise ProtocolError(f"expected complete for {op!r}, got {message}")

    async def silent(self, op: str, window: float) -> None:
        """Assert that nothing arrives for ``op`` within ``window`` seconds."""
        with contextlib.suppress(TimeoutError):
            message = await asyncio.wait_for(self._ops[op].get(), window)
            raise ProtocolError(f"expected nothing for {op!r}, got {message}")

    def pending(self, op: str) -> int:
        return self._ops[op].qsize()

    async def closed(self, within: float = PATIENCE) -> tuple[int | None, str]:
        """Wait for the server to close; returns (code, reason)."""
        await asyncio.wait_for(self._closed.wait(), within)
        received = self.ws.protocol.close_rcvd
        if received is None:
            return None, ""
        return received.code, received.reason

    # -- writing ----------------------------------------------------------

    async def send(self, message: Message) -> None:
        await self.ws.send(json.dumps(message))

    async def subscribe(self, op: str, query: str, variables: dict[str, Any] | None = None) -> None:
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        await self.send(
            {"id": op, "type": kind, "payload": {"query": query, "variables": variables or {}}}
        )

    async def stop(self, op: str) -> None:
        """The client ends an operation (``complete``, or ``stop`` in the legacy protocol)."""
        await self.send({"id": op, "type": "complete" if self.protocol == TRANSPORT_WS else "stop"})

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)
        # A closing handshake cut short by the timeout leaves the transport open (a
        # ResourceWarning when collected): whatever happened, the socket goes now.
        self.ws.transport.abort()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake (a network failure)."""
        self.ws.transport.abort()


async def _get(queue: asyncio.Queue[Message], within: float, what: str) -> Message:
    try:
        return await asyncio.wait_for(queue.get(), within)
    except TimeoutError:
        raise ProtocolError(f"timed out after {within}s waiting for {what}") from None
