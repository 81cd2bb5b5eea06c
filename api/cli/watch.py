"""``mark1 watch``: follow a subscription in the terminal, on the Python SDK (mark1_client).

Events go to stdout, one line each; connection notices and errors go to
stderr. The SDK reconnects with capped, jittered backoff and resumes the
``events`` stream from the last event printed, so nothing is missed or
printed twice (without ``--after`` it starts at the current head). A rejected
or expired token, a wrong URL or a refused document end the watch instead of
retrying forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import typer

from mark1_client import (
    Event,
    Forbidden,
    Mark1Client,
    Mark1Error,
    ProtocolError,
    TransportError,
    Unauthenticated,
)

DOCUMENTS = {
    "tasks": (
        "subscription WatchTasks { taskUpdates { id title status progress message updatedAt "
        "agent { name } } }"
    ),
    "agents": "subscription WatchAgents { agentStatus { id name status lastHeartbeatAt } }",
}


class WatchError(Exception):
    """A failure that retrying cannot fix; the message is shown as is."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- formatting ------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    moment = moment or datetime.now().astimezone()
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _task(title: str, status: str, progress: float) -> str:
    return f"{json.dumps(title)} {status} {round(progress * 100)}%"


def format_event(event: Event) -> str:
    """One line: time, id, type, then the task, agent and workflow it concerns."""
    parts = [_when(event.occurred_at), f"#{event.id}", f"{event.type:<23}"]
    if task := event.task:
        parts.append(f"task {_task(task.title, task.status, task.progress)}")
    if agent := event.agent:
        parts.append(f"agent {agent.name} {agent.status}")
    if workflow := event.workflow:
        data = event.data if isinstance(event.data, dict) else {}
        index = data.get("step", workflow.current_step)
        step = next((s for s in workflow.steps if s.index == index), None)
        where = f" step {step.index + 1}/{len(workflow.steps)} {step.name}" if step else ""
        parts.append(f"workflow {workflow.name} {workflow.status}{where}")
    return "  ".join(parts)


def format_task(data: dict[str, Any]) -> str:
    task = data["taskUpdates"]
    held = f"  agent {task['agent']['name']}" if task.get("agent") else ""
    message = f"  {task['message']}" if task.get("message") else ""
    moment = datetime.fromisoformat(task["updatedAt"])
    state = _task(task["title"], task["status"], task["progress"])
    return f"{_when(moment)}  task {task['id']}  {state}{held}{message}"


def format_agent(data: dict[str, Any]) -> str:
    agent = data["agentStatus"]
    return f"{_when(None)}  agent {agent['id']}  {agent['name']} {agent['status']}"


def format_json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Stream:
    """What to subscribe to and how to print it; ``document`` None means the SDK's
    resumable ``events`` stream."""

    document: str | None
    format: Callable[[dict[str, Any]], str]

    @classmethod
    def named(cls, what: str) -> Stream:
        """``events``, ``tasks``, ``agents``, or a file holding a subscription document."""
        if what == "events":
            return cls(None, format_json)
        if what in DOCUMENTS:
            return cls(DOCUMENTS[what], format_task if what == "tasks" else format_agent)
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


# -- running -------------------------------------------------------------------


async def _lines(client: Mark1Client, stream: Stream, after: str | None) -> AsyncIterator[str]:
    if stream.document is None:
        async with client.events(after=after) as events:
            async for event in events:
                yield format_event(event)
    else:
        async with client.subscribe(stream.document) as results:
            async for data in results:
                yield stream.format(data)


async def watch(url: str, token: str, what: str, after: str | None) -> None:
    """Print the stream until it completes; SDK errors become ``WatchError``."""
    stream = Stream.named(what)
    try:
        client = Mark1Client(url, token)
    except ValueError as exc:
        raise WatchError(str(exc), 2) from exc
    async with client:
        try:
            async for line in _lines(client, stream, after):
                print(line, flush=True)
        except Unauthenticated as exc:
            raise WatchError(f"token rejected ({exc.message})") from exc
        except ProtocolError as exc:
            if exc.status == 404:
                raise WatchError(
                    f"bad URL {client.endpoint.http}: no GraphQL endpoint there (HTTP 404)", 2
                ) from exc
            if exc.status is not None and 400 <= exc.status < 500:
                raise WatchError(f"bad URL {client.endpoint.http}: HTTP {exc.status}", 2) from exc
            raise WatchError(f"subscription failed: {exc.message}") from exc
        except TransportError as exc:
            if "resolve" in exc.message:
                raise WatchError(f"bad URL {url}: cannot resolve the host", 2) from exc
            raise WatchError(exc.message) from exc
        except Forbidden as exc:
            raise WatchError(f"refused: {exc.message}") from exc
        except Mark1Error as exc:
            raise WatchError(f"subscription failed: {exc.message}") from exc


class _Notes(logging.Handler):
    """The SDK's reconnect notices, as ``watch: …`` lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"watch: {record.getMessage()}", file=sys.stderr, flush=True)


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
    notes = logging.getLogger("mark1_client")
    notes.addHandler(_Notes(logging.WARNING))
    notes.propagate = False
    try:
        asyncio.run(watch(url, token, what, after))
    except WatchError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
