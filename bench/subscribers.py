"""A load-generating process: many graphql-transport-ws sockets, one subscription each.

Each socket sends its own ``subscribe`` message (identical documents, one alias
each, or ``events(after:)``: bench/compare.py). A result's root field carries
the publisher's label, as the task's ``message`` (``taskUpdates``) or its
``task.message`` / ``task.title`` (``events``), and its commit time as ``at``,
``updatedAt`` or ``occurredAt``.

The parent talks to each process over a ``multiprocessing`` pipe:

    parent → worker: "stop"
    worker → parent: ("connected", Connected), ("progress", primed sockets, timed
                     messages), ("done", Received)

The parent publishes priming events (titled ``prime …``) until every socket
has received one: that proves every subscription is live before the timed
events start. Priming events are left out of the figures.

With ``Plan.by_id`` (the soak, bench/soak.py) labels are not used: each socket
judges every event id of its tenant as it arrives (``delivery.Sequence``),
latencies go to a bounded histogram, a progress report also carries the
lowest last id of any socket (so the parent knows when all have caught up),
and the sockets run until the parent says stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

import orjson
import websockets

from bench.delivery import Histogram, Sequence

DOCUMENT = "subscription Bench { events { id type occurredAt task { id title status } } }"
PRIME = "prime"  # titles of the priming events, left out of the figures
TIMED = "bench "  # labels of the timed events: "bench 0", "bench 1", ...
SUBSCRIBE = orjson.dumps(
    {"id": "1", "type": "subscribe", "payload": {"query": DOCUMENT, "variables": {}}}
)


@dataclass
class Plan:
    ws_url: str
    tokens: list[str]
    events: int  # timed events each socket should receive after the priming one
    concurrency: int
    deflate: bool
    subscribes: list[str] | None = None  # one subscribe message per token; default SUBSCRIBE
    by_id: bool = False  # judge every event id (the soak), not the publisher's labels


def label_and_time(value: dict[str, Any]) -> tuple[str, str]:
    """The publisher's label and the commit time carried by one result's root field."""
    task = value.get("task") or {}
    label = value.get("message") or task.get("message") or task.get("title") or ""
    at = value.get("at") or value.get("updatedAt") or value.get("occurredAt") or ""
    return str(label), str(at)


@dataclass
class Connected:
    connect_seconds: list[float]
    failures: list[str]
    wall_seconds: float


@dataclass
class Received:
    latencies: array[float] = field(default_factory=lambda: array("d"))
    # From the time the publisher scheduled the event (paced runs): no coordinated
    # omission when the server falls behind and the publisher with it.
    scheduled: array[float] = field(default_factory=lambda: array("d"))
    first_arrival: float = float("inf")
    last_arrival: float = 0.0
    messages: int = 0
    bytes: int = 0
    primed_sockets: int = 0
    complete_sockets: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    errors: list[str] = field(default_factory=list)
    # by_id: one Sequence per socket, and the latencies as a histogram.
    sequences: list[Sequence] = field(default_factory=list)
    histogram: Histogram = field(default_factory=Histogram)


class _Socket:
    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.primed = False
        self.seen: set[int] = set()
        self.last_event_id = 0
        self.timed = 0
        self.sequence = Sequence()


def run(plan: Plan, pipe: Connection) -> None:
    """Process entry point."""
    import uvloop

    uvloop.run(_main(plan, pipe))


async def _main(plan: Plan, pipe: Connection) -> None:
    received = Received()
    occurred: dict[str, float] = {}
    sockets: list[_Socket] = []
    gate = asyncio.Semaphore(plan.concurrency)
    times: list[float] = []
    failures: list[str] = []
    done = asyncio.Event()

    async def connect(token: str, subscribe: str) -> None:
        async with gate:
            start = time.perf_counter()
            try:
                ws = await websockets.connect(
                    plan.ws_url,
                    subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                    compression="deflate" if plan.deflate else None,
                    open_timeout=60,
                    close_timeout=2,
                    ping_interval=None,
                    max_queue=None,
                )
                init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
                await ws.send(orjson.dumps(init).decode())
                ack = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
                if ack.get("type") != "connection_ack":
                    raise RuntimeError(f"no ack: {ack}")
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                return
            times.append(time.perf_counter() - start)
            await ws.send(subscribe)
            sockets.append(_Socket(ws))

    async def read(sock: _Socket) -> None:
        try:
            async for raw in sock.ws:
                arrived = time.time()
                message = orjson.loads(raw)
                if message.get("type") != "next":
                    if message.get("type") == "ping":
                        await sock.ws.send('{"type":"pong"}')
                        continue
                    received.errors.append(str(message)[:300])
                    continue
                (value,) = message["payload"]["data"].values()
                if plan.by_id:
                    judge_by_id(sock, value, arrived, len(raw))
                    continue
                label, stamp = label_and_time(value)
                if label.startswith(PRIME):
                    if not sock.primed:
                        sock.primed = True
                        received.primed_sockets += 1
                    continue
                if not label.startswith(TIMED):
                    continue  # set-up events replayed by events(after:)
                number, _, due = label.removeprefix(TIMED).partition("@")
                seq = int(number)
                if seq in sock.seen:
                    received.duplicates += 1
                    continue
                sock.seen.add(seq)
                at = occurred.get(label)
                if at is None:
                    at = occurred[label] = datetime.fromisoformat(stamp).timestamp()
                # With several in flight events commit in any order; an ``events`` result
                # must arrive in id order, which is commit order. (Commit times are taken
                # before the write lock, so they cannot judge order; ``taskUpdates`` has
                # no event id and is not judged.)
                if "type" in value:
                    event_id = int(value["id"])
                    received.out_of_order += event_id < sock.last_event_id
                    sock.last_event_id = max(sock.last_event_id, event_id)
                received.latencies.append(arrived - at)
                if due:
                    received.scheduled.append(arrived - float(due))
                received.first_arrival = min(received.first_arrival, arrived)
                received.last_arrival = max(received.last_arrival, arrived)
                received.messages += 1
                received.bytes += len(raw)
                sock.timed += 1
                if sock.timed == plan.events:
                    received.complete_sockets += 1
                    if received.complete_sockets == len(sockets):
                        done.set()
        except websockets.ConnectionClosed as exc:
            received.errors.append(f"closed: {exc}")

    def judge_by_id(sock: _Socket, value: dict[str, Any], arrived: float, size: int) -> None:
        if not sock.primed:
            sock.primed = True
            received.primed_sockets += 1
        sock.sequence.see(int(value["id"]))
        received.histogram.add(arrived - datetime.fromisoformat(value["occurredAt"]).timestamp())
        received.first_arrival = min(received.first_arrival, arrived)
        received.last_arrival = max(received.last_arrival, arrived)
        received.messages += 1
        received.bytes += size

    def progress() -> tuple[Any, ...]:
        if not plan.by_id:
            return ("progress", received.primed_sockets, received.messages)
        lowest = min((s.sequence.last for s in sockets), default=0)
        return ("progress", received.primed_sockets, received.messages, lowest)

    started = time.perf_counter()
    subscribes = plan.subscribes or [SUBSCRIBE.decode()] * len(plan.tokens)
    await asyncio.gather(*(connect(t, s) for t, s in zip(plan.tokens, subscribes, strict=True)))
    pipe.send(("connected", Connected(times, failures, time.perf_counter() - started)))
    readers = [asyncio.create_task(read(s)) for s in sockets]
    if not sockets or (plan.events == 0 and not plan.by_id):
        done.set()

    stop = asyncio.ensure_future(asyncio.to_thread(pipe.recv))
    finished = asyncio.ensure_future(done.wait())
    while not stop.done() and not finished.done():
        await asyncio.wait({stop, finished}, timeout=0.5)
        pipe.send(progress())
    received.sequences = [s.sequence for s in sockets] if plan.by_id else []
    pipe.send(("done", received))
    if not stop.done():
        await stop  # the parent says when to hang up, so all sockets close together
    finished.cancel()
    for task in readers:
        task.cancel()
    await asyncio.gather(*(s.ws.close() for s in sockets), return_exceptions=True)
    with contextlib.suppress(BaseException):
        await asyncio.gather(*readers, return_exceptions=True)
