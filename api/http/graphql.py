"""The GraphQL endpoint: strawberry's ASGI view with our auth, limits and socket lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncGenerator, Mapping
from datetime import timedelta
from enum import IntEnum
from typing import Any

import orjson
import strawberry
from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types.execution import ExecutionResult

from api.auth.principal import Principal
from api.auth.tokens import parse_bearer
from api.clock import utcnow
from api.errors import Mark1Error, Unauthenticated
from api.runtime import Runtime
from resolvers.context import Context

log = logging.getLogger(__name__)

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


class CloseCode(IntEnum):
    """WebSocket close codes we send (graphql-ws PROTOCOL.md and RFC 6455)."""

    MESSAGE_TOO_BIG = 1009
    BAD_REQUEST = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    CONNECTION_INIT_TIMEOUT = 4408
    TOO_MANY_SOCKETS = 4429


class _SizedAdapter(ASGIWebSocketAdapter):
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
                yield self.view.decode_json(text)
            except ValueError:
                if not ignore_parsing_errors:
                    raise NonJsonMessageReceived from None


def _is_subscription(query: str, operation_name: str | None) -> bool:
    try:
        document = parse(query)
    except GraphQLError:
        return False
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            operation_name is None or (definition.name and definition.name.value == operation_name)
        ):
            return definition.operation is OperationType.SUBSCRIPTION
    return False


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws, where a stream that dies of an error ends with ``error``."""

    async def _send_result_stream(self, operation: Any, result_source: Any) -> None:
        subscription = _is_subscription(operation.query, operation.operation_name)
        first = True
        async for result in result_source:
            if first and not isinstance(result, ExecutionResult):
                await self._handle_pre_execution_error(operation, result)
                return
            first = False
            if subscription and result.data is None and result.errors:
                # The resolver raised: per PROTOCOL.md this ends the operation with `error`.
                await operation.send_initial_errors(result.errors)
                return
            await operation.send_next(result)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """The legacy graphql-ws protocol (subscriptions-transport-ws clients)."""

    async def handle_connection_init(self, message: Any) -> None:
        payload = message.get("payload")
        if payload is not None and not isinstance(payload, dict):
            await self.send_message(
                {"type": "connection_error", "payload": {"message": "Invalid payload"}}
            )
            await self.websocket.close(CloseCode.BAD_REQUEST, "Invalid connection init payload")
            return
        self.context.connection_params = payload or {}
        try:
            await self.view.on_ws_connect(self.context)
        except ConnectionRejectionError as exc:
            await self.send_message(
                {
                    "type": "connection_error",
                    "payload": {"message": str(exc.payload.get("message", "Forbidden"))},
                }
            )
            await self.websocket.close(CloseCode.FORBIDDEN, "Forbidden")
            return
        await self.send_message({"type": "connection_ack"})
        if self.keep_alive:
            keep_alive_handler = self.handle_keep_alive()
            self.keep_alive_task = asyncio.create_task(keep_alive_handler)


class GraphQLEndpoint(GraphQL[Context, None]):
    """strawberry's view, bound to the runtime."""

    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    websocket_adapter_class = _SizedAdapter  # type: ignore[assignment]

    def __init__(self, schema: strawberry.Schema, runtime: Runtime) -> None:
        s = runtime.settings
        super().__init__(
            schema,
            graphql_ide=None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            connection_init_wait_timeout=timedelta(seconds=s.ws_init_timeout),
            max_subscriptions_per_connection=s.max_subscriptions_per_socket,
            allowed_origins=s.allowed_origins,
            keep_alive=True,
            keep_alive_interval=15,
        )
        self.runtime = runtime
        self._sockets_by_subject: Counter[str] = Counter()

    # -- HTTP ------------------------------------------------------------

    async def get_context(self, request: Request | WebSocket, response: Any = None) -> Context:
        if isinstance(request, WebSocket):
            return Context(self.runtime, request, cache=False)
        try:
            token = parse_bearer(request.headers.get("authorization"))
            principal = await self.runtime.verifier.verify(token) if token else None
            return Context(self.runtime, request, principal=principal)
        except Mark1Error as exc:
            return Context(self.runtime, request, auth_error=exc)

    async def render_graphql_ide(self, request: Request) -> Response:
        page = self.runtime.settings.frontend_dir / "graphiql.html"
        if page.exists():
            return FileResponse(page, media_type="text/html")
        return HTMLResponse(
            "<h1>GraphiQL is not built</h1><p>Run <code>make demo</code> (needs npm) to build "
            "<code>frontend-example/dist</code>; GraphQL itself works at this URL.</p>",
            status_code=200,
        )

    def should_render_graphql_ide(self, request: Any) -> bool:
        accept = request.headers.get("accept", "")
        return (
            request.method == "GET"
            and "text/html" in accept
            and not request.query_params.get("query")
        )

    def encode_json(self, data: object) -> str:
        return orjson.dumps(data).decode()

    # -- WebSocket -------------------------------------------------------

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool:
        host = (
            origin.split("://", 1)[-1].rsplit(":", 1)[0]
            if "]" not in origin
            else origin.split("://", 1)[-1].split("]")[0] + "]"
        )
        if host in _LOCAL_HOSTS:
            return True
        return super().is_websocket_origin_allowed(request, origin)

    async def on_ws_connect(self, context: Context) -> Any:
        params = context.connection_params or {}
        raw = next((v for k, v in params.items() if k.lower() == "authorization"), None)
        if raw is None:
            raw = context.request.headers.get("authorization")
        try:
            if not isinstance(raw, str | None):
                raise Unauthenticated("authorization must be a string")
            token = parse_bearer(raw)
            if token is None:
                raise Unauthenticated("Authentication required")
            principal = await self.runtime.verifier.verify(token)
        except Mark1Error as exc:
            raise ConnectionRejectionError({"message": exc.message}) from exc
        limit = self.runtime.settings.max_sockets_per_subject
        if self._sockets_by_subject[principal.subject] >= limit:
            raise ConnectionRejectionError({"message": "Too many sockets for this subject"})
        context.principal_or_none = principal
        self._sockets_by_subject[principal.subject] += 1
        socket = context.request
        assert isinstance(socket, WebSocket)
        socket.state.mark1_expiry = asyncio.create_task(_close_at_expiry(socket, principal))
        socket.state.mark1_subject = principal.subject
        return {"tenant": principal.tenant}

    async def run(self, request: Any, context: Any = None, root_value: Any = None) -> Any:  # type: ignore[override]
        if not isinstance(request, WebSocket):
            return await super().run(request)
        metrics = self.runtime.metrics
        metrics.sockets.inc()
        try:
            return await super().run(request)
        finally:
            metrics.sockets.dec()
            expiry = getattr(request.state, "mark1_expiry", None)
            if expiry is not None:
                expiry.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await expiry
            subject = getattr(request.state, "mark1_subject", None)
            if subject is not None:
                self._sockets_by_subject[subject] -= 1
                if self._sockets_by_subject[subject] <= 0:
                    del self._sockets_by_subject[subject]


async def _close_at_expiry(socket: WebSocket, principal: Principal) -> None:
    """Close the socket with 4403 at the token's ``exp`` (no leeway for open sockets)."""
    delay = (principal.expires_at - utcnow()).total_seconds()
    await asyncio.sleep(max(delay, 0))
    with contextlib.suppress(Exception):
        await socket.close(CloseCode.FORBIDDEN, "Token expired")


def headers_of(scope: Mapping[str, Any]) -> dict[str, str]:
    return {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
