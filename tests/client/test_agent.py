"""The Agent helper against a real server: a full task, heartbeats, failures, graceful stop,
and a task finished across a server restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import tests.support.server as server_module
from api.metrics import Metrics
from api.settings import Settings
from mark1_client import (
    Agent,
    AgentStatus,
    Backoff,
    EventFilter,
    EventType,
    Forbidden,
    Mark1Client,
    Task,
    TaskStatus,
)
from tests.support.databases import fresh_database
from tests.support.server import LiveServer, free_port, live_server, make_settings
from tests.support.waiting import until


async def task_status(client: Mark1Client, task_id: str) -> TaskStatus | None:
    task = await client.task(task_id)
    return None if task is None else task.status


@contextlib.asynccontextmanager
async def running(agent: Agent, handler) -> AsyncIterator[asyncio.Task[None]]:  # type: ignore[no-untyped-def]
    """``agent.run(handler)`` in the background inside ``async with agent``."""
    async with agent:
        work = asyncio.create_task(agent.run(handler))
        try:
            yield work
        finally:
            agent.stop()
            await asyncio.wait_for(work, 30)


async def test_an_agent_claims_reports_and_completes_a_task(
    server: LiveServer, operator: Mark1Client
) -> None:
    task = await operator.create_task("Summarize", capability="summarize", input={"text": "abc"})
    agent = await Agent.register(
        server.url, operator_token(server, operator), name="scribe", capabilities=["summarize"]
    )

    async def handler(task: Task, agent: Agent) -> dict[str, str]:
        await agent.progress(0.25, "reading")
        await agent.progress(0.75, "writing")
        return {"summary": str(task.input["text"]).upper()}

    async with running(agent, handler):
        await until(lambda: _is(operator, task.id, TaskStatus.SUCCEEDED), 30, "the task to succeed")

    done = await operator.task(task.id)
    assert done is not None and done.result == {"summary": "ABC"}
    assert done.agent is not None and done.agent.name == "scribe"
    events = await operator.event_page(filter=EventFilter(task_id=task.id))
    assert [(e.type, e.task.progress if e.task else None) for e in events.items] == [
        (EventType.TASK_CREATED, 0.0),
        (EventType.TASK_STARTED, 0.0),
        (EventType.TASK_PROGRESS, 0.25),
        (EventType.TASK_PROGRESS, 0.75),
        (EventType.TASK_SUCCEEDED, 1.0),
    ]
    me = await operator.agent(agent.id)
    assert me is not None and me.status is AgentStatus.ONLINE and me.current_task is None


async def test_heartbeats_keep_an_idle_agent_online_until_it_stops(
    database_url: str, tmp_path: Path, tenant: str
) -> None:
    async with fresh_database(database_url, tmp_path) as url:  # the sweeper sweeps everyone
        quick = make_settings(
            url, tmp_path, heartbeat_timeout=1.5, offline_after=60.0, sweep_interval=0.2
        )
        await _heartbeats_keep_an_idle_agent_online_until_it_stops(quick, tenant)


async def _heartbeats_keep_an_idle_agent_online_until_it_stops(
    settings: Settings, tenant: str
) -> None:
    with live_server(settings) as live:
        async with Mark1Client(live.url, live.token("OPERATOR", tenant=tenant)) as operator:
            registration = await operator.register_agent("idle", [])
            beats: set[object] = set()

            async def beat_seen() -> bool:
                agent = await operator.agent(registration.agent.id)
                assert agent is not None
                assert agent.status is AgentStatus.ONLINE, "went unhealthy while heartbeating"
                beats.add(agent.last_heartbeat_at)
                return len(beats) >= 6  # five heartbeats past the first: beyond the timeout

            agent = Agent(live.url, registration.token, heartbeat_interval=0.4)
            async with agent:
                await until(beat_seen, 30, "heartbeats over several timeouts")

            async def unhealthy() -> bool:
                found = await operator.agent(registration.agent.id)
                return found is not None and found.status is AgentStatus.UNHEALTHY

            await until(unhealthy, 30, "the stopped agent to turn unhealthy")


async def test_an_idle_agent_is_woken_by_a_new_task_instead_of_waiting_for_its_poll(
    server: LiveServer, operator: Mark1Client
) -> None:
    registration = await operator.register_agent("sleeper", ["translate"])
    seen = asyncio.Event()

    async def handler(task: Task, agent: Agent) -> None:
        seen.set()

    agent = Agent(server.url, registration.token, poll_interval=120)
    async with running(agent, handler):
        await until(
            lambda: Metrics.value(server.runtime.metrics.subscriptions) >= 1, 30, "the wake-up feed"
        )
        await asyncio.sleep(0.2)  # its first claim found nothing: it now sleeps for 90 s+
        await operator.create_task("not mine", capability="code")
        task = await operator.create_task("mine", capability="translate")
        await asyncio.wait_for(seen.wait(), 30)

    done = await operator.task(task.id)
    assert done is not None and done.status is TaskStatus.SUCCEEDED
    assert await task_status(operator, (await operator.tasks()).items[-1].id) is (
        TaskStatus.PENDING
    )


async def test_a_failing_handler_fails_its_task_with_retry_and_the_agent_goes_on(
    server: LiveServer, operator: Mark1Client
) -> None:
    first = await operator.create_task("boom", priority=10, max_attempts=1)
    second = await operator.create_task("fine")
    registration = await operator.register_agent("worker", [])

    async def handler(task: Task, agent: Agent) -> str:
        if task.title == "boom":
            raise RuntimeError("model timed out")
        return "ok"

    async with running(Agent(server.url, registration.token, poll_interval=0.1), handler):
        await until(lambda: _is(operator, second.id, TaskStatus.SUCCEEDED), 30, "the second task")

    failed = await operator.task(first.id)
    assert failed is not None and failed.status is TaskStatus.FAILED
    assert failed.error == "model timed out"


async def test_leaving_while_holding_a_task_gives_it_back_and_a_restart_releases_a_left_one(
    server: LiveServer, operator: Mark1Client
) -> None:
    task = await operator.create_task("held")
    registration = await operator.register_agent("quitter", [])

    async with Agent(server.url, registration.token) as agent:
        claimed = await agent.claim()
        assert claimed is not None and claimed.id == task.id
    requeued = await operator.task(task.id)
    assert requeued is not None and requeued.status is TaskStatus.PENDING
    assert requeued.error == "agent stopped"

    # A run that dies holding its task (no release), then the next run of the same agent.
    async with Agent(server.url, registration.token, release_on_exit=False) as agent:
        assert (await agent.claim()) is not None
    assert await task_status(operator, task.id) is TaskStatus.RUNNING
    async with Agent(server.url, registration.token) as agent:
        assert agent.task is None
    back = await operator.task(task.id)
    assert back is not None and back.status is TaskStatus.PENDING
    assert back.error == "agent restarted" and back.attempts == 2


async def test_an_operator_token_is_not_an_agent(server: LiveServer, tenant: str) -> None:
    with pytest.raises(Forbidden, match="use an agent token"):
        async with Agent(server.url, server.token("OPERATOR", tenant=tenant)):
            pass


async def test_an_agent_finishes_its_task_across_a_server_restart(
    settings: Settings, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setattr(server_module, "free_port", lambda: port)  # restart on the same port
    restarted = asyncio.Event()
    reported: list[Task] = []

    async def handler(task: Task, agent: Agent) -> str:
        await agent.progress(0.5, "before")
        await until(lambda: not server_up.is_set(), 30, "the server to stop")
        reported.append(await agent.progress(0.9, "during"))  # sent while the server is down
        await restarted.wait()
        return "survived"

    server_up = asyncio.Event()
    with live_server(settings) as live:
        server_up.set()
        operator = Mark1Client(live.url, live.token("OPERATOR", tenant=tenant))
        task = await operator.create_task("long")
        registration = await operator.register_agent("stayer", [])
        agent = Agent(
            live.url,
            registration.token,
            heartbeat_interval=0.5,
            reconnect=Backoff(base=0.2, cap=1.0, attempts=None),
        )
        runner = running(agent, handler)
        await runner.__aenter__()
        await until(lambda: _progress_is(operator, task.id, 0.5), 30, "the first report")
    server_up.clear()
    await asyncio.sleep(0.5)  # the second report is being retried against a closed port
    with live_server(settings):
        await until(lambda: bool(reported), 60, "the report sent while down to land")
        restarted.set()
        await until(lambda: _is(operator, task.id, TaskStatus.SUCCEEDED), 30, "the task to finish")
        await runner.__aexit__(None, None, None)
        events = await operator.event_page(filter=EventFilter(task_id=task.id))
        await operator.aclose()

    assert [e.type for e in events.items].count(EventType.TASK_PROGRESS) == 2
    assert reported[0].progress == 0.9
    assert events.items[-1].task is not None and events.items[-1].task.result == "survived"


def operator_token(server: LiveServer, client: Mark1Client) -> str:
    token = client._credentials._source  # the token the fixture built the client with
    assert isinstance(token, str)
    return token


async def _is(client: Mark1Client, task_id: str, status: TaskStatus) -> bool:
    return await task_status(client, task_id) is status


async def _progress_is(client: Mark1Client, task_id: str, progress: float) -> bool:
    task = await client.task(task_id)
    return task is not None and task.progress == progress


class AnswerThief:
    """A TCP proxy that lets a request through to the server, then drops the server's
    answer to it and cuts the connection: the mutation took effect, the client never
    hears so."""

    def __init__(self, target_port: int, marker: bytes) -> None:
        self.target_port = target_port
        self.marker = marker
        self.armed = False
        self.stolen = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> AnswerThief:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        doomed = asyncio.Event()

        async def upstream() -> None:
            while chunk := await reader.read(65536):
                if self.armed and self.marker in chunk:
                    self.armed = False
                    doomed.set()
                up_writer.write(chunk)
                await up_writer.drain()
            up_writer.close()

        async def downstream() -> None:
            while chunk := await up_reader.read(65536):
                if doomed.is_set():
                    self.stolen += 1
                    writer.close()  # the answer is lost with the connection
                    up_writer.close()
                    return
                writer.write(chunk)
                await writer.drain()
            writer.close()

        with contextlib.suppress(OSError):
            await asyncio.gather(upstream(), downstream())


async def test_a_completion_whose_answer_is_lost_is_read_back_not_sent_twice(
    server: LiveServer, operator: Mark1Client
) -> None:
    task = await operator.create_task("finish me")
    registration = await operator.register_agent("careful", [])
    async with AnswerThief(server.port, b"CompleteTask") as thief:
        proxied = f"http://127.0.0.1:{thief.port}/graphql"
        fast = Backoff(base=0.05, cap=0.2, attempts=None)
        async with Agent(proxied, registration.token, wake_on_push=False, reconnect=fast) as agent:
            claimed = await agent.claim()
            assert claimed is not None and claimed.id == task.id
            thief.armed = True
            done = await asyncio.wait_for(agent.complete({"answer": 42}), 30)

    assert thief.stolen == 1
    assert done.status is TaskStatus.SUCCEEDED and done.result == {"answer": 42}
    events = await operator.event_page(filter=EventFilter(task_id=task.id))
    assert [e.type for e in events.items] == [
        EventType.TASK_CREATED,
        EventType.TASK_STARTED,
        EventType.TASK_SUCCEEDED,  # once: the read-back saw it applied, nothing was resent
    ]
