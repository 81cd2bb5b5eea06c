"""The README's examples, run as files exactly as a user runs them, against a real server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mark1_client import Mark1Client, TaskStatus
from tests.support.server import LiveServer
from tests.support.waiting import until

EXAMPLES = Path(__file__).resolve().parents[2] / "client" / "examples"
README = Path(__file__).resolve().parents[2] / "README.md"


class Example:
    """``python client/examples/NAME.py`` with its output collected."""

    def __init__(self, name: str, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / name)],
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=_drain, args=(stream, sink), daemon=True)
            for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"did not stop; stderr {self.stderr!r}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for reader in self._readers:  # they close the pipes at EOF
            reader.join(10)


def _drain(stream: object, sink: list[str]) -> None:
    with stream:  # type: ignore[attr-defined]
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line.rstrip("\n"))


@pytest.fixture
def examples() -> Iterator[list[Example]]:
    started: list[Example] = []
    yield started
    for example in started:
        example.kill()


def test_the_readme_shows_the_example_files_verbatim() -> None:
    readme = README.read_text()
    for name in ("agent.py", "integrator.py"):
        body = (EXAMPLES / name).read_text()
        code = body[body.index("import asyncio") :]
        assert code in readme, f"README's copy of client/examples/{name} is stale"


async def test_the_twenty_line_agent_does_a_task_and_stops_gracefully_on_sigterm(
    server: LiveServer, operator: Mark1Client, examples: list[Example]
) -> None:
    lines = (EXAMPLES / "agent.py").read_text().strip().splitlines()
    assert len([line for line in lines if line.strip()]) <= 22
    registration = await operator.register_agent("example", ["summarize"])
    task = await operator.create_task(
        "Summarize", capability="summarize", input={"text": "The quick brown fox"}
    )
    agent = Example("agent.py", MARK1_URL=server.url, MARK1_AGENT_TOKEN=registration.token)
    examples.append(agent)

    async def succeeded() -> bool:
        found = await operator.task(task.id)
        assert agent.proc.poll() is None, f"the agent exited: {agent.stderr!r}"
        return found is not None and found.status is TaskStatus.SUCCEEDED

    await until(succeeded, 60, "the example agent to finish the task")

    assert agent.terminate() == 0, agent.stderr
    done = await operator.task(task.id)
    assert done is not None and done.result == {"summary": "The quick brown fox"}
    assert done.agent is not None and done.agent.name == "example"
    assert [e.task.message for e in (await operator.event_page()).items if e.task][-2] == (
        "step 3 of 3"
    )


async def test_the_integrator_pages_the_history_then_follows_live(
    server: LiveServer, tenant: str, operator: Mark1Client, examples: list[Example]
) -> None:
    for n in range(5):
        await operator.create_task(f"old-{n}")
    viewer = server.token("VIEWER", tenant=tenant)
    integrator = Example("integrator.py", MARK1_URL=server.url, MARK1_TOKEN=viewer)
    examples.append(integrator)
    await until(lambda: len(integrator.stdout) >= 5, 60, "the history")
    await operator.create_task("new")
    await until(lambda: len(integrator.stdout) >= 6, 60, "the live event")
    integrator.terminate()

    ids = [int(re.match(r"#(\d+) ", line).group(1)) for line in integrator.stdout]  # type: ignore[union-attr]
    assert ids == [1, 2, 3, 4, 5, 6]
    assert integrator.stdout[-1] == "#6 TASK_CREATED new"
