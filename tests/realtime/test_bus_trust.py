"""Nothing on the bus is trusted by value: messages are references read back from the
outbox, tagged with the install's id. Forged messages neither inject nor suppress an
event; installs sharing a channel see only their own events; size is no limit."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from api.metrics import Metrics
from api.settings import Settings
from tests.realtime.activity import Tenant
from tests.realtime.conftest import subscribed
from tests.realtime.processes import RedisServer
from tests.realtime.wire import Socket
from tests.support import databases
from tests.support.server import live_server, make_settings

EVENTS = "subscription { events { id type task { title } } }"


@pytest.fixture
def two_databases() -> Iterator[tuple[str, str]]:
    """Two fresh PostgreSQL databases: two installs. Yields their SQLAlchemy urls."""
    with databases.fresh_pg_database() as one, databases.fresh_pg_database() as two:
        yield one.url, two.url


async def _publish(url: str, channel: str, *messages: bytes) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        for message in messages:
            await client.publish(channel, message)
    finally:
        await client.aclose()


@pytest.mark.postgres
async def test_a_forged_message_with_the_next_id_is_not_delivered_and_the_real_event_still_is(
    two_databases: tuple[str, str], redis_server: RedisServer, tmp_path: Path, tenant: str
) -> None:
    settings = make_settings(two_databases[0], tmp_path, broadcast_url=redis_server.url)
    with live_server(settings) as server:
        t = Tenant(server, tenant)
        viewer = server.token("VIEWER", tenant=tenant)
        async with await Socket.open(server.ws_url, viewer) as ws:
            await ws.subscribe("events", EVENTS)
            await subscribed(server, 1)
            await t.create_task("first")
            first = await ws.field("events", within=10)
            rejected = Metrics.value(server.runtime.metrics.bus_rejected)

            # What an attacker who can PUBLISH on the channel might send for id 2:
            forged_event = {  # a whole event, as the bus once carried them by value
                "id": 2,
                "tenant": tenant,
                "type": "TASK_CREATED",
                "occurred_at": "2026-01-01T00:00:00+00:00",
                "actor": "mallory",
                "task_id": None,
                "agent_id": None,
                "workflow_id": None,
                "data": {},
                "snapshots": {},
            }
            doorbell = {"i": server.runtime.bus.install, "t": tenant, "e": 2}  # real install
            foreign = {"i": "another-install", "t": tenant, "e": 2}
            await _publish(
                redis_server.url,
                settings.broadcast_channel,
                orjson.dumps(forged_event),
                orjson.dumps(doorbell),
                orjson.dumps(foreign),
                b"not json at all",
            )
            # Two head checks (0.5 s) later, still nothing: id 2 has not committed.
            await ws.silent("events", 1.2)

            await t.create_task("real")
            second = await ws.field("events", within=10)
            await ws.silent("events", 1.0)
        now_rejected = Metrics.value(server.runtime.metrics.bus_rejected)

    assert first == {"id": "1", "type": "TASK_CREATED", "task": {"title": "first"}}
    assert second == {"id": "2", "type": "TASK_CREATED", "task": {"title": "real"}}
    assert now_rejected - rejected == 3  # the whole event, the foreign one, the garbage


@pytest.mark.postgres
async def test_two_installs_on_one_redis_and_the_default_channel_see_only_their_own_events(
    two_databases: tuple[str, str], redis_server: RedisServer, tmp_path: Path
) -> None:
    """Same channel, same tenant name, same event ids: different installs."""
    channel = Settings(_env_file=None).broadcast_channel  # the default, for both
    installs = [
        make_settings(
            url, tmp_path / f"install{i}", broadcast_url=redis_server.url, broadcast_channel=channel
        )
        for i, url in enumerate(two_databases)
    ]
    with live_server(installs[0]) as one, live_server(installs[1]) as two:
        assert one.runtime.bus.install != two.runtime.bus.install
        received: dict[str, list[object]] = {}
        sockets = {}
        for name, server in (("one", one), ("two", two)):
            sockets[name] = await Socket.open(server.ws_url, server.token("VIEWER"))
            await sockets[name].subscribe("events", EVENTS)
            await subscribed(server, 1)
        try:
            for i in range(3):
                for name, server in (("one", one), ("two", two)):
                    await Tenant(server, "default").create_task(f"{name}-{i}")
            for name, ws in sockets.items():
                received[name] = [await ws.field("events", within=10) for _ in range(3)]
                await ws.silent("events", 1.0)
        finally:
            for ws in sockets.values():
                await ws.close()
        ignored = [Metrics.value(s.runtime.metrics.bus_rejected) for s in (one, two)]

    for name in ("one", "two"):
        assert received[name] == [
            {"id": str(i + 1), "type": "TASK_CREATED", "task": {"title": f"{name}-{i}"}}
            for i in range(3)
        ]
    assert all(n >= 3 for n in ignored), "each install saw the other's doorbells and ignored them"


@pytest.mark.postgres
async def test_a_task_result_of_100_kb_is_delivered_across_processes_over_the_postgres_bus(
    two_databases: tuple[str, str], tmp_path: Path, tenant: str
) -> None:
    """NOTIFY takes at most 8,000 bytes: the doorbell is a reference, whatever the event."""
    url = two_databases[0]
    bus = url.replace("postgresql+asyncpg://", "postgres://")
    channel = f"mark1_test_{secrets.token_hex(6)}"
    base = make_settings(url, tmp_path, broadcast_url=bus, broadcast_channel=channel)
    result = {"blob": "x" * 100_000, "lines": [f"line {i}" for i in range(100)]}
    with live_server(base) as writer, live_server(base) as reader:
        viewer = reader.token("VIEWER", tenant=tenant)
        async with await Socket.open(reader.ws_url, viewer) as ws:
            await ws.subscribe("tasks", "subscription { taskUpdates { status result } }")
            await subscribed(reader, 1)
            t = Tenant(writer, tenant)
            agent = await t.register_agent("big")
            await t.create_task("big result")
            task_id = await agent.claim()
            assert task_id is not None
            await agent.complete(task_id, result)
            updates = [await ws.field("tasks", within=10) for _ in range(3)]

    assert [u["status"] for u in updates] == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert updates[-1]["result"] == result
    assert len(orjson.dumps(result)) > 100_000
