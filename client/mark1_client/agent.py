"""``Agent``: an agent process's side of Mark-1 in a few lines.

    async with Agent(url, agent_token) as agent:
        await agent.run(handler)        # or: async for task in agent.tasks(): ...

On entry it learns its agent id from the token, gives back a task a crashed
earlier run left it holding (failed with retry, so it is requeued), sends a
heartbeat, and keeps heartbeating in the background. While idle it is woken
by a ``taskUpdates(status: [PENDING])`` subscription (WebSocket) as soon as
a task it can do is queued, and polls slowly as a fallback. ``stop()`` ends
``run()`` / ``tasks()`` after the current task; leaving the ``async with``
while holding a task gives it back.

Reconnection: claims and task reports survive a lost connection or a server
restart. A mutation whose answer is lost is not blindly resent: the agent
reads the task (or itself) back once the server answers again, and resends
only when the first one did not take effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

from mark1_client import documents
from mark1_client.client import Mark1Client
from mark1_client.endpoint import TokenSource
from mark1_client.errors import (
    Conflict,
    Forbidden,
    Mark1Error,
    NotFound,
    TransportError,
    is_transient,
)
from mark1_client.retry import Backoff
from mark1_client.types import JSON, Task, TaskStatus

log = logging.getLogger("mark1_client.agent")

Handler = Callable[[Task, "Agent"], Awaitable[JSON]]

# The task is no longer ours: cancelled, or requeued after we went silent.
_TASK_LOST = (Conflict, NotFound, Forbidden)


class Agent:
    """One agent: background heartbeats, claims, progress and results, graceful stop.

    ``client``: a ``Mark1Client``, or the endpoint URL (then ``token`` is the agent's
    token, or a provider of one, and the agent owns the client it makes).
    ``agent_id``: taken from the token's ``agent_id`` claim when not given.
    ``poll_interval``: seconds between claims while idle, when no push wake-up comes.
    ``wake_on_push``: subscribe to new PENDING tasks to claim at once (one WebSocket).
    ``release_on_exit``: give back a held task when leaving ``async with``.
    """

    def __init__(
        self,
        client: Mark1Client | str,
        token: TokenSource | None = None,
        *,
        agent_id: str | None = None,
        heartbeat_interval: float = 10.0,
        poll_interval: float = 5.0,
        release_on_exit: bool = True,
        wake_on_push: bool = True,
        reconnect: Backoff | None = None,
    ) -> None:
        if isinstance(client, str):
            if token is None:
                raise TypeError("Agent(url, token): the agent's token is required")
            client = Mark1Client(client, token)
            self._owns_client = True
        else:
            self._owns_client = False
        self.client = client
        self.token = token if isinstance(token, str) else None
        self._id = agent_id
        self.heartbeat_interval = heartbeat_interval
        self.poll_interval = poll_interval
        self.release_on_exit = release_on_exit
        self.wake_on_push = wake_on_push
        self.capabilities: list[str] = []
        self._reconnect = reconnect or Backoff(base=0.5, cap=15.0, attempts=None)
        self.task: Task | None = None  # the task this agent holds
        self._stopping = asyncio.Event()
        self._heartbeats: asyncio.Task[None] | None = None
        self._pusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._fatal: Mark1Error | None = None

    @classmethod
    async def register(
        cls,
        url: str,
        operator_token: TokenSource,
        *,
        name: str,
        capabilities: Sequence[str],
        metadata: JSON = None,
        **options: Any,
    ) -> Agent:
        """Register a new agent with an OPERATOR token; the agent then acts on its own token
        (``agent.token``: keep it to run as the same agent again)."""
        async with Mark1Client(url, operator_token) as operator:
            registration = await operator.register_agent(name, capabilities, metadata=metadata)
        return cls(url, registration.token, agent_id=registration.agent.id, **options)

    @property
    def id(self) -> str:
        if self._id is None:
            raise RuntimeError("the agent id is known once the agent is entered (async with)")
        return self._id

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Agent:
        try:
            if self._id is None:
                viewer = await self.client.me()
                if viewer.agent_id is None:
                    raise Forbidden(f"{viewer.subject!r} has no agent id: use an agent token")
                self._id = viewer.agent_id
            me = await self.client.agent(self.id)
            if me is None:
                raise NotFound(f"agent {self.id!r} not found")
            self.capabilities = list(me.capabilities)
            if (left := await self._held()) is not None:
                # A previous run died holding it; nobody knows how far it got.
                with contextlib.suppress(*_TASK_LOST):
                    await self.client.fail_task(left.id, "agent restarted", retry=True)
                log.info("agent %s gave back task %s left from a previous run", self._id, left.id)
            await self.client.heartbeat(self.id)
        except BaseException:
            await self._close_client()
            raise
        self._stopping.clear()
        self._heartbeats = asyncio.create_task(self._beat(), name=f"mark1-heartbeat-{self._id}")
        if self.wake_on_push:
            self._pusher = asyncio.create_task(self._listen(), name=f"mark1-wake-{self._id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        for background in (self._heartbeats, self._pusher):
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
        try:
            if self.task is not None and self.release_on_exit:
                reason = "agent stopped" if exc is None else f"agent stopped: {_reason(exc)}"
                # Best effort, once: the next run gives it back otherwise.
                with contextlib.suppress(Mark1Error, TimeoutError):
                    async with asyncio.timeout(2):
                        await self.client.fail_task(self.task.id, reason, retry=True)
                self.task = None
        finally:
            await self._close_client()

    def stop(self) -> None:
        """Finish the current task, then end ``run()`` / ``tasks()`` (safe from a signal
        handler)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- the work loop --------------------------------------------------------------

    async def run(self, handler: Handler) -> None:
        """Claim tasks and run ``handler`` on each until ``stop()``.

        The handler's return value completes the task (unless it completed or failed
        it itself); an exception fails it with retry, and the loop goes on; a task
        taken away meanwhile (cancelled, requeued) is dropped.
        """
        async for task in self.tasks():
            try:
                result = await handler(task, self)
                if self.task is not None and self.task.id == task.id:
                    await self.complete(result)
            except _TASK_LOST as exc:
                log.warning("task %s is no longer ours: %s", task.id, exc.message)
                self.task = None
            except Exception as exc:
                log.warning("task %s failed: %s", task.id, _reason(exc))
                if self.task is not None and self.task.id == task.id:
                    with contextlib.suppress(*_TASK_LOST):
                        await self.fail(_reason(exc), retry=True)
                    self.task = None

    async def tasks(self) -> AsyncIterator[Task]:
        """Each task this agent claims, until ``stop()``; waits while there is none.

        A task the loop body leaves held (neither completed nor failed) is completed
        with no result before the next claim.
        """
        failures = 0
        while not self._stopping.is_set():
            self._raise_fatal()
            self._wake.clear()  # a task queued from here on wakes the idle wait below
            try:
                task = self.task or await self.claim()
            except Mark1Error as exc:
                if not is_transient(exc):
                    raise
                failures += 1
                delay = self._reconnect.delay(failures)
                log.warning("claim failed (%s); retrying in %.1fs", exc.message, delay)
                await self._idle(delay)
                continue
            failures = 0
            if task is None:
                await self._idle(self.poll_interval * random.uniform(0.75, 1.25), self._wake)
                continue
            yield task
            if self.task is not None and self.task.id == task.id:
                await self.complete()

    # -- single steps ---------------------------------------------------------------

    async def claim(self) -> Task | None:
        """Claim the next task this agent can do (None when there is none)."""
        self._raise_fatal()
        try:
            task = await self.client.claim_task(self.id)
        except TransportError as exc:
            if not exc.request_sent:
                raise
            # The answer was lost: whether the claim took effect is in our own record.
            task = await self._held()
        self.task = task
        return task

    async def progress(self, fraction: float, message: str | None = None) -> Task:
        """Report progress (0..1) on the held task."""
        task_id = self._held_id()

        def applied(task: Task) -> bool:
            return self._holds(task) and (task.progress, task.message) == (fraction, message)

        updated = await self._settle(
            task_id, lambda: self.client.report_progress(task_id, fraction, message), applied
        )
        self.task = updated
        return updated

    async def complete(self, result: JSON = None) -> Task:
        """Finish the held task with ``result``."""
        task_id = self._held_id()
        try:
            return await self._settle(
                task_id,
                lambda: self.client.complete_task(task_id, result),
                lambda task: task.status == TaskStatus.SUCCEEDED,
            )
        finally:
            self.task = None

    async def fail(self, error: str, *, retry: bool = True) -> Task:
        """Fail the held task; with ``retry`` it is requeued while attempts are left."""
        task_id = self._held_id()
        try:
            return await self._settle(
                task_id,
                lambda: self.client.fail_task(task_id, error, retry=retry),
                lambda task: not self._holds(task),
            )
        finally:
            self.task = None

    # -- internals ------------------------------------------------------------------

    async def _settle(
        self,
        task_id: str,
        send: Callable[[], Awaitable[Task]],
        applied: Callable[[Task], bool],
    ) -> Task:
        """Send a task mutation; when its answer is lost, wait for the server, read the
        task back, and resend only if the first did not take effect."""
        failures = 0
        while True:
            try:
                return await send()
            except Mark1Error as exc:
                if not is_transient(exc):
                    raise
                failures += 1
                while True:
                    delay = self._reconnect.delay(failures)
                    log.warning("%s; checking task %s in %.1fs", exc.message, task_id, delay)
                    await asyncio.sleep(delay)
                    try:
                        task = await self.client.task(task_id)
                        break
                    except Mark1Error as again:
                        if not is_transient(again):
                            raise
                        exc, failures = again, failures + 1
                if task is not None and applied(task):
                    return task

    def _holds(self, task: Task) -> bool:
        return (
            task.status == TaskStatus.RUNNING
            and task.agent is not None
            and task.agent.id == self._id
        )

    def _held_id(self) -> str:
        if self.task is None:
            raise RuntimeError("this agent holds no task: claim() one first")
        return self.task.id

    async def _held(self) -> Task | None:
        """The task the server says this agent holds."""
        me = await self.client.agent(self.id)
        if me is None:
            raise NotFound(f"agent {self.id!r} not found")
        if me.current_task is None:
            return None
        return await self.client.task(me.current_task.id)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval * random.uniform(0.8, 1.0))
            try:
                await self.client.heartbeat(self.id)
            except Mark1Error as exc:
                if not is_transient(exc):
                    # A rejected token or a deleted agent: nothing further will work.
                    log.error("heartbeat refused (%s); stopping", exc.message)
                    self._fatal = exc
                    self._stopping.set()
                    return
                log.warning("heartbeat failed (%s); trying again", exc.message)

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    async def _idle(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        """Sleep up to ``seconds``; ``stop()`` or ``wake`` end it early."""
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if wake is not None:
            waits.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _listen(self) -> None:
        """Set ``_wake`` whenever a task this agent could claim becomes PENDING."""
        try:
            async with self.client.subscribe(documents.AGENT_WAKE) as updates:
                async for data in updates:
                    capability = data["taskUpdates"]["capability"]
                    if capability is None or capability in self.capabilities:
                        self._wake.set()
        except Mark1Error as exc:
            log.warning(
                "no push wake-ups (%s); polling every %.1fs", exc.message, self.poll_interval
            )

    async def _close_client(self) -> None:
        if self._owns_client:
            await self.client.aclose()


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."
