"""The per-request (or per-socket) GraphQL context."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.websockets import WebSocket
from strawberry.dataloader import DataLoader
from strawberry.types import Info as _Info

from api.auth.principal import Principal
from api.domain import AgentState, EventRecord, TaskState, WorkflowState
from api.errors import Mark1Error, Unauthenticated
from api.runtime import Runtime


class Context:
    """Holds the runtime, the caller, and batching loaders scoped to the caller's tenant."""

    # One per socket for its whole life: no __dict__.
    __slots__ = (
        "_cache",
        "_loaders",
        "auth_error",
        "connection_params",
        "history_through",
        "last_record",
        "principal_or_none",
        "request",
        "runtime",
    )

    def __init__(
        self,
        runtime: Runtime,
        request: Request | WebSocket | None,
        *,
        principal: Principal | None = None,
        auth_error: Mark1Error | None = None,
        cache: bool = True,
    ) -> None:
        self.runtime = runtime
        self.request = request
        self.principal_or_none = principal
        self.auth_error = auth_error
        self.connection_params: dict[str, Any] = {}
        self.last_record: EventRecord | None = None
        self._cache = cache
        self._loaders: dict[str, DataLoader[str, Any]] | None = None
        # Subscription streams go live after their history (api/events/stream.py); a
        # multiplexed member's replay stops at an id instead (resolvers/multiplex.py).
        self.history_through: int | None = None

    @property
    def principal(self) -> Principal:
        """The authenticated caller; UNAUTHENTICATED otherwise."""
        if self.principal_or_none is None:
            raise self.auth_error or Unauthenticated("Authentication required")
        return self.principal_or_none

    # -- subscription bookkeeping (a multiplexed group overrides these) ------

    def stream_started(self) -> None:
        """A subscription joined the bus and is live."""
        self.runtime.metrics.subscriptions.inc()

    def stream_ended(self) -> None:
        self.runtime.metrics.subscriptions.dec()

    def delivering(self, record: EventRecord, *, live: bool) -> None:
        """A subscription is about to send this event."""
        self.last_record = record
        self.runtime.metrics.delivered(record, live=live)

    def _loader(self, name: str) -> DataLoader[str, Any]:
        if self._loaders is None:
            reads = self.runtime.reads
            tenant = self.principal.tenant

            def make(fetch: Any) -> DataLoader[str, Any]:
                async def load(ids: list[str]) -> list[Any]:
                    found = await fetch(tenant, ids)
                    return [found.get(i) for i in ids]

                # Sockets live long: never serve a cached, stale entity on them.
                return DataLoader(load_fn=load, cache=self._cache)

            self._loaders = {
                "task": make(reads.tasks_by_id),
                "agent": make(reads.agents_by_id),
                "workflow": make(reads.workflows_by_id),
            }
        return self._loaders[name]

    async def task(self, id: str) -> TaskState | None:
        result: TaskState | None = await self._loader("task").load(id)
        return result

    async def agent(self, id: str) -> AgentState | None:
        result: AgentState | None = await self._loader("agent").load(id)
        return result

    async def workflow(self, id: str) -> WorkflowState | None:
        result: WorkflowState | None = await self._loader("workflow").load(id)
        return result


Info = _Info[Context, None]
