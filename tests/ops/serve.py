"""The real ``mark1`` entry point in a process of its own, as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.server import free_port

MARK1 = str(Path(sys.executable).parent / "mark1")
START_WITHIN = 90.0  # seconds: imports and migrations on a loaded two-core machine


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any MARK1_* variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARK1_")}
    return {**env, **settings}


def run_mark1(
    *args: str, cwd: Path, timeout: float = 120, **settings: str
) -> subprocess.CompletedProcess[str]:
    """``mark1 ARGS`` to completion, with only the given MARK1_* settings."""
    return subprocess.run(
        [MARK1, *args],
        cwd=cwd,  # no stray .env file
        env=clean_env(**settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Served:
    """A running ``mark1 serve`` (or ``demo``); its output goes to files, so a chatty
    log level can never fill a pipe and stall it."""

    process: subprocess.Popen[bytes]
    port: int
    stdout: Path
    stderr: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/graphql"

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()

    async def wait_for(self, check: Callable[[str], bool], what: str, within: float = 30) -> None:
        """Until ``check(output so far)`` holds."""
        deadline = time.monotonic() + within
        while not check(self.output()):
            assert self.process.poll() is None, (
                f"mark1 exited while waiting for {what}:\n{self.output()}"
            )
            assert time.monotonic() < deadline, f"no {what} within {within} s:\n{self.output()}"
            await asyncio.sleep(0.05)


@contextmanager
def serving(
    work_dir: Path, *args: str, command: str = "serve", **settings: str
) -> Iterator[Served]:
    """Start ``mark1 COMMAND`` on a free port with the data in ``work_dir``; wait until
    /healthz answers; stop it with SIGINT (as Ctrl-C) on exit."""
    port = free_port()
    env = clean_env(
        MARK1_PORT=str(port),
        MARK1_HOST="127.0.0.1",
        MARK1_DATA_DIR=str(work_dir / "data"),
        **settings,
    )
    out, err = work_dir / "stdout.log", work_dir / "stderr.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [MARK1, command, *args], cwd=work_dir, env=env, stdout=stdout, stderr=stderr
        )
    served = Served(process, port, out, err)
    try:
        deadline = time.monotonic() + START_WITHIN
        while True:
            assert process.poll() is None, f"mark1 {command} exited:\n{served.output()}"
            try:
                if httpx.get(f"{served.base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"mark1 {command} did not start:\n{served.output()}"
            time.sleep(0.1)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
