"""``Mark1Client``: typed queries, mutations and resumable subscriptions for one endpoint."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx

from mark1_client import documents as doc
from mark1_client.codec import decode, encode
from mark1_client.endpoint import Credentials, Endpoint, TokenSource
from mark1_client.http import HttpTransport
from mark1_client.retry import Backoff
from mark1_client.subscriptions import Connector, Cursor, Subscription, stream
from mark1_client.types import (
    JSON,
    Agent,
    AgentRegistration,
    AgentStatus,
    Event,
    EventFilter,
    Page,
    SystemMetrics,
    Task,
    TaskStatus,
    Viewer,
    Workflow,
    WorkflowStatus,
    WorkflowStepInput,
)

T = TypeVar("T")


class Mark1Client:
    """One Mark-1 endpoint, as the holder of one token.

    ``url``: ``http(s)://host:port/graphql`` (or the ``ws(s)://`` form).
    ``token``: a JWT, or a callable (sync or async) returning a current one; it
    is asked before every request and connection, so it should cache.
    ``retry``: backoff for queries and safe retries (see ``mark1_client.http``).
    ``reconnect``: backoff for subscriptions; by default they retry forever.
    Use it as an async context manager, or call ``aclose()``.
    """

    def __init__(
        self,
        url: str,
        token: TokenSource,
        *,
        timeout: float = 30.0,
        retry: Backoff | None = None,
        reconnect: Backoff | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.endpoint = Endpoint.parse(url)
        self._credentials = Credentials(token)
        self._http = HttpTransport(
            self.endpoint,
            self._credentials,
            backoff=retry or Backoff(),
            timeout=timeout,
            http=http,
        )
        self._connector = Connector(self.endpoint, self._credentials, timeout=min(timeout, 10))
        self._reconnect = reconnect or Backoff(base=0.5, cap=15.0, attempts=None)

    async def __aenter__(self) -> Mark1Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- any document ------------------------------------------------------------

    async def execute(
        self,
        document: str,
        variables: dict[str, Any] | None = None,
        *,
        repeatable: bool | None = None,
    ) -> dict[str, Any]:
        """Run a query or mutation; the response's ``data``, or its first error raised.

        ``repeatable``: whether sending it twice is harmless; by default true for
        queries and false for anything that mentions ``mutation``.
        """
        if repeatable is None:
            repeatable = not document.lstrip().startswith("mutation")
        return await self._http.execute(document, variables or {}, repeatable=repeatable)

    def subscribe(
        self, document: str, variables: dict[str, Any] | None = None
    ) -> Subscription[dict[str, Any]]:
        """Every result's ``data`` over graphql-transport-ws; reconnects after a drop.

        A plain subscription cannot replay what happened while disconnected; use
        ``events()`` for a gap-free stream.
        """
        return Subscription(
            stream(self._connector, document, dict(variables or {}), backoff=self._reconnect)
        )

    def events(
        self, *, after: str | int | None = None, filter: EventFilter | None = None
    ) -> Subscription[Event]:
        """The tenant's events, each once and in order, across reconnects, restarts, token
        expiry (with a token provider) and SLOW_CONSUMER.

        ``after``: an event id to replay history after (``0``: from the first event);
        None: from now on.
        """
        cursor = Cursor("events", None if after is None else str(after), self.head)
        variables = {"filter": encode(filter) if filter is not None else None}

        async def typed() -> AsyncGenerator[Event, None]:
            results = stream(
                self._connector,
                doc.EVENTS_SUBSCRIPTION,
                variables,
                backoff=self._reconnect,
                cursor=cursor,
            )
            try:
                async for data in results:
                    yield decode(Event, data["events"])
            finally:
                await results.aclose()

        return Subscription(typed())

    async def history(
        self, *, filter: EventFilter | None = None, after: str | int = 0, page_size: int = 100
    ) -> AsyncIterator[Event]:
        """Every stored event after ``after``, oldest first, a page at a time (over HTTP)."""
        cursor: str | None = str(after) if str(after) != "0" else None
        while True:
            page = await self.event_page(filter=filter, first=page_size, after=cursor)
            for event in page.items:
                yield event
            if not page.has_next_page or page.end_cursor is None:
                return
            cursor = page.end_cursor

    # -- queries -------------------------------------------------------------------

    async def me(self) -> Viewer:
        return decode(Viewer, (await self._query(doc.ME))["me"])

    async def head(self) -> str:
        """The id of the tenant's newest event ("0" when there is none).

        Ids are the tenant's sequence and pruning removes only the oldest, so the kept
        ones run without a hole from the oldest: the newest is oldest + count - 1.
        """
        events = (await self._query(doc.HEAD))["events"]
        if not events["totalCount"]:
            return "0"
        return str(int(events["edges"][0]["node"]["id"]) + events["totalCount"] - 1)

    async def task(self, id: str) -> Task | None:
        found = (await self._query(doc.TASK, {"id": id}))["task"]
        return None if found is None else decode(Task, found)

    async def tasks(
        self,
        *,
        status: Sequence[TaskStatus] | None = None,
        agent_id: str | None = None,
        workflow_id: str | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Page[Task]:
        """Newest first."""
        variables = {
            "status": encode(list(status)) if status is not None else None,
            "agentId": agent_id,
            "workflowId": workflow_id,
            "first": first,
            "after": after,
        }
        return _page(Task, (await self._query(doc.TASKS, variables))["tasks"])

    async def agent(self, id: str) -> Agent | None:
        found = (await self._query(doc.AGENT, {"id": id}))["agent"]
        return None if found is None else decode(Agent, found)

    async def agents(
        self,
        *,
        status: Sequence[AgentStatus] | None = None,
        capability: str | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Page[Agent]:
        """Oldest registration first."""
        variables = {
            "status": encode(list(status)) if status is not None else None,
            "capability": capability,
            "first": first,
            "after": after,
        }
        return _page(Agent, (await self._query(doc.AGENTS, variables))["agents"])

    async def workflow(self, id: str) -> Workflow | None:
        found = (await self._query(doc.WORKFLOW, {"id": id}))["workflow"]
        return None if found is None else decode(Workflow, found)

    async def workflows(
        self,
        *,
        status: Sequence[WorkflowStatus] | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Page[Workflow]:
        """Newest first."""
        variables = {
            "status": encode(list(status)) if status is not None else None,
            "first": first,
            "after": after,
        }
        return _page(Workflow, (await self._query(doc.WORKFLOWS, variables))["workflows"])

    async def event_page(
        self, *, filter: EventFilter | None = None, first: int = 100, after: str | None = None
    ) -> Page[Event]:
        """One page of the event history, oldest first; cursors are event ids."""
        variables = {
            "filter": encode(filter) if filter is not None else None,
            "first": first,
            "after": after,
        }
        return _page(Event, (await self._query(doc.EVENTS, variables))["events"])

    async def system_metrics(self) -> SystemMetrics:
        """Needs OPERATOR or ADMIN."""
        return decode(SystemMetrics, (await self._query(doc.SYSTEM_METRICS))["systemMetrics"])

    # -- mutations -------------------------------------------------------------------

    async def create_task(
        self,
        title: str,
        *,
        capability: str | None = None,
        priority: int = 0,
        input: JSON = None,
        max_attempts: int = 3,
    ) -> Task:
        """Queue a task (OPERATOR). Never resent once it may have reached the server."""
        task_input = {
            "title": title,
            "capability": capability,
            "priority": priority,
            "input": input,
            "maxAttempts": max_attempts,
        }
        data = await self._mutate(doc.CREATE_TASK, {"input": task_input})
        return decode(Task, data["createTask"])

    async def cancel_task(self, id: str) -> Task:
        return decode(Task, (await self._mutate(doc.CANCEL_TASK, {"id": id}))["cancelTask"])

    async def register_agent(
        self, name: str, capabilities: Sequence[str], *, metadata: JSON = None
    ) -> AgentRegistration:
        """A new agent and a token for it (OPERATOR)."""
        agent_input = {"name": name, "capabilities": list(capabilities), "metadata": metadata}
        data = await self._mutate(doc.REGISTER_AGENT, {"input": agent_input})
        return decode(AgentRegistration, data["registerAgent"])

    async def heartbeat(self, agent_id: str) -> Agent:
        """A sign of life; repeating one is harmless, so it is retried like a query."""
        data = await self._http.execute(doc.HEARTBEAT, {"agentId": agent_id}, repeatable=True)
        return decode(Agent, data["heartbeat"])

    async def claim_task(self, agent_id: str) -> Task | None:
        """The next task this agent can do, now RUNNING and held by it; None when none."""
        found = (await self._mutate(doc.CLAIM_TASK, {"agentId": agent_id}))["claimTask"]
        return None if found is None else decode(Task, found)

    async def report_progress(
        self, task_id: str, progress: float, message: str | None = None
    ) -> Task:
        variables = {"taskId": task_id, "progress": progress, "message": message}
        return decode(Task, (await self._mutate(doc.REPORT_PROGRESS, variables))["reportProgress"])

    async def complete_task(self, task_id: str, result: JSON = None) -> Task:
        variables = {"taskId": task_id, "result": result}
        return decode(Task, (await self._mutate(doc.COMPLETE_TASK, variables))["completeTask"])

    async def fail_task(self, task_id: str, error: str, *, retry: bool = True) -> Task:
        """Fail a held task; with ``retry`` it is requeued while attempts are left."""
        variables = {"taskId": task_id, "error": error, "retry": retry}
        return decode(Task, (await self._mutate(doc.FAIL_TASK, variables))["failTask"])

    async def start_workflow(self, name: str, steps: Sequence[WorkflowStepInput]) -> Workflow:
        variables = {"input": {"name": name, "steps": encode(list(steps))}}
        return decode(
            Workflow, (await self._mutate(doc.START_WORKFLOW, variables))["startWorkflow"]
        )

    async def cancel_workflow(self, id: str) -> Workflow:
        data = await self._mutate(doc.CANCEL_WORKFLOW, {"id": id})
        return decode(Workflow, data["cancelWorkflow"])

    async def _query(self, document: str, variables: dict[str, Any] | None = None) -> Any:
        return await self._http.execute(document, variables or {}, repeatable=True)

    async def _mutate(self, document: str, variables: dict[str, Any]) -> Any:
        return await self._http.execute(document, variables, repeatable=False)


def _page(kind: type[T], connection: dict[str, Any]) -> Page[T]:
    return Page(
        items=[decode(kind, edge["node"]) for edge in connection["edges"]],
        has_next_page=connection["pageInfo"]["hasNextPage"],
        end_cursor=connection["pageInfo"]["endCursor"],
        total_count=connection["totalCount"],
    )
