"""A lean HTTP/1.1 keep-alive load generator: N connections, each sending back to back.

The write benchmark compares the server with floors that answer in tens of
microseconds, so the client must cost far less than the server per request:
httpx spends a few hundred microseconds of CPU per request, which on a 2-core
machine makes the client the bottleneck. Here each connection is a bare
``asyncio.Protocol`` on uvloop that writes pre-built request bytes and parses
only the status line and ``Content-Length`` of the reply (the servers under
test answer with a length, never chunked). The caller reports this process's
CPU time beside the figures, so a saturated client would show.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

RequestFor = Callable[[int, bytes | None], bytes]
"""The i-th request of one connection, given the previous reply's body, as bytes to write."""


def post(path: str, host: str, body: bytes, *, headers: dict[str, str] | None = None) -> bytes:
    """An HTTP/1.1 POST with a JSON body, as bytes."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        "Accept: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``request`` sends and waits for one whole reply."""

    def __init__(self) -> None:
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or ConnectionError("connection closed by the server")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        start = head.find(b"content-length:")
        if start < 0:
            self.waiter.set_exception(RuntimeError("reply without Content-Length"))
            return
        stop = head.find(b"\r\n", start)
        length = int(head[start + 15 : stop if stop >= 0 else None])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        status = int(head[9:12])
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        self.waiter.set_result((status, body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.lost is not None:
            raise self.lost
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


@dataclass
class LoadResult:
    """What N connections achieved in the measured window."""

    requests: int = 0
    failures: int = 0
    seconds: float = 0.0
    client_cpu_seconds: float = 0.0
    server_cpu_seconds: float | None = None
    latencies: list[float] = field(default_factory=list)
    first_failure: str | None = None

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def server_cpu_per_request(self) -> float | None:
        """Server CPU seconds per successful request, when the server's CPU was sampled."""
        if self.server_cpu_seconds is None or not self.requests:
            return None
        return self.server_cpu_seconds / self.requests

    @property
    def client_cpu_share(self) -> float:
        """Client CPU time ÷ wall time: 1.0 is one whole core."""
        return self.client_cpu_seconds / self.seconds if self.seconds else 0.0


async def run(
    host: str,
    port: int,
    requests: Sequence[RequestFor],
    *,
    seconds: float,
    warmup: float = 1.0,
    ok: Callable[[int, bytes], bool] | None = None,
    server_cpu: Callable[[], float | None] | None = None,
    interval: float = 0.0,
    phase: float = 0.0,
) -> LoadResult:
    """Each connection sends its requests back to back for ``warmup + seconds``.

    Only replies that arrive inside the measured window count; ``ok`` decides
    which replies are successes (default: status 200); ``server_cpu`` reads the
    server's CPU seconds so far, sampled at both ends of the window. With an
    ``interval`` each connection sends one request per interval instead (paced:
    the soak's writers), the connections spread evenly over it and shifted by
    ``phase`` intervals; a reply later than the interval delays only the next send.
    """
    loop = asyncio.get_running_loop()
    connections = [
        (await loop.create_connection(_Connection, host, port))[1] for _ in range(len(requests))
    ]
    result = LoadResult()
    check = ok or (lambda status, _body: status == 200)
    start = time.perf_counter() + warmup
    stop = start + seconds
    cpu: list[float] = []
    server: list[float | None] = []
    read_server = server_cpu or (lambda: None)

    async def worker(connection: _Connection, request_for: RequestFor, offset: float) -> None:
        i = 0
        body: bytes | None = None
        while True:
            if interval:
                await asyncio.sleep(max(0.0, start + (i + offset) * interval - time.perf_counter()))
            sent = time.perf_counter()
            if sent >= stop:
                return
            status, body = await connection.request(request_for(i, body))
            i += 1
            done = time.perf_counter()
            if not start <= done <= stop:
                continue
            result.latencies.append(done - sent)
            if check(status, body):
                result.requests += 1
            else:
                result.failures += 1
                if result.first_failure is None:
                    result.first_failure = f"{status} {body[:300]!r}"

    async def clock() -> None:
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        cpu.append(time.process_time())
        server.append(read_server())
        await asyncio.sleep(max(0.0, stop - time.perf_counter()))
        cpu.append(time.process_time())
        server.append(read_server())

    try:
        await asyncio.gather(
            clock(),
            *(
                worker(c, r, phase + index / len(requests))
                for index, (c, r) in enumerate(zip(connections, requests, strict=True))
            ),
        )
    finally:
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
    result.seconds = seconds
    result.client_cpu_seconds = cpu[1] - cpu[0]
    if server[0] is not None and server[1] is not None:
        result.server_cpu_seconds = server[1] - server[0]
    return result
