"""After a prune: a cursor older than the oldest kept event gets EVENTS_PRUNED, newer
cursors and new events carry on; the retention job prunes in every process, one
process at a time, each event counted once."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.db.engine import Database
from api.db.retention import exclusive, prune
from api.jobs.retention import Retention
from mark1_client import EventsPruned, Mark1Client
from tests.realtime.activity import Tenant, on_server
from tests.realtime.conftest import subscribed
from tests.realtime.processes import serve_clusters
from tests.realtime.wire import Socket
from tests.support.databases import PgDatabase, fresh_database
from tests.support.outbox import backdate, event_ids, seed
from tests.support.server import LiveServer, live_server, make_settings
from tests.support.waiting import until

EVENTS = "subscription($after: ID) { events(after: $after) { id type } }"
HISTORY = "query($after: String) { events(first: 100, after: $after) { edges { node { id } } } }"


async def test_a_cursor_before_the_oldest_kept_event_is_refused_with_events_pruned(
    server: LiveServer, tenant: str
) -> None:
    t = Tenant(server, tenant)
    for i in range(6):
        await t.create_task(f"t{i}")
    assert await on_server(server, prune(server.runtime.db, before=4, tenant=tenant)) == 3

    viewer = server.token("VIEWER", tenant=tenant)
    async with Mark1Client(server.url, viewer) as client:
        # The SDK's "from now on" starts at the newest id: oldest kept + count - 1.
        assert await client.head() == "6"
        with pytest.raises(EventsPruned) as pruned:
            async with client.events(after=2) as stream:
                await anext(stream)
    assert pruned.value.oldest_event_id == "4"

    async with await Socket.open(server.ws_url, viewer) as ws:
        # A client that stopped at 2 never saw 3, and 3 is gone.
        await ws.subscribe("gap", EVENTS, {"after": "2"})
        refused = await ws.failure("gap")
        # Exactly at the edge, from the start of what is kept, and live only: all fine.
        await ws.subscribe("edge", EVENTS, {"after": "3"})
        await ws.subscribe("start", EVENTS, {"after": "0"})
        await ws.subscribe("live", EVENTS)
        replayed = {
            op: [int((await ws.field(op))["id"]) for _ in range(3)] for op in ("edge", "start")
        }
        await subscribed(server, 3)
        await t.create_task("after the prune")
        new = {op: int((await ws.field(op))["id"]) for op in ("edge", "start", "live")}

    assert refused["extensions"] == {"code": "EVENTS_PRUNED", "oldestEventId": "4"}
    assert "after 2 were pruned" in refused["message"]
    assert replayed == {"edge": [4, 5, 6], "start": [4, 5, 6]}
    assert new == {"edge": 7, "start": 7, "live": 7}  # the counter carries on

    paged = await t.post(HISTORY, {"after": "1"})
    assert paged["data"] is None
    assert paged["errors"][0]["extensions"] == {"code": "EVENTS_PRUNED", "oldestEventId": "4"}
    assert [
        int(e["node"]["id"]) for e in (await t.run(HISTORY, {"after": "3"}))["events"]["edges"]
    ] == [4, 5, 6, 7]
    assert await t.event_ids() == [4, 5, 6, 7]


async def _pruned(url: str, want: dict[str, list[int]], within: float = 60) -> None:
    deadline = time.monotonic() + within
    while (ids := await event_ids(url)) != want:
        assert time.monotonic() < deadline, f"the outbox still holds {ids}"
        await asyncio.sleep(0.2)


ROUND = re.compile(r"event retention: (pruned \d+ events older|another process is pruning)")


def _counted(logs: list[str]) -> int:
    return sum(int(n) for log in logs for n in re.findall(r"pruned (\d+) events older", log))


async def test_the_retention_job_prunes_events_older_than_its_days_on_sqlite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with fresh_database("sqlite+aiosqlite:///", tmp_path) as url:
        await seed(url, tmp_path, {"acme": 6, "globex": 2})
        old = datetime.now(UTC) - timedelta(days=3)
        await backdate(url, "acme", through=4, to=old)
        await backdate(url, "globex", through=2, to=old)
        with live_server(make_settings(url, tmp_path, event_retention=2)):
            await _pruned(url, {"acme": [5, 6], "globex": [2]})
    assert _counted([r.getMessage() for r in caplog.records]) == 5  # acme 4, globex 1


@pytest.mark.postgres
@pytest.mark.timeout(240)
async def test_two_processes_prune_by_retention_and_count_each_event_once(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    url = pg_database.url
    await seed(url, tmp_path, {"acme": 30, "globex": 3})
    old = datetime.now(UTC) - timedelta(days=3)
    await backdate(url, "acme", through=20, to=old)
    await backdate(url, "globex", through=3, to=old)
    bus = url.replace("postgresql+asyncpg://", "postgres://")
    with serve_clusters(
        {"postgres": bus}, size=2, database_url=url, work_dir=tmp_path, event_retention="2"
    ) as running:
        await _pruned(url, {"acme": list(range(21, 31)), "globex": [3]})
        # Each process reports its first round (after up to 5 s): one pruned, or both
        # did a part, or one found the other holding the lock or nothing left.
        for process in running["postgres"]:
            await until(lambda p=process: bool(ROUND.search(p.output())), 30, "a round")
        logs = [p.output() for p in running["postgres"]]
    # acme 1..20 and globex 1..2, each counted once.
    assert _counted(logs) == 22, logs


@pytest.mark.postgres
async def test_a_round_skips_while_another_process_holds_the_prune_lock(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    url = pg_database.url
    await seed(url, tmp_path, {"acme": 5})
    await backdate(url, "acme", through=3, to=datetime.now(UTC) - timedelta(days=3))
    other, mine = Database(url), Database(url)  # two processes' engines
    try:
        job = Retention(mine, keep=timedelta(days=2))
        async with exclusive(other, wait=False) as held:
            assert held
            assert await job.run_once() == 0
            async with exclusive(mine, wait=False) as second:
                assert not second
        assert await job.run_once() == 3
        assert await job.run_once() == 0
    finally:
        await other.close()
        await mine.close()
    assert await event_ids(url) == {"acme": [4, 5]}
