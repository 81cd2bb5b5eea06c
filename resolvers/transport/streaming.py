"""Subscriptions over one long-lived HTTP response: what graphql-sse and multipart share.

Data flow of one stream: the wire format's module (sse.py, multipart.py) reads the
GraphQL request with ``read_params`` (the one place a streamed document is read)
and asks ``HTTPStreams`` to admit its caller: the Bearer token verified (401
without a good one, as a socket without one is closed with 4403) and one of the
subject's MAX_SOCKETS_PER_SUBJECT slots taken, the same slots WebSockets use
(429 when none is left). The answer is an ``HTTPStream``: a response that writes
its operations' messages straight to the server's ``send``, so a client that
stops reading back-pressures them as a socket does (their buffers fill and they
end with SLOW_CONSUMER); that writes a keep-alive every HTTP_STREAM_KEEPALIVE
seconds (one still unwritten after WS_PING_TIMEOUT ends the stream, as an
unanswered ping closes a socket); and that ends when the client disconnects,
when the token expires (each
operation first ends with UNAUTHENTICATED, where a socket is closed with 4403)
or, for a stream of one operation, when that operation ends. However it ends, its
operations are cancelled and awaited, and its slot and gauge given back.

Each operation runs through ``HTTPStreams.run_operation`` as the WebSocket
handlers run theirs: live-only subscriptions on the multiplexer (one execution
per event for identical ones), the rest (a cursor's replay-then-live,
``workflowProgress``, queries over SSE) on strawberry; a document that cannot run
ends with the format's rejection, an error raised while it runs with its failure,
a failure inside the server with INTERNAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import orjson
import strawberry
from graphql import GraphQLError, OperationType
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from strawberry.types.execution import ExecutionResult, PreExecutionError

from api.auth.tokens import parse_bearer
from api.clock import utcnow
from api.cluster.sockets import SocketSlots
from api.errors import Mark1Error, Unauthenticated
from api.logging import context as log_context
from api.runtime import Runtime
from resolvers.context import Context
from resolvers.member import Framing, SendText
from resolvers.multiplex import Multiplexer, failure_of, payload_of
from resolvers.transport.admission import DocumentRejected, chosen_operation
from resolvers.transport.failures import operation_failed
from resolvers.transport.params import GraphQLParams, StreamRefused
from resolvers.transport.persisted import PersistedDocuments, refusal

log = logging.getLogger(__name__)

_PROTOCOL = "HTTP stream"
# What each operation still running ends with at the token's `exp`.
_TOKEN_EXPIRED = orjson.dumps(
    [GraphQLError("Token expired", extensions={"code": "UNAUTHENTICATED"}).formatted]
).decode()


@dataclass(frozen=True)
class Wire:
    """What a stream format writes around its operations' messages."""

    headers: Mapping[str, str]
    opening: str  # written at once, so the headers and a first byte get through proxies
    heartbeat: str  # every HTTP_STREAM_KEEPALIVE seconds
    closing: str  # when the server ends the response (not when the client left)


async def _write_all(write: SendText, texts: list[str]) -> None:
    for text in texts:
        await write(text)


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel a task and wait until it has stopped (its outcome is its own business)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


class HTTPStreams:
    """The HTTP subscription streams of one endpoint: who may open one, and how an
    operation runs on one."""

    def __init__(
        self,
        runtime: Runtime,
        schema: strawberry.Schema,
        multiplexer: Multiplexer,
        slots: SocketSlots,
        documents: PersistedDocuments,
    ) -> None:
        self.runtime = runtime
        self.documents = documents
        self.metrics = runtime.metrics
        self.keepalive = runtime.settings.http_stream_keepalive
        self.stall_timeout = runtime.settings.ws_ping_timeout
        self.slots = slots
        self._schema = schema
        self._multiplexer = multiplexer
        self._max_tokens = runtime.settings.max_tokens

    async def admit(self, request: Request) -> Context:
        """The caller's context, from its Bearer token; StreamRefused 401 without a good one.

        The loaders do not cache: a stream lives long, and must not serve stale entities.
        """
        try:
            token = parse_bearer(request.headers.get("authorization"))
            if token is None:
                raise Unauthenticated("Authentication required")
            principal = await self.runtime.verifier.verify(token)
        except Mark1Error as exc:
            raise StreamRefused.of(401, exc, **{"WWW-Authenticate": "Bearer"}) from None
        log_context.bind_principal(principal.tenant, principal.subject)
        return Context(self.runtime, request, principal=principal, cache=False)

    async def open(self, context: Context, wire: Wire, *, one_operation: bool) -> HTTPStream:
        """A stream for the caller, holding one of its subject's slots (429 when none is left,
        503 while the process drains: the client retries, and reaches another process)."""
        if self.runtime.drain.draining:
            raise StreamRefused(
                503, "UNAVAILABLE", "Service restarting: reconnect", {"Retry-After": "1"}
            )
        subject = context.principal.subject
        if not await self.slots.take(subject):
            raise StreamRefused(
                429,
                "RATE_LIMITED",
                f"Too many connections for this subject (at most {self.slots.limit})",
            )
        return HTTPStream(self, context, wire, one_operation=one_operation)

    async def run_operation(
        self,
        framing: Framing,
        write: SendText,
        context: Context,
        params: GraphQLParams,
        *,
        method: str,
        label: str,
    ) -> None:
        """Run one operation to its end, writing its messages in ``framing``."""
        if params.refused is not None:
            # As over a socket: the operation ends with the refusal, the stream goes on.
            await _write_all(write, framing.rejected([refusal(params.refused)]))
            return
        try:
            kind = chosen_operation(
                params.query, params.operation_name, max_tokens=self._max_tokens
            )
            if kind is OperationType.MUTATION and method == "GET":
                raise DocumentRejected("Mutations cannot run over GET")
        except DocumentRejected as rejected:
            await _write_all(write, framing.rejected([rejected.error]))
            return
        assert isinstance(params.query, str)
        try:
            plan = None
            if kind is OperationType.SUBSCRIPTION:
                plan = self._multiplexer.plan(
                    params.query, params.variables, params.operation_name, context
                )
            if plan is not None:
                await self._multiplexer.serve(
                    plan,
                    framing,
                    write,
                    context=context,
                    query=params.query,
                    variables=params.variables,
                )
            else:
                await self._execute(framing, write, context, params)
        except Exception:
            operation_failed(label, _PROTOCOL)
            await _write_all(write, framing.internal())

    async def _execute(
        self, framing: Framing, write: SendText, context: Context, params: GraphQLParams
    ) -> None:
        """strawberry runs it: every result of a subscription, the one of a query."""
        assert isinstance(params.query, str)
        results = await self._schema.stream(
            params.query,
            variable_values=params.variables,
            context_value=context,
            operation_name=params.operation_name,
        )
        async with aclosing(results):
            first = True
            async for result in results:
                if first and isinstance(result, PreExecutionError):
                    # Validation failed, or the subscription resolver refused (permissions).
                    errors = [e.formatted for e in result.errors or ()]
                    await _write_all(write, framing.rejected(errors))
                    return
                first = False
                if (failure := failure_of(result)) is not None:
                    await _write_all(write, framing.failed(failure))
                    return
                assert isinstance(result, ExecutionResult)
                await write(framing.data(payload_of(result)))
        await write(framing.complete)


class HTTPStream:
    """One streaming response and the operations it carries; an ASGI response."""

    def __init__(
        self, streams: HTTPStreams, context: Context, wire: Wire, *, one_operation: bool
    ) -> None:
        self.context = context
        self.subject = context.principal.subject
        self.tenant = context.principal.tenant
        self.on_close: Callable[[], None] | None = None
        self._streams = streams
        self._wire = wire
        self._one_operation = one_operation
        self._operations: dict[str, tuple[asyncio.Task[None], Framing]] = {}
        self._send: Send | None = None
        self._lock = asyncio.Lock()
        self._open = asyncio.Event()
        self._ended = asyncio.Event()
        self._claimed = False  # a request is about to serve it (single-connection mode)
        self._sealed = False  # ending: operations may not write any more
        self._released = False
        self._disconnected = False
        self._stalled = False
        self._expired = False
        self._drained = False

    # -- operations --------------------------------------------------------

    @property
    def operations(self) -> int:
        return len(self._operations)

    def running(self, op_id: str) -> bool:
        return op_id in self._operations

    def start(self, op_id: str, params: GraphQLParams, framing: Framing, *, method: str) -> None:
        """Run one operation on this stream (its writes wait until the stream is open)."""
        task = asyncio.create_task(
            self._run(op_id, params, framing, method), name="mark1-http-stream-operation"
        )
        self._operations[op_id] = (task, framing)

    async def stop(self, op_id: str) -> None:
        """Stop one operation and wait until it has let go of the bus and the gauges."""
        entry = self._operations.pop(op_id, None)
        if entry is not None:
            await _cancel(entry[0])

    async def _run(self, op_id: str, params: GraphQLParams, framing: Framing, method: str) -> None:
        if op_id:
            log_context.bind_operation(op_id, params.operation_name)
        try:
            await self._streams.run_operation(
                framing, self.write, self.context, params, method=method, label=op_id or "(one)"
            )
        finally:
            entry = self._operations.get(op_id)
            if entry is not None and entry[0] is asyncio.current_task():
                del self._operations[op_id]
            if self._one_operation:
                self._ended.set()

    # -- writing -----------------------------------------------------------

    async def write(self, text: str) -> None:
        """Write one whole message of an operation; nothing once the stream is ending.

        Without a wait it completes without suspending (resolvers/member.py drives
        it by hand); operations started on a reservation wait for its stream.
        """
        if not text or self._sealed:
            return
        if not self._open.is_set():
            await self._open.wait()
            if self._sealed:
                return
        await self._write(text)

    async def _write(self, text: str) -> None:
        assert self._send is not None
        async with self._lock:
            await self._send(
                {"type": "http.response.body", "body": text.encode(), "more_body": True}
            )

    # -- the response ------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._claimed or self._open.is_set()

    def claim(self) -> None:
        """A request serves this stream: no other may (graphql-sse: one per reservation)."""
        self._claimed = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._claimed = True
        self._send = send
        metrics = self._streams.metrics
        # Counted before the client can see the stream open (it may look at once).
        metrics.http_streams.inc()
        helpers: list[asyncio.Task[None]] = []
        finished = False
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(k.encode(), v.encode()) for k, v in self._wire.headers.items()],
                }
            )
            await self._write(self._wire.opening)
            self._open.set()
            helpers = [
                asyncio.create_task(self._until_disconnect(receive)),
                asyncio.create_task(self._keep_alive()),
                asyncio.create_task(self._until_expiry()),
            ]
            with self._streams.runtime.drain.holding(self._drain):
                await self._ended.wait()
            finished = True
        finally:
            # Cancelled (the server is shutting down), or a client that stopped reading:
            # the response just stops (uvicorn closes the connection), and clients
            # reconnect as they do after a dropped connection.
            for task in helpers:
                await _cancel(task)
            framings = await self._stop_operations()
            metrics.http_streams.dec()
            self._release()
        if finished and not (self._disconnected or self._stalled):
            # Bounded as the keep-alives are: a client that stopped reading just now
            # must not hold this request for ever (uvicorn closes it on the way out).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._streams.stall_timeout):
                    await self._finish(framings)

    async def _finish(self, running: list[Framing]) -> None:
        """The last words: at expiry each operation still running ends with UNAUTHENTICATED.

        A drained stream has none: it ends as a dropped connection does, without
        ``complete`` or the closing delimiter, so that clients reconnect (to another
        process, the drained one refusing with 503) and resume with ``after``.
        """
        assert self._send is not None
        if self._expired:
            for framing in running:
                await _write_all(self._write, framing.failed(_TOKEN_EXPIRED))
        if not self._drained:
            await self._write(self._wire.closing)
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _drain(self) -> None:
        """The process drains (api/drain.py): this stream's turn to end has come."""
        self._drained = True
        self._ended.set()

    async def discard(self) -> None:
        """End a stream no request served (a reservation that lapsed, or shutdown)."""
        await self._stop_operations()
        self._release()

    async def _stop_operations(self) -> list[Framing]:
        """Seal the stream and stop every operation; the framings of those still running."""
        self._sealed = True
        self._open.set()  # operations waiting for the stream see it sealed and return
        running = list(self._operations.values())
        self._operations.clear()
        for task, _ in running:
            await _cancel(task)
        return [framing for _, framing in running]

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        self._streams.slots.give_back(self.subject)
        if self.on_close is not None:
            self.on_close()

    async def _until_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._disconnected = True
        self._ended.set()

    async def _keep_alive(self) -> None:
        """A keep-alive every HTTP_STREAM_KEEPALIVE seconds. One that cannot be written
        within WS_PING_TIMEOUT means the client stopped reading or is gone without a
        word (no FIN): the stream ends, as a socket that leaves a ping unanswered."""
        streams = self._streams
        while True:
            await asyncio.sleep(streams.keepalive)
            try:
                # Not wait_for, which on Python 3.11 can lose this task's cancellation.
                async with asyncio.timeout(streams.stall_timeout):
                    await self._write(self._wire.heartbeat)
            except TimeoutError:
                log.warning(
                    "HTTP stream of %s: nothing could be written for %g s; closing it",
                    self.subject,
                    streams.stall_timeout,
                )
                self._stalled = True
                self._ended.set()
                return

    async def _until_expiry(self) -> None:
        """The token's ``exp`` ends the stream (no leeway for open streams, as for sockets)."""
        expires_at = self.context.principal.expires_at
        await asyncio.sleep(max((expires_at - utcnow()).total_seconds(), 0))
        self._expired = True
        self._ended.set()
