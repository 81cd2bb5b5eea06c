"""Readers for subscription streams over HTTP, on httpx's streaming responses.

``EventStream`` parses Server-Sent Events (graphql-sse) and ``PartStream``
multipart/mixed parts (Apollo's multipart subscriptions) exactly as they come off
the wire, so tests can assert on every event, comment, part and delimiter.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from api.metrics import Metrics
from tests.support.server import LiveServer
from tests.support.waiting import PATIENCE, until

SSE = "text/event-stream"
MULTIPART = 'multipart/mixed;subscriptionSpec="1.0", application/json'


@dataclass
class Event:
    event: str
    data: Any  # the JSON of the data field, None when it is empty


class EventStream:
    """The events of one SSE response; comments (keep-alives) are counted, not returned."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.comments = 0
        self._lines = response.aiter_lines()

    async def _line(self, within: float) -> str | None:
        try:
            return await asyncio.wait_for(anext(self._lines), within)
        except StopAsyncIteration:
            return None

    async def next(self, within: float = PATIENCE) -> Event | None:
        """The next event, or None when the response ended."""
        fields: dict[str, str] = {}
        while True:
            line = await self._line(within)
            if line is None:
                return None
            if line == "":
                if fields:
                    raw = fields.get("data", "")
                    return Event(fields.get("event", ""), json.loads(raw) if raw else None)
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")

    async def expect(self, kind: str, within: float = PATIENCE) -> Any:
        """The data of the next event, which must be of ``kind``."""
        event = await self.next(within)
        assert event is not None and event.event == kind, event
        return event.data

    async def ended(self, within: float = PATIENCE) -> None:
        """The response ends with no further event."""
        event = await self.next(within)
        assert event is None, event


class PartStream:
    """The parts of one multipart/mixed response with boundary ``graphql``."""

    DELIMITER = b"\r\n--graphql"

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.raw = b""  # everything read so far, for assertions on the framing itself
        self.heartbeats = 0
        self.closed = False  # the closing delimiter `--graphql--` arrived
        self._chunks = response.aiter_bytes()
        self._buffer = b""
        self._started = False

    async def _more(self, within: float) -> bool:
        try:
            chunk = await asyncio.wait_for(anext(self._chunks), within)
        except StopAsyncIteration:
            return False
        self.raw += chunk
        self._buffer += chunk
        return True

    async def any_part(self, within: float = PATIENCE) -> dict[str, Any] | None:
        """The JSON of the next part, heartbeats included; None after the closing delimiter."""
        if not self._started:
            while self.DELIMITER not in self._buffer:
                if not await self._more(within):
                    raise AssertionError(f"no opening delimiter in {self.raw!r}")
            self._buffer = self._buffer.split(self.DELIMITER, 1)[1]
            self._started = True
        while True:
            if self._buffer.startswith(b"--"):
                self.closed = True
                return None
            if self.DELIMITER in self._buffer:
                break
            if not await self._more(within):
                raise AssertionError(f"the body ended inside a part: {self.raw!r}")
        part, self._buffer = self._buffer.split(self.DELIMITER, 1)
        head, _, body = part.partition(b"\r\n\r\n")
        assert head.strip().lower() == b"content-type: application/json", part
        value: dict[str, Any] = json.loads(body)
        return value

    async def part(self, within: float = PATIENCE) -> dict[str, Any] | None:
        """The next part that is not a heartbeat (``{}``); None after the closing delimiter."""
        while (value := await self.any_part(within)) == {}:
            self.heartbeats += 1
        return value

    async def rest(self, within: float = PATIENCE) -> bytes:
        """Read to the end of the response; the whole body."""
        while await self._more(within):
            pass
        return self.raw

    async def payload(self, within: float = PATIENCE) -> dict[str, Any]:
        """The execution result of the next part, which must carry one."""
        part = await self.part(within)
        assert part is not None and set(part) == {"payload"}, part
        result: dict[str, Any] = part["payload"]
        return result


def request_body(query: str, variables: dict[str, Any] | None = None, **extra: Any) -> Any:
    return {"query": query, "variables": variables or {}, **extra}


@asynccontextmanager
async def sse(
    client: httpx.AsyncClient,
    server: LiveServer,
    token: str | None,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[EventStream]:
    """A distinct-connections graphql-sse subscription (POST), open while in the block."""
    sent = {"Accept": SSE, **({"Authorization": f"Bearer {token}"} if token else {})}
    async with client.stream(
        "POST", server.url, json=request_body(query, variables), headers={**sent, **(headers or {})}
    ) as response:
        yield EventStream(response)


@asynccontextmanager
async def multipart(
    client: httpx.AsyncClient,
    server: LiveServer,
    token: str | None,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    accept: str = MULTIPART,
) -> AsyncIterator[PartStream]:
    """A multipart subscription (POST), open while in the block."""
    headers = {"Accept": accept, **({"Authorization": f"Bearer {token}"} if token else {})}
    async with client.stream(
        "POST", server.url, json=request_body(query, variables), headers=headers
    ) as response:
        yield PartStream(response)


def streams_open(server: LiveServer) -> int:
    return Metrics.value(server.runtime.metrics.http_streams)


async def subscribed(server: LiveServer, count: int) -> None:
    """Until exactly ``count`` operations receive live events (the gauge counts them live)."""
    gauge = server.runtime.metrics.subscriptions
    await until(lambda: Metrics.value(gauge) == count, PATIENCE, f"{count} live subscriptions")


async def all_closed(server: LiveServer) -> None:
    """Until the server holds no HTTP stream, subscription or bus subscriber."""
    rt = server.runtime

    def clean() -> bool:
        return (
            streams_open(server) == 0
            and Metrics.value(rt.metrics.subscriptions) == 0
            and rt.bus.subscriber_count == 0
        )

    await until(
        clean,
        PATIENCE,
        f"nothing left (streams={streams_open(server)},"
        f" subscriptions={Metrics.value(rt.metrics.subscriptions)},"
        f" bus={rt.bus.subscriber_count})",
    )
