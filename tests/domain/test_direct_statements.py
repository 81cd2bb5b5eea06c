"""The write path's statements on SQLite's driver (api/db/direct.py) store and return exactly
what SQLAlchemy's execution of the same statements does, and raise SQLAlchemy's errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from api.auth.principal import Principal
from api.clock import utcnow
from api.db import agents as agent_rows
from api.db import events as event_rows
from api.db import tasks as task_rows
from api.db.direct import Statement
from api.domain import AgentState, TaskState
from api.runtime import Runtime
from tests.domain.helpers import as_agent, register
from tests.support import databases


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLite only: PostgreSQL runs these statements through SQLAlchemy itself."""
    with databases.database("sqlite", tmp_path_factory.mktemp("db")) as url:
        yield url


async def _held_task(runtime: Runtime, operator: Principal) -> tuple[AgentState, TaskState]:
    agent = await register(runtime, operator)
    await runtime.tasks.create(
        operator, title="held", capability=None, priority=0, input={"k": [1]}, max_attempts=3
    )
    task = await runtime.tasks.claim(as_agent(agent), agent.id)
    assert task is not None
    return agent, task


async def _both_ways(
    runtime: Runtime, statement: Statement, params: dict[str, Any]
) -> tuple[Any, Any]:
    """The row the statement returns run directly, then through SQLAlchemy, each in a
    transaction rolled back, so both start from the same rows."""
    async with runtime.db.engine.connect() as conn:
        async with conn.begin() as tx:
            direct = await statement.first(conn, params)
            await tx.rollback()
        async with conn.begin() as tx:
            found = (await conn.execute(statement.statement, params)).first()
            await tx.rollback()
    return direct, None if found is None else dict(found._mapping)


async def test_rows_come_back_as_sqlalchemy_returns_them(
    runtime: Runtime, operator: Principal, tenant: str
) -> None:
    agent, task = await _held_task(runtime, operator)
    now = utcnow()
    cases: list[tuple[Statement, dict[str, Any]]] = [
        (task_rows._PEEK_HOLDER, {"p_tenant": tenant, "p_id": task.id}),
        (agent_rows._LOCK_AGENT, {"p_tenant": tenant, "p_id": agent.id}),
        (agent_rows._TOUCH_HEARTBEAT, {"p_tenant": tenant, "p_id": agent.id, "p_now": now}),
        (
            task_rows._UPDATE_PROGRESS,
            {
                "p_tenant": tenant,
                "p_id": task.id,
                "p_holder": agent.id,
                "p_progress": 0.25,
                "p_message": "half-way é",
                "p_now": now,
            },
        ),
        (
            task_rows._SUCCEED,
            {
                "p_tenant": tenant,
                "p_id": task.id,
                "p_holder": agent.id,
                "p_result": {"answer": [1, 2.5, None, "x"]},
                "p_now": now,
            },
        ),
        (
            agent_rows._RELEASED,
            {"p_tenant": tenant, "p_id": agent.id, "p_status": "ONLINE"},
        ),
        (event_rows._ALLOCATE, {"p_tenant": tenant, "p_count": 3}),
    ]
    for statement, params in cases:
        direct, through_sqlalchemy = await _both_ways(runtime, statement, params)
        assert direct is not None, statement.statement
        assert direct == through_sqlalchemy, statement.statement
        for value in direct.values():
            assert not hasattr(value, "tzinfo") or value.tzinfo is not None  # aware datetimes
    # A row that does not qualify (not the holder) is no row, both ways.
    direct, through_sqlalchemy = await _both_ways(
        runtime, task_rows._UPDATE_PROGRESS, {**cases[3][1], "p_holder": "someone-else"}
    )
    assert direct is None and through_sqlalchemy is None


async def _stored(conn: AsyncConnection, table: str, id: str) -> dict[str, Any]:
    """A row as SQLite stores it: each column's storage class and value."""
    columns = [r[1] for r in (await conn.execute(text(f"PRAGMA table_info({table})"))).all()]
    picks = ", ".join(f"typeof({c}), {c}" for c in columns)
    row = (
        await conn.execute(text(f"SELECT {picks} FROM {table} WHERE id = :id"), {"id": id})
    ).one()
    return {c: (row[2 * i], row[2 * i + 1]) for i, c in enumerate(columns) if c != "id"}


async def test_inserts_store_what_sqlalchemy_stores(
    runtime: Runtime, operator: Principal, tenant: str
) -> None:
    created = await runtime.tasks.create(
        operator, title="t", capability="gpu", priority=3, input={"a": 1.5}, max_attempts=2
    )
    row = {**created.model_dump(), "status": created.status.value, "step_index": None}

    async def insert(
        id: str, run: Callable[[AsyncConnection, dict[str, Any]], Awaitable[Any]]
    ) -> None:
        async with runtime.db.engine.begin() as conn:
            await run(conn, {**row, "id": id})

    await insert("direct-1", lambda conn, r: task_rows._INSERT.execute_many(conn, [r]))
    await insert("sqlalchemy-1", lambda conn, r: conn.execute(task_rows._INSERT.statement, r))
    async with runtime.db.engine.connect() as conn:
        assert await _stored(conn, "task", "direct-1") == await _stored(
            conn, "task", "sqlalchemy-1"
        )
    # The events of a real transaction, written directly, read back as they were emitted.
    agent, task = await _held_task(runtime, operator)
    reported = await runtime.tasks.report_progress(as_agent(agent), task.id, 0.5, "m")
    last = (await runtime.reads.events_after(tenant, 0, 100, None))[-1]
    assert last.snapshots.task is not None and last.snapshots.task == reported
    assert last.data == {"progress": 0.5} and last.occurred_at == reported.updated_at


async def test_driver_errors_are_raised_as_sqlalchemy_raises_them(
    runtime: Runtime, operator: Principal
) -> None:
    created = await runtime.tasks.create(
        operator, title="t", capability=None, priority=0, input=None, max_attempts=1
    )
    row = {**created.model_dump(), "status": created.status.value, "step_index": None}
    with pytest.raises(IntegrityError, match="UNIQUE"):
        async with runtime.db.engine.begin() as conn:
            await task_rows._INSERT.execute_many(conn, [row])


async def test_the_hot_mutations_bypass_sqlalchemys_execution(
    runtime: Runtime, operator: Principal
) -> None:
    """reportProgress, heartbeat and claim+complete issue none of their hot statements
    through SQLAlchemy on SQLite (the claim's capability query is the one exception)."""
    agent, task = await _held_task(runtime, operator)
    await runtime.tasks.create(
        operator, title="next", capability=None, priority=0, input=None, max_attempts=3
    )
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(runtime.db.engine.sync_engine, "before_cursor_execute", record)
    try:
        me = as_agent(agent)
        await runtime.tasks.report_progress(me, task.id, 0.5, None)
        await runtime.agents.heartbeat(me, agent.id)
        await runtime.tasks.complete(me, task.id, {"ok": True})
        claimed = await runtime.tasks.claim(me, agent.id)
        assert claimed is not None
    finally:
        event.remove(runtime.db.engine.sync_engine, "before_cursor_execute", record)
    assert len(seen) == 1 and "FROM task" in seen[0], seen
