"""Fan-out benchmark: N subscriber sockets x E events, over real sockets, from other processes.

    uv run python -m bench.fanout [--subscribers 1000] [--events 200] [--rate 20]

Starts ``mark1 serve`` as a subprocess (temporary data dir, generated secret,
SQLite and the memory bus unless told otherwise) or uses ``--url``; opens the
subscriber sockets from separate client processes, each subscribing to
``events`` with the same document; publishes E ``createTask`` mutations at a
steady rate; and measures delivered messages per second, fan-out latency
(the event's ``occurredAt``, set at commit, to arrival at the client: one
machine, one clock), connect time, and server memory per connection (RSS
from /proc before and after connecting). Figures go to stdout and to
``bench/results/latest.json`` and ``latest.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import resource
import secrets
import shlex
import sys
import threading
import time
from array import array
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer
import websockets

from api.auth.tokens import mint_token
from api.domain import Role
from bench import report, subscribers
from bench.server import Target, external, spawn

RESULTS = Path(__file__).resolve().parent / "results"
CREATE = "mutation($title: String!) { createTask(input: {title: $title}) { id } }"

app = typer.Typer(add_completion=False)

Publish = Callable[[httpx.AsyncClient, str], Awaitable[None]]


@dataclass
class Scenario:
    """What the sockets subscribe to and how one event is published.

    The default is this module's own: ``events`` and ``createTask`` (bench/compare.py
    adds ``taskUpdates`` and ``reportProgress``, distinct documents and ``after``).
    """

    name: str = "events x createTask"
    # The subscribe message of socket i (None: subscribers.SUBSCRIBE for all).
    subscribe: Callable[[int], str] | None = None
    # Makes whatever publishing needs (an agent holding a task) and returns the publisher.
    prepare: Callable[[httpx.AsyncClient, Target, str], Awaitable[Publish]] | None = None
    in_flight: int = 16
    tokens: bool = True  # False: the server takes none (the Node reference)


async def _default_prepare(client: httpx.AsyncClient, target: Target, token: str) -> Publish:
    async def publish(client: httpx.AsyncClient, label: str) -> None:
        await _create(client, target, token, label)

    return publish


class Progress:
    """One status line, rewritten in place on a terminal, appended otherwise."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.tty = sys.stdout.isatty()
        self._last = 0.0

    def __call__(self, message: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (0.25 if self.tty else 2.0):
            return
        self._last = now
        line = f"[{now - self.started:6.1f}s] {message}"
        if self.tty:
            print(f"\r\033[K{line}", end="", flush=True)
        else:
            print(line, flush=True)

    def done(self, message: str) -> None:
        self(message, force=True)
        if self.tty:
            print(flush=True)


class Workers:
    """The client processes and what they report over their pipes."""

    def __init__(self, plans: list[subscribers.Plan]) -> None:
        self.plans = plans
        ctx = multiprocessing.get_context("spawn")
        self.inbox: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.pipes = []
        self.processes = []
        for index, plan in enumerate(plans):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=subscribers.run, args=(plan, child), daemon=True)
            process.start()
            child.close()
            self.pipes.append(parent)
            self.processes.append(process)
            threading.Thread(target=self._relay, args=(index, parent), daemon=True).start()
        self.connected: dict[int, subscribers.Connected] = {}
        self.primed = [0] * len(plans)
        self.delivered = [0] * len(plans)
        self.lowest = [0] * len(plans)  # Plan.by_id: the lowest last event id of any socket
        self.received: dict[int, subscribers.Received] = {}

    def _relay(self, index: int, pipe: Any) -> None:
        while True:
            try:
                message = pipe.recv()
            except (EOFError, OSError):
                return
            self.loop.call_soon_threadsafe(self.inbox.put_nowait, (index, message))

    async def pump(self, within: float) -> None:
        """Take one report (or return after ``within`` seconds)."""
        try:
            index, message = await asyncio.wait_for(self.inbox.get(), within)
        except TimeoutError:
            return
        kind = message[0]
        if kind == "connected":
            self.connected[index] = message[1]
        elif kind == "progress":
            self.primed[index], self.delivered[index] = message[1], message[2]
            if len(message) > 3:
                self.lowest[index] = message[3]
        elif kind == "done":
            self.received[index] = message[1]

    def stop(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send("stop")

    def join(self) -> None:
        for process in self.processes:
            process.join(30)
            if process.is_alive():
                process.terminate()
                process.join(5)


async def _until(workers: Workers, check: Any, what: str, limit: float, show: Any) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {limit:.0f}s waiting for {what}")
        await workers.pump(0.2)
        show()


async def _warm_up(target: Target, operator_token: str, viewer_token: str) -> None:
    """One socket, one subscription, one event in a tenant of its own: code paths loaded."""
    async with websockets.connect(target.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {viewer_token}"}}
        await ws.send(orjson.dumps(init).decode())
        await asyncio.wait_for(ws.recv(), 30)
        await ws.send(subscribers.SUBSCRIBE.decode())
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(timeout=30) as client:
            await _create(client, target, operator_token, "warm-up")
        await asyncio.wait_for(ws.recv(), 30)


async def _create(client: httpx.AsyncClient, target: Target, token: str, title: str) -> None:
    response = await client.post(
        target.url,
        json={"query": CREATE, "variables": {"title": title}},
        headers={"Authorization": f"Bearer {token}"},
    )
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(f"createTask failed: {body['errors'][0]}")


class Publisher:
    """``events`` mutations at ``rate`` per second (0: as fast as they commit, ``in_flight``
    at a time)."""

    def __init__(self, publish: Publish, events: int, rate: float, in_flight: int = 16) -> None:
        self.publish, self.events, self.rate, self.in_flight = publish, events, rate, in_flight
        self.published = 0
        self.failures = 0
        self.started = self.last_sent = self.finished = 0.0

    async def run(self) -> None:
        gate = asyncio.Semaphore(self.in_flight)

        async def one(client: httpx.AsyncClient, i: int) -> None:
            # Paced: the label carries when the event was due (subscribers.py).
            label = (
                f"bench {i}@{self.started + i / self.rate:.6f}" if self.rate > 0 else f"bench {i}"
            )
            try:
                await self.publish(client, label)
                self.published += 1
            except Exception:
                self.failures += 1
            finally:
                gate.release()

        limits = httpx.Limits(max_connections=self.in_flight)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            self.started = time.time()
            start = time.monotonic()
            tasks = []
            for i in range(self.events):
                if self.rate > 0:
                    delay = start + i / self.rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await gate.acquire()
                self.last_sent = time.time()
                tasks.append(asyncio.create_task(one(client, i)))
            await asyncio.gather(*tasks)
            self.finished = time.time()


async def bench(
    *,
    target: Target,
    n: int,
    events: int,
    rate: float,
    per_process: int,
    concurrency: int,
    deflate: bool,
    command: str,
    scenario: Scenario | None = None,
    measured_by: Callable[[], AbstractContextManager[None]] | None = None,
) -> dict[str, Any]:
    """``measured_by``, when given, is entered for the measured window only (a profiler)."""
    scenario = scenario or Scenario()
    progress = Progress()
    machine = report.machine()
    tenant = f"bench{secrets.token_hex(4)}"

    def token(sub: str, role: Role, tenant: str = tenant) -> str:
        return mint_token(
            target.secret,
            sub=sub,
            roles=[role],
            tenant=tenant,
            agent_id=None,
            ttl=timedelta(hours=2),
            issuer=target.issuer,
            audience=target.audience,
        )

    operator = token("bench-publisher", Role.OPERATOR) if scenario.tokens else ""
    if scenario.tokens:
        warm_tenant = f"{tenant}-warm"
        await _warm_up(
            target,
            token("bench-warm", Role.OPERATOR, warm_tenant),
            token("bench-warm", Role.VIEWER, warm_tenant),
        )
    async with httpx.AsyncClient(timeout=30) as client:
        publish = await (scenario.prepare or _default_prepare)(client, target, operator)
    await asyncio.sleep(0.5)
    rss_before = target.rss_kib()
    base_metrics = target.metrics()
    base_subscriptions = base_metrics.get("mark1_subscriptions_active", 0)

    # Distinct subjects: the server caps sockets per subject (MARK1_MAX_SOCKETS_PER_SUBJECT).
    tokens = [token(f"bench-{i}", Role.VIEWER) if scenario.tokens else "" for i in range(n)]
    make = scenario.subscribe or (lambda i: subscribers.SUBSCRIBE.decode())
    messages = [make(i) for i in range(n)]
    plans = [
        subscribers.Plan(
            target.ws_url,
            tokens[i : i + per_process],
            events,
            max(1, concurrency // -(-n // per_process)),
            deflate,
            messages[i : i + per_process],
        )
        for i in range(0, n, per_process)
    ]
    progress(f"starting {len(plans)} client process(es) for {n:,} sockets", force=True)
    workers = Workers(plans)
    try:
        await _until(
            workers,
            lambda: len(workers.connected) == len(plans),
            "the sockets to connect",
            120 + n / 20,
            lambda: progress(f"connecting {n:,} sockets…"),
        )
        connected = [c for c in workers.connected.values()]
        ok = sum(len(c.connect_seconds) for c in connected)
        failures = [f for c in connected for f in c.failures]
        progress.done(
            f"connected {ok:,}/{n:,} sockets in {max(c.wall_seconds for c in connected):.2f}s"
            + (f" ({len(failures)} failed, e.g. {failures[0]})" if failures else "")
        )
        if ok == 0:
            raise RuntimeError("no socket connected")

        def subscribed() -> bool:
            active = target.metrics().get("mark1_subscriptions_active")
            return active is None or active >= base_subscriptions + ok

        with contextlib.suppress(RuntimeError):  # the priming below is what proves it
            await _until(
                workers, subscribed, "the subscriptions", 20, lambda: progress("subscribing…")
            )
        await asyncio.sleep(0.5)
        rss_after = target.rss_kib()

        async with httpx.AsyncClient(timeout=30) as client:
            deadline = time.monotonic() + 60 + n / 50
            primes = 0
            while sum(workers.primed) < ok:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {sum(workers.primed)}/{ok} subscriptions went live")
                await publish(client, f"{subscribers.PRIME} {primes}")
                primes += 1
                with contextlib.suppress(RuntimeError):
                    await _until(
                        workers,
                        lambda: sum(workers.primed) >= ok,
                        "priming",
                        2,
                        lambda: progress(f"priming: {sum(workers.primed):,}/{ok:,} sockets live"),
                    )
        progress.done(f"all {ok:,} subscriptions live; publishing {events} events")

        expected = ok * events
        publisher = Publisher(publish, events, rate, scenario.in_flight)

        def shown() -> None:
            progress(
                f"published {publisher.published}/{events}, "
                f"delivered {sum(workers.delivered):,}/{expected:,}"
            )

        measured = measured_by() if measured_by is not None else contextlib.nullcontext()
        with measured:
            cpu_before = target.cpu_seconds()
            publishing = asyncio.create_task(publisher.run())
            while not publishing.done():
                await workers.pump(0.2)
                shown()
            await publishing
            budget = 60 + (events / rate if rate else 0)
            try:
                await _until(
                    workers,
                    lambda: len(workers.received) == len(plans),
                    "every event to arrive",
                    budget,
                    shown,
                )
            except RuntimeError as exc:
                progress.done(f"{exc}; collecting what arrived")
                workers.stop()
                await _until(
                    workers,
                    lambda: len(workers.received) == len(plans),
                    "reports",
                    60,
                    lambda: None,
                )
            cpu_after = target.cpu_seconds()
        progress.done(
            f"delivered {sum(r.messages for r in workers.received.values()):,}/{expected:,}"
        )
    finally:
        workers.stop()
        workers.join()

    received = list(workers.received.values())
    latencies: array[float] = array("d")
    scheduled: array[float] = array("d")
    for r in received:
        latencies.extend(r.latencies)
        scheduled.extend(r.scheduled)
    delivered = sum(r.messages for r in received)
    last_arrival = max((r.last_arrival for r in received), default=publisher.finished)
    window = max(last_arrival - publisher.started, 1e-9)
    connect_times = [t for c in connected for t in c.connect_seconds]
    final_metrics = target.metrics()
    memory: dict[str, Any] = {"before_kib": rss_before, "after_kib": rss_after}
    cpu: float | None = None
    if cpu_before is not None and cpu_after is not None and delivered:
        # Server CPU per message: steadier than wall-clock rates on a shared machine.
        cpu = (cpu_after - cpu_before) / delivered
    if rss_before is not None and rss_after is not None:
        memory["per_connection_kib"] = (rss_after - rss_before) / ok
    return {
        "measured_at": report.now(),
        "command": command,
        "machine": machine,
        "config": {
            "scenario": scenario.name,
            "subscribers": n,
            "events": events,
            "rate": rate,
            "client_processes": len(plans),
            "deflate": deflate,
            "server": target.description,
            "document": subscribers.DOCUMENT,
        },
        "results": {
            "connected": ok,
            "connect_failures": len(failures),
            "connect_seconds": report.summary(connect_times),
            "connect_wall_seconds": max(c.wall_seconds for c in connected),
            "publish_seconds": publisher.finished - publisher.started,
            # Sends are paced i / rate after the first: n events take n - 1 intervals.
            "publish_rate": (events - 1) / max(publisher.last_sent - publisher.started, 1e-9),
            "publish_failures": publisher.failures,
            "expected": expected,
            "delivered": delivered,
            "missing": expected - delivered,
            "duplicates": sum(r.duplicates for r in received),
            "out_of_order": sum(r.out_of_order for r in received),
            "errors": [e for r in received for e in r.errors][:10],
            "delivered_per_second": delivered / window,
            "offered_per_second": ok * rate if rate else None,
            "delivery_window_seconds": window,
            "bytes_per_message": sum(r.bytes for r in received) / max(delivered, 1),
            "latency_seconds": report.summary(latencies),
            "scheduled_latency_seconds": report.summary(scheduled) if scheduled else None,
            "server_cpu_seconds_per_message": cpu,
            "server_memory": memory,
            "slow_consumers_dropped": int(
                final_metrics.get("mark1_slow_consumers_dropped_total", 0)
                - base_metrics.get("mark1_slow_consumers_dropped_total", 0)
            ),
            "server_events_delivered": int(
                final_metrics.get("mark1_events_delivered_total", 0)
                - base_metrics.get("mark1_events_delivered_total", 0)
            ),
        },
    }


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < needed:
        print(f"warning: the open-file limit {want} is below the {needed} this run needs")


@app.command()
def main(
    subscribers_: Annotated[
        int, typer.Option("--subscribers", "-n", help="Subscriber sockets.")
    ] = 1000,
    events: Annotated[int, typer.Option("--events", "-e", help="Events to publish.")] = 200,
    rate: Annotated[
        float, typer.Option(help="Events per second; 0 publishes as fast as they commit.")
    ] = 20,
    sockets_per_process: Annotated[int, typer.Option(help="Sockets per client process.")] = 500,
    connect_concurrency: Annotated[int, typer.Option(help="Handshakes in flight, in all.")] = 100,
    deflate: Annotated[
        bool, typer.Option(help="Offer permessage-deflate, as browsers do.")
    ] = False,
    url: Annotated[
        str | None,
        typer.Option(
            help="Benchmark a running server (its GraphQL URL); tokens are minted "
            "from MARK1_JWT_SECRET or MARK1_DATA_DIR."
        ),
    ] = None,
    server_pid: Annotated[
        int | None, typer.Option(help="With --url: the server's pid, for memory figures.")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="MARK1_DATABASE_URL for the spawned server.")
    ] = None,
    broadcast_url: Annotated[
        str | None, typer.Option(help="MARK1_BROADCAST_URL for the spawned server.")
    ] = None,
    output: Annotated[Path, typer.Option(help="Where latest.json and latest.md go.")] = RESULTS,
) -> None:
    """Measure fan-out: delivered/s, latency percentiles, connect time, memory per connection."""
    command = shlex.join(["uv", "run", "python", "-m", "bench.fanout", *sys.argv[1:]])
    _raise_fd_limit(subscribers_ * 2 + 256)
    if url:
        if not url.startswith(("http://", "https://")):
            raise typer.BadParameter("expected http(s)://host:port/graphql", param_hint="--url")
        target = external(url, pid=server_pid)
    else:
        print("starting mark1 serve…", flush=True)
        target = spawn(database_url=database_url, broadcast_url=broadcast_url)
    try:
        result = asyncio.run(
            bench(
                target=target,
                n=subscribers_,
                events=events,
                rate=rate,
                per_process=sockets_per_process,
                concurrency=connect_concurrency,
                deflate=deflate,
                command=command,
            )
        )
    finally:
        target.stop()
    as_json, as_md = report.write(result, output)
    m = result["machine"]
    print(
        f"\nFan-out: {m['nproc']} x {m['cpu']}, Python {m['python']}, {result['config']['server']}"
    )
    print(report.table(result))
    print(f"\nwrote {as_json} and {as_md}")
    r = result["results"]
    if r["missing"] or r["duplicates"] or r["out_of_order"]:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
