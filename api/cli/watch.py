"""``mark1 watch``: follow a subscription in the terminal, reconnecting and resuming.

Speaks graphql-transport-ws (graphql-ws PROTOCOL.md). Events go to stdout,
one line each; connection notices and errors go to stderr. A dropped
connection is retried with capped exponential backoff and jitter; the
``events`` stream resumes from the last event id it printed (``after:``), so
nothing is missed or printed twice. A rejected token (close 4403) ends the
watch instead of retrying forever.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal, NoReturn, TypedDict
from urllib.parse import urlsplit, urlunsplit

import httpx
import typer
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

_EVENT_FIELDS = """
  id type occurredAt
  task { title status progress }
  agent { name status }
  workflow { name status progress currentStep steps { index name } }
  data
"""

DOCUMENTS = {
    "events": f"subscription Watch($after: ID) {{ events(after: $after) {{ {_EVENT_FIELDS} }} }}",
    "tasks": (
        "subscription WatchTasks { taskUpdates { id title status progress message updatedAt "
        "agent { name } } }"
    ),
    "agents": "subscription WatchAgents { agentStatus { id name status lastHeartbeatAt } }",
}

_HEAD = "query Head { events(first: 1) { totalCount } }"
_OPERATION_ID = "watch"
_INIT_TIMEOUT = 10.0
_BACKOFF_BASE = 0.5
_BACKOFF_CAP = 15.0


class CloseCode(IntEnum):
    """Close codes the watch acts on (graphql-ws PROTOCOL.md)."""

    FORBIDDEN = 4403


class SubscribeMessage(TypedDict):
    id: str
    type: Literal["subscribe"]
    payload: dict[str, Any]


class WatchError(Exception):
    """A failure that retrying cannot fix; the message is shown as is."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Lost(Exception):
    """The connection dropped or failed; worth retrying."""


@dataclass(frozen=True)
class Endpoint:
    http: str
    ws: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """``http(s)://`` or ``ws(s)://`` to both forms; anything else is a bad URL."""
        parts = urlsplit(url)
        pairs = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
        if parts.scheme not in pairs or not parts.hostname:
            raise WatchError(
                f"bad URL {url!r}: expected http(s)://host[:port]/graphql or ws(s)://…", 2
            )
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError as exc:
            raise WatchError(f"bad URL {url!r}: {exc}", 2) from exc
        ws_scheme = pairs[parts.scheme]
        http_scheme = "https" if ws_scheme == "wss" else "http"
        return cls(
            http=urlunsplit(parts._replace(scheme=http_scheme)),
            ws=urlunsplit(parts._replace(scheme=ws_scheme)),
        )


# -- formatting ------------------------------------------------------------


def _when(value: str | None) -> str:
    moment = datetime.fromisoformat(value) if value else datetime.now().astimezone()
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _task(task: dict[str, Any]) -> str:
    return f"{json.dumps(task['title'])} {task['status']} {round(task['progress'] * 100)}%"


def format_event(data: dict[str, Any]) -> str:
    """One line: time, id, type, then the task, agent and workflow it concerns."""
    event = data["events"]
    parts = [_when(event["occurredAt"]), f"#{event['id']}", f"{event['type']:<23}"]
    if event.get("task"):
        parts.append(f"task {_task(event['task'])}")
    if agent := event.get("agent"):
        parts.append(f"agent {agent['name']} {agent['status']}")
    if workflow := event.get("workflow"):
        index = (event.get("data") or {}).get("step", workflow.get("currentStep"))
        steps = workflow.get("steps") or []
        step = next((s for s in steps if s["index"] == index), None)
        where = f" step {index + 1}/{len(steps)} {step['name']}" if step else ""
        parts.append(f"workflow {workflow['name']} {workflow['status']}{where}")
    return "  ".join(parts)


def format_task(data: dict[str, Any]) -> str:
    task = data["taskUpdates"]
    held = f"  agent {task['agent']['name']}" if task.get("agent") else ""
    message = f"  {task['message']}" if task.get("message") else ""
    return f"{_when(task['updatedAt'])}  task {task['id']}  {_task(task)}{held}{message}"


def format_agent(data: dict[str, Any]) -> str:
    agent = data["agentStatus"]
    return f"{_when(None)}  agent {agent['id']}  {agent['name']} {agent['status']}"


def format_json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Stream:
    """What to subscribe to and how to print it."""

    document: str
    format: Callable[[dict[str, Any]], str]
    resumable: bool = False  # only `events` has ids to resume from

    @classmethod
    def named(cls, what: str) -> Stream:
        """``events``, ``tasks``, ``agents``, or a file holding a subscription document."""
        if what in DOCUMENTS:
            formats = {"events": format_event, "tasks": format_task, "agents": format_agent}
            return cls(DOCUMENTS[what], formats[what], resumable=what == "events")
        path = Path(what)
        if path.suffix not in (".graphql", ".gql") and not path.exists():
            raise WatchError(
                f"unknown stream {what!r}: use events, tasks, agents or a .graphql file", 2
            )
        try:
            text = path.read_text()
        except OSError as exc:
            raise WatchError(f"cannot read {what}: {exc.strerror}", 2) from exc
        if "subscription" not in text:
            raise WatchError(f"{what} holds no subscription operation", 2)
        return cls(text, format_json)


# -- the connection loop -----------------------------------------------------


def _note(message: str) -> None:
    print(f"watch: {message}", file=sys.stderr, flush=True)


async def _head(endpoint: Endpoint, token: str) -> str:
    """The tenant's newest event id: ids start at 1 and are consecutive (DESIGN.md)."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            endpoint.http,
            json={"query": _HEAD},
            headers={"Authorization": f"Bearer {token}"},
        )
    if response.status_code in (401, 403):
        raise WatchError("token rejected")
    if response.status_code == 404:
        raise WatchError(f"bad URL {endpoint.http}: no GraphQL endpoint there (HTTP 404)", 2)
    if response.status_code >= 500:
        raise _Lost(f"HTTP {response.status_code}")
    body = response.json()
    if errors := body.get("errors"):
        code = errors[0].get("extensions", {}).get("code")
        if code in ("UNAUTHENTICATED", "FORBIDDEN"):
            raise WatchError(f"token rejected: {errors[0].get('message')}")
        raise _Lost(errors[0].get("message"))
    return str(body["data"]["events"]["totalCount"])


class Watch:
    """One ``mark1 watch`` run: connect, subscribe, print, and resume after a drop."""

    def __init__(self, endpoint: Endpoint, token: str, what: str, after: str | None) -> None:
        self.endpoint = endpoint
        self.token = token
        self.stream = Stream.named(what)
        self.after = after
        self.connected_once = False
        self.failures = 0  # since the last acknowledged connection

    async def run(self) -> None:
        while True:
            try:
                if self.stream.resumable and self.after is None:
                    # Start from the head rather than live-only, so events that
                    # commit while the first connection is down are not lost.
                    self.after = await _head(self.endpoint, self.token)
                if await self._session():
                    return
            except (_Lost, OSError, httpx.TransportError, ConnectionClosed, TimeoutError) as exc:
                self._check_fatal(exc)
                self.failures += 1
                # "Equal jitter": never hammer a restarting server, never all at once.
                ceiling = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (self.failures - 1))
                delay = ceiling / 2 + random.uniform(0, ceiling / 2)
                _note(f"{_describe(exc)}; reconnecting in {delay:.1f}s")
                await asyncio.sleep(delay)

    def _check_fatal(self, exc: BaseException) -> None:
        close = exc.rcvd if isinstance(exc, ConnectionClosed) else None
        if close is not None and close.code == CloseCode.FORBIDDEN:
            raise WatchError(f"token rejected ({close.reason or 'Forbidden'})") from exc
        if not self.connected_once and _caused_by(exc, socket.gaierror):
            raise WatchError(f"bad URL {self.endpoint.ws}: cannot resolve the host", 2) from exc

    async def _session(self) -> bool:
        """One connection; True when the subscription completed (nothing more to watch)."""
        try:
            ws = await websockets.connect(
                self.endpoint.ws,
                subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                open_timeout=_INIT_TIMEOUT,
                close_timeout=2,
            )
        except InvalidURI as exc:
            raise WatchError(f"bad URL {self.endpoint.ws}: {exc}", 2) from exc
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 403:
                raise WatchError(f"connection refused by the server (HTTP 403): {exc}") from exc
            if 400 <= status < 500:
                raise WatchError(f"bad URL {self.endpoint.ws}: HTTP {status}", 2) from exc
            raise _Lost(f"HTTP {status}") from exc
        async with ws:
            init = {"type": "connection_init", "payload": {"authorization": f"Bearer {self.token}"}}
            await ws.send(json.dumps(init))
            ack = json.loads(await asyncio.wait_for(ws.recv(), _INIT_TIMEOUT))
            if not isinstance(ack, dict) or ack.get("type") != "connection_ack":
                raise _Lost(f"expected connection_ack, got {str(ack)[:80]}")
            if self.connected_once:
                _note(
                    f"reconnected, resuming after event {self.after}"
                    if self.stream.resumable
                    else "reconnected (changes while disconnected are not replayed: "
                    "`mark1 watch events` resumes)"
                )
            self.connected_once = True
            self.failures = 0
            await self._subscribe(ws)
            async for raw in ws:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif kind == "next":
                    self._print(message["payload"])
                elif kind == "error":
                    await self._on_error(ws, message.get("payload") or [])
                elif kind == "complete":
                    return True
        raise _Lost("connection closed")

    async def _subscribe(self, ws: websockets.ClientConnection) -> None:
        variables = {"after": self.after} if self.stream.resumable else {}
        message: SubscribeMessage = {
            "id": _OPERATION_ID,
            "type": "subscribe",
            "payload": {"query": self.stream.document, "variables": variables},
        }
        await ws.send(json.dumps(message))

    def _print(self, payload: dict[str, Any]) -> None:
        if payload.get("errors"):
            _note(f"error in event: {payload['errors'][0].get('message')}")
        data = payload.get("data")
        if not data:
            return
        print(self.stream.format(data), flush=True)
        if self.stream.resumable:
            self.after = str(data["events"]["id"])

    async def _on_error(self, ws: websockets.ClientConnection, errors: list[Any]) -> None:
        first: dict[str, Any] = errors[0] if errors else {}
        extensions = first.get("extensions") or {}
        if extensions.get("code") == "SLOW_CONSUMER":
            # The server dropped what it had queued for us; resume from what we printed.
            _note("server dropped us as a slow consumer; resubscribing")
            await self._subscribe(ws)
            return
        raise WatchError(f"subscription failed: {first.get('message', errors)}")


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is anywhere in the chain (httpx wraps socket errors)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        close = exc.rcvd
        if close is None:
            return "connection lost"
        return f"connection closed ({close.code}{' ' + close.reason if close.reason else ''})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def run_watch(*, what: str, url: str, token: str | None, after: str | None) -> None:
    """Entry point of ``mark1 watch``; exits non-zero on failures retrying cannot fix."""

    def fail(message: str, code: int) -> NoReturn:
        typer.secho(f"watch: {message}", fg="red", err=True)
        raise typer.Exit(code)

    if not token:
        fail("no token: pass --token or set MARK1_TOKEN (mint one with `mark1 token`)", 2)
    if after is not None and not after.isdigit():
        fail(f"--after must be an event id (a decimal number), not {after!r}", 2)
    if after is not None and what != "events":
        fail("--after only applies to `mark1 watch events`", 2)
    try:
        watch = Watch(Endpoint.parse(url), token, what, after)
        asyncio.run(watch.run())
    except WatchError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
