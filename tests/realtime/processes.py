"""Real `mark1 serve` processes (this environment's Python) and a private redis-server."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from api.settings import Settings
from tests.support import databases, server_logs
from tests.support.server import TEST_SECRET, free_port, mint

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Process:
    """One ``mark1 serve`` process on a loopback port."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    settings: Settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def token(self, *roles: str, tenant: str = "default") -> str:
        return mint(self.settings, *roles, tenant=tenant)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def gauge(self, name: str) -> float:
        """A value from the process's /metrics (Prometheus text format)."""
        async with httpx.AsyncClient(verify=False, trust_env=False, timeout=5) as client:
            text = (await client.get(f"http://127.0.0.1:{self.port}/metrics")).text
        for line in text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        raise AssertionError(f"{name} is not in /metrics")


def _wait_ready(process: Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise RuntimeError(f"mark1 serve exited:\n{process.output()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{process.port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"mark1 serve was not ready in {timeout}s:\n{process.output()[-3000:]}")


@contextmanager
def serve_clusters(
    broadcast_urls: dict[str, str],
    *,
    size: int,
    database_url: str,
    work_dir: Path,
    environ: dict[str, str] | None = None,
    **extra: str,
) -> Iterator[dict[str, list[Process]]]:
    """For each named broadcast URL, ``size`` server processes sharing it and the database.

    Every cluster gets a channel of its own; all processes start at once. ``extra``
    are settings (``MARK1_`` prefixed for them), ``environ`` other variables.
    """
    settings = Settings(_env_file=None, jwt_secret=TEST_SECRET)
    base = {k: v for k, v in os.environ.items() if not k.startswith("MARK1_")}
    base.update(
        MARK1_DATA_DIR=str(work_dir),
        MARK1_JWT_SECRET=TEST_SECRET,
        MARK1_DATABASE_URL=database_url,
        **{f"MARK1_{k.upper()}": v for k, v in extra.items()},
        **(environ or {}),
    )
    clusters: dict[str, list[Process]] = {}
    logs = contextlib.ExitStack()
    try:
        for name, broadcast_url in broadcast_urls.items():
            env = dict(
                base,
                MARK1_BROADCAST_URL=broadcast_url,
                MARK1_BROADCAST_CHANNEL=f"mark1_test_{secrets.token_hex(6)}",
            )
            clusters[name] = [_spawn(f"{name}-{i}", env, work_dir, settings) for i in range(size)]
            for i, process in enumerate(clusters[name]):
                logs.enter_context(server_logs.registered(f"serve {name}-{i}", process.output))
        for processes in clusters.values():
            for process in processes:
                _wait_ready(process)
        yield clusters
    finally:
        for processes in clusters.values():
            for process in processes:
                _stop(process.proc)
        logs.close()


def _spawn(label: str, env: dict[str, str], work_dir: Path, settings: Settings) -> Process:
    port = free_port()
    log = work_dir / f"serve-{label}.log"
    with log.open("wb") as out:
        # cwd is the scratch directory, so no .env of the checkout leaks in.
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli.main", "serve", "--port", str(port)],
            cwd=work_dir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(port, proc, log, settings)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT (a graceful stop), then kill the process group we started."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


class RedisServer:
    """A private, throw-away redis-server that a test may kill and restart on its port."""

    def __init__(self, work_dir: Path) -> None:
        self.port = free_port()
        self.work_dir = work_dir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    @classmethod
    def required(cls, work_dir: Path) -> RedisServer:
        """A server, not yet started; the test is skipped (failed under CI) without
        redis-server."""
        databases.require("redis-server", cls.available())
        return cls(work_dir)

    def start(self) -> None:
        assert self.proc is None
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.work_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        """Die at once, as a crashed or restarted Redis does: connections drop."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
