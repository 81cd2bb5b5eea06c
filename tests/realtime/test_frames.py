"""Frames written straight to uvicorn's transport arrive as ordinary text messages."""

from __future__ import annotations

import gc
import json

from starlette.websockets import WebSocket

from resolvers.transport.frames import frame_writer
from tests.realtime.activity import on_server
from tests.realtime.wire import Socket
from tests.support.server import LiveServer


def _server_socket(client: Socket) -> WebSocket:
    port = client.ws.transport.get_extra_info("sockname")[1]
    gc.collect()
    return next(
        o
        for o in gc.get_objects()
        if type(o) is WebSocket and o.client is not None and o.client.port == port
    )


async def test_frames_of_every_length_class_arrive_whole_and_in_order_with_asgi_sends(
    server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, viewer) as client:
        socket = _server_socket(client)
        write = frame_writer(socket.scope)
        assert write is not None, "the fan-out's direct writes are off: see frames.py"
        # 7-bit, 16-bit and 64-bit payload lengths (RFC 6455 §5.2), multi-byte UTF-8.
        sizes = [10, 300, 70_000]

        async def send() -> None:
            for n in sizes:
                text = json.dumps({"type": "pong", "payload": {"pad": "é" * n}})
                head, body, tail = text[:5].encode(), text[5:-1].encode(), text[-1:].encode()
                assert write(head, body, tail)
            await socket.send_text(json.dumps({"type": "pong", "payload": {"pad": "asgi"}}))

        await on_server(server, send())
        received = [(await client.control_message())["payload"]["pad"] for _ in range(4)]
        assert received == ["é" * n for n in sizes] + ["asgi"]
