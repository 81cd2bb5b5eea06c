"""Background jobs run in every process and still act once: three real server processes
sweep the same silent agents at once, and each transition happens (and is delivered)
exactly once. And a job outlives a failed round, and stops even mid-round."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from api.jobs.periodic import PeriodicJob
from tests.realtime.activity import Tenant
from tests.realtime.processes import Process, serve_clusters
from tests.realtime.wire import Socket
from tests.support.databases import PgDatabase
from tests.support.server import mint
from tests.support.waiting import until

CHANGES = (
    "subscription { events(filter: {types: [AGENT_STATUS_CHANGED, TASK_REQUEUED]})"
    " { id type actor agentId taskId data } }"
)


class Peer:
    """Enough of a LiveServer for ``Tenant``: one process's URL and its tokens."""

    def __init__(self, process: Process) -> None:
        self.url = process.url
        self.settings = process.settings

    def token(self, *roles: str, sub: str = "tester", tenant: str = "default") -> str:
        return mint(self.settings, *roles, sub=sub, tenant=tenant)


async def _history(tenant: Tenant) -> list[dict[str, Any]]:
    result = await tenant.run(
        "{ events(first: 500) { edges { node { id type actor agentId taskId data } } } }"
    )
    return [edge["node"] for edge in result["events"]["edges"]]


@pytest.mark.timeout(240)
async def test_three_processes_sweeping_at_once_emit_each_agent_transition_once(
    pg_database: PgDatabase, tmp_path: Path, tenant: str
) -> None:
    bus = pg_database.url.replace("postgresql+asyncpg://", "postgres://")
    with serve_clusters(
        {"postgres": bus},
        size=3,
        database_url=pg_database.url,
        work_dir=tmp_path,
        heartbeat_timeout="1",
        offline_after="3",
        sweep_interval="0.05",  # all three sweep all the time: they race on every agent
        gap_check_interval="0.5",
    ) as running:
        processes = running["postgres"]
        peers = [Tenant(Peer(p), tenant) for p in processes]  # type: ignore[arg-type]
        sockets = []
        for process in processes:
            socket = await Socket.open(process.ws_url, process.token("VIEWER", tenant=tenant))
            await socket.subscribe("changes", CHANGES)
            sockets.append(socket)
        try:
            agents = [await peers[i % 3].register_agent(f"a{i}") for i in range(6)]
            for i in range(3):  # half of them hold a task when they fall silent
                await peers[i].create_task(f"t{i}")
                assert await agents[i].claim() is not None
            # Silence: every agent goes UNHEALTHY after 1 s, OFFLINE after 3 s.
            deadline = time.monotonic() + 60
            while True:
                history = await _history(peers[0])
                offline = {
                    e["agentId"]
                    for e in history
                    if e["type"] == "AGENT_STATUS_CHANGED" and e["data"]["to"] == "OFFLINE"
                }
                if offline >= {a.id for a in agents}:
                    break
                assert time.monotonic() < deadline, f"only {len(offline)} agents went offline"
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # twenty more sweeps each: nothing more may happen
            history = await _history(peers[0])
            wanted = [e for e in history if e["type"] in ("AGENT_STATUS_CHANGED", "TASK_REQUEUED")]
            received = [
                [await s.field("changes", within=15) for _ in range(len(wanted))] for s in sockets
            ]
            for socket in sockets:
                await socket.silent("changes", 1.0)
        finally:
            for socket in sockets:
                await socket.close()

    transitions = Counter(
        (e["agentId"], e["data"]["to"])
        for e in wanted
        if e["type"] == "AGENT_STATUS_CHANGED" and e["actor"] == "system:sweeper"
    )
    assert set(transitions.values()) == {1}, transitions
    assert {to for _, to in transitions} <= {"UNHEALTHY", "OFFLINE"}
    assert {agent for agent, to in transitions if to == "OFFLINE"} == {a.id for a in agents}
    requeued = Counter(e["taskId"] for e in wanted if e["type"] == "TASK_REQUEUED")
    assert len(requeued) == 3 and set(requeued.values()) == {1}
    assert [int(e["id"]) for e in history] == list(range(1, len(history) + 1))
    assert received == [wanted] * 3, "every process delivered each transition once, in order"


class Flaky(PeriodicJob):
    """Its first round fails, its second succeeds, its third waits until cancelled."""

    def __init__(self) -> None:
        super().__init__(name="flaky", log=logging.getLogger("tests.flaky"), failure="round failed")
        self.rounds = 0
        self.cancelled = False

    async def run_once(self) -> None:
        self.rounds += 1
        if self.rounds == 1:
            raise RuntimeError("a passing fault")
        if self.rounds == 3:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise

    def next_delay(self) -> float:
        return 0.01


async def test_a_periodic_job_logs_a_failed_round_goes_on_and_stops_mid_round(
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = Flaky()
    job.start()
    await until(lambda: job.rounds == 3, what="the third round")
    await job.stop()
    assert job.cancelled and job.rounds == 3
    failures = [r for r in caplog.records if r.name == "tests.flaky"]
    assert [(r.levelno, r.getMessage()) for r in failures] == [(logging.ERROR, "round failed")]
    assert failures[0].exc_info is not None and failures[0].exc_info[0] is RuntimeError
    await job.stop()  # stopping a stopped job does nothing
