"""Text frames written straight to uvicorn's transport, for the fan-out's hot path.

Per delivered message, the ASGI send — starlette's ``WebSocket.send``, the
exception middleware's wrapper, uvicorn's ``send`` and the ``websockets``
protocol's framing — cost more CPU than the socket write itself (the fan-out
profile in the README). A multiplexed member whose connection is open and
writable, with no extension negotiated (uvicorn runs with permessage-deflate
off), builds the frame itself: an unmasked text frame is two to ten bytes of
header and the UTF-8 text (RFC 6455 §5.2). Anything else — a transport that
pushes back, a closing connection, another server — takes the ASGI send.

``RawSend``, the outermost middleware, keeps uvicorn's own ``send`` in the
WebSocket scope; ``frame_writer`` finds uvicorn's protocol behind it. Written
for uvicorn's ``WebSocketsSansIOProtocol`` (``transport``, ``conn``,
``writable``, ``close_sent``) and the ``websockets`` sans-I/O ``Protocol``
(``state``, ``extensions``): api/overrides.py states the ranges.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

RAW_SEND = "mark1.raw_send"

# Writes a text message made of the given UTF-8 parts; False when it must take the
# ASGI send instead (nothing was written).
FrameWriter = Callable[[bytes, bytes, bytes], bool]

_SHORT = [bytes((0x81, n)) for n in range(126)]  # FIN + text opcode, 7-bit length


def _header(length: int) -> bytes:
    if length < 126:
        return _SHORT[length]
    if length < 1 << 16:
        return b"\x81\x7e" + length.to_bytes(2, "big")
    return b"\x81\x7f" + length.to_bytes(8, "big")


class RawSend:
    """ASGI middleware: keeps the server's protocol (its ``send``'s owner) in the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: no frame of this middleware held for a socket's life.
        if scope["type"] == "websocket" and inspect.ismethod(send):
            # Weakly: the protocol holds the scope, and a cycle would outlive the socket
            # until the collector runs. The protocol, not a WeakMethod of its send: a
            # plain reference is a fifth of the size, on every socket.
            scope[RAW_SEND] = weakref.ref(send.__self__)
        return self.app(scope, receive, send)


def frame_writer(scope: Scope) -> FrameWriter | None:
    """A direct writer for this connection, or None when the server is not uvicorn's
    websockets-sansio protocol (the ASGI send is then the only way)."""
    ref = scope.get(RAW_SEND)
    protocol = ref() if ref is not None else None
    if not isinstance(protocol, WebSocketsSansIOProtocol):
        return None

    def write(head: bytes, body: bytes, tail: bytes) -> bool:
        conn = protocol.conn
        transport = protocol.transport
        if (
            not protocol.writable.is_set()
            or protocol.close_sent
            or conn.state is not State.OPEN
            or conn.extensions
            or transport.is_closing()
        ):
            return False
        transport.write(b"".join((_header(len(head) + len(body) + len(tail)), head, body, tail)))
        return True

    return write
