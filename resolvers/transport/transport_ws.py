"""The graphql-transport-ws protocol handler (graphql-ws PROTOCOL.md).

Data flow of one message: ``handle_message`` puts the text of a persisted
document into a ``subscribe`` payload, or ends that operation with ``error``
when the document is refused (persisted.py); it refuses a malformed message
with 4400 (admission.well_formed); ``subscribe`` over MAX_SUBSCRIPTIONS_PER_SOCKET
gets ``error`` RATE_LIMITED and the others go on; strawberry then starts the
operation. ``run_operation`` hands live-only subscriptions to the endpoint's
multiplexer (one execution shared by identical operations) and everything
else to strawberry (a mutation marked as in flight, so that a drain closes
the socket only after it), whose results pass through ``_send_result_stream``: a
document that cannot run, fails validation, or whose subscription resolver
raises ends with ``error``; the socket stays open. An operation that fails
inside the server (the multiplexer included) is logged and ends with
``error`` INTERNAL (failures.py). ``complete`` from the client returns only
once the operation has stopped, so its bus subscriber and gauges are gone
before the next message is read.
"""

from __future__ import annotations

import asyncio
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from graphql import OperationType
from starlette.websockets import WebSocket
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ErrorMessage
from strawberry.types.execution import ExecutionResult, PreExecutionError

from api.logging import context as log_context
from resolvers.context import Context
from resolvers.member import SocketFraming
from resolvers.transport.admission import (
    DocumentRejected,
    chosen_operation,
    operation_limit_error,
    over_limit,
    well_formed,
)
from resolvers.transport.failures import internal_error, operation_failed, socket_closed
from resolvers.transport.frames import frame_writer
from resolvers.transport.persisted import fill_operation
from resolvers.transport.policy import CloseCode, mutating

if TYPE_CHECKING:
    from resolvers.transport.endpoint import GraphQLEndpoint

_INIT_TIMEOUT = "Connection initialisation timeout"  # strawberry's reason, as clients see it


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws, where a stream that dies of an error ends with ``error``."""

    _init_deadline: asyncio.TimerHandle | None = None

    def on_request_accepted(self) -> None:
        # strawberry's sleeping task, kept (done) for the socket's life, cost about
        # 0.9 KiB per socket; a timer costs a tenth, and a task exists only if it fires.
        delay = self.connection_init_wait_timeout.total_seconds()
        self._init_deadline = asyncio.get_running_loop().call_later(delay, self._init_timed_out)

    def _init_timed_out(self) -> None:
        self._init_deadline = None
        if self.connection_init_received:
            return
        self.connection_timed_out = True
        task = asyncio.create_task(self._close_unacknowledged())
        task.add_done_callback(self._task_done)
        # strawberry's shutdown cancels and awaits it, as it did its own task.
        self.connection_init_timeout_task = task

    async def _close_unacknowledged(self) -> None:
        try:
            await self.websocket.close(code=CloseCode.CONNECTION_INIT_TIMEOUT, reason=_INIT_TIMEOUT)
        except Exception as error:  # as strawberry's own timeout task
            await self.handle_task_exception(error)

    async def handle_connection_init(self, message: Any) -> None:
        if self._init_deadline is not None:
            self._init_deadline.cancel()
            self._init_deadline = None
        await super().handle_connection_init(message)

    async def shutdown(self) -> None:
        if self._init_deadline is not None:
            self._init_deadline.cancel()
            self._init_deadline = None
        await super().shutdown()

    async def handle_message(self, message: Any) -> None:
        if self.connection_acknowledged:
            view: GraphQLEndpoint = self.view  # type: ignore[assignment]
            refused = fill_operation(view.documents, message, self.operations)
            if refused is not None:
                # PROTOCOL.md: an operation that cannot run gets `error`; the socket goes on.
                await self.send_message(
                    ErrorMessage(id=message["id"], type="error", payload=[refused])
                )
                return
        if not well_formed(message, legacy=False):
            await self.handle_invalid_message("Invalid message")
            return
        await super().handle_message(message)

    async def handle_subscribe(self, message: Any) -> None:
        # strawberry refuses the operation over the limit with an error that has no
        # code; ours says RATE_LIMITED (DESIGN: the others go on).
        limit = self.max_subscriptions_per_connection
        id = message.get("id")
        if self.connection_acknowledged and over_limit(limit, id, self.operations):
            assert limit is not None
            await self.send_message(
                ErrorMessage(id=id, type="error", payload=[operation_limit_error(limit)])
            )
            return
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        """Identical live subscriptions share one execution (resolvers/multiplex.py)."""
        log_context.bind_operation(operation.id, operation.operation_name)
        view: GraphQLEndpoint = self.view  # type: ignore[assignment]
        plan = view.multiplexer.plan(
            operation.query, operation.variables, operation.operation_name, self.context
        )
        socket: WebSocket = self.websocket.ws  # type: ignore[attr-defined]
        if plan is None:
            marked = mutating(socket) if _is_mutation(operation, view) else nullcontext()
            with marked:
                await super().run_operation(operation)
            return
        framing = SocketFraming(operation.id, legacy=False)
        try:
            await view.multiplexer.serve(
                plan,
                framing,
                socket.send_text,
                context=self.context,
                query=operation.query,
                variables=operation.variables,
                write_frame=framing.writer(frame_writer(socket.scope)),
            )
        except Exception:
            await self._fail(operation, socket)
        finally:
            if self.operations.get(operation.id) is operation:
                self.forget_id(operation.id)

    async def cleanup_operation(self, operation_id: str) -> None:
        """Stop an operation and wait until it has let go of the bus and the gauges.

        strawberry only cancels the task, so ``complete`` took effect some loop
        iterations later; waiting makes it take effect before the next message.
        """
        operation = self.operations.get(operation_id)
        await super().cleanup_operation(operation_id)
        task = operation.task if operation is not None else None
        if task is not None and task is not asyncio.current_task():
            await asyncio.wait({task})  # its outcome is the task's own business

    async def _fail(self, operation: Operation[Context, None], socket: WebSocket) -> None:
        """End an operation that raised with ``error`` INTERNAL (failures.py)."""
        if socket_closed(socket):
            return  # the socket went away mid-send; handle() cleans up the rest
        operation_failed(operation.id, GRAPHQL_TRANSPORT_WS_PROTOCOL)
        try:
            await operation.send_operation_message(
                ErrorMessage(id=operation.id, type="error", payload=[internal_error()])
            )
        except Exception:
            if not socket_closed(socket):
                raise

    async def _send_result_stream(self, operation: Any, result_source: Any) -> None:
        settings = self.view.runtime.settings  # type: ignore[attr-defined]
        try:
            kind = chosen_operation(
                operation.query, operation.operation_name, max_tokens=settings.max_tokens
            )
        except DocumentRejected as rejected:
            # PROTOCOL.md: an operation that cannot run gets `error`; the socket
            # and its other operations go on.
            await operation.send_operation_message(
                ErrorMessage(id=operation.id, type="error", payload=[rejected.error])
            )
            return
        try:
            await self._send_results(operation, result_source, kind)
        except Exception:
            # strawberry would log this and end the operation with `complete`.
            await self._fail(operation, self.websocket.ws)  # type: ignore[attr-defined]

    async def _send_results(self, operation: Any, result_source: Any, kind: OperationType) -> None:
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


def _is_mutation(operation: Operation[Context, None], view: GraphQLEndpoint) -> bool:
    """Whether it is a mutation (a drain lets it finish before closing the socket)."""
    try:
        kind = chosen_operation(
            operation.query, operation.operation_name, max_tokens=view.max_tokens
        )
    except DocumentRejected:
        return False  # it will not run: _send_result_stream answers with `error`
    return kind is OperationType.MUTATION
