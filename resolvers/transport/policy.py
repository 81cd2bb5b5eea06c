"""Socket policy: who may hold a WebSocket on /graphql, how big its messages, how many, how long.

Data flow of one socket: the handshake's Origin is checked (``origin_allowed``);
every frame read goes through ``SizedAdapter`` (1009 above MAX_MESSAGE_BYTES);
``connection_init`` reaches ``SocketPolicy.admit``, which verifies the token
(connection params first, then the handshake header), takes one of the
subject's MAX_SOCKETS_PER_SUBJECT slots and arms a timer that closes the
socket with 4403 at the token's ``exp``. ``SocketPolicy.hold`` spans the
socket's life: it counts it in the ``sockets`` gauge, lets a drain close it
with 1012 (api/drain.py) once the mutations in flight on it are done
(``mutating``), and, however it ends, cancels the timer and gives the slot
back. Refusals become strawberry's ConnectionRejectionError, which the
protocol handlers turn into 4403; while the process drains, a new socket is
refused before its handshake completes, with HTTP 503.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from enum import IntEnum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived

from api.auth.principal import Principal
from api.auth.tokens import parse_bearer
from api.clock import utcnow
from api.errors import Mark1Error, Unauthenticated
from api.logging import context as log_context
from api.runtime import Runtime
from resolvers.context import Context

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_T = TypeVar("_T")


class CloseCode(IntEnum):
    """WebSocket close codes of graphql-ws PROTOCOL.md and RFC 6455 (strawberry sends some)."""

    MESSAGE_TOO_BIG = 1009
    SERVICE_RESTART = 1012
    BAD_REQUEST = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    CONNECTION_INIT_TIMEOUT = 4408
    TOO_MANY_SOCKETS = 4429


class SizedAdapter(ASGIWebSocketAdapter):
    """Closes the socket with 1009 when a message exceeds MAX_MESSAGE_BYTES."""

    async def iter_json(
        self, *, ignore_parsing_errors: bool = False
    ) -> AsyncGenerator[object, None]:
        limit = self.view.runtime.settings.max_message_bytes  # type: ignore[attr-defined]
        ws = self.ws
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                raise NonTextMessageReceived
            if len(text.encode()) > limit:
                await ws.close(CloseCode.MESSAGE_TOO_BIG, "Message too big")
                return
            try:
                decoded = self.view.decode_json(text)
            except ValueError:
                if not ignore_parsing_errors:
                    raise NonJsonMessageReceived from None
                continue
            # Not kept across the wait for the next message (on an idle subscribed
            # socket that is its whole life): the handler has what it needs.
            del message, text
            yield decoded
            del decoded


def origin_allowed(origin: str, configured: Callable[[str], bool]) -> bool:
    """Whether a cross-origin page may open a socket (no Origin, or same origin, pass before).

    Pages on this machine (any port) and the ``configured`` origins may; any
    other page would ride its visitor's credentials (cross-site WebSocket hijacking).
    """
    try:
        parts = urlsplit(origin.strip())
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    if parts.scheme in ("http", "https") and parts.hostname in _LOCAL_HOSTS:
        return True
    return configured(origin)


class SocketPolicy:
    """Authentication, per-subject accounting and expiry of the sockets of one endpoint."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def admit(self, context: Context) -> dict[str, Any]:
        """Authenticate ``connection_init``; the result is the ``connection_ack`` payload.

        Raises ConnectionRejectionError (4403) for a bad or missing token, a
        second connection_init, or a subject over MAX_SOCKETS_PER_SUBJECT.
        """
        socket = context.request
        assert isinstance(socket, WebSocket)
        params = context.connection_params or {}
        raw = next((v for k, v in params.items() if k.lower() == "authorization"), None)
        if raw is None:
            raw = socket.headers.get("authorization")
        try:
            if not isinstance(raw, str | None):
                raise Unauthenticated("authorization must be a string")
            token = parse_bearer(raw)
            if token is None:
                raise Unauthenticated("Authentication required")
            principal = await self._runtime.verifier.verify(token)
        except Mark1Error as exc:
            raise ConnectionRejectionError({"message": exc.message}) from exc
        log_context.bind_principal(principal.tenant, principal.subject)
        if getattr(socket.state, "mark1_subject", None) is not None:
            # The legacy protocol lets a client send connection_init again; counting the
            # socket twice would leak a slot of MAX_SOCKETS_PER_SUBJECT for good.
            raise ConnectionRejectionError({"message": "Already initialised"})
        if not await self._runtime.sockets.take(principal.subject):
            raise ConnectionRejectionError({"message": "Too many sockets for this subject"})
        context.principal_or_none = principal
        # The credential is not kept for the socket's life; other params are.
        context.connection_params = {
            k: v for k, v in params.items() if k.lower() != "authorization"
        }
        socket.state.mark1_expiry = _Expiry(socket, principal)
        socket.state.mark1_subject = principal.subject
        return {"tenant": principal.tenant}

    @property
    def draining(self) -> bool:
        """The process is stopping: new sockets are refused (``refuse``)."""
        return self._runtime.drain.draining

    async def refuse(self, socket: WebSocket) -> None:
        """Refuse a new socket while draining: HTTP 503, so the client retries elsewhere."""
        # uvicorn's websockets-sansio then logs "ASGI callable returned without completing
        # handshake" although the client got the 503 (Kludex/uvicorn#3138).
        if "websocket.http.response" in socket.scope.get("extensions", {}):
            response = PlainTextResponse(
                "Service restarting: reconnect", status_code=503, headers={"Retry-After": "1"}
            )
            await socket.send_denial_response(response)
        else:
            await socket.close(CloseCode.SERVICE_RESTART)  # the server answers 403

    async def hold(self, socket: WebSocket, run: Callable[[], Awaitable[_T]]) -> _T:
        """The socket's life, ``run()``: counted while open, closed with 1012 by a drain
        once its mutations in flight are done; its timer and slot freed however it ends.

        A plain coroutine, not an async context manager: that one's generator and
        wrapper cost about 0.5 KiB on every socket for its whole life.
        """
        metrics = self._runtime.metrics
        metrics.sockets.inc()
        drain = self._runtime.drain
        socket.state.mark1_mutations = _InFlight()

        async def restart() -> None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain.grace):
                    await socket.state.mark1_mutations.done()
            await socket.close(CloseCode.SERVICE_RESTART, "Service restart")

        try:
            with drain.holding(restart):
                return await run()
        finally:
            metrics.sockets.dec()
            expiry: _Expiry | None = getattr(socket.state, "mark1_expiry", None)
            if expiry is not None:
                await expiry.cancel()
            subject = getattr(socket.state, "mark1_subject", None)
            if subject is not None:
                self._runtime.sockets.give_back(subject)


def mutating(socket: WebSocket) -> contextlib.AbstractContextManager[None]:
    """Mark a mutation running on ``socket``: a drain closes the socket after it."""
    in_flight: _InFlight = socket.state.mark1_mutations
    return in_flight.running()


class _InFlight:
    """The mutations running on one socket, and a way to wait until there are none.

    The Event exists only while a drain waits for running mutations: most sockets
    never run one, and an Event costs about 0.8 KiB.
    """

    __slots__ = ("_count", "_idle")

    def __init__(self) -> None:
        self._count = 0
        self._idle: asyncio.Event | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self._count += 1
        if self._idle is not None:
            self._idle.clear()
        try:
            yield
        finally:
            self._count -= 1
            if self._count == 0 and self._idle is not None:
                self._idle.set()

    async def done(self) -> None:
        if self._count == 0:
            return
        if self._idle is None:
            self._idle = asyncio.Event()
        await self._idle.wait()


class _Expiry:
    """Closes the socket with 4403 at the token's ``exp`` (no leeway for open sockets).

    An event-loop timer, not a sleeping task: a task, its coroutine and its sleep
    cost about 1 KiB on every socket; the closing task exists only once it fires.
    """

    __slots__ = ("_closing", "_timer")

    def __init__(self, socket: WebSocket, principal: Principal) -> None:
        loop = asyncio.get_running_loop()
        # Principal clamps exp to year 9999, which event-loop timers still take.
        delay = max((principal.expires_at - utcnow()).total_seconds(), 0)
        self._closing: asyncio.Task[None] | None = None
        self._timer = loop.call_later(delay, self._fire, socket)

    def _fire(self, socket: WebSocket) -> None:
        self._closing = asyncio.get_running_loop().create_task(_close_expired(socket))

    async def cancel(self) -> None:
        """Stop the timer, or the close it started, and wait for the latter to stop."""
        self._timer.cancel()
        closing, self._closing = self._closing, None
        if closing is not None:
            closing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await closing


async def _close_expired(socket: WebSocket) -> None:
    with contextlib.suppress(Exception):
        await socket.close(CloseCode.FORBIDDEN, "Token expired")
