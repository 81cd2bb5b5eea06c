"""The raw WebSocket floor: a bare ASGI app on uvicorn that fans messages out, no GraphQL.

It speaks just enough graphql-transport-ws for the benchmark's clients
(``connection_ack``, then one ``next`` per published event on each subscribed
operation) and answers the publisher's POST with a fixed body, building each
message from the request's ``message`` variable. Run by bench/compare.py with
the same uvicorn settings as ``mark1 serve`` (uvloop, httptools,
websockets-sansio): what is left of the fan-out cost is the server's own.

    python -m bench.floor <port>
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import orjson
import uvicorn

Scope = dict[str, Any]
_sockets: dict[int, tuple[Any, list[str]]] = {}


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "websocket":
        await _socket(receive, send)
    elif scope["type"] == "http":
        await _http(scope, receive, send)


async def _socket(receive: Any, send: Any) -> None:
    ops: list[str] = []
    key = id(ops)
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept", "subprotocol": "graphql-transport-ws"})
        elif message["type"] == "websocket.receive":
            data = orjson.loads(message.get("text") or message.get("bytes") or b"{}")
            if data.get("type") == "connection_init":
                await send({"type": "websocket.send", "text": '{"type":"connection_ack"}'})
            elif data.get("type") == "subscribe":
                ops.append(
                    '{"id":' + orjson.dumps(data["id"]).decode() + ',"type":"next","payload":'
                )
                _sockets[key] = (send, ops)
        else:
            _sockets.pop(key, None)
            return


async def _http(scope: Scope, receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    status, reply = 200, b'{"data":{}}'
    if scope["path"] == "/graphql" and scope["method"] == "POST":
        variables = orjson.loads(body).get("variables") or {}
        task = {
            "id": "1",
            "progress": variables.get("p", 0.0),
            "message": variables.get("m"),
            "at": datetime.now(UTC).isoformat(),
        }
        payload = orjson.dumps({"data": {"taskUpdates": task}}).decode() + "}"
        for sock, ops in list(_sockets.values()):
            for prefix in ops:
                try:
                    await sock({"type": "websocket.send", "text": prefix + payload})
                except Exception:
                    break
        reply = orjson.dumps({"data": {"reportProgress": task}})
    elif scope["path"] != "/readyz":
        status = 404
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": reply})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        log_level="warning",
    )
