"""``MARK1_LOG_FORMAT`` and ``MARK1_LOG_LEVEL``, through a real ``mark1 serve``: JSON
lines that carry who and what each line is about, and never a token."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn.logging

from api.logging.formatters import AccessFormatter
from api.logging.redaction import redact
from tests.ops.serve import serving
from tests.support.graphql import WSClient
from tests.support.server import TEST_SECRET, make_settings, mint

ME = {"query": "{ me { subject } }"}


def _token(tmp_path: Path) -> str:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", tmp_path)
    return mint(settings, "OPERATOR", sub="alice", tenant="acme")


def _lines(text: str) -> list[dict[str, Any]]:
    """Every line, parsed; fails on any line that is not one JSON object."""
    parsed = []
    for line in text.splitlines():
        if line.strip():
            entry = json.loads(line)
            assert isinstance(entry, dict), line
            parsed.append(entry)
    return parsed


async def _subscribe(url: str, token: str, op_id: str, query: str) -> WSClient:
    """A socket (with the token in its URL too, as a careless client sends it) running
    one operation."""
    client = await WSClient.connect(f"{url.replace('http', 'ws')}?token={token}", token)
    payload = {"query": query, "operationName": "Watch" if "Watch" in query else None}
    await client.send({"id": op_id, "type": "subscribe", "payload": payload})
    return client


@pytest.mark.timeout(300)  # a `mark1 serve` start and stop under load
async def test_json_logs_carry_request_operation_tenant_and_subject_and_no_token(
    tmp_path: Path,
) -> None:
    token = _token(tmp_path)
    with serving(
        tmp_path, MARK1_JWT_SECRET=TEST_SECRET, MARK1_LOG_FORMAT="json", MARK1_LOG_LEVEL="debug"
    ) as served:
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(
                served.url,
                json=ME,
                headers={"authorization": f"Bearer {token}", "x-request-id": "req-42"},
            )
            assert response.json() == {"data": {"me": {"subject": "alice"}}}
            assert response.headers["x-request-id"] == "req-42"
            generated = (await http.get(f"{served.base}/healthz")).headers["x-request-id"]
            await http.get(f"{served.base}/app", params={"token": token})
            await http.post(served.url, json=ME, headers={"authorization": f"Bearer {token}x"})
        client = await _subscribe(served.url, token, "op-7", "subscription Watch { events { id } }")
        await served.wait_for(
            lambda out: '"operation_id":"op-7"' in out, "the operation's log line"
        )
        await client.ws.close()
    stdout, stderr = served.stdout.read_text(), served.stderr.read_text()

    entries = _lines(stdout) + _lines(stderr)
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry
    access = [
        e for e in entries if e.get("request_id") == "req-42" and e["logger"] == "uvicorn.access"
    ]
    assert len(access) == 1, entries
    assert access[0] | {"time": None, "client": None} == {
        "time": None,
        "level": "INFO",
        "logger": "uvicorn.access",
        "message": access[0]["message"],
        "request_id": "req-42",
        "tenant": "acme",
        "subject": "alice",
        "client": None,
        "method": "POST",
        "path": "/graphql",
        "status": 200,
    }
    assert any(e.get("request_id") == generated and e.get("path") == "/healthz" for e in entries)
    operation = next(e for e in entries if e.get("operation_id") == "op-7")
    assert operation["tenant"] == "acme" and operation["subject"] == "alice", operation
    assert operation["request_id"] not in ("req-42", generated)  # the socket's own id
    assert operation["level"] == "DEBUG" and "Watch" in operation["message"]
    upgrade = '"WebSocket /graphql?token=[redacted]" [accepted]'
    assert any(e["message"].endswith(upgrade) for e in entries), entries
    signature = token.rsplit(".", 1)[1]
    for fragment in (token, signature, signature[-12:]):
        assert fragment not in stdout + stderr


@pytest.mark.timeout(300)  # a `mark1 serve` start and stop under load
def test_text_logs_honour_the_level(tmp_path: Path) -> None:
    token = _token(tmp_path)
    with serving(tmp_path, MARK1_JWT_SECRET=TEST_SECRET, MARK1_LOG_LEVEL="WARNING") as served:
        response = httpx.post(served.url, json=ME, headers={"authorization": f"Bearer {token}"})
        assert response.status_code == 200
    output = served.output()

    assert "INFO" not in output, output  # neither startup nor access lines at WARNING
    assert "POST /graphql" not in output, output


@pytest.mark.timeout(300)  # a `mark1 serve` start and stop under load
async def test_text_lines_name_the_request_they_belong_to(tmp_path: Path) -> None:
    token = _token(tmp_path)
    with serving(tmp_path, MARK1_JWT_SECRET=TEST_SECRET, MARK1_LOG_LEVEL="debug") as served:
        client = await _subscribe(served.url, token, "op-9", "subscription { events { id } }")
        await served.wait_for(lambda out: "operation_id=op-9" in out, "the operation's log line")
        await client.ws.close()
    line = next(x for x in served.output().splitlines() if "operation_id=op-9" in x)

    assert " DEBUG api.requests: operation (anonymous) started [request_id=" in line, line
    assert "tenant=acme subject=alice]" in line, line
    assert token.rsplit(".", 1)[1][-12:] not in served.output()


def test_redaction_hides_a_websocket_frame_that_carries_credentials() -> None:
    elided = (
        '< TEXT \'{"type": "connection_init", "payload": {"author...cdoVLAHOBiQTpLE"}}\''
        " [268 bytes]"
    )
    plain = '> TEXT \'{"type":"connection_ack"}\' [25 bytes]'

    assert redact(elided) == "< TEXT [redacted] [268 bytes]"
    assert redact(plain) == plain
    assert redact("< CONT 'Q2xE' [4 bytes, continued]") == "< CONT [redacted] [4 bytes, continued]"


@pytest.mark.timeout(300)  # a `mark1 serve` start and stop under load
def test_text_access_lines_read_as_uvicorn_writes_them(tmp_path: Path) -> None:
    token = _token(tmp_path)
    with serving(tmp_path, MARK1_JWT_SECRET=TEST_SECRET) as served:
        response = httpx.post(served.url, json=ME, headers={"authorization": f"Bearer {token}"})
        assert response.status_code == 200
        assert httpx.get(f"{served.base}/nowhere").status_code == 404
        httpx.get(f"{served.base}/app", params={"token": token})
    output = served.output()

    assert ' - "POST /graphql HTTP/1.1" 200 OK\n' in output, output
    assert ' - "GET /nowhere HTTP/1.1" 404 Not Found\n' in output, output
    assert ' - "GET /app?token=[redacted] HTTP/1.1" ' in output, output
    assert "INFO:     127.0.0.1:" in output, output
    assert token not in output


@pytest.mark.parametrize("colours", [False, True])
@pytest.mark.parametrize("status", [101, 200, 413, 503, 599])
def test_the_access_formatter_writes_what_uvicorns_does(colours: bool, status: int) -> None:
    """Same text as uvicorn's own, from one cheap copy of the record (issue #8)."""
    fmt = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'
    args = ("127.0.0.1:5555", "POST", "/graphql?x=1", "1.1", status)
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None
    )
    theirs = uvicorn.logging.AccessFormatter(fmt=fmt, use_colors=colours)
    ours = AccessFormatter(fmt=fmt, use_colors=colours)

    assert ours.format(record) == theirs.format(record)
    assert record.args == args and "request_line" not in record.__dict__  # left as it was
