"""Subscriptions over graphql-transport-ws that reconnect and resume by themselves.

One socket per subscription (graphql-ws PROTOCOL.md). A dropped connection,
a server restart (1012) or a broken proxy is retried with jittered backoff.
A ``Cursor`` makes a stream resumable: every (re)subscribe asks for events
``after`` the last one yielded, and anything at or before it is dropped, so
the consumer sees every event once, in order, across
- a reconnect (the server replays from its outbox, then goes live);
- a token expiry: the server closes with 4403 at ``exp``; with a token
  provider the stream reconnects with a fresh token, with a fixed token it
  raises ``Unauthenticated``;
- SLOW_CONSUMER: the server dropped what it had queued; resubscribe after the
  last event yielded, on the same socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable
from enum import IntEnum
from types import TracebackType
from typing import Any, Generic, TypeVar

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)
from websockets.typing import Subprotocol

from mark1_client.endpoint import Credentials, Endpoint
from mark1_client.errors import (
    Forbidden,
    Mark1Error,
    ProtocolError,
    SlowConsumer,
    TransportError,
    Unauthenticated,
    error_from,
    is_transient,
)
from mark1_client.retry import Backoff

log = logging.getLogger("mark1_client")

T = TypeVar("T")
_PROTOCOL = Subprotocol("graphql-transport-ws")


class CloseCode(IntEnum):
    """Close codes the client acts on (graphql-ws PROTOCOL.md, RFC 6455)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_PAYLOAD = 1007
    MESSAGE_TOO_BIG = 1009
    SERVICE_RESTART = 1012
    BAD_REQUEST = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    CONNECTION_INIT_TIMEOUT = 4408
    SUBSCRIBER_ALREADY_EXISTS = 4409
    TOO_MANY_INITIALISATION_REQUESTS = 4429


# Our own mistakes, or a document the server refuses: retrying cannot help.
_FATAL_CLOSES = frozenset(
    {
        CloseCode.PROTOCOL_ERROR,
        CloseCode.UNSUPPORTED_DATA,
        CloseCode.INVALID_PAYLOAD,
        CloseCode.MESSAGE_TOO_BIG,
        CloseCode.BAD_REQUEST,
        CloseCode.UNAUTHORIZED,
        CloseCode.SUBSCRIBER_ALREADY_EXISTS,
        CloseCode.TOO_MANY_INITIALISATION_REQUESTS,
    }
)


class Subscription(Generic[T]):
    """An async iterator over one operation's results; ``aclose()`` or ``async with`` ends it
    and closes its socket."""

    def __init__(self, source: AsyncGenerator[T, None]) -> None:
        self._source = source

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        return await self._source.__anext__()

    async def aclose(self) -> None:
        await self._source.aclose()

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Cursor:
    """The resume position of an ``events`` stream: the id of the last event yielded."""

    def __init__(self, field: str, after: str | None, head: Callable[[], Awaitable[str]]) -> None:
        self.field = field
        self.after = after
        self._head = head

    async def ready(self) -> None:
        """Without a start, begin at the current head, so a drop before the first event
        still resumes without loss (the ids are the tenant's sequence)."""
        if self.after is None:
            self.after = await self._head()

    def variables(self) -> dict[str, Any]:
        return {"after": self.after}

    def accept(self, data: dict[str, Any]) -> bool:
        """Whether ``data`` is new; moves the cursor past it."""
        event_id = str(data[self.field]["id"])
        if self.after is not None and int(event_id) <= int(self.after):
            return False
        self.after = event_id
        return True


class _Lost(Exception):
    """The connection dropped or failed in a way worth retrying."""


class _Expired(Exception):
    """The server closed an acknowledged socket with 4403: its token expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Connector:
    """Opens acknowledged graphql-transport-ws sockets to one endpoint."""

    def __init__(self, endpoint: Endpoint, credentials: Credentials, *, timeout: float) -> None:
        self.endpoint = endpoint
        self.credentials = credentials
        self.timeout = timeout

    async def open(self) -> ClientConnection:
        """Connect, send ``connection_init`` with the token, wait for ``connection_ack``."""
        token = await self.credentials.token()
        try:
            ws = await websockets.connect(
                self.endpoint.ws,
                subprotocols=[_PROTOCOL],
                open_timeout=self.timeout,
                close_timeout=2,
                max_size=2**24,
            )
        except InvalidURI as exc:
            raise ProtocolError(f"bad URL {self.endpoint.ws}: {exc}") from exc
        except InvalidStatus as exc:
            raise _refused(self.endpoint.ws, exc.response.status_code) from exc
        except InvalidMessage as exc:  # closed mid-handshake: a server going down
            raise _Lost(f"handshake failed: {exc}") from exc
        except InvalidHandshake as exc:
            raise ProtocolError(f"WebSocket handshake refused: {exc}") from exc
        try:
            init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
            await ws.send(json.dumps(init))
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation
            # that arrives as the ack does, and the cancelled task then runs on for ever.
            async with asyncio.timeout(self.timeout):
                ack = json.loads(await ws.recv())
        except ConnectionClosed as exc:
            await ws.close()
            close = exc.rcvd
            if close is not None and close.code == CloseCode.FORBIDDEN:
                raise Unauthenticated(close.reason or "Forbidden") from exc
            raise
        except BaseException:
            await ws.close()
            raise
        if not isinstance(ack, dict) or ack.get("type") != "connection_ack":
            await ws.close()
            raise _Lost(f"expected connection_ack, got {str(ack)[:80]}")
        return ws


def _refused(url: str, status: int) -> Exception:
    if status in (401, 403):
        return Forbidden(f"connection refused by the server (HTTP {status})")
    if status == 404:
        return ProtocolError(f"no GraphQL endpoint at {url} (HTTP 404)", status=status)
    if 400 <= status < 500 and status != 429:
        return ProtocolError(f"WebSocket upgrade refused (HTTP {status})", status=status)
    return _Lost(f"HTTP {status}")


async def stream(
    connector: Connector,
    document: str,
    variables: dict[str, Any],
    *,
    backoff: Backoff,
    cursor: Cursor | None = None,
) -> AsyncGenerator[dict[str, Any], None]:
    """The ``data`` of every result, across reconnects; ends when the server completes it."""
    failures = 0
    connected_once = False
    rejected = False  # the last connection_init was refused with 4403
    while True:
        try:
            if cursor is not None:
                await cursor.ready()
            ws = await connector.open()
            rejected = False
        except Unauthenticated:
            if rejected or not connector.credentials.refreshable:
                raise
            rejected = True  # the provider's token may have expired in between: ask again
            continue
        except (_Lost, OSError, TimeoutError, ConnectionClosed, Mark1Error) as exc:
            if isinstance(exc, Mark1Error) and not is_transient(exc):
                raise
            if not connected_once and _caused_by(exc, socket.gaierror):
                raise TransportError(
                    f"cannot resolve the host of {connector.endpoint.ws}", request_sent=False
                ) from exc
            failures += 1
            await _pause(backoff, failures, exc)
            continue
        try:
            if connected_once:
                if cursor is not None:
                    log.warning("reconnected; resuming after event %s", cursor.after)
                else:
                    log.warning("reconnected; changes while disconnected are not replayed")
            connected_once = True
            failures = 0
            async with contextlib.aclosing(_operate(ws, document, variables, cursor)) as results:
                async for data in results:
                    yield data
            return
        except _Expired as exc:
            if not connector.credentials.refreshable:
                raise Unauthenticated(exc.reason) from None
            log.warning("token expired (%s); reconnecting with a fresh one", exc.reason)
        except (_Lost, OSError, TimeoutError, ConnectionClosed) as exc:
            failures += 1
            await _pause(backoff, failures, exc)
        finally:
            await ws.close()


async def _pause(backoff: Backoff, failures: int, exc: BaseException) -> None:
    if not backoff.allows(failures):
        raise TransportError(
            f"gave up after {failures} attempts: {_describe(exc)}", request_sent=True
        ) from exc
    delay = backoff.delay(failures)
    log.warning("%s; reconnecting in %.1fs", _describe(exc), delay)
    await asyncio.sleep(delay)


async def _operate(
    ws: ClientConnection, document: str, variables: dict[str, Any], cursor: Cursor | None
) -> AsyncGenerator[dict[str, Any], None]:
    """One acknowledged socket: subscribe, then the results until complete or a drop."""
    operation = 0

    async def subscribe() -> str:
        nonlocal operation
        operation += 1  # a fresh id: the server may still be freeing the last one
        values = {**variables, **cursor.variables()} if cursor is not None else variables
        payload = {"query": document, "variables": values}
        await ws.send(json.dumps({"id": str(operation), "type": "subscribe", "payload": payload}))
        return str(operation)

    current = await subscribe()
    try:
        async for raw in ws:
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "ping":
                await ws.send(json.dumps({"type": "pong"}))
                continue
            if message.get("id") != current:
                continue
            payload = message.get("payload") or {}
            if kind == "next":
                if payload.get("errors"):
                    raise error_from(payload["errors"])
                data = payload.get("data")
                if data is not None and (cursor is None or cursor.accept(data)):
                    yield data
            elif kind == "error":
                error = error_from(payload if isinstance(payload, list) else [])
                if isinstance(error, SlowConsumer) and cursor is not None:
                    log.warning(
                        "dropped by the server as a slow consumer; resuming after event %s",
                        cursor.after,
                    )
                    current = await subscribe()
                    continue
                if is_transient(error):  # e.g. UNAVAILABLE while replaying: reconnect later
                    raise _Lost(error.message) from error
                raise error
            elif kind == "complete":
                return
    except ConnectionClosed as exc:
        close = exc.rcvd
        if close is not None and close.code == CloseCode.FORBIDDEN:
            raise _Expired(close.reason or "Forbidden") from exc
        if close is not None and close.code in _FATAL_CLOSES:
            raise ProtocolError(f"connection closed ({close.code} {close.reason})") from exc
        raise
    raise _Lost("connection closed")


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        close = exc.rcvd
        if close is None:
            return "connection lost"
        return f"connection closed ({close.code}{' ' + close.reason if close.reason else ''})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, Mark1Error):
        return exc.message
    return str(exc) or type(exc).__name__
