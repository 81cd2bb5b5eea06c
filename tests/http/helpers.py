"""A small client for HTTP tests: tokens of each role in one tenant, and common mutations."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from tests.support.graphql import data
from tests.support.server import LiveServer

TASK_FIELDS = """
  id title status progress message priority capability input result error
  attempts maxAttempts createdAt updatedAt startedAt finishedAt
  agent { id } workflow { id }
"""


@dataclass
class Api:
    """Use as ``async with``: one HTTP client per test (a new client costs ~20 ms of CPU)."""

    server: LiveServer
    tenant: str
    _client: httpx.AsyncClient | None = field(default=None, repr=False)

    async def __aenter__(self) -> Api:
        # Plain HTTP on loopback: no TLS context to build.
        self._client = httpx.AsyncClient(timeout=30, verify=False)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None, "use the Api as `async with Api(...) as api`"
        return self._client

    def token(self, *roles: str, sub: str = "tester", agent_id: str | None = None) -> str:
        return self.server.token(*roles, sub=sub, tenant=self.tenant, agent_id=agent_id)

    @property
    def operator(self) -> str:
        return self.token("OPERATOR", sub="operator")

    @property
    def viewer(self) -> str:
        return self.token("VIEWER", sub="viewer")

    @property
    def admin(self) -> str:
        return self.token("ADMIN", sub="admin")

    async def call(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        """The whole response body; the operator's token unless another is given."""
        response = await self.client.post(
            self.server.url,
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {token or self.operator}"},
        )
        body: dict[str, Any] = response.json()
        return body

    async def anonymous(self, query: str) -> dict[str, Any]:
        """A call without any Authorization header."""
        body: dict[str, Any] = (
            await self.client.post(self.server.url, json={"query": query})
        ).json()
        return body

    async def ok(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        """The data of a call that must succeed."""
        return data(await self.call(query, variables, token=token))

    async def create_task(self, title: str = "job", **input: Any) -> dict[str, Any]:
        body = await self.ok(
            "mutation($input: CreateTaskInput!) { createTask(input: $input) {"
            f" {TASK_FIELDS} }} }}",
            {"input": {"title": title, **input}},
        )
        task: dict[str, Any] = body["createTask"]
        return task

    async def register_agent(
        self, name: str = "worker", capabilities: list[str] | None = None, metadata: Any = None
    ) -> tuple[dict[str, Any], str]:
        body = await self.ok(
            """mutation($input: RegisterAgentInput!) {
                 registerAgent(input: $input) {
                   token agent { id name capabilities status metadata lastHeartbeatAt registeredAt }
                 }
               }""",
            {"input": {"name": name, "capabilities": capabilities or [], "metadata": metadata}},
        )
        reg = body["registerAgent"]
        return reg["agent"], reg["token"]

    async def claim(self, agent_id: str, token: str) -> dict[str, Any] | None:
        body = await self.ok(
            f"mutation($a: ID!) {{ claimTask(agentId: $a) {{ {TASK_FIELDS} }} }}",
            {"a": agent_id},
            token=token,
        )
        task: dict[str, Any] | None = body["claimTask"]
        return task

    async def event_count(self) -> int:
        body = await self.ok("{ events(first: 0) { totalCount } }")
        count: int = body["events"]["totalCount"]
        return count
