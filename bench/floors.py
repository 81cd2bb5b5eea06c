"""The floors the write path is measured against, each a tiny server of its own.

    python -m bench.floors asgi --port 8101        # fixed JSON, no framework
    python -m bench.floors strawberry --port 8102  # strawberry, no auth, no database

Both run under the uvicorn settings ``mark1 serve`` uses (uvloop, httptools),
with the access log off, so the only difference left is the application.
``asgi`` answers every request with the same JSON body, whatever was asked:
the cost of HTTP on this machine. ``strawberry`` is strawberry's own ASGI
view over a schema with no extensions, no context and no I/O, answering
``{ __typename }`` (and a one-line mutation).
"""

from __future__ import annotations

import sys
from typing import Any

import strawberry
import uvicorn
from strawberry.asgi import GraphQL

_BODY = b'{"data":{"__typename":"Query"}}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_BODY))]


async def fixed_json(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the request to its end, then answers the same JSON every time."""
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "hello"


@strawberry.type
class Mutation:
    @strawberry.mutation
    def touch(self, progress: float) -> float:
        return progress


def strawberry_app() -> GraphQL[None, None]:
    return GraphQL(strawberry.Schema(query=Query, mutation=Mutation), graphql_ide=None)


def serve(kind: str, port: int) -> None:
    app: Any = fixed_json if kind == "asgi" else strawberry_app()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("asgi", "strawberry") or sys.argv[2] != "--port":
        sys.exit("usage: python -m bench.floors asgi|strawberry --port PORT")
    serve(sys.argv[1], int(sys.argv[3]))
