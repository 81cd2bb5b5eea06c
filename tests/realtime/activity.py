"""Making things happen in a tenant: mutations over real HTTP, or services on the server's loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import httpx

from api.auth.principal import Principal
from api.clock import utcnow
from api.domain import EventRecord, EventType, Role
from api.services import transitions
from api.services.unit import Tx, UnitOfWork
from tests.support.graphql import data
from tests.support.server import LiveServer

T = TypeVar("T")

TASK_FIELDS = "id title status progress attempts agent { id name status } workflow { id status }"


class Tenant:
    """One tenant's operator, driving the API over HTTP like a client would."""

    def __init__(self, server: LiveServer, tenant: str, *, sub: str = "operator") -> None:
        self.server = server
        self.name = tenant
        self.token = server.token("OPERATOR", sub=sub, tenant=tenant)

    async def run(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str = ""
    ) -> Any:
        return data(await self.post(query, variables, token=token))

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str = ""
    ) -> dict[str, Any]:
        """The whole response body. (Plain HTTP on loopback: no TLS context to build.)"""
        headers = {"Authorization": f"Bearer {token or self.token}"}
        async with httpx.AsyncClient(verify=False, trust_env=False, timeout=30) as client:
            response = await client.post(
                self.server.url, json={"query": query, "variables": variables}, headers=headers
            )
        body: dict[str, Any] = response.json()
        return body

    async def create_task(self, title: str = "task", **fields: Any) -> dict[str, Any]:
        result = await self.run(
            "mutation($input: CreateTaskInput!) { createTask(input: $input) { id title status } }",
            {"input": {"title": title, **fields}},
        )
        task: dict[str, Any] = result["createTask"]
        return task

    async def cancel_task(self, id: str) -> None:
        await self.run("mutation($id: ID!) { cancelTask(id: $id) { id } }", {"id": id})

    async def register_agent(self, name: str = "agent", capabilities: Sequence[str] = ()) -> Agent:
        result = await self.run(
            "mutation($input: RegisterAgentInput!) {"
            " registerAgent(input: $input) { agent { id } token } }",
            {"input": {"name": name, "capabilities": list(capabilities)}},
        )
        reg = result["registerAgent"]
        return Agent(self, reg["agent"]["id"], reg["token"])

    async def start_workflow(self, name: str, steps: Sequence[str]) -> str:
        result = await self.run(
            "mutation($input: StartWorkflowInput!) { startWorkflow(input: $input) { id } }",
            {"input": {"name": name, "steps": [{"name": s} for s in steps]}},
        )
        id: str = result["startWorkflow"]["id"]
        return id

    async def cancel_workflow(self, id: str) -> None:
        await self.run("mutation($id: ID!) { cancelWorkflow(id: $id) { id } }", {"id": id})

    async def event_ids(self, filter: dict[str, Any] | None = None) -> list[int]:
        """Every event id of the tenant's history (the ``events`` query), oldest first."""
        return [int(e["id"]) for e in await self.events(filter)]

    async def events(
        self, filter: dict[str, Any] | None = None, after: str | None = None
    ) -> list[dict[str, Any]]:
        """The tenant's history after a cursor (the ``events`` query), oldest first."""
        found: list[dict[str, Any]] = []
        while True:
            result = await self.run(
                "query($filter: EventFilter, $after: String) {"
                " events(filter: $filter, first: 500, after: $after) {"
                " edges { node { id type taskId agentId workflowId } }"
                " pageInfo { hasNextPage endCursor } } }",
                {"filter": filter, "after": after},
            )
            page = result["events"]
            found += [e["node"] for e in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]


class Agent:
    """A registered agent acting with its own token."""

    def __init__(self, tenant: Tenant, id: str, token: str) -> None:
        self.tenant = tenant
        self.id = id
        self.token = token

    async def claim(self) -> str | None:
        result = await self.tenant.run(
            "mutation($a: ID!) { claimTask(agentId: $a) { id } }", {"a": self.id}, token=self.token
        )
        task = result["claimTask"]
        return None if task is None else str(task["id"])

    async def heartbeat(self) -> None:
        await self.tenant.run(
            "mutation($a: ID!) { heartbeat(agentId: $a) { id } }", {"a": self.id}, token=self.token
        )

    async def progress(self, task_id: str, progress: float) -> None:
        await self.tenant.run(
            "mutation($t: ID!, $p: Float!) { reportProgress(taskId: $t, progress: $p) { id } }",
            {"t": task_id, "p": progress},
            token=self.token,
        )

    async def complete(self, task_id: str, result: Any = None) -> None:
        await self.tenant.run(
            "mutation($t: ID!, $r: JSON) { completeTask(taskId: $t, result: $r) { id } }",
            {"t": task_id, "r": result},
            token=self.token,
        )

    async def fail(self, task_id: str, error: str = "boom", *, retry: bool = True) -> None:
        await self.tenant.run(
            "mutation($t: ID!, $e: String!, $r: Boolean) {"
            " failTask(taskId: $t, error: $e, retry: $r) { id } }",
            {"t": task_id, "e": error, "r": retry},
            token=self.token,
        )


# -- the server's own loop ------------------------------------------------


def server_loop(server: LiveServer) -> asyncio.AbstractEventLoop:
    """The event loop of the server thread (its engine and bus belong to it)."""
    tasks = server.runtime.bus._tasks
    assert tasks, "the bus has not started"
    return tasks[0].get_loop()


async def on_server(server: LiveServer, coro: Coroutine[Any, Any, T], within: float = 60) -> T:
    """Run a coroutine on the server's loop, as the server's own code would."""
    future = asyncio.run_coroutine_threadsafe(coro, server_loop(server))
    return await asyncio.wait_for(asyncio.wrap_future(future), within)


def principal(tenant: str, *roles: Role, sub: str = "writer") -> Principal:
    return Principal(
        subject=sub,
        roles=frozenset(roles or (Role.OPERATOR,)),
        tenant=tenant,
        agent_id=None,
        expires_at=utcnow() + timedelta(hours=1),
    )


async def create_tasks(
    server: LiveServer, tenant: str, count: int, *, title: str = "t", input: Any = None
) -> None:
    """``count`` TASK_CREATED events, written through the server's own task service."""
    service = server.runtime.tasks
    caller = principal(tenant)

    async def go() -> None:
        for i in range(count):
            await service.create(
                caller,
                title=f"{title}{i}",
                capability=None,
                priority=0,
                input=input,
                max_attempts=3,
            )

    await on_server(server, go(), within=120)


class DroppingPublisher:
    """Passes events on to the bus, except those whose position is in ``drop``: a lost publish."""

    def __init__(self, inner: Any, drop: set[int]) -> None:
        self.inner = inner
        self.drop = drop
        self.seen = 0
        self.dropped: list[int] = []

    async def publish(self, records: Sequence[EventRecord]) -> None:
        kept = []
        for record in records:
            if self.seen in self.drop:
                self.dropped.append(record.id)
            else:
                kept.append(record)
            self.seen += 1
        if kept:
            await self.inner.publish(kept)


class PacedPublisher:
    """Announces each record on its own, yielding between them, as one commit per event would."""

    def __init__(self, inner: Any, pause: float = 0.0) -> None:
        self.inner = inner
        self.pause = pause

    async def publish(self, records: Sequence[EventRecord]) -> None:
        for record in records:
            await self.inner.publish([record])
            await asyncio.sleep(self.pause)


async def commit_tasks(
    server: LiveServer,
    tenant: str,
    count: int,
    *,
    publisher: Any,
    per_transaction: int = 1,
    input: Any = None,
    title: str = "t",
) -> None:
    """``count`` TASK_CREATED events through a UnitOfWork with ``publisher``, on the server."""
    uow = UnitOfWork(server.runtime.db, publisher)

    async def go() -> None:
        made = 0
        while made < count:
            n = min(per_transaction, count - made)

            async def work(tx: Tx, first: int = made, n: int = n) -> None:
                for i in range(first, first + n):
                    row = transitions.insert_task(
                        tx,
                        title=f"{title}{i}",
                        capability=None,
                        priority=0,
                        input=input,
                        max_attempts=3,
                    )
                    await transitions.emit_task(tx, EventType.TASK_CREATED, row)

            await uow.run(tenant, "writer", work)
            made += n

    await on_server(server, go(), within=120)
