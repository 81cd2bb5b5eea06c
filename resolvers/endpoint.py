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
from urllib.parse import urlsplit

import orjson
import strawberry
from graphql import (
    GraphQLError,
    GraphQLFormattedError,
    OperationDefinitionNode,
    OperationType,
    parse,
)
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ErrorMessage as TransportErrorMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    CompleteMessage as LegacyCompleteMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import ErrorMessage as LegacyErrorMessage
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

from api.auth.principal import Principal
from api.auth.tokens import parse_bearer
from api.clock import utcnow
from api.errors import Mark1Error, RateLimited, Unauthenticated
from api.runtime import Runtime
from resolvers.context import Context
from resolvers.multiplex import Multiplexer

log = logging.getLogger(__name__)

_GRAPHQL_RESPONSE = "application/graphql-response+json"
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class CloseCode(IntEnum):
    """WebSocket close codes of graphql-ws PROTOCOL.md and RFC 6455 (strawberry sends some)."""

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


class _DocumentRejected(Exception):
    """A document that cannot run at all; ``error`` is its GraphQL error (BAD_USER_INPUT)."""

    def __init__(self, message: str, error: GraphQLError | None = None) -> None:
        super().__init__(message)
        self.error: GraphQLFormattedError = GraphQLError(
            message,
            source=error.source if error else None,
            positions=error.positions if error else None,
            extensions={"code": "BAD_USER_INPUT"},
        ).formatted


def _chosen_operation(query: object, operation_name: object, *, max_tokens: int) -> OperationType:
    """The type of the operation a socket message selects, per GraphQL's GetOperation.

    Checked before execution because strawberry lets a syntax error escape its
    parser-cache extension (the operation task dies and the client only sees
    ``complete``), masks a document without an operation as INTERNAL, and runs
    the first operation when several are given without ``operationName``.
    """
    if not isinstance(query, str):
        raise _DocumentRejected("query must be a string")
    try:
        document = parse(query, max_tokens=max_tokens)
    except GraphQLError as error:
        raise _DocumentRejected(error.message, error) from None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        if len(operations) != 1:
            raise _DocumentRejected(
                "The document has no operation"
                if not operations
                else "Must provide operation name if query contains multiple operations."
            )
        return operations[0].operation
    chosen = [o for o in operations if o.name is not None and o.name.value == operation_name]
    if not chosen:
        raise _DocumentRejected(f"Unknown operation named '{operation_name}'.")
    return chosen[0].operation


def _optional(value: object, kind: type) -> bool:
    return value is None or isinstance(value, kind)


def _well_formed(message: object, *, legacy: bool) -> bool:
    """Whether a socket message has the shape its protocol requires.

    strawberry's handlers index into messages and raise TypeError/KeyError on
    other shapes (a dropped connection, no close frame); PROTOCOL.md wants 4400.
    """
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return False
    kind = message["type"]
    if kind in ("subscribe", "start", "complete", "stop") and not isinstance(
        message.get("id"), str
    ):
        return False
    if kind in ("subscribe", "start"):
        payload = message.get("payload")
        return (
            isinstance(payload, dict)
            and isinstance(payload.get("query"), str)
            and _optional(payload.get("variables"), dict)
            and _optional(payload.get("operationName"), str)
            and _optional(payload.get("extensions"), dict)
        )
    if kind in ("ping", "pong") and not legacy:
        return _optional(message.get("payload"), dict)
    return True


def _over_limit(limit: int | None, id: object, active: Mapping[str, object]) -> bool:
    """A new operation id on a socket already running ``limit`` operations."""
    return limit is not None and isinstance(id, str) and id not in active and len(active) >= limit


def _operation_limit_error(limit: int) -> GraphQLFormattedError:
    """The ``error`` payload for an operation over MAX_SUBSCRIPTIONS_PER_SOCKET."""
    error = RateLimited(f"Too many operations on this socket (at most {limit})")
    return GraphQLError(error.message, extensions={**error.extensions, "limit": limit}).formatted


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws, where a stream that dies of an error ends with ``error``."""

    async def handle_message(self, message: Any) -> None:
        if not _well_formed(message, legacy=False):
            await self.handle_invalid_message("Invalid message")
            return
        await super().handle_message(message)

    async def handle_subscribe(self, message: Any) -> None:
        # strawberry refuses the operation over the limit with an error that has no
        # code; ours says RATE_LIMITED (DESIGN: the others go on).
        limit = self.max_subscriptions_per_connection
        id = message.get("id")
        if self.connection_acknowledged and _over_limit(limit, id, self.operations):
            assert limit is not None
            await self.send_message(
                TransportErrorMessage(id=id, type="error", payload=[_operation_limit_error(limit)])
            )
            return
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        """Identical live subscriptions share one execution (resolvers/multiplex.py)."""
        view: GraphQLEndpoint = self.view  # type: ignore[assignment]
        key = None
        if self.context.principal_or_none is not None:
            key = view.multiplexer.key(
                operation.query, operation.variables, operation.operation_name, self.context
            )
        if key is None:
            await super().run_operation(operation)
            return
        socket = self.websocket.ws  # type: ignore[attr-defined]
        try:
            await view.multiplexer.serve(
                key,
                operation.id,
                socket.send_text,
                context=self.context,
                query=operation.query,
                variables=operation.variables,
                operation_name=operation.operation_name,
            )
        except (WebSocketDisconnect, RuntimeError):
            pass  # the socket went away; handle() cleans up the rest
        finally:
            if self.operations.get(operation.id) is operation:
                self.forget_id(operation.id)

    async def _send_result_stream(self, operation: Any, result_source: Any) -> None:
        settings = self.view.runtime.settings  # type: ignore[attr-defined]
        try:
            kind = _chosen_operation(
                operation.query, operation.operation_name, max_tokens=settings.max_tokens
            )
        except _DocumentRejected as rejected:
            # PROTOCOL.md: an operation that cannot run gets `error`; the socket
            # and its other operations go on.
            await operation.send_operation_message(
                TransportErrorMessage(id=operation.id, type="error", payload=[rejected.error])
            )
            return
        first = True
        async for result in result_source:
            if first and isinstance(result, PreExecutionError):
                # Validation failed: `error`, and the socket stays open.
                await operation.send_initial_errors(result.errors)
                return
            if not isinstance(result, ExecutionResult):
                await self._reject_incremental_delivery(operation)
                return
            first = False
            if kind is OperationType.SUBSCRIPTION and result.data is None and result.errors:
                # The resolver raised: per PROTOCOL.md this ends the operation with `error`.
                await operation.send_initial_errors(result.errors)
                return
            await operation.send_next(result)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """The legacy graphql-ws protocol (subscriptions-transport-ws clients)."""

    async def handle(self) -> None:
        # strawberry's legacy handler waits for connection_init for ever; an
        # unauthenticated socket gets the same deadline as graphql-transport-ws.
        timer = asyncio.create_task(self._connection_init_deadline())
        try:
            await super().handle()
        finally:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer

    async def _connection_init_deadline(self) -> None:
        await asyncio.sleep(self.view.runtime.settings.ws_init_timeout)  # type: ignore[attr-defined]
        if not self.connection_acknowledged:
            with contextlib.suppress(Exception):
                await self.websocket.close(
                    CloseCode.CONNECTION_INIT_TIMEOUT, "Connection initialisation timeout"
                )

    async def handle_message(self, message: Any) -> None:
        if not _well_formed(message, legacy=True):
            await self.send_message(
                {"type": "connection_error", "payload": {"message": "Invalid message"}}
            )
            await self.websocket.close(CloseCode.BAD_REQUEST, "Invalid message")
            return
        await super().handle_message(message)

    async def handle_start(self, message: Any) -> None:
        limit = self.max_subscriptions_per_connection
        id = message.get("id")
        if self.connection_acknowledged and _over_limit(limit, id, self.tasks):
            assert limit is not None
            await self.send_message(
                LegacyErrorMessage(type="error", id=id, payload=_operation_limit_error(limit))
            )
            return
        await super().handle_start(message)

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
        # strawberry's handle_start closes with 4401 until this is set.
        self.connection_acknowledged = True
        if self.keep_alive:
            keep_alive_handler = self.handle_keep_alive()
            self.keep_alive_task = asyncio.create_task(keep_alive_handler)

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        settings = self.view.runtime.settings  # type: ignore[attr-defined]
        try:
            kind = _chosen_operation(query, operation_name, max_tokens=settings.max_tokens)
            if kind is not OperationType.SUBSCRIPTION:
                raise _DocumentRejected("The legacy graphql-ws protocol runs subscriptions only")
        except _DocumentRejected as rejected:
            # As subscriptions-transport-ws's own server: a document that cannot run
            # gets `error` (strawberry would let a syntax error kill the task silently).
            self.tasks.pop(operation_id, None)
            await self.send_message(
                LegacyErrorMessage(type="error", id=operation_id, payload=rejected.error)
            )
            return
        try:
            result_source = await self.schema.subscribe(
                query=query,
                variable_values=variables,
                operation_name=operation_name,
                context_value=self.context,
                root_value=self.root_value,
            )
            self.subscriptions[operation_id] = result_source
            # strawberry's own loop leaves the stream open when a send fails (the client
            # just went away): its bus subscription then lives on until the garbage
            # collector finds it. Close it however this task ends.
            async with aclosing(result_source):
                first = True
                async for result in result_source:
                    if first and isinstance(result, PreExecutionError):
                        assert result.errors
                        await self.send_message(
                            LegacyErrorMessage(
                                type="error", id=operation_id, payload=result.errors[0].formatted
                            )
                        )
                        return
                    first = False
                    await self.send_data_message(result, operation_id)
            await self.send_message(LegacyCompleteMessage(type="complete", id=operation_id))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self.send_message(LegacyCompleteMessage(type="complete", id=operation_id))
            raise
        finally:
            self.subscriptions.pop(operation_id, None)
            self.tasks.pop(operation_id, None)


class GraphQLEndpoint(GraphQL[Context, None]):
    """strawberry's view, bound to the runtime."""

    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    websocket_adapter_class = _SizedAdapter

    def __init__(self, schema: strawberry.Schema, runtime: Runtime) -> None:
        s = runtime.settings
        super().__init__(
            schema,
            graphql_ide="graphiql",  # truthy, or strawberry never calls render_graphql_ide
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            connection_init_wait_timeout=timedelta(seconds=s.ws_init_timeout),
            max_subscriptions_per_connection=s.max_subscriptions_per_socket,
            allowed_origins=s.allowed_origins,
            keep_alive=True,
            keep_alive_interval=15,
        )
        self.runtime = runtime
        self.max_tokens = s.max_tokens
        self.multiplexer = Multiplexer(
            schema, runtime.metrics, s.subscriber_buffer, max_tokens=s.max_tokens
        )
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

    async def execute_single(
        self, request: Any, request_adapter: Any, *args: Any, **kwargs: Any
    ) -> Any:
        """A subscription over plain HTTP is the client's mistake, not INTERNAL."""
        data = kwargs.get("request_data") or (args[-1] if args else None)
        query = getattr(data, "query", None)
        with contextlib.suppress(_DocumentRejected):
            kind = _chosen_operation(
                query, getattr(data, "operation_name", None), max_tokens=self.max_tokens
            )
            if kind is OperationType.SUBSCRIPTION:
                raise HTTPException(
                    400, "Subscriptions run over WebSocket (graphql-transport-ws) at this URL"
                )
        return await super().execute_single(request, request_adapter, *args, **kwargs)

    # GraphQL over HTTP: a client that accepts application/graphql-response+json gets
    # that media type, and 400 without `data` when the request never executed
    # (parse, validation or variable coercion failed). application/json stays 200.

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        request.state.mark1_sub_response = sub_response
        return sub_response

    async def process_result(self, request: Request, result: ExecutionResult) -> Any:
        body = await super().process_result(request, result)
        if _GRAPHQL_RESPONSE in request.headers.get("accept", ""):
            sub_response = request.state.mark1_sub_response
            sub_response.mark1_media_type = _GRAPHQL_RESPONSE
            if isinstance(result, PreExecutionError):
                body.pop("data", None)
                sub_response.status_code = 400
        return body

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        response = super().create_response(response_data, sub_response)
        media_type = getattr(sub_response, "mark1_media_type", None)
        if media_type is not None:
            response.headers["content-type"] = media_type
        return response

    def encode_json(self, data: object) -> str:
        return orjson.dumps(data).decode()

    def decode_json(self, data: str | bytes) -> object:
        # orjson refuses nesting deeper than 1024 (json.loads recurses until
        # RecursionError: a 500 on HTTP, a dead socket on WebSocket), NaN and lone
        # surrogates; its JSONDecodeError subclasses json's, which strawberry handles.
        return orjson.loads(data)

    # -- WebSocket -------------------------------------------------------

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool:
        """Only cross-origin handshakes get here (no Origin, or same origin, pass before):
        pages on this machine (any port) and the configured origins; any other page
        would ride its visitor's credentials (cross-site WebSocket hijacking)."""
        try:
            parts = urlsplit(origin.strip())
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            return False
        if parts.scheme in ("http", "https") and parts.hostname in _LOCAL_HOSTS:
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
        socket = context.request
        assert isinstance(socket, WebSocket)
        if getattr(socket.state, "mark1_subject", None) is not None:
            # The legacy protocol lets a client send connection_init again; counting the
            # socket twice would leak a slot of MAX_SOCKETS_PER_SUBJECT for good.
            raise ConnectionRejectionError({"message": "Already initialised"})
        limit = self.runtime.settings.max_sockets_per_subject
        if self._sockets_by_subject[principal.subject] >= limit:
            raise ConnectionRejectionError({"message": "Too many sockets for this subject"})
        context.principal_or_none = principal
        self._sockets_by_subject[principal.subject] += 1
        socket.state.mark1_expiry = asyncio.create_task(_close_at_expiry(socket, principal))
        socket.state.mark1_subject = principal.subject
        return {"tenant": principal.tenant}

    async def run(self, request: Any, context: Any = None, root_value: Any = None) -> Any:
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
    # Principal clamps exp to year 9999, which event-loop timers still take.
    await asyncio.sleep(max((principal.expires_at - utcnow()).total_seconds(), 0))
    with contextlib.suppress(Exception):
        await socket.close(CloseCode.FORBIDDEN, "Token expired")
