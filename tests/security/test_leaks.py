"""Nothing leaks: no stack trace, SQL or secret to clients, no token in logs; every
event names who caused it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from api.auth.tokens import mint_token
from api.cli.server import RedactSecrets, redact
from api.domain import Role
from tests.security.conftest import base_settings
from tests.security.support import still_serving
from tests.support import databases
from tests.support.graphql import WSClient, data, gql
from tests.support.server import TEST_SECRET, LiveServer, free_port, live_server

LEAKY_WORDS = (
    "Traceback",
    "SELECT",
    "INSERT",
    "sqlite",
    "asyncpg",
    "sqlalchemy",
    "relation",
    'File "',
)


def assert_masked(body: dict[str, Any] | list[Any], *secrets_: str) -> None:
    """An INTERNAL error that says nothing about why."""
    text_ = json.dumps(body)
    errors = body["errors"] if isinstance(body, dict) else body
    assert errors, body
    for error in errors:
        assert error["message"] == "Internal server error"
        assert error["extensions"] == {"code": "INTERNAL"}
    for word in (*LEAKY_WORDS, TEST_SECRET, *secrets_):
        assert word not in text_, f"{word!r} leaked: {text_}"


@pytest.fixture(params=["sqlite", "postgres"])
def private_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own, so it may break it."""
    with databases.database(request.param, tmp_path) as url:
        yield url


async def test_a_dropped_table_is_a_masked_internal_error(private_db: str, tmp_path: Path) -> None:
    with live_server(base_settings(private_db, tmp_path)) as server:
        token = server.token("OPERATOR", sub="dba")
        data(
            await gql(
                server.url, 'mutation { createTask(input: {title: "x"}) { id } }', token=token
            )
        )
        # A connection of our own: the server's pool lives on the server's event loop.
        engine = create_async_engine(private_db)
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE workflow_step"))
        await engine.dispose()
        body = await gql(
            server.url, "{ workflows { edges { node { id steps { name } } } } }", token=token
        )
        assert_masked(body, token, "workflow_step")
        start = 'mutation { startWorkflow(input: {name: "w", steps: [{name: "s"}]}) { id } }'
        assert_masked(await gql(server.url, start, token=token), token, "workflow_step")
        # What does not touch the table still works.
        assert data(await gql(server.url, "{ tasks { totalCount } }", token=token))
        await still_serving(server)


async def test_an_exception_in_a_service_is_masked_over_http_and_websocket(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = server.token("ADMIN", sub="boom")
    secret = f"s3cr3t-{secrets.token_hex(8)}"

    async def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"SELECT password FROM users WHERE key='{secret}' /{token}")

    monkeypatch.setattr(server.runtime.reads, "tasks", explode)
    monkeypatch.setattr(server.runtime.reads, "latest_event", explode)
    assert_masked(await gql(server.url, "{ tasks { totalCount } }", token=token), secret, token)
    async with await WSClient.connect(server.ws_url, token) as ws:
        await ws.subscribe(
            "w", 'subscription { workflowProgress(workflowId: "x") { step { name } } }'
        )
        message = await ws.next_for("w")
    assert message["type"] == "error", message
    assert_masked(message["payload"], secret, token)


async def test_bad_tokens_are_not_echoed(server: LiveServer) -> None:
    marker = "ZZMARKERZZ"
    for bad in (f"eyJhbGciOiJIUzI1NiJ9.{marker}.sig", f"{marker}", f"a.b.{marker}"):
        body = await gql(server.url, "{ me { subject } }", token=bad)
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert marker not in json.dumps(body)


# This process also runs the test's own clients; their logs are not the server's.
CLIENT_LOGGERS = ("httpx", "httpcore", "websockets.client")


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(CLIENT_LOGGERS):
            self.lines.append(self.format(record))


@pytest.fixture
def captured_logs() -> Iterator[Capture]:
    """Everything the server logs at INFO (its production level), as its handlers would
    see it. uvicorn's loggers do not propagate and carry their own (logger-level)
    filter; the root logger's handlers are the ones ``mark1 serve`` gives a filter."""
    capture = Capture()
    root_capture = Capture()
    root_capture.lines = capture.lines
    root_capture.addFilter(RedactSecrets())
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.access"):
        logging.getLogger(name).addHandler(capture)
    logging.getLogger().addHandler(root_capture)
    try:
        yield capture
    finally:
        logging.getLogger().removeHandler(root_capture)
        for name in ("uvicorn", "uvicorn.access"):
            logging.getLogger(name).removeHandler(capture)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


async def test_logs_never_contain_tokens(
    server: LiveServer, captured_logs: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = server.token("ADMIN", sub="log-watcher")
    expired = server.token("ADMIN", sub="log-watcher")[:-3] + "AAA"
    async with httpx.AsyncClient(base_url=server.base) as client:
        await client.get("/app", params={"token": token})
        await client.get("/app/", params={"token": token, "x": "1"})
        await client.get("/graphql", params={"query": "{ me { subject } }", "token": token})
        await client.get(f"/graphql?access_token={token}&query=%7B__typename%7D")
        await client.post(
            "/graphql",
            json={"query": "{ me { subject } }"},
            headers={"authorization": f"Bearer {token}"},
        )
        await client.post(
            "/graphql",
            json={"query": "{ me { subject } }"},
            headers={"authorization": f"Bearer {expired}"},
        )
    # WebSocket upgrades are logged with their query string too.
    async with await WSClient.connect(f"{server.ws_url}?token={token}", token):
        pass
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{server.ws_url}?token={token}", origin="https://evil.example")  # type: ignore[arg-type]

    # An unexpected error whose text carries the token is logged, redacted.
    async def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"failed for Bearer {token}")

    monkeypatch.setattr(server.runtime.reads, "tasks", explode)
    await gql(server.url, "{ tasks { totalCount } }", token=token)

    logged = "\n".join(captured_logs.lines)
    assert "GET /app?token=[redacted]" in logged, logged  # the request line is still there
    assert "unexpected error" in logged and "RuntimeError" in logged
    signature = token.rsplit(".", 1)[1]
    for part in (token, signature, expired.rsplit(".", 1)[1]):
        assert part not in logged, f"a token reached the logs:\n{logged}"


async def test_events_record_the_acting_subject(server: LiveServer, tenant: str) -> None:
    operator = server.token("OPERATOR", sub="alice", tenant=tenant)
    reg = data(
        await gql(
            server.url,
            'mutation { registerAgent(input: {name: "a", capabilities: []})'
            " { token agent { id } } }",
            token=operator,
        )
    )["registerAgent"]
    agent_id, agent_token = reg["agent"]["id"], reg["token"]
    task_id = data(
        await gql(server.url, 'mutation { createTask(input: {title: "t"}) { id } }', token=operator)
    )["createTask"]["id"]
    claim = "mutation($a: ID!) { claimTask(agentId: $a) { id } }"
    data(await gql(server.url, claim, {"a": agent_id}, token=agent_token))
    done = "mutation($t: ID!) { completeTask(taskId: $t) { id } }"
    data(await gql(server.url, done, {"t": task_id}, token=agent_token))
    # An admin acting for the agent is recorded as the admin, not the agent.
    admin = server.token("ADMIN", sub="root", tenant=tenant)
    data(
        await gql(
            server.url,
            "mutation($a: ID!) { heartbeat(agentId: $a) { id } }",
            {"a": agent_id},
            token=admin,
        )
    )
    second = data(
        await gql(server.url, 'mutation { createTask(input: {title: "u"}) { id } }', token=admin)
    )["createTask"]["id"]
    data(
        await gql(
            server.url,
            "mutation($t: ID!) { cancelTask(id: $t) { id } }",
            {"t": second},
            token=admin,
        )
    )

    events = data(
        await gql(server.url, "{ events { edges { node { type actor } } } }", token=operator)
    )["events"]["edges"]
    assert [(e["node"]["type"], e["node"]["actor"]) for e in events] == [
        ("AGENT_REGISTERED", "alice"),
        ("TASK_CREATED", "alice"),
        ("AGENT_STATUS_CHANGED", f"agent:{agent_id}"),
        ("TASK_STARTED", f"agent:{agent_id}"),
        ("TASK_SUCCEEDED", f"agent:{agent_id}"),
        ("AGENT_STATUS_CHANGED", f"agent:{agent_id}"),
        ("TASK_CREATED", "root"),
        ("TASK_CANCELLED", "root"),
    ]


def test_redact_hides_credentials_and_keeps_the_rest() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    assert (
        redact(f"GET /app?token={token}&page=2 HTTP/1.1")
        == "GET /app?token=[redacted]&page=2 HTTP/1.1"
    )
    assert redact(f"authorization: Bearer {token}") == "authorization: Bearer [redacted]"
    assert redact(f"connection_init {{'authorization': '{token}'}}") == (
        "connection_init {'authorization': '[redacted]'}"
    )
    assert redact("GET /graphql?query=%7Bme%7D HTTP/1.1") == "GET /graphql?query=%7Bme%7D HTTP/1.1"


def test_redact_finds_each_kind_of_credential_alone() -> None:
    """Texts that hold no credential skip the patterns (issue #8): each kind, on its own
    and without the marks of the others, must still be caught."""
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    assert redact(f"sent {token} along") == "sent [redacted] along"  # no '=', no 'bearer'
    assert redact("BEARER opaque-value") == "BEARER [redacted]"  # no '=', no JWT
    assert redact("/app?jwt=opaque") == "/app?jwt=[redacted]"
    assert redact("< CONT 'Q2xE' [4 bytes]") == "< CONT [redacted] [4 bytes]"
    assert redact("< BINARY 'x-author' [8 bytes]") == "< BINARY [redacted] [8 bytes]"
    assert redact("< TEXT '{\"authoriz...' [90 bytes]") == "< TEXT [redacted] [90 bytes]"
    line = '%s - "%s %s HTTP/%s" %d'
    assert redact(line) is line  # uvicorn's access line: nothing to find, nothing copied


def test_mark1_serve_logs_no_tokens(tmp_path: Path) -> None:
    """The real entry point, in its own process: its whole output is searched for the
    tokens it was sent."""
    port = free_port()
    env = {
        **os.environ,
        "MARK1_PORT": str(port),
        "MARK1_DATA_DIR": str(tmp_path),
        "MARK1_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        "MARK1_JWT_SECRET": TEST_SECRET,
        "MARK1_BROADCAST_CHANNEL": f"mark1_test_{secrets.token_hex(4)}",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from api.cli.main import app; app()", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    token = mint_token(TEST_SECRET, sub="cli-user", roles=[Role.ADMIN])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a cold start under a CPU hog takes tens of seconds
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "mark1 serve did not start"
            time.sleep(0.1)
        httpx.get(f"{base}/app", params={"token": token})
        httpx.post(
            f"{base}/graphql",
            json={"query": "{ me { subject } }"},
            headers={"authorization": f"Bearer {token}x"},
        )

        async def upgrade() -> None:
            async with await WSClient.connect(
                f"ws://127.0.0.1:{port}/graphql?token={token}", token
            ):
                pass

        asyncio.run(upgrade())
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output = process.communicate(timeout=15)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            output = process.communicate()[0]
    assert "/app?token=[redacted]" in output, output
    assert "WebSocket /graphql?token=[redacted]" in output, output
    assert token.rsplit(".", 1)[1] not in output, output
