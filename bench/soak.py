"""The soak: two processes on Redis and PostgreSQL, thousands of subscribers, four writers.

    make soak                                        # 10 minutes, 2,000 subscribers
    SOAK_SECONDS=60 SOAK_SUBSCRIBERS=200 make soak   # a short run

Everything on loopback, bounded in time and memory:

- a fresh PostgreSQL database on ``MARK1_BENCH_PG`` (dropped afterwards) and
  Redis on ``SOAK_REDIS`` with a channel of the soak's own;
- two ``mark1 serve`` processes of one install (one secret, database and bus);
- ``SOAK_SUBSCRIBERS`` graphql-transport-ws sockets, half on each process,
  opened by client processes of up to 500 sockets (bench/subscribers.py, the
  fan-out benchmark's load generator), each subscribed to every event of the
  tenant;
- four writers (bench/load.py, one keep-alive connection each, two per
  process) sending ``reportProgress`` and ``createTask`` in turn, paced to
  ``SOAK_RATE`` events per second in all, for ``SOAK_SECONDS``.

A progress line every ``SOAK_PROGRESS`` seconds. At the end: events written;
per subscriber lost, duplicated and out-of-order events (bench/delivery.py:
every id from the head when writing began to the head when it ended, once, in
order); delivery latency (commit time carried by the event to arrival);
each server's RSS sampled over the run, its least-squares slope and its growth
from the end of warm-up (the first ``SOAK_WARMUP`` seconds of writing) to the
end; CPU of each server and of the load generator. Exit code 1 when a
subscriber lost, duplicated or reordered anything, a write or socket failed,
or a server's RSS grew by more than ``SOAK_MAX_RSS_GROWTH`` percent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import httpx
import orjson
import typer
import uvloop

from api.auth.tokens import mint_token
from api.domain import Role
from bench import load, report, subscribers
from bench.delivery import Histogram, Verdict, judge
from bench.fanout import RESULTS, Workers, _create, _raise_fd_limit, _until
from bench.sampling import Cpu, Memory
from bench.server import Target, rss_kib, spawn
from bench.verdict import failures, lines, markdown, warnings
from bench.writes import TENANT, Fleet, database

DOCUMENT = "subscription Soak { events { id type occurredAt task { id status progress } } }"
SOCKETS_PER_PROCESS = 500
WRITERS = 4

app = typer.Typer(add_completion=False)


@dataclass(frozen=True)
class Config:
    seconds: float
    subscribers: int
    rate: float
    warmup: float
    progress: float
    redis: str
    max_rss_growth: float

    @property
    def sample_every(self) -> float:
        """RSS and CPU sampling period: about 100 samples, at most every 5 s."""
        return min(5.0, max(0.1, self.seconds / 100))


async def _outbox(dsn: str) -> dict[str, Any]:
    """The event table's size on disk (rows, indexes, TOAST) per event it holds."""
    conn = await asyncpg.connect(dsn)
    try:
        size = await conn.fetchval("SELECT pg_total_relation_size('event')")
        indexes = await conn.fetchval("SELECT pg_indexes_size('event')")
        rows, row_bytes = await conn.fetchrow(
            "SELECT count(*), avg(pg_column_size(event.*)) FROM event"
        ) or (0, None)
    finally:
        await conn.close()
    return {
        "rows": rows,
        "bytes": size,
        "index_bytes": indexes,
        # Whole pages over a few hundred rows overstate this; the row size does not.
        "bytes_per_event": size / rows if rows else None,
        "row_bytes": float(row_bytes) if row_bytes is not None else None,
    }


async def _head(dsn: str) -> int:
    """The tenant's last committed event id."""
    conn = await asyncpg.connect(dsn)
    try:
        value = await conn.fetchval(
            "SELECT last_event_id FROM tenant_counter WHERE tenant = $1", TENANT
        )
    finally:
        await conn.close()
    return int(value or 0)


def _plans(targets: list[Target], n: int, seconds: float, secret: str) -> list[subscribers.Plan]:
    """Half the sockets on each server, up to SOCKETS_PER_PROCESS per client process."""
    ttl = timedelta(seconds=seconds + 3600)
    subscribe = orjson.dumps(
        {"id": "1", "type": "subscribe", "payload": {"query": DOCUMENT, "variables": {}}}
    ).decode()
    plans = []
    for index, target in enumerate(targets):
        share = range(index, n, len(targets))
        tokens = [
            # Distinct subjects: the server caps sockets per subject.
            mint_token(secret, sub=f"soak-{i}", roles=[Role.VIEWER], tenant=TENANT, ttl=ttl)
            for i in share
        ]
        per = -(-len(tokens) // max(1, -(-len(tokens) // SOCKETS_PER_PROCESS)))
        for start in range(0, len(tokens), per):
            chunk = tokens[start : start + per]
            plans.append(
                subscribers.Plan(
                    target.ws_url,
                    chunk,
                    events=0,
                    concurrency=25,
                    deflate=False,
                    subscribes=[subscribe] * len(chunk),
                    by_id=True,
                )
            )
    return plans


class Run:
    """The asynchronous part: sockets, priming, writing, catching up, collecting."""

    def __init__(self, cfg: Config, targets: list[Target], fleet: Fleet, dsn: str) -> None:
        self.cfg, self.targets, self.fleet, self.dsn = cfg, targets, fleet, dsn
        # Built (agents claim their tasks) before the subscriptions go live.
        self.requests = fleet.progress_and_create(targets)
        self.started = time.monotonic()
        self.memory = [
            Memory(f"server {name}", t.pid or 0) for name, t in zip("AB", targets, strict=True)
        ]

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.0f}s] {message}", flush=True)

    async def __call__(self) -> dict[str, Any]:
        cfg = self.cfg
        plans = _plans(self.targets, cfg.subscribers, cfg.seconds, self.targets[0].secret)
        for memory in self.memory:
            memory.idle_kib = rss_kib(memory.pid) or 0
        self.say(f"{len(plans)} client processes opening {cfg.subscribers:,} sockets")
        workers = Workers(plans)
        try:
            return await self._run(workers, plans)
        finally:
            workers.stop()
            workers.join()

    async def _run(self, workers: Workers, plans: list[subscribers.Plan]) -> dict[str, Any]:
        cfg = self.cfg
        await _until(
            workers,
            lambda: len(workers.connected) == len(plans),
            "the sockets to connect",
            120 + cfg.subscribers / 20,
            lambda: None,
        )
        connected = sum(len(c.connect_seconds) for c in workers.connected.values())
        failures = [f for c in workers.connected.values() for f in c.failures]
        self.say(
            f"{connected:,}/{cfg.subscribers:,} sockets connected"
            + (f"; {len(failures)} failed, e.g. {failures[0]}" if failures else "")
        )
        await self._prime(workers, connected)
        live_from = await _head(self.dsn)
        self.say(f"all {connected:,} subscriptions live at event {live_from}; writing")

        cpu = Cpu(
            {f"server {n}": t.pid or 0 for n, t in zip("AB", self.targets, strict=True)}
            | {f"load: subscriber process {i}": p.pid or 0 for i, p in enumerate(workers.processes)}
        )
        writing = asyncio.ensure_future(self._write())
        began = time.monotonic()
        next_sample, next_line = 0.0, cfg.progress
        while not writing.done():
            await workers.pump(0.2)
            elapsed = time.monotonic() - began
            if elapsed >= next_sample:
                for memory in self.memory:
                    memory.sample(elapsed)
                next_sample += cfg.sample_every
            if elapsed >= next_line:
                await self._progress(workers, live_from, elapsed, cpu)
                next_line += cfg.progress
        written = await writing
        end = time.monotonic() - began
        for memory in self.memory:
            memory.sample(end)
        shares = cpu.shares()
        head = await _head(self.dsn)
        self.say(f"writing done: {head - live_from:,} events; waiting for every socket")
        busy = [i for i, c in workers.connected.items() if c.connect_seconds]
        with contextlib.suppress(RuntimeError):  # the verdict below says what is missing
            await _until(
                workers,
                lambda: all(workers.lowest[i] >= head for i in busy),
                "every socket to catch up",
                60,
                lambda: None,
            )
        workers.stop()
        await _until(
            workers, lambda: len(workers.received) == len(plans), "the reports", 60, lambda: None
        )
        return self._figures(workers, live_from, head, end, shares, written, connected, failures)

    async def _prime(self, workers: Workers, connected: int) -> None:
        """Events until every socket has received one: all subscriptions are live."""
        deadline = time.monotonic() + 60 + self.cfg.subscribers / 20
        async with httpx.AsyncClient(timeout=30) as client:
            primes = 0
            while sum(workers.primed) < connected:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {sum(workers.primed)}/{connected} sockets went live")
                await _create(client, self.targets[0], self.fleet.operators[0], f"prime {primes}")
                primes += 1
                with contextlib.suppress(RuntimeError):
                    await _until(
                        workers,
                        lambda: sum(workers.primed) >= connected,
                        "priming",
                        2,
                        lambda: None,
                    )

    async def _write(self) -> list[load.LoadResult]:
        """Four paced writers, two on each server, for the soak's length."""
        interval = WRITERS / self.cfg.rate
        runs = []
        for index, target in enumerate(self.targets):
            port = int(target.url.split(":")[2].split("/")[0])
            mine = self.requests[index :: len(self.targets)]
            runs.append(
                load.run(
                    "127.0.0.1",
                    port,
                    mine,
                    seconds=self.cfg.seconds,
                    warmup=0,
                    ok=_graphql_ok,
                    interval=interval,
                    phase=index / WRITERS,
                )
            )
        return list(await asyncio.gather(*runs))

    async def _progress(self, workers: Workers, live_from: int, elapsed: float, cpu: Cpu) -> None:
        head = await _head(self.dsn)
        behind = head - min(
            (workers.lowest[i] for i, c in workers.connected.items() if c.connect_seconds),
            default=head,
        )
        shares = cpu.shares()
        load_share = sum(v for k, v in shares.items() if k.startswith("load"))
        rss = ", ".join(
            f"{m.name[-1]} {m.points[-1][1] / 1024:.0f} MiB" for m in self.memory if m.points
        )
        servers = ", ".join(f"{k[-1]} {v:.0%}" for k, v in shares.items() if k.startswith("server"))
        self.say(
            f"{elapsed:5.0f}s written {head - live_from:,} events "
            f"({(head - live_from) / elapsed:.1f}/s), delivered {sum(workers.delivered):,} "
            f"messages, slowest socket {behind} behind; RSS {rss}; "
            f"CPU servers {servers}, load generator {load_share:.0%}"
        )

    def _figures(
        self,
        workers: Workers,
        live_from: int,
        head: int,
        end: float,
        cpu: dict[str, float],
        written: list[load.LoadResult],
        connected: int,
        connect_failures: list[str],
    ) -> dict[str, Any]:
        verdicts: list[Verdict] = []
        histogram = Histogram()
        errors: list[str] = []
        servers: dict[str, dict[str, Any]] = {
            m.name: {"connections": 0, "delivered": 0} for m in self.memory
        }
        for index, received in workers.received.items():
            verdicts += [judge(s, live_from=live_from, head=head) for s in received.sequences]
            histogram.merge(received.histogram)
            errors += received.errors
            urls = [t.ws_url for t in self.targets]
            name = self.memory[urls.index(workers.plans[index].ws_url)].name
            servers[name]["connections"] += len(received.sequences)
            servers[name]["delivered"] += received.messages
        for memory in self.memory:
            figures = servers[memory.name]
            connections, delivered = figures["connections"], figures["delivered"]
            trend = memory.trend(self.cfg.warmup, end)
            figures |= {
                "cpu_us_per_delivered_message": cpu[memory.name] * end / delivered * 1e6
                if delivered
                else None,
                "idle_mib": memory.idle_kib / 1024,
                "kib_per_connection": (trend["end_mib"] * 1024 - memory.idle_kib) / connections
                if connections and trend.get("end_mib")
                else None,
            }
        writes = {
            "acknowledged": sum(r.requests for r in written),
            "failed": sum(r.failures for r in written),
            "first_failure": next((r.first_failure for r in written if r.first_failure), None),
            "latency_ms": {
                k: v * 1000
                for k, v in report.summary([x for r in written for x in r.latencies]).items()
            },
        }
        bad = [v for v in verdicts if not v.ok]
        return {
            "subscribers": {
                "asked": self.cfg.subscribers,
                "connected": connected,
                "connect_failures": connect_failures[:10],
                "judged": len(verdicts),
                "with_a_fault": len(bad),
                "lost": sum(v.lost for v in verdicts),
                "duplicated": sum(v.duplicated for v in verdicts),
                "out_of_order": sum(v.out_of_order for v in verdicts),
                "worst": max(
                    (
                        {"lost": v.lost, "duplicated": v.duplicated, "out_of_order": v.out_of_order}
                        for v in bad
                    ),
                    key=lambda w: sum(w.values()),
                    default=None,
                ),
                "errors": errors[:10],
            },
            "events": {"live_from": live_from, "head": head, "written": head - live_from},
            "writes": writes,
            "delivered": histogram.total,
            "latency_ms": {
                "p50": histogram.percentile(50) * 1000,
                "p99": histogram.percentile(99) * 1000,
                "max": histogram.max * 1000,
            },
            "seconds": end,
            "memory": {m.name: m.trend(self.cfg.warmup, end) for m in self.memory},
            "servers": servers,
            "cpu_share_of_a_core": cpu,
        }


def _graphql_ok(status: int, body: bytes) -> bool:
    return status == 200 and b'"errors"' not in body


@app.command()
def main(
    seconds: Annotated[float, typer.Option(envvar="SOAK_SECONDS", help="Writing time.")] = 600,
    subscribers_: Annotated[
        int, typer.Option("--subscribers", envvar="SOAK_SUBSCRIBERS", help="Sockets in all.")
    ] = 2000,
    rate: Annotated[
        float, typer.Option(envvar="SOAK_RATE", help="Events per second, four writers in all.")
    ] = 4.0,
    warmup: Annotated[
        float | None,
        typer.Option(
            envvar="SOAK_WARMUP", help="Seconds of writing before RSS must stay flat (20 %)."
        ),
    ] = None,
    progress: Annotated[
        float, typer.Option(envvar="SOAK_PROGRESS", help="Seconds between progress lines.")
    ] = 30,
    redis: Annotated[str, typer.Option(envvar="SOAK_REDIS", help="Redis URL (loopback).")] = (
        "redis://127.0.0.1:6379/0"
    ),
    max_rss_growth: Annotated[
        float, typer.Option(envvar="SOAK_MAX_RSS_GROWTH", help="Percent RSS may grow.")
    ] = 5.0,
    output: Annotated[
        Path, typer.Option(envvar="SOAK_OUTPUT", help="Where soak.json and soak.md go.")
    ] = RESULTS,
) -> None:
    """Soak two processes on Redis + PostgreSQL; exit 1 on any loss, duplicate,
    reordering, failed write or RSS growth."""
    cfg = Config(
        seconds=seconds,
        subscribers=subscribers_,
        rate=rate,
        warmup=min(120.0, seconds * 0.2) if warmup is None else warmup,
        progress=progress,
        redis=redis,
        max_rss_growth=max_rss_growth,
    )
    if seconds <= 0 or subscribers_ < 2 or rate <= 0:
        raise typer.BadParameter("SOAK_SECONDS and SOAK_RATE must be positive, 2+ subscribers")
    _raise_fd_limit(subscribers_ * 2 + 256)
    machine = report.machine()
    print(
        f"soak: {subscribers_:,} subscribers on two processes, {WRITERS} writers at "
        f"{rate:g} events/s for {seconds:g} s; {machine['nproc']} x {machine['cpu']}, "
        f"load average {machine['load_average_at_start']}",
        flush=True,
    )
    secret = secrets.token_urlsafe(48)
    settings = {
        "MARK1_BROADCAST_CHANNEL": f"mark1_soak_{secrets.token_hex(4)}",
        # The writers' agents never heartbeat: keep them (and their tasks) theirs.
        "MARK1_HEARTBEAT_TIMEOUT": "86400",
        "MARK1_OFFLINE_AFTER": "172800",
        "MARK1_LOG_LEVEL": "WARNING",
    }
    with database("postgres") as url, contextlib.ExitStack() as stack:
        assert url is not None
        # Both at once: an advisory lock lets one migrate while the other waits.
        with ThreadPoolExecutor(2) as pool:
            starting = [
                pool.submit(
                    spawn, database_url=url, broadcast_url=redis, secret=secret, settings=settings
                )
                for _ in range(2)
            ]
            for future in starting:
                with contextlib.suppress(Exception):  # result() below raises it
                    stack.callback(future.result().stop)
        targets = [future.result() for future in starting]
        fleet = Fleet(targets[0], WRITERS)
        dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        result = uvloop.run(Run(cfg, targets, fleet, dsn)())
        result["outbox"] = asyncio.run(_outbox(dsn))
        exited = [t.description for t in targets if t._process and t._process.poll() is not None]
    result |= {
        "measured_at": report.now(),
        "machine": machine,
        "command": shlex.join(["python", "-m", "bench.soak", *sys.argv[1:]]),
        "config": cfg.__dict__ | {"writers": WRITERS, "redis": redis},
        "servers_exited_early": exited,
    }
    bad = failures(result, max_rss_growth=cfg.max_rss_growth)
    rows = lines(result)
    width = max(len(k) for k, _ in rows)
    print("\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in rows), flush=True)
    for warning in warnings(result):
        print(f"  warning: {warning}")
    output.mkdir(parents=True, exist_ok=True)
    (output / "soak.json").write_text(json.dumps(result | {"failures": bad}, indent=2) + "\n")
    (output / "soak.md").write_text(markdown(result, rows, bad))
    print(f"\nwrote {output / 'soak.json'} and {output / 'soak.md'}")
    if bad:
        print("SOAK FAILED:\n" + "\n".join(f"  - {b}" for b in bad), flush=True)
        raise typer.Exit(1)
    print("soak passed", flush=True)


if __name__ == "__main__":
    app()
