"""GraphQLEndpoint: strawberry's ASGI view at /graphql, composed from this package's parts.

Data flow: an HTTP request that asks for a subscription stream goes to
GraphQL over SSE (sse.py) or multipart HTTP (multipart.py), both on the
HTTP stream core (streaming.py). Any other gets its context (the bearer token
verified, or the auth error kept for the resolvers to raise), then goes to the
GraphiQL page (graphiql.py) or to GraphQL over HTTP (http.py). A WebSocket is held by
the socket policy (policy.py) for its whole life, has its Origin checked
there, and is handed to the handler of the subprotocol it chose
(transport_ws.py or legacy_ws.py), whose connection_init the policy
authenticates. Every transport shares one multiplexer and the subjects'
connection slots.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Any

import orjson
import strawberry
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from api.auth.tokens import parse_bearer
from api.errors import Mark1Error
from api.logging import context as log_context
from api.manifest import load_manifest
from api.runtime import Runtime
from resolvers.context import Context
from resolvers.multiplex import Multiplexer
from resolvers.transport.graphiql import graphiql_page, wants_graphiql
from resolvers.transport.http import GraphQLOverHTTP
from resolvers.transport.legacy_ws import LegacyWSHandler
from resolvers.transport.multipart import MultipartSubscriptions
from resolvers.transport.persisted import PersistedDocuments
from resolvers.transport.policy import SizedAdapter, SocketPolicy, origin_allowed
from resolvers.transport.sse import TOKEN_HEADER, GraphQLOverSSE
from resolvers.transport.streaming import HTTPStreams
from resolvers.transport.transport_ws import TransportWSHandler

log = logging.getLogger("mark1.transport")


def may_stream(request: Request) -> bool:
    """Whether SSE or multipart HTTP might answer this request, read from one look at
    its headers: a plain GET or POST for JSON (every agent's mutation) goes straight to
    GraphQL over HTTP instead of through both protocols' header parsing (issue #8).

    A superset of what they answer: graphql-sse needs PUT, DELETE, its token header or
    an Accept listing text/event-stream; multipart needs an Accept listing
    multipart/mixed.
    """
    if request.method not in ("GET", "POST"):
        return True
    accept = request.headers.get("accept", "").lower()
    return "event-stream" in accept or "multipart" in accept or TOKEN_HEADER in request.headers


class GraphQLEndpoint(GraphQLOverHTTP):
    """strawberry's view, bound to the runtime."""

    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler
    # strawberry.asgi types this attribute loosely and ignores the same error itself.
    websocket_adapter_class = SizedAdapter  # type: ignore[assignment]

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
        self.policy = SocketPolicy(runtime)
        manifest = load_manifest(s.trusted_documents) if s.trusted_documents else None
        if manifest is not None:
            log.info(
                "trusted documents: only the %d documents of %s run",
                len(manifest),
                s.trusted_documents,
            )
        self.documents = PersistedDocuments(manifest)
        """Which document a request runs (persisted.py); every transport asks it first."""
        streams = HTTPStreams(runtime, schema, self.multiplexer, runtime.sockets, self.documents)
        self.sse = GraphQLOverSSE(streams, reservation_timeout=s.ws_init_timeout)
        self.multipart = MultipartSubscriptions(streams)

    async def close(self) -> None:
        """At shutdown: drop unopened SSE reservations, then every shared execution."""
        await self.sse.close()
        await self.multiplexer.close()

    async def get_context(self, request: Request | WebSocket, response: Any = None) -> Context:
        if isinstance(request, WebSocket):
            # Authenticated later, at connection_init (policy.SocketPolicy.admit).
            return Context(self.runtime, request, cache=False)
        try:
            token = parse_bearer(request.headers.get("authorization"))
            principal = await self.runtime.verifier.verify(token) if token else None
            if principal is not None:
                log_context.bind_principal(principal.tenant, principal.subject)
            return Context(self.runtime, request, principal=principal)
        except Mark1Error as exc:
            return Context(self.runtime, request, auth_error=exc)

    def encode_json(self, data: object) -> str:
        return orjson.dumps(data).decode()

    def decode_json(self, data: str | bytes) -> object:
        # orjson refuses nesting deeper than 1024 (json.loads recurses until
        # RecursionError: a 500 on HTTP, a dead socket on WebSocket), NaN and lone
        # surrogates; its JSONDecodeError subclasses json's, which strawberry handles.
        return orjson.loads(data)

    # -- the GraphiQL page ---------------------------------------------------

    def should_render_graphql_ide(self, request: Any) -> bool:
        return wants_graphiql(request)

    async def render_graphql_ide(self, request: Request) -> Response:
        return graphiql_page(self.runtime.settings.frontend_dir)

    # -- WebSocket: the socket policy ----------------------------------------

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool:
        configured = super().is_websocket_origin_allowed
        return origin_allowed(origin, lambda o: configured(request, o))

    async def on_ws_connect(self, context: Context) -> Any:
        return await self.policy.admit(context)

    async def run(self, request: Any, context: Any = None, root_value: Any = None) -> Any:
        if not isinstance(request, WebSocket):
            if may_stream(request):
                stream = await self.sse.respond(request) or await self.multipart.respond(request)
                if stream is not None:
                    return stream
            return await super().run(request)
        if self.policy.draining:
            return await self.policy.refuse(request)
        # strawberry's own run: GraphQLOverHTTP's refusals are HTTP's, and its frame would
        # stay for the socket's whole life.
        return await self.policy.hold(request, partial(GraphQL.run, self, request))
