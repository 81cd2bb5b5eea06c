"""Multiplexed subscriptions: identical live subscriptions share one execution.

Operations with the same document, variables, tenant and roles would compute
the same result for every event. A ``Group`` runs that subscription once,
serialises each result once, and hands the same bytes to every member; only
the operation id in the envelope differs. Each member has its own bounded
outbox and writer, so one slow socket overflows alone (SLOW_CONSUMER with its
own ``lastEventId``) and never stalls the group.

Only *live-only* subscriptions are grouped: ``taskUpdates``, ``agentStatus``
and ``events`` without ``after``. Those with per-subscriber history or
initial state (``events(after:)``, ``workflowProgress``, ``systemMetrics``)
run on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

import orjson
import strawberry
from graphql import (
    FieldNode,
    GraphQLError,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
    parse,
)
from strawberry.types.execution import ExecutionResult
from strawberry.utils.aio import aclosing

from api.domain import EventRecord
from api.errors import SlowConsumer
from api.logging import context as log_context
from api.metrics import Metrics
from resolvers.context import Context

log = logging.getLogger(__name__)

_CACHEABLE = 16 * 1024  # longer documents are parsed without being kept
_LIVE_ONLY = frozenset({"taskUpdates", "agentStatus", "events"})

_INTERNAL = orjson.dumps(
    [GraphQLError("Internal server error", extensions={"code": "INTERNAL"}).formatted]
).decode()

GroupKey = tuple[str, bytes, str | None, str, frozenset[str]]
SendText = Callable[[str], Awaitable[None]]


@lru_cache(maxsize=256)
def _cached_root_field(query: str, operation_name: str | None, max_tokens: int) -> FieldNode | None:
    return _root_field(query, operation_name, max_tokens)


def _root_field(query: str, operation_name: str | None, max_tokens: int) -> FieldNode | None:
    """The single root field of a subscription document, or None.

    Parsed with the same ``max_tokens`` as execution, before it: a huge document
    must not stall the event loop here first.
    """
    try:
        document = parse(query, max_tokens=max_tokens)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1 or operations[0].operation is not OperationType.SUBSCRIPTION:
        return None
    selections = operations[0].selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        return None
    return selections[0]


def group_key(
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    context: Context,
    *,
    max_tokens: int,
) -> GroupKey | None:
    """The multiplexing key of an operation, or None when it must run on its own."""
    field = (
        _cached_root_field(query, operation_name, max_tokens)
        if len(query) <= _CACHEABLE
        else _root_field(query, operation_name, max_tokens)
    )
    if field is None or field.name.value not in _LIVE_ONLY:
        return None
    for argument in field.arguments or ():
        if argument.name.value != "after":
            continue
        value = argument.value
        if isinstance(value, VariableNode):
            if (variables or {}).get(value.name.value) is not None:
                return None
        elif not isinstance(value, NullValueNode):
            return None
    principal = context.principal
    try:
        encoded_vars = orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return None
    return (
        query,
        encoded_vars,
        operation_name,
        principal.tenant,
        frozenset(r.value for r in principal.roles),
    )


class GroupContext(Context):
    """The context a group executes in: members, not the group, count as subscriptions."""

    def __init__(self, base: Context) -> None:
        super().__init__(base.runtime, base.request, principal=base.principal, cache=False)
        self.live = asyncio.Event()

    def stream_started(self) -> None:
        self.live.set()

    def stream_ended(self) -> None:
        self.live.set()  # never leave a joining member waiting

    def delivering(self, record: EventRecord, *, live: bool) -> None:
        self.last_record = record


class Member:
    """One operation in a group: a bounded outbox of ready-made messages and its writer."""

    def __init__(self, op_id: str, send_text: SendText, capacity: int, metrics: Metrics) -> None:
        self.op_id = op_id
        self._prefix = '{"id":' + orjson.dumps(op_id).decode() + ',"type":'
        self._send = send_text
        self._capacity = capacity
        self._metrics = metrics
        self._queue: deque[tuple[str, EventRecord | None]] = deque()
        self._ready = asyncio.Event()
        self._final: str | None = None
        self._slow = False
        self.last_event_id: int | None = None

    def offer(self, payload: str, record: EventRecord | None) -> None:
        """Queue one result; on overflow the member ends with SLOW_CONSUMER."""
        if self._final is not None or self._slow:
            return
        if len(self._queue) >= self._capacity:
            # Dropped: the client resumes from lastEventId, decided when the error is sent.
            self._queue.clear()
            self._metrics.slow_consumers.inc()
            self._slow = True
            self._ready.set()
            return
        self._queue.append((payload, record))
        self._ready.set()

    def finish(self, kind: str, payload: str | None = None) -> None:
        """End after what is queued: ``complete``, or ``error`` with a payload."""
        if self._final is None and not self._slow:
            body = f',"payload":{payload}' if payload is not None else ""
            self._final = f'{self._prefix}"{kind}"{body}}}'
            self._ready.set()

    async def run(self) -> None:
        """Send queued messages until the final one."""
        while True:
            while self._queue:
                payload, record = self._queue.popleft()
                await self._send(f'{self._prefix}"next","payload":{payload}}}')
                if record is not None:
                    self._metrics.delivered(record, live=True)
                    self.last_event_id = record.id
            if self._slow:
                error = SlowConsumer(self.last_event_id)
                formatted = GraphQLError(error.message, extensions=error.extensions).formatted
                self._slow = False
                self.finish("error", orjson.dumps([formatted]).decode())
            if self._final is not None:
                await self._send(self._final)
                return
            self._ready.clear()
            await self._ready.wait()


class Group:
    """One execution of a subscription, shared by its members."""

    def __init__(
        self,
        key: GroupKey,
        *,
        schema: strawberry.Schema,
        context: GroupContext,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        on_empty: Callable[[Group], None],
    ) -> None:
        self.key = key
        self.members: set[Member] = set()
        self._context = context
        self._schema = schema
        self._query = query
        self._variables = variables
        self._operation_name = operation_name
        self._on_empty = on_empty
        self._task = asyncio.create_task(
            self._run(), name="mark1-subscription-group", context=log_context.shared()
        )

    def join(self, member: Member) -> None:
        self.members.add(member)

    async def wait_live(self) -> None:
        """Until the shared stream is on the bus (or has ended)."""
        live = asyncio.ensure_future(self._context.live.wait())
        try:
            await asyncio.wait({live, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            live.cancel()

    async def leave(self, member: Member) -> None:
        """Drop a member; the last one out stops the execution and waits for it.

        Waiting is what makes unsubscribing deterministic: when the last
        member's operation ends, the group has left the bus.
        """
        self.members.discard(member)
        if not self.members:
            self._on_empty(self)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        try:
            stream = await self._schema.stream(
                self._query,
                variable_values=self._variables,
                context_value=self._context,
                operation_name=self._operation_name,
            )
            async with aclosing(stream):
                async for result in stream:
                    if not isinstance(result, ExecutionResult) or (
                        result.data is None and result.errors
                    ):
                        errors = getattr(result, "errors", None) or [
                            GraphQLError("Subscription failed")
                        ]
                        payload = orjson.dumps([e.formatted for e in errors]).decode()
                        for member in list(self.members):
                            member.finish("error", payload)
                        return
                    body: dict[str, Any] = {"data": result.data}
                    if result.errors:
                        body["errors"] = [e.formatted for e in result.errors]
                    payload = orjson.dumps(body).decode()
                    record = self._context.last_record
                    for member in list(self.members):
                        member.offer(payload, record)
            for member in list(self.members):
                member.finish("complete")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "subscription group failed (operation %s, %d members)",
                self._operation_name,
                len(self.members),
            )
        finally:
            self._on_empty(self)
            # Whatever ended the execution, no member waits for ever: those without
            # a final message (the execution failed or was stopped) end with `error`.
            for member in list(self.members):
                member.finish("error", _INTERNAL)


class Multiplexer:
    """The groups of one process."""

    def __init__(
        self, schema: strawberry.Schema, metrics: Metrics, capacity: int, *, max_tokens: int
    ) -> None:
        self._schema = schema
        self._metrics = metrics
        self._capacity = capacity
        self._max_tokens = max_tokens
        self._groups: dict[GroupKey, Group] = {}

    def key(
        self,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        context: Context,
    ) -> GroupKey | None:
        return group_key(query, variables, operation_name, context, max_tokens=self._max_tokens)

    async def serve(
        self,
        key: GroupKey,
        op_id: str,
        send_text: SendText,
        *,
        context: Context,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
    ) -> None:
        """Run one member until its stream ends or it is cancelled; always leaves the group.

        A failure of the member itself (its writer) propagates to the caller,
        which decides whether the socket can still be told.
        """
        group = self._groups.get(key)
        if group is None:
            group = Group(
                key,
                schema=self._schema,
                context=GroupContext(context),
                query=query,
                variables=variables,
                operation_name=operation_name,
                on_empty=self._forget,
            )
            self._groups[key] = group
        member = Member(op_id, send_text, self._capacity, self._metrics)
        group.join(member)
        counted = False
        try:
            await group.wait_live()
            self._metrics.subscriptions.inc()
            counted = True
            await member.run()
        finally:
            if counted:
                self._metrics.subscriptions.dec()
            await group.leave(member)

    def _forget(self, group: Group) -> None:
        if self._groups.get(group.key) is group:
            del self._groups[group.key]

    async def close(self) -> None:
        for group in list(self._groups.values()):
            group._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await group._task
        self._groups.clear()
