"""Real JavaScript clients: the scripts in tests/clients, run under node, read line by line.

Each script prints one JSON object a line (tests/clients/common.mjs). Without node or the
npm modules a test needs (``npm ci --prefix tests/clients``), the test skips on a laptop
and fails under CI=true.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.databases import IN_CI
from tests.support.server import LiveServer

CLIENTS = Path(__file__).resolve().parents[1] / "clients"

Line = dict[str, Any]


def node_with(*modules: str) -> str:
    """The node executable, once it and these npm ``modules`` of tests/clients are there."""
    path = shutil.which("node")
    missing = None
    if path is None:
        missing = "node is not installed"
    elif not all((CLIENTS / "node_modules" / m).is_dir() for m in modules):
        missing = "tests/clients has no node_modules: run npm ci --prefix tests/clients"
    if missing:
        if IN_CI:
            pytest.fail(f"{missing}, and CI=true requires it")
        pytest.skip(missing)
    assert path is not None
    return path


class JSClient:
    """A node process running one client script; reads its JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self, within: float = 10) -> Line:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), within)
        if not raw:
            stderr = await self.proc.stderr.read() if self.proc.stderr else b""
            raise AssertionError(f"the client ended without a line: {stderr.decode()[-2000:]}")
        line: Line = json.loads(raw)
        return line

    async def expect(self, event: str, within: float = 10) -> Line:
        line = await self.line(within)
        assert line["event"] == event, line
        return line

    async def exit_code(self, within: float = 10) -> int:
        return await asyncio.wait_for(self.proc.wait(), within)


@asynccontextmanager
async def js_client(node: str, script: str, env: Mapping[str, str]) -> AsyncIterator[JSClient]:
    """tests/clients/``script`` running with ``env`` added to ours; killed on exit."""
    proc = await asyncio.create_subprocess_exec(
        node,
        str(CLIENTS / script),
        cwd=CLIENTS,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield JSClient(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@dataclass(frozen=True)
class Subscribers:
    """Subscription client scripts by library: ``scripts`` maps a library to its script
    and any environment of its own; ``websocket`` says which endpoint they take."""

    scripts: Mapping[str, tuple[str, Mapping[str, str]]]
    websocket: bool

    def run(
        self,
        node: str,
        library: str,
        server: LiveServer,
        token: str,
        query: str,
        variables: dict[str, Any] | None = None,
        count: int = 0,
    ) -> AbstractAsyncContextManager[JSClient]:
        """One subscription, configured as common.mjs reads it."""
        script, extra = self.scripts[library]
        endpoint = {"MARK1_WS_URL": server.ws_url} if self.websocket else {"MARK1_URL": server.url}
        env = {
            **extra,
            **endpoint,
            "MARK1_TOKEN": token,
            "MARK1_QUERY": query,
            "MARK1_VARIABLES": json.dumps(variables or {}),
            "MARK1_COUNT": str(count),
            "MARK1_TIMEOUT": "20",
        }
        return js_client(node, script, env)
