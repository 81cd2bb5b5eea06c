"""The legacy graphql-ws protocol handler (subscriptions-transport-ws clients).

Data flow of one socket: ``handle`` arms the connection_init deadline (4408),
which strawberry's legacy handler lacks; ``handle_message`` refuses a
malformed message with ``connection_error`` and 4400; ``connection_init`` is
authenticated by the endpoint's socket policy (4403 on refusal); a ``start``
whose persisted document is refused gets ``error`` (persisted.py); ``start``
over MAX_SUBSCRIPTIONS_PER_SOCKET gets ``error`` RATE_LIMITED. Each operation
runs in ``handle_async_results``: subscriptions only (a document that cannot
run gets ``error``); live-only ones go to the endpoint's multiplexer, the
others to strawberry, their stream closed however the task ends; then
``complete``; one that fails inside the server is logged and ends with
``error`` INTERNAL (failures.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from graphql import OperationType
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import CompleteMessage, ErrorMessage
from strawberry.types.execution import PreExecutionError
from strawberry.utils.aio import aclosing

from api.logging import context as log_context
from resolvers.context import Context
from resolvers.grouping import Plan
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
from resolvers.transport.policy import CloseCode

if TYPE_CHECKING:
    from resolvers.transport.endpoint import GraphQLEndpoint


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """The legacy graphql-ws protocol (subscriptions-transport-ws clients)."""

    async def handle(self) -> None:
        # strawberry's legacy handler waits for connection_init for ever; an
        # unauthenticated socket gets the same deadline as graphql-transport-ws. A
        # timer, not a sleeping task: the task stayed referenced for the socket's life.
        delay = self.view.runtime.settings.ws_init_timeout  # type: ignore[attr-defined]
        timer = asyncio.get_running_loop().call_later(delay, self._connection_init_deadline)
        self._closing: asyncio.Task[None] | None = None
        try:
            await super().handle()
        finally:
            timer.cancel()
            closing, self._closing = self._closing, None
            if closing is not None:
                closing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await closing

    def _connection_init_deadline(self) -> None:
        if not self.connection_acknowledged:
            self._closing = asyncio.create_task(self._close_unacknowledged())

    async def _close_unacknowledged(self) -> None:
        with contextlib.suppress(Exception):
            await self.websocket.close(
                CloseCode.CONNECTION_INIT_TIMEOUT, "Connection initialisation timeout"
            )

    async def handle_message(self, message: Any) -> None:
        if self.connection_acknowledged:
            view: GraphQLEndpoint = self.view  # type: ignore[assignment]
            refused = fill_operation(view.documents, message, self.tasks)
            if refused is not None:
                await self.send_message(
                    ErrorMessage(type="error", id=message["id"], payload=refused)
                )
                return
        if not well_formed(message, legacy=True):
            await self.send_message(
                {"type": "connection_error", "payload": {"message": "Invalid message"}}
            )
            await self.websocket.close(CloseCode.BAD_REQUEST, "Invalid message")
            return
        await super().handle_message(message)

    async def handle_start(self, message: Any) -> None:
        limit = self.max_subscriptions_per_connection
        id = message.get("id")
        if self.connection_acknowledged and over_limit(limit, id, self.tasks):
            assert limit is not None
            await self.send_message(
                ErrorMessage(type="error", id=id, payload=operation_limit_error(limit))
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
        log_context.bind_operation(operation_id, operation_name)
        settings = self.view.runtime.settings  # type: ignore[attr-defined]
        try:
            kind = chosen_operation(query, operation_name, max_tokens=settings.max_tokens)
            if kind is not OperationType.SUBSCRIPTION:
                raise DocumentRejected("The legacy graphql-ws protocol runs subscriptions only")
        except DocumentRejected as rejected:
            # As subscriptions-transport-ws's own server: a document that cannot run
            # gets `error` (strawberry would let a syntax error kill the task silently).
            self.tasks.pop(operation_id, None)
            await self.send_message(
                ErrorMessage(type="error", id=operation_id, payload=rejected.error)
            )
            return
        view: GraphQLEndpoint = self.view  # type: ignore[assignment]
        plan = view.multiplexer.plan(query, variables, operation_name, self.context)
        if plan is not None:
            await self._run_multiplexed(view, plan, operation_id, query, variables)
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
                            ErrorMessage(
                                type="error", id=operation_id, payload=result.errors[0].formatted
                            )
                        )
                        return
                    first = False
                    await self.send_data_message(result, operation_id)
            await self.send_message(CompleteMessage(type="complete", id=operation_id))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self.send_message(CompleteMessage(type="complete", id=operation_id))
            raise
        except Exception:
            await self._fail(operation_id)
        finally:
            self.subscriptions.pop(operation_id, None)
            self.tasks.pop(operation_id, None)

    async def _fail(self, operation_id: str) -> None:
        """End an operation that raised with ``error`` INTERNAL (failures.py)."""
        socket: WebSocket = self.websocket.ws  # type: ignore[attr-defined]
        if socket_closed(socket):
            return  # the client went away mid-send; handle() cleans up the rest
        operation_failed(operation_id, GRAPHQL_WS_PROTOCOL)
        try:
            await self.send_message(
                ErrorMessage(type="error", id=operation_id, payload=internal_error())
            )
        except Exception:
            if not socket_closed(socket):
                raise

    async def _run_multiplexed(
        self,
        view: GraphQLEndpoint,
        plan: Plan,
        operation_id: str,
        query: str,
        variables: dict[str, object] | None,
    ) -> None:
        """Identical live subscriptions share one execution (resolvers/multiplex.py)."""
        socket: WebSocket = self.websocket.ws  # type: ignore[attr-defined]
        framing = SocketFraming(operation_id, legacy=True)
        try:
            await view.multiplexer.serve(
                plan,
                framing,
                socket.send_text,
                context=self.context,
                query=query,
                variables=variables,
                write_frame=framing.writer(frame_writer(socket.scope)),
            )
        except asyncio.CancelledError:
            # `stop`: the legacy protocol confirms with `complete`.
            with contextlib.suppress(Exception):
                await self.send_message(CompleteMessage(type="complete", id=operation_id))
            raise
        except Exception:
            await self._fail(operation_id)
        finally:
            self.tasks.pop(operation_id, None)
