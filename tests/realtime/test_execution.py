"""The executor: a long-lived subscription collects its selection once, not per event."""

from __future__ import annotations

import gc

from graphql.execution.executor import Executor

from resolvers.context import Context
from tests.realtime.activity import create_tasks
from tests.realtime.conftest import subscribed
from tests.realtime.wire import Socket
from tests.support.server import LiveServer


def _executors(tenant: str) -> list[Executor]:
    """The server's executors (the subscription's and its per-event copies) for a tenant."""
    gc.collect()
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, Executor)
        and isinstance(o.context_value, Context)
        and o.context_value.principal_or_none is not None
        and o.context_value.principal_or_none.tenant == tenant
    ]


async def test_a_subscription_keeps_one_subfield_entry_per_selection_however_many_events(
    server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, viewer) as ws:
        await ws.subscribe("t", "subscription { taskUpdates { id title } }")
        await subscribed(server, 1)
        await create_tasks(server, tenant, 30)
        titles = [(await ws.field("t"))["title"] for _ in range(30)]
        assert titles == [f"t{i}" for i in range(30)]
        executors = _executors(tenant)
        assert executors
        for executor in executors:
            # graphql-core's own memo, keyed on a field list made afresh for every event,
            # held one entry per event before (resolvers/execution.py).
            assert len(executor._relevant_sub_fields) == 1
