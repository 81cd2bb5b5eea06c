"""events() and subscribe() over graphql-transport-ws: every event once, in order, across
server restarts, token expiry and SLOW_CONSUMER."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

import tests.support.server as server_module
from api.metrics import Metrics
from api.settings import Settings
from mark1_client import (
    Event,
    EventFilter,
    EventType,
    Mark1Client,
    Subscription,
    Unauthenticated,
    WorkflowStepInput,
)
from tests.support.server import LiveServer, free_port, live_server
from tests.support.waiting import until


class Collector:
    """Drains a subscription in the background into a list."""

    def __init__(self, subscription: Subscription[Event]) -> None:
        self.subscription = subscription
        self.events: list[Event] = []
        self.error: BaseException | None = None
        self._task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            async for event in self.subscription:
                self.events.append(event)
        except Exception as exc:
            self.error = exc

    @property
    def ids(self) -> list[int]:
        return [int(e.id) for e in self.events]

    async def wait_for(self, count: int, within: float = 60) -> None:
        await until(
            lambda: len(self.events) >= count or self.error is not None,
            within,
            f"{count} events (have {self.ids})",
        )
        assert self.error is None, self.error

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self.subscription.aclose()


@contextlib.asynccontextmanager
async def collecting(subscription: Subscription[Event]) -> AsyncIterator[Collector]:
    collector = Collector(subscription)
    try:
        yield collector
    finally:
        await collector.close()


async def subscribed(live: LiveServer, count: int = 1) -> None:
    await until(
        lambda: Metrics.value(live.runtime.metrics.subscriptions) >= count, 30, "the subscription"
    )


async def test_events_resume_across_a_server_restart_each_once_in_order(
    settings: Settings, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setattr(server_module, "free_port", lambda: port)  # restart on the same port
    token = server_module.mint(settings, "OPERATOR", tenant=tenant)
    url = f"http://127.0.0.1:{port}/graphql"
    async with Mark1Client(url, token) as client:
        with live_server(settings) as live:
            await client.create_task("history")
            stream = Collector(client.events(after=0))
            await subscribed(live)
            for title in ("before-1", "before-2"):
                await client.create_task(title)
            await stream.wait_for(3)
        # Down: the stream is reconnecting. These commit while nobody is connected.
        with live_server(settings) as live:
            for title in ("after-1", "after-2"):
                await client.create_task(title)
            await stream.wait_for(5)
            await subscribed(live)
            await client.create_task("live")
            await stream.wait_for(6)
            await asyncio.sleep(0.3)  # room for a duplicate to show up, were there one
        await stream.close()

    assert stream.ids == [1, 2, 3, 4, 5, 6]
    assert [e.task.title for e in stream.events if e.task] == [
        "history",
        "before-1",
        "before-2",
        "after-1",
        "after-2",
        "live",
    ]


async def test_events_without_after_start_at_the_head_and_miss_nothing_after_it(
    server: LiveServer, tenant: str, operator: Mark1Client
) -> None:
    await operator.create_task("old")
    async with collecting(operator.events()) as stream:
        await subscribed(server)
        await operator.create_task("new")
        await stream.wait_for(1)
    assert stream.ids == [2]


async def test_events_reconnect_with_a_fresh_token_at_expiry_and_lose_nothing(
    server: LiveServer, tenant: str, operator: Mark1Client
) -> None:
    issued: list[str] = []

    def provider() -> str:
        issued.append(server.token("VIEWER", tenant=tenant, ttl=timedelta(seconds=2)))
        return issued[-1]

    viewer = Mark1Client(server.url, provider)
    async with viewer, collecting(viewer.events(after=0)) as stream:
        created = 0
        # Write through at least two expiries (a token lives 2 s on an open socket).
        while len(issued) < 4:
            await operator.create_task(f"t{created}")
            created += 1
            await asyncio.sleep(0.1)
        await stream.wait_for(created)
        await asyncio.sleep(0.3)

    assert stream.ids == list(range(1, created + 1))


async def test_events_with_a_fixed_token_raise_unauthenticated_at_expiry(
    server: LiveServer, tenant: str
) -> None:
    token = server.token("VIEWER", tenant=tenant, ttl=timedelta(seconds=2))
    async with Mark1Client(server.url, token) as viewer:
        with pytest.raises(Unauthenticated, match="Token expired"):
            async with asyncio.timeout(30):
                async for _ in viewer.events(after=0):
                    pass


async def test_a_slow_consumer_resumes_with_every_event_once_in_order(
    settings: Settings, tenant: str
) -> None:
    # A buffer of one event: the three events a new workflow commits at once overflow it.
    with live_server(settings.model_copy(update={"subscriber_buffer": 1})) as live:
        async with Mark1Client(live.url, live.token("OPERATOR", tenant=tenant)) as client:
            async with collecting(client.events(after=0)) as stream:
                await subscribed(live)
                for n in range(6):
                    await client.start_workflow(f"w{n}", [WorkflowStepInput("s")])
                await stream.wait_for(18)
                await asyncio.sleep(0.3)
            dropped = Metrics.value(live.runtime.metrics.slow_consumers)

    assert dropped >= 1
    assert stream.ids == list(range(1, 19))
    assert [e.type for e in stream.events[:3]] == [
        EventType.WORKFLOW_STARTED,
        EventType.TASK_CREATED,
        EventType.WORKFLOW_STEP_STARTED,
    ]


async def test_filtered_events_and_plain_subscriptions(
    server: LiveServer, tenant: str, operator: Mark1Client
) -> None:
    workflow = await operator.start_workflow("w", [WorkflowStepInput("only")])
    first_task = workflow.steps[0].task
    assert first_task is not None
    progress = operator.subscribe(
        "subscription($id: ID!) { workflowProgress(workflowId: $id) { workflow { status } } }",
        {"id": workflow.id},
    )
    only_cancels = operator.events(
        after=0, filter=EventFilter(types=[EventType.WORKFLOW_CANCELLED])
    )
    async with progress, only_cancels:
        first = await anext(progress)
        await operator.cancel_workflow(workflow.id)
        statuses = [first] + [data async for data in progress]  # ends when terminal
        cancel = await asyncio.wait_for(anext(only_cancels), 30)

    assert statuses[0] == {"workflowProgress": {"workflow": {"status": "RUNNING"}}}
    assert statuses[-1] == {"workflowProgress": {"workflow": {"status": "CANCELLED"}}}
    assert cancel.type is EventType.WORKFLOW_CANCELLED and cancel.workflow_id == workflow.id
    assert cancel.workflow is not None and cancel.workflow.name == "w"
