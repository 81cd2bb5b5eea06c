"""Root subscription fields: thin mappings of the event stream to GraphQL types.

The stream itself (join the bus, replay from the outbox, then live, with no
gap and no duplicate) is ``api/events/stream.py``. Every resolver iterates it
under ``aclosing``: when the operation ends (``complete`` from the client, an
error, a terminal workflow event) the stream's ``finally`` leaves the bus and
drops the gauge there and then, not whenever the garbage collector finalizes
an abandoned generator.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any, TypeVar

import strawberry

from api.db.events import EventQuery
from api.domain import TERMINAL_WORKFLOW_EVENTS, EventRecord, EventType, TaskStatus
from api.errors import BadUserInput, NotFound
from api.events.stream import replay_then_live
from api.events.subscriber import Predicate
from api.services.reads import parse_event_id
from resolvers.context import Context, Info
from resolvers.permissions import CanRead, IsOperator
from resolvers.queries import event_query, system_metrics
from resolvers.types import (
    Agent,
    Event,
    EventFilter,
    SystemMetrics,
    Task,
    Workflow,
    WorkflowProgress,
    WorkflowStep,
)

# Each tick runs two GROUP BY queries per tenant: shared, and not more often than this.
MIN_METRICS_INTERVAL = 1.0
_AGENT_EVENTS = frozenset({EventType.AGENT_REGISTERED, EventType.AGENT_STATUS_CHANGED})
_TASK_EVENTS = frozenset(t for t in EventType if t.name.startswith("TASK_"))

V = TypeVar("V")


class _Views:
    """The GraphQL objects of recent events, built once per event and kind.

    A thousand subscriptions with documents of their own run a thousand executions
    of each event; they share its ``Task`` (or ``Agent``, ``Event``) instead of
    building one each. Keyed by the record itself (held, so its id is not reused
    while cached); the oldest go first.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._views: dict[tuple[int, str], tuple[EventRecord, Any]] = {}

    def of(self, record: EventRecord, kind: str, build: Callable[[EventRecord], V]) -> V:
        key = (id(record), kind)
        hit = self._views.get(key)
        if hit is not None and hit[0] is record:
            view: V = hit[1]
            return view
        view = build(record)
        self._views[key] = (record, view)
        if len(self._views) > self._size:
            del self._views[next(iter(self._views))]
        return view


_views = _Views()


def _task(r: EventRecord) -> Task:
    assert r.snapshots.task is not None
    return Task.of(r.snapshots.task, r.snapshots)


def _agent(r: EventRecord) -> Agent:
    assert r.snapshots.agent is not None
    return Agent.of(r.snapshots.agent, r.snapshots)


def event_stream(
    ctx: Context,
    predicate: Predicate,
    *,
    after: int | None = None,
    replay: EventQuery | None = None,
) -> AsyncGenerator[EventRecord, None]:
    """The caller's tenant's matching events, replayed after ``after``, then live.

    Close it with ``aclosing``: its ``finally`` is what leaves the bus.
    """
    runtime = ctx.runtime
    return replay_then_live(
        runtime.bus,
        runtime.reads,
        ctx.principal.tenant,
        predicate,
        capacity=runtime.settings.subscriber_buffer,
        hooks=ctx,
        after=after,
        replay=replay,
    )


@strawberry.type
class Subscription:
    @strawberry.subscription(
        permission_classes=[CanRead], description="The task's new state on every change."
    )
    async def task_updates(
        self,
        info: Info,
        task_id: strawberry.ID | None = None,
        status: list[TaskStatus] | None = None,
    ) -> AsyncGenerator[Task, None]:
        ctx = info.context
        if task_id is not None and await ctx.task(task_id) is None:
            raise NotFound("Task", task_id)
        wanted = frozenset(status) if status else None

        def match(r: EventRecord) -> bool:
            # Only the task's own changes: other events may carry its snapshot too.
            t = r.snapshots.task
            return (
                r.type in _TASK_EVENTS
                and t is not None
                and (task_id is None or t.id == task_id)
                and (wanted is None or t.status in wanted)
            )

        async with aclosing(event_stream(ctx, match)) as stream:
            async for record in stream:
                yield _views.of(record, "task", _task)

    @strawberry.subscription(
        permission_classes=[CanRead], description="An agent's state on every status change."
    )
    async def agent_status(
        self, info: Info, agent_id: strawberry.ID | None = None
    ) -> AsyncGenerator[Agent, None]:
        ctx = info.context
        if agent_id is not None and await ctx.agent(agent_id) is None:
            raise NotFound("Agent", agent_id)

        def match(r: EventRecord) -> bool:
            a = r.snapshots.agent
            return (
                r.type in _AGENT_EVENTS and a is not None and (agent_id is None or a.id == agent_id)
            )

        async with aclosing(event_stream(ctx, match)) as stream:
            async for record in stream:
                yield _views.of(record, "agent", _agent)

    @strawberry.subscription(
        permission_classes=[CanRead],
        description="Current state first, then every change; completes when terminal.",
    )
    async def workflow_progress(
        self, info: Info, workflow_id: strawberry.ID
    ) -> AsyncGenerator[WorkflowProgress, None]:
        ctx = info.context
        query = EventQuery(workflow_id=workflow_id)
        latest = await ctx.runtime.reads.latest_event(ctx.principal.tenant, query)
        if latest is None or latest.snapshots.workflow is None:
            raise NotFound("Workflow", workflow_id)
        yield _progress(latest)
        if latest.type in TERMINAL_WORKFLOW_EVENTS:
            return
        stream = event_stream(ctx, query.matches, after=latest.id, replay=query)
        async with aclosing(stream):
            async for record in stream:
                yield _progress(record)
                if record.type in TERMINAL_WORKFLOW_EVENTS:
                    return

    @strawberry.subscription(
        permission_classes=[CanRead],
        description=(
            "Matching events. With `after`: history after that id, then live "
            '(after: "0" starts from the first event). Without: live only.'
        ),
    )
    async def events(
        self,
        info: Info,
        filter: EventFilter | None = None,
        after: strawberry.ID | None = None,
    ) -> AsyncGenerator[Event, None]:
        query = event_query(filter)
        stream = event_stream(
            info.context, query.matches, after=parse_event_id(after), replay=query
        )
        async with aclosing(stream):
            async for record in stream:
                yield _views.of(record, "event", Event.of)

    @strawberry.subscription(
        permission_classes=[IsOperator],
        description=(
            f"Counters every intervalSeconds (at least {MIN_METRICS_INTERVAL:g}: smaller "
            "values count as that); every subscriber of a tenant and interval shares one ticker."
        ),
    )
    async def system_metrics(
        self, info: Info, interval_seconds: float | None = 5.0
    ) -> AsyncGenerator[SystemMetrics, None]:
        interval = 5.0 if interval_seconds is None else interval_seconds
        if not 0 < interval <= 3600:
            raise BadUserInput("intervalSeconds must be more than 0 and at most 3600")
        interval = max(interval, MIN_METRICS_INTERVAL)
        runtime = info.context.runtime
        tenant = info.context.principal.tenant
        stream = runtime.tickers.stream(
            ("systemMetrics", tenant, interval),
            interval,
            lambda: system_metrics(runtime, tenant),  # not info: it would pin this socket
        )
        async with aclosing(stream):
            async for snapshot in stream:
                yield snapshot


def _progress(record: EventRecord) -> WorkflowProgress:
    snap = record.snapshots
    assert snap.workflow is not None
    workflow = Workflow.of(snap.workflow, snap)
    index = record.data.get("step", snap.workflow.current_step)
    step: WorkflowStep | None = next((s for s in workflow.steps if s.index == index), None)
    return WorkflowProgress(workflow=workflow, step=step, event=Event.of(record))
