"""The database floor: the SQL of one ``reportProgress``, issued straight through the driver.

No HTTP, no GraphQL, no ORM: asyncpg (one connection per agent) or aiosqlite
(one connection, as the server keeps for SQLite) running, per report, the
transaction the service runs: read the task's holder, lock the agent, update
the task where it is still RUNNING and held by that agent, take the next
event id from the tenant's counter, insert the event with its snapshots,
commit. Same agents, same tasks and same concurrency as the HTTP figure, so
their ratio says how much of a mutation's time is the database's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from bench import report

_PEEK = "SELECT agent_id FROM task WHERE tenant = {0} AND id = {1}"
_LOCK_AGENT = "SELECT id, current_task_id FROM agent WHERE tenant = {0} AND id = {1}{lock}"
_UPDATE_TASK = (
    "UPDATE task SET progress = {2}, message = NULL, updated_at = {3} "
    "WHERE tenant = {0} AND id = {1} AND status = 'RUNNING' AND agent_id = {4} "
    "RETURNING id, title, status, progress, priority, attempts, max_attempts, created_at"
)
_NEXT_ID = (
    "UPDATE tenant_counter SET last_event_id = last_event_id + 1 WHERE tenant = {0} "
    "RETURNING last_event_id"
)
_INSERT_EVENT = (
    "INSERT INTO event (tenant, id, type, occurred_at, actor, task_id, agent_id, workflow_id, "
    "data, snapshots) VALUES ({0}, {1}, 'TASK_PROGRESS', {2}, {3}, {4}, {5}, NULL, {6}, {7})"
)


def _sql(template: str, marks: list[str], lock: str = "") -> str:
    return template.format(*marks, lock=lock)


def _snapshot(task: str, agent: str, progress: float, now: datetime) -> str:
    """An event's snapshots of the size the server writes (task and agent)."""
    stamp = now.isoformat()
    return orjson.dumps(
        {
            "task": {
                "id": task,
                "title": "held",
                "status": "RUNNING",
                "progress": progress,
                "priority": 0,
                "attempts": 1,
                "max_attempts": 3,
                "agent_id": agent,
                "created_at": stamp,
                "updated_at": stamp,
                "started_at": stamp,
            },
            "agent": {
                "id": agent,
                "name": "bench-agent",
                "capabilities": [],
                "status": "BUSY",
                "last_heartbeat_at": stamp,
                "registered_at": stamp,
                "current_task_id": task,
            },
            "workflow": None,
            "related": [],
        }
    ).decode()


async def _postgres(url: str, tenant: str, held: list[tuple[str, str]]) -> Any:
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conns = [await asyncpg.connect(dsn) for _ in held]
    marks = [f"${i}" for i in range(1, 9)]

    def report_for(conn: Any, task: str, agent: str) -> Callable[[float], Awaitable[None]]:
        async def one(progress: float) -> None:
            now = datetime.now(UTC)
            async with conn.transaction():
                await conn.fetchval(_sql(_PEEK, marks), tenant, task)
                await conn.fetchrow(_sql(_LOCK_AGENT, marks, " FOR UPDATE"), tenant, agent)
                await conn.fetchrow(_sql(_UPDATE_TASK, marks), tenant, task, progress, now, agent)
                event_id = await conn.fetchval(_sql(_NEXT_ID, marks), tenant)
                await conn.execute(
                    _sql(_INSERT_EVENT, marks),
                    tenant,
                    event_id,
                    now,
                    f"agent:{agent}",
                    task,
                    agent,
                    orjson.dumps({"progress": progress}).decode(),
                    _snapshot(task, agent, progress, now),
                )

        return one

    async def close() -> None:
        for conn in conns:
            await conn.close()

    return [report_for(c, t, a) for c, (t, a) in zip(conns, held, strict=True)], close


async def _sqlite(url: str, tenant: str, held: list[tuple[str, str]]) -> Any:
    import aiosqlite

    path = url.split(":///", 1)[1]
    conn = await aiosqlite.connect(path, isolation_level=None)
    await conn.execute("PRAGMA busy_timeout=30000")
    await conn.execute("PRAGMA synchronous=NORMAL")
    lock = asyncio.Lock()  # one connection, as the server has: transactions queue for it
    marks = [f"?{i}" for i in range(1, 9)]  # numbered, as asyncpg's $n

    def report_for(task: str, agent: str) -> Callable[[float], Awaitable[None]]:
        async def one(progress: float) -> None:
            now = datetime.now(UTC)
            stamp = now.replace(tzinfo=None).isoformat(sep=" ")
            async with lock:
                await conn.execute("BEGIN")
                await (await conn.execute(_sql(_PEEK, marks), (tenant, task))).fetchone()
                await (await conn.execute(_sql(_LOCK_AGENT, marks), (tenant, agent))).fetchone()
                cursor = await conn.execute(
                    _sql(_UPDATE_TASK, marks), (tenant, task, progress, stamp, agent)
                )
                await cursor.fetchone()
                cursor = await conn.execute(_sql(_NEXT_ID, marks), (tenant,))
                row = await cursor.fetchone()
                assert row is not None
                await conn.execute(
                    _sql(_INSERT_EVENT, marks),
                    (
                        tenant,
                        row[0],
                        stamp,
                        f"agent:{agent}",
                        task,
                        agent,
                        orjson.dumps({"progress": progress}).decode(),
                        _snapshot(task, agent, progress, now),
                    ),
                )
                await conn.execute("COMMIT")

        return one

    return [report_for(t, a) for t, a in held], conn.close


async def measure(
    url: str, *, tenant: str, held: list[tuple[str, str]], seconds: float, warmup: float = 1.0
) -> dict[str, Any]:
    """Reports per second with one worker per (task, agent) pair, back to back."""
    make = _postgres if url.startswith("postgresql") else _sqlite
    workers, close = await make(url, tenant, held)
    start = time.perf_counter() + warmup
    stop = start + seconds
    latencies: list[float] = []
    done = 0

    async def loop(one: Callable[[float], Awaitable[None]]) -> None:
        nonlocal done
        i = 0
        while (sent := time.perf_counter()) < stop:
            await one((i % 100) / 100)
            i += 1
            finished = time.perf_counter()
            if start <= finished <= stop:
                done += 1
                latencies.append(finished - sent)

    cpu_before = cpu_after = 0.0

    async def clock() -> None:
        nonlocal cpu_before, cpu_after
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        cpu_before = time.process_time()
        await asyncio.sleep(max(0.0, stop - time.perf_counter()))
        cpu_after = time.process_time()

    try:
        await asyncio.gather(clock(), *(loop(w) for w in workers))
    finally:
        await close()
    lat = report.summary(latencies)
    return {
        "per_second": done / seconds,
        "requests": done,
        "failures": 0,
        "first_failure": None,
        "server_cpu_us": None,
        # The driver runs in this process: its CPU share is the "client" here.
        "client_cpu_share": (cpu_after - cpu_before) / seconds,
        "latency_ms": {k: v * 1000 for k, v in lat.items()},
    }
