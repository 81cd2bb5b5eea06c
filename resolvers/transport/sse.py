"""GraphQL over Server-Sent Events (graphql-sse PROTOCOL.md), in both of its modes.

Distinct connections: a GET or POST that accepts ``text/event-stream`` runs its
one operation on its own response: a ``next`` event per result, then
``complete``. A document that cannot run (syntax, validation, a subscription
refused at subscribe) gets one ``next`` carrying its errors, then ``complete``
(PROTOCOL.md: validation errors travel in the accepted stream, not as a 400).

Single connection: PUT makes a reservation (201, its token as text/plain); a GET
or POST that accepts ``text/event-stream`` and presents the token
(``X-GraphQL-Event-Stream-Token``, or ``?token=`` for EventSource) opens its
stream; a POST or GET with the token and ``extensions.operationId`` starts an
operation on it (202), whose events carry ``{"id": …, "payload": …}`` and
``{"id": …}``; DELETE ``?operationId=…`` stops one (200). The token is the
credential of the stream and its operations; a request that also sends a Bearer
token must be the reservation's own subject and tenant (403 otherwise). A
reservation not opened within WS_INIT_TIMEOUT lapses; the end of its stream ends
it. Reservations live in the process that made them, so this mode needs every
request of a client to reach the same process (README: Clients and transports).

Both modes share the HTTP stream core (streaming.py): auth, slots, limits,
keep-alive comments (``:``), expiry and disconnects.
"""

from __future__ import annotations

import asyncio
import secrets

import orjson
from graphql import GraphQLFormattedError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from resolvers.member import Framing
from resolvers.transport.negotiation import prefers
from resolvers.transport.params import StreamRefused, read_params, subscription_params
from resolvers.transport.streaming import (
    HTTPStream,
    HTTPStreams,
    Wire,
)

TOKEN_HEADER = "x-graphql-event-stream-token"
TOKEN_QUERY = "token"
MEDIA_TYPE = "text/event-stream"

WIRE = Wire(
    headers={
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache, no-transform",
        "x-accel-buffering": "no",  # nginx: pass each event on at once
    },
    # A comment first: some browsers wait for a first byte before they call the
    # stream open (graphql-sse's own server does the same).
    opening=":\n\n",
    heartbeat=":\n\n",
    closing="",
)


def accepts_event_stream(accept: str) -> bool:
    """Whether an Accept header lists text/event-stream."""
    return any(part.split(";", 1)[0].strip().lower() == MEDIA_TYPE for part in accept.split(","))


def _next(data: str) -> str:
    # orjson never writes a raw newline, so the JSON is one `data:` line.
    return "event: next\ndata: " + data + "\n\n"


class DistinctFraming(Framing):
    """Distinct-connections mode: the events carry execution results as they are."""

    complete = "event: complete\ndata:\n\n"

    def data(self, payload: str) -> str:
        return _next(payload)

    def failed(self, errors: str) -> list[str]:
        return [_next('{"data":null,"errors":' + errors + "}"), self.complete]

    def rejected(self, errors: list[GraphQLFormattedError]) -> list[str]:
        return [_next(orjson.dumps({"errors": errors}).decode()), self.complete]


class OperationFraming(Framing):
    """Single-connection mode: each event names the operation it belongs to."""

    def __init__(self, op_id: str) -> None:
        quoted = orjson.dumps(op_id).decode()
        self._next = 'event: next\ndata: {"id":' + quoted + ',"payload":'
        self.complete = 'event: complete\ndata: {"id":' + quoted + "}\n\n"

    def data(self, payload: str) -> str:
        return self._next + payload + "}\n\n"

    def failed(self, errors: str) -> list[str]:
        return [self.data('{"data":null,"errors":' + errors + "}"), self.complete]

    def rejected(self, errors: list[GraphQLFormattedError]) -> list[str]:
        return [self.data(orjson.dumps({"errors": errors}).decode()), self.complete]


class GraphQLOverSSE:
    """The graphql-sse protocol on /graphql, and the reservations of its single-connection mode."""

    def __init__(self, streams: HTTPStreams, *, reservation_timeout: float) -> None:
        self._streams = streams
        self._timeout = reservation_timeout
        self._max_tokens = streams.runtime.settings.max_tokens
        self._reservations: dict[str, HTTPStream] = {}
        self._lapses: dict[str, asyncio.Task[None]] = {}

    async def respond(self, request: Request) -> Response | HTTPStream | None:
        """The answer to a graphql-sse request, or None when this is not one."""
        wants_stream = accepts_event_stream(request.headers.get("accept", ""))
        token = request.headers.get(TOKEN_HEADER)
        if token is None and wants_stream:
            # Only EventSource, which cannot send headers, puts it in the URL; any other
            # `?token=` is not ours (GraphiQL takes a JWT from its page's URL).
            token = request.query_params.get(TOKEN_QUERY)
        method = request.method
        if method not in ("PUT", "DELETE") and token is None and not wants_stream:
            return None
        try:
            if method == "PUT":
                return await self._reserve(request)
            if method == "DELETE":
                return await self._stop(request, token)
            if token is None:
                return await self._distinct(request)
            if wants_stream:
                return await self._connect(request, token)
            return await self._operation(request, token)
        except StreamRefused as refused:
            return refused.response()

    async def close(self) -> None:
        """Drop every reservation no stream has opened (at shutdown)."""
        for lapse in list(self._lapses.values()):
            lapse.cancel()
        for stream in list(self._reservations.values()):
            if not stream.is_open:
                await stream.discard()

    # -- distinct connections -----------------------------------------------

    async def _distinct(self, request: Request) -> HTTPStream | None:
        """One operation on its own stream. A client that ranks JSON as high as
        text/event-stream (urql lists it after the JSON types) gets a stream for a
        subscription only: its queries and mutations go on to GraphQL over HTTP."""
        if prefers(request.headers.get("accept", ""), MEDIA_TYPE):
            context = await self._streams.admit(request)
            params = await read_params(request, self._streams.documents)
        else:
            found = await subscription_params(
                request, self._streams.documents, max_tokens=self._max_tokens
            )
            if found is None:
                return None
            context = await self._streams.admit(request)
            params = found
        stream = await self._streams.open(context, WIRE, one_operation=True)
        stream.start("", params, DistinctFraming(), method=request.method)
        return stream

    # -- single connection ----------------------------------------------------

    async def _reserve(self, request: Request) -> Response:
        context = await self._streams.admit(request)
        stream = await self._streams.open(context, WIRE, one_operation=False)
        token = secrets.token_urlsafe(24)
        self._reservations[token] = stream

        def forget() -> None:
            self._reservations.pop(token, None)
            lapse = self._lapses.pop(token, None)
            if lapse is not None and lapse is not asyncio.current_task():
                lapse.cancel()

        stream.on_close = forget
        self._lapses[token] = asyncio.create_task(self._lapse(stream), name="mark1-sse-reservation")
        return PlainTextResponse(token, status_code=201)

    async def _lapse(self, stream: HTTPStream) -> None:
        """A reservation whose stream is not opened in time frees its slot."""
        await asyncio.sleep(self._timeout)
        if not stream.is_open:
            await stream.discard()

    async def _reservation(self, request: Request, token: str | None) -> HTTPStream:
        """The reservation a token names; a Bearer token sent along must be its caller's."""
        stream = self._reservations.get(token) if token is not None else None
        if stream is None:
            raise StreamRefused(404, "NOT_FOUND", "Stream not found")
        if request.headers.get("authorization"):
            caller = (await self._streams.admit(request)).principal
            if (caller.subject, caller.tenant) != (stream.subject, stream.tenant):
                raise StreamRefused(403, "FORBIDDEN", "This stream belongs to another caller")
        return stream

    async def _connect(self, request: Request, token: str) -> HTTPStream:
        stream = await self._reservation(request, token)
        if stream.is_open:
            raise StreamRefused(409, "CONFLICT", "Stream already open")
        stream.claim()
        lapse = self._lapses.pop(token, None)
        if lapse is not None:
            lapse.cancel()
        return stream

    async def _operation(self, request: Request, token: str) -> Response:
        stream = await self._reservation(request, token)
        params = await read_params(request, self._streams.documents)
        op_id = (params.extensions or {}).get("operationId")
        if not isinstance(op_id, str) or not op_id:
            raise StreamRefused(400, "BAD_USER_INPUT", "Operation ID is missing")
        if stream.running(op_id):
            raise StreamRefused(409, "CONFLICT", "Operation with ID already exists")
        limit = self._streams.runtime.settings.max_subscriptions_per_socket
        if stream.operations >= limit:
            # MAX_SUBSCRIPTIONS_PER_SOCKET: the operation over it is refused, the others go on.
            message = f"Too many operations on this stream (at most {limit})"
            raise StreamRefused(429, "RATE_LIMITED", message)
        stream.start(op_id, params, OperationFraming(op_id), method=request.method)
        return Response(status_code=202)

    async def _stop(self, request: Request, token: str | None) -> Response:
        stream = await self._reservation(request, token)
        op_id = request.query_params.get("operationId")
        if not op_id:
            raise StreamRefused(400, "BAD_USER_INPUT", "Operation ID is missing")
        await stream.stop(op_id)
        return Response(status_code=200)
