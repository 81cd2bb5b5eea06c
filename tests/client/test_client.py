"""Mark1Client against a real server: typed results, typed errors, retries only where safe."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from api.settings import Settings
from mark1_client import (
    AgentStatus,
    Backoff,
    BadUserInput,
    Conflict,
    EventFilter,
    EventType,
    Forbidden,
    Mark1Client,
    NotFound,
    ProtocolError,
    RateLimited,
    Role,
    TaskStatus,
    TransportError,
    Unauthenticated,
    WorkflowStatus,
    WorkflowStepInput,
)
from tests.support.server import LiveServer, free_port, live_server


async def test_queries_and_mutations_return_the_schemas_types(
    server: LiveServer, tenant: str, operator: Mark1Client
) -> None:
    task = await operator.create_task(
        "Summarize", capability="summarize", priority=5, input={"text": "hello"}
    )
    registration = await operator.register_agent("scribe", ["summarize"], metadata={"gpu": 1})
    async with Mark1Client(server.url, registration.token) as agent:
        me = await agent.me()
        claimed = await agent.claim_task(registration.agent.id)
        assert claimed is not None
        progressed = await agent.report_progress(claimed.id, 0.5, "halfway")
        done = await agent.complete_task(claimed.id, {"summary": "hi"})

    assert (me.roles, me.tenant, me.agent_id) == ([Role.AGENT], tenant, registration.agent.id)
    assert task.status is TaskStatus.PENDING and task.priority == 5
    assert task.input == {"text": "hello"} and task.created_at.tzinfo is not None
    assert registration.agent.status is AgentStatus.ONLINE
    assert registration.agent.metadata == {"gpu": 1}
    assert claimed.id == task.id and claimed.status is TaskStatus.RUNNING
    assert claimed.agent is not None and claimed.agent.name == "scribe"
    assert (progressed.progress, progressed.message) == (0.5, "halfway")
    assert done.status is TaskStatus.SUCCEEDED and done.result == {"summary": "hi"}
    assert done.finished_at is not None and done.finished_at >= done.started_at  # type: ignore[operator]

    fetched = await operator.task(task.id)
    assert fetched == done
    assert await operator.task("no-such-task") is None
    page = await operator.tasks(status=[TaskStatus.SUCCEEDED])
    assert [t.id for t in page.items] == [task.id] and page.total_count == 1
    agents = await operator.agents(capability="summarize")
    assert [a.name for a in agents.items] == ["scribe"]
    assert agents.items[0].current_task is None

    workflow = await operator.start_workflow(
        "pipeline", [WorkflowStepInput("collect", input={"n": 1}), WorkflowStepInput("ship")]
    )
    assert workflow.status is WorkflowStatus.RUNNING and workflow.current_step == 0
    assert [s.name for s in workflow.steps] == ["collect", "ship"]
    assert workflow.steps[0].task is not None
    cancelled = await operator.cancel_workflow(workflow.id)
    assert cancelled.status is WorkflowStatus.CANCELLED
    assert (await operator.workflows()).items[0].id == workflow.id

    events = await operator.event_page(filter=EventFilter(task_id=task.id))
    assert [e.type for e in events.items] == [
        EventType.TASK_CREATED,
        EventType.TASK_STARTED,
        EventType.TASK_PROGRESS,
        EventType.TASK_SUCCEEDED,
    ]
    assert events.items[-1].task is not None and events.items[-1].task.result == {"summary": "hi"}
    assert [e.id for e in events.items] == [e.id for e in events.items if e.task_id == task.id]
    everything = [e async for e in operator.history(page_size=3)]
    assert [int(e.id) for e in everything] == list(range(1, len(everything) + 1))
    assert await operator.head() == everything[-1].id
    metrics = await operator.system_metrics()
    assert metrics.tasks_by_status["SUCCEEDED"] == 1


async def test_errors_are_raised_as_typed_exceptions_carrying_their_code(
    server: LiveServer, tenant: str, operator: Mark1Client
) -> None:
    task = await operator.create_task("x")
    await operator.cancel_task(task.id)

    with pytest.raises(Conflict) as conflict:
        await operator.cancel_task(task.id)
    with pytest.raises(NotFound) as not_found:
        await operator.cancel_task("nope")
    with pytest.raises(BadUserInput) as bad_input:
        await operator.tasks(first=100_000)
    async with Mark1Client(server.url, server.token("VIEWER", tenant=tenant)) as viewer:
        with pytest.raises(Forbidden) as forbidden:
            await viewer.create_task("not allowed")
    expired = server.token("ADMIN", tenant=tenant, ttl=timedelta(seconds=-60))
    async with Mark1Client(server.url, expired) as stale:
        with pytest.raises(Unauthenticated) as unauthenticated:
            await stale.me()
    async with Mark1Client(f"{server.base}/nope", expired) as lost:
        with pytest.raises(ProtocolError) as wrong_url:
            await lost.me()

    assert conflict.value.code == "CONFLICT"
    assert not_found.value.code == "NOT_FOUND" and "nope" in not_found.value.message
    assert bad_input.value.code == "BAD_USER_INPUT"
    assert forbidden.value.code == "FORBIDDEN"
    assert unauthenticated.value.code == "UNAUTHENTICATED"
    assert wrong_url.value.status == 404
    assert [(await operator.task(task.id)).status] == [TaskStatus.CANCELLED]  # type: ignore[union-attr]


async def test_a_rate_limited_mutation_raises_with_retry_after_when_retries_are_off(
    settings: Settings, tenant: str
) -> None:
    # One token per 20 s: however slow the machine, the bucket does not refill in between.
    limited = settings.model_copy(update={"mutation_rate": 0.05, "mutation_burst": 2})
    with live_server(limited) as live:
        token = live.token("OPERATOR", tenant=tenant)
        async with Mark1Client(live.url, token, retry=Backoff(attempts=0)) as impatient:
            await impatient.create_task("a")
            await impatient.create_task("b")
            with pytest.raises(RateLimited) as refused:
                await impatient.create_task("c")
            total = (await impatient.tasks()).total_count

    assert refused.value.code == "RATE_LIMITED"
    assert refused.value.retry_after is not None and 10 < refused.value.retry_after <= 20
    assert total == 2


async def test_a_rate_limited_mutation_is_retried_after_retry_after_and_runs_once(
    settings: Settings, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    # One token per 5 s and no burst: the second mutation is refused (a loaded machine
    # once took over 2 s for the first, and the bucket had refilled), then waits it out.
    limited = settings.model_copy(update={"mutation_rate": 0.2, "mutation_burst": 1})
    with live_server(limited) as live:
        token = live.token("OPERATOR", tenant=tenant)
        async with Mark1Client(live.url, token, retry=Backoff(attempts=5)) as patient:
            with caplog.at_level(logging.WARNING, logger="mark1_client"):
                titles = [(await patient.create_task(f"t{i}")).title for i in range(2)]
            total = (await patient.tasks()).total_count

    retries = [r.getMessage() for r in caplog.records if r.name == "mark1_client"]
    assert titles == ["t0", "t1"]
    assert total == 2  # the refused request ran nothing; its retry ran once
    assert len(retries) >= 1 and all("retrying in" in m for m in retries), retries


class BlackHole:
    """A TCP server that reads each HTTP request and closes without answering."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> BlackHole:
        self._server = await asyncio.start_server(self._swallow, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        self.requests.append(head + await reader.readexactly(length))
        writer.close()


async def test_a_mutation_whose_answer_is_lost_is_never_sent_twice_but_a_query_is() -> None:
    backoff = Backoff(base=0.01, cap=0.05, attempts=3)
    async with BlackHole() as hole:
        url = f"http://127.0.0.1:{hole.port}/graphql"
        async with Mark1Client(url, "token", retry=backoff) as client:
            with pytest.raises(TransportError) as mutation:
                await client.create_task("only once")
            creates = len(hole.requests)
            with pytest.raises(TransportError) as query:
                await client.me()
            queries = len(hole.requests) - creates
            with pytest.raises(TransportError):
                await client.heartbeat("agent-1")  # repeating a heartbeat is harmless
            heartbeats = len(hole.requests) - creates - queries
            with pytest.raises(TransportError):
                await client.claim_task("agent-1")

    assert creates == 1 and mutation.value.request_sent
    assert queries == 4 and query.value.request_sent  # the first try and three retries
    assert heartbeats == 4
    assert len(hole.requests) == creates + queries + heartbeats + 1  # one claim, never resent


def test_backoff_is_capped_exponential_with_jitter_and_honours_retry_after() -> None:
    backoff = Backoff(base=1.0, cap=8.0, attempts=3)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)):
        delays = {backoff.delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, delays)
        assert len(delays) > 1  # jittered: clients that failed together spread out
    assert all(2.5 <= backoff.delay(1, at_least=2.5) <= 3.5 for _ in range(50))
    assert [backoff.allows(n) for n in (1, 3, 4)] == [True, True, False]
    assert Backoff(attempts=None).allows(10**6)


async def test_a_mutation_that_never_left_is_retried_until_the_server_is_up(
    settings: Settings, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.support.server as server_module

    port = free_port()
    monkeypatch.setattr(server_module, "free_port", lambda: port)
    token = server_module.mint(settings, "OPERATOR", tenant=tenant)
    url = f"http://127.0.0.1:{port}/graphql"
    async with Mark1Client(url, token, retry=Backoff(base=0.2, cap=1.0, attempts=60)) as client:
        async with Mark1Client(url, token, retry=Backoff(attempts=0)) as impatient:
            with pytest.raises(TransportError) as refused:
                await impatient.create_task("x")
        creating = asyncio.create_task(client.create_task("while starting"))
        await asyncio.sleep(0.3)  # the first attempts are refused
        assert not creating.done()
        with live_server(settings):
            task = await asyncio.wait_for(creating, 60)
            assert (await client.tasks()).total_count == 1

    assert refused.value.request_sent is False
    assert task.title == "while starting"


async def test_a_token_provider_is_asked_for_every_request(server: LiveServer, tenant: str) -> None:
    issued: list[str] = []

    async def provider() -> str:
        issued.append(server.token("VIEWER", tenant=tenant, sub=f"v{len(issued)}"))
        return issued[-1]

    async with Mark1Client(server.url, provider) as client:
        subjects = [(await client.me()).subject for _ in range(3)]

    assert subjects == ["v0", "v1", "v2"]


async def test_a_rejected_token_from_a_provider_is_replaced_once(
    server: LiveServer, tenant: str
) -> None:
    tokens = [
        server.token("VIEWER", tenant=tenant, ttl=timedelta(seconds=-60)),  # already expired
        server.token("VIEWER", tenant=tenant, sub="fresh"),
    ]
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        return tokens[min(calls, len(tokens)) - 1]

    async with Mark1Client(server.url, provider) as client:
        me = await client.me()

    assert (me.subject, calls) == ("fresh", 2)


def test_a_bad_url_is_refused_at_once() -> None:
    for url in ("ftp://127.0.0.1/graphql", "127.0.0.1:8000", "http://127.0.0.1:99999/graphql"):
        with pytest.raises(ValueError, match="bad URL"):
            Mark1Client(url, "token")
