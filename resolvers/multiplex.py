"""Multiplexed subscriptions: identical subscriptions share one execution.

Operations in one group (resolvers/grouping.py: same live document, coerced
variables, tenant, roles and agent id) would compute the same result for
every event. A ``Group`` runs that subscription once per event, serialises
each result once, and hands the same bytes to every member
(resolvers/member.py), which splices in its operation id and writes. Both
WebSocket protocols and the HTTP streams (resolvers/transport/streaming.py)
use it, each with its own ``Framing``.

An operation that passed ``after`` joins its live-only group, and once the
group is live takes ``through``, the bus's head for the tenant at that moment
(at least its cursor). It replays the history in ``(after, through]`` by
executing its own document per historical event, then goes live on the
group's results above ``through``. Why nothing is lost or sent twice:

- every id up to ``through`` is in the outbox when the replay reads it: the
  bus advances its head only to committed ids, and ids commit in order
  (api/db/events.py), so the bounded read is the whole of ``(after, through]``
  (or the replay ends with EVENTS_PRUNED, as any replay from a cursor older
  than what is kept);
- every matching event above ``through`` reaches the member from the group:
  the bus dispatches to a subscriber every event above its head at the time
  the subscriber joined, once, in id order (api/events/bus.py); the group's
  subscriber joined before ``through`` was read, and the member was in the
  group before that, so it is offered every one of them, in order;
- the member accepts a result only if its id is above the last accepted one
  and, while replaying, above ``through`` (resolvers/member.py): ids reach
  the socket in increasing order, each once.

A group holds no socket or request: its context has the caller's principal
only, and a member's socket is referenced by the member alone, which the
group drops when the operation ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from functools import lru_cache, partial
from operator import methodcaller
from typing import Any

import orjson
import strawberry
from graphql import GraphQLError
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

from api.domain import EventRecord
from api.logging import context as log_context
from api.metrics import Metrics
from resolvers.context import Context
from resolvers.grouping import GroupKey, Plan, Shape, plan_for, shape_of
from resolvers.member import Framing, Member, Payload, SendText, WriteFrame

log = logging.getLogger(__name__)

_CACHEABLE = 16 * 1024  # longer documents are shaped without being kept


class GroupContext(Context):
    """The context a group executes in: the caller's principal, no request or socket.

    Members, not the group, count as subscriptions and deliveries.
    """

    def __init__(self, base: Context) -> None:
        super().__init__(base.runtime, None, principal=base.principal, cache=False)
        self.live = asyncio.Event()

    def stream_started(self) -> None:
        self.live.set()

    def stream_ended(self) -> None:
        self.live.set()  # never leave a joining member waiting

    def delivering(self, record: EventRecord, *, live: bool) -> None:
        self.last_record = record


class ReplayContext(Context):
    """The context of a member's replay: history up to ``through`` only; the group
    supplies the rest."""

    def __init__(self, base: Context, through: int) -> None:
        super().__init__(base.runtime, None, principal=base.principal, cache=False)
        self.history_through = through

    def stream_started(self) -> None:
        pass

    def stream_ended(self) -> None:
        pass

    def delivering(self, record: EventRecord, *, live: bool) -> None:
        self.last_record = record


def failure_of(result: object) -> str | None:
    """The errors (JSON) that end a stream on this result, or None for a good result."""
    if isinstance(result, ExecutionResult) and not (result.data is None and result.errors):
        return None
    errors = getattr(result, "errors", None) or [GraphQLError("Subscription failed")]
    return orjson.dumps([e.formatted for e in errors]).decode()


def payload_of(result: ExecutionResult) -> str:
    """The result as the JSON every member sends (serialised once per event)."""
    return _serialised(result).decode()


def _serialised(result: ExecutionResult) -> bytes:
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [e.formatted for e in result.errors]
    return orjson.dumps(body)


class Group:
    """One execution of a subscription, shared by its members."""

    def __init__(
        self,
        plan: Plan,
        *,
        schema: strawberry.Schema,
        context: GroupContext,
        multiplexer: Multiplexer,
    ) -> None:
        self.key = plan.key
        self.members: set[Member] = set()
        self._plan = plan
        self._schema = schema
        self._context = context
        self._multiplexer = multiplexer
        self._metrics = multiplexer.metrics
        # Its log lines carry the tenant, not the first subscriber's request or operation.
        self.task = asyncio.create_task(
            self._run(), name="mark1-subscription-group", context=log_context.shared()
        )

    async def wait_live(self) -> None:
        """Until the shared stream is on the bus (or has ended)."""
        live = asyncio.ensure_future(self._context.live.wait())
        try:
            await asyncio.wait({live, self.task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            live.cancel()

    async def leave(self, member: Member) -> None:
        """Drop a member; the last one out stops the execution and waits for it.

        Waiting is what makes unsubscribing deterministic: when the last
        member's operation ends, the group has left the bus.
        """
        self.members.discard(member)
        if not self.members:
            self._multiplexer.forget(self)
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def _end(self, messages: Callable[[Framing], list[str]]) -> None:
        self._multiplexer.flush()  # the results before the end go first
        for member in list(self.members):
            member.finish(messages(member.framing))

    def _fan_out(self, payload: Payload, record: EventRecord | None) -> None:
        # The members as of this result; the multiplexer writes it with the other
        # groups' results of this turn of the loop.
        self._multiplexer.defer(self, list(self.members), payload, record)

    def deliver(self, members: list[Member], payload: Payload, record: EventRecord | None) -> int:
        """Offer one result to those of ``members`` still in the group; how many were
        written at once (the multiplexer counts those deliveries)."""
        written = 0
        current = self.members
        for member in members:
            if member in current:  # one that left meanwhile has ended its operation
                written += member.offer(payload, record)
        return written

    async def _run(self) -> None:
        plan = self._plan
        try:
            stream = await self._schema.stream(
                plan.live_query,
                variable_values=plan.live_variables,
                context_value=self._context,
                operation_name=plan.operation_name,
            )
            async with aclosing(stream):
                first = True
                async for result in stream:
                    if first and isinstance(result, PreExecutionError):
                        errors = [e.formatted for e in result.errors or ()]
                        self._end(methodcaller("rejected", errors))
                        return
                    first = False
                    if (failure := failure_of(result)) is not None:
                        self._end(methodcaller("failed", failure))
                        return
                    assert isinstance(result, ExecutionResult)
                    utf8 = _serialised(result)
                    self._fan_out(Payload(utf8), self._context.last_record)
            self._end(lambda f: [f.complete])
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "subscription group failed (operation %s, %d members)",
                self._plan.operation_name,
                len(self.members),
            )
        finally:
            self._multiplexer.forget(self)
            # Whatever ended the execution, no member waits for ever: those without a
            # final message (the execution failed or was stopped) end with `error`.
            self._end(methodcaller("internal"))


class Multiplexer:
    """The groups of one process."""

    def __init__(
        self, schema: strawberry.Schema, metrics: Metrics, capacity: int, *, max_tokens: int
    ) -> None:
        self._schema = schema
        self.metrics = self._metrics = metrics
        self._capacity = capacity
        self._max_tokens = max_tokens
        self._groups: dict[GroupKey, Group] = {}
        # Results the groups computed in this turn of the event loop, written together
        # at the start of the next (see ``defer``).
        self._pending: list[tuple[Group, list[Member], Payload, EventRecord | None]] = []
        self._flush_scheduled = False
        graphql_schema = schema._schema
        self._shape_uncached = partial(shape_of, graphql_schema, max_tokens=max_tokens)
        self._shape_cached = lru_cache(maxsize=256)(self._shape_uncached)

    @property
    def group_count(self) -> int:
        return len(self._groups)

    def plan(
        self,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        context: Context,
    ) -> Plan | None:
        """How this operation runs multiplexed, or None when it must run on its own."""
        shape: Shape | None = (
            self._shape_cached(query, operation_name)
            if len(query) <= _CACHEABLE
            else self._shape_uncached(query, operation_name)
        )
        if shape is None or context.principal_or_none is None:
            return None
        return plan_for(self._schema._schema, shape, variables, operation_name, context)

    async def serve(
        self,
        plan: Plan,
        framing: Framing,
        send_text: SendText,
        *,
        context: Context,
        query: str,
        variables: dict[str, Any] | None,
        write_frame: WriteFrame | None = None,
    ) -> None:
        """Run one member until its stream ends or it is cancelled; always leaves the group.

        ``query`` and ``variables`` are the operation's own, replayed when it passed
        ``after``; the group runs the plan's live-only equivalent. ``write_frame``
        writes a result straight to the socket while it can (results then skip the
        ASGI send: resolvers/transport/frames.py). A failure of the
        member itself (a write the socket refused) propagates to the caller, which
        decides whether the socket can still be told.
        """
        group = self._groups.get(plan.key)
        if group is None:
            group = Group(
                plan, schema=self._schema, context=GroupContext(context), multiplexer=self
            )
            self._groups[plan.key] = group
            self._metrics.subscription_groups.inc()
        member = Member(
            framing,
            send_text,
            self._capacity,
            self._metrics,
            after=plan.after,
            write_frame=write_frame,
        )
        group.members.add(member)
        counted = False
        try:
            await group.wait_live()
            self._metrics.subscriptions.inc()
            counted = True
            if plan.after is not None:
                # Read at once after the group is live and the member in it (see above).
                head = context.runtime.bus.last_seen(context.principal.tenant)
                through = max(plan.after, head)
                member.replay_through(through)
                if through > plan.after:
                    await self._replay(
                        member, context, query, variables, plan.operation_name, through
                    )
                else:
                    member.go_live()  # a cursor at the head: no history to execute
            await member.wait_ended()
            if member.failure is not None:
                raise member.failure
        finally:
            if counted:
                self._metrics.subscriptions.dec()
            await group.leave(member)

    async def _replay(
        self,
        member: Member,
        context: Context,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        through: int,
    ) -> None:
        """Send the history after the member's cursor up to ``through``, then put it
        live on its group."""
        replay = ReplayContext(context, through)
        try:
            ending = await self._replay_stream(member, replay, query, variables, operation_name)
        except Exception:
            # The member's own failure: its protocol handler logs it and ends the
            # operation with `error` INTERNAL (resolvers/transport/failures.py).
            member.abandon([])
            raise
        if ending is None:
            member.go_live()
        else:
            member.abandon(ending)

    async def _replay_stream(
        self,
        member: Member,
        replay: ReplayContext,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
    ) -> list[str] | None:
        """Execute the member's own document per historical event; the messages that
        end the member when it failed, None when it goes live."""
        stream = await self._schema.stream(
            query, variable_values=variables, context_value=replay, operation_name=operation_name
        )
        async with aclosing(stream):
            first = True
            async for result in stream:
                if first and isinstance(result, PreExecutionError):
                    return member.framing.rejected([e.formatted for e in result.errors or ()])
                first = False
                if (failure := failure_of(result)) is not None:
                    return member.framing.failed(failure)
                assert isinstance(result, ExecutionResult)
                await member.replayed(payload_of(result), replay.last_record)
                if not member.replaying:
                    break  # overflowed while replaying, or the socket went away
        return None

    def defer(
        self, group: Group, members: list[Member], payload: Payload, record: EventRecord | None
    ) -> None:
        """Write a group's result once every group the same event woke has computed its own.

        With one group per distinct document, a thousand groups each execute an
        event and write to their socket in turn. Written as they come, each write
        wakes a client that has gone back to sleep since the last one, and the
        server pays that wake-up in the write (a third of its CPU per message in
        the burst distinct profile, issue #8). Written back to back, as a single
        group's fan-out does, the clients are woken once per batch.
        """
        self._pending.append((group, members, payload, record))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def flush(self) -> None:
        """Write every deferred result now, each group's in the order it computed them."""
        pending, self._pending = self._pending, []
        # Counted once per event, not once per group: the groups of distinct
        # documents all deliver the same few events.
        written: dict[int, tuple[EventRecord, int]] = {}
        for group, members, payload, record in pending:
            try:
                count = group.deliver(members, payload, record)
            except Exception:
                log.exception("subscription fan-out failed (operation %s)", group.key[2])
                continue
            if record is not None and count:
                seen = written.get(id(record))
                written[id(record)] = (record, count + (seen[1] if seen else 0))
        for record, count in written.values():
            self._metrics.delivered(record, live=True, count=count)

    def forget(self, group: Group) -> None:
        if self._groups.get(group.key) is group:
            del self._groups[group.key]
            self._metrics.subscription_groups.dec()

    async def close(self) -> None:
        self._pending.clear()
        for group in list(self._groups.values()):
            group.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await group.task
        self._groups.clear()
