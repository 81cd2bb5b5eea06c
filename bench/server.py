"""The server under test: a ``mark1 serve`` subprocess, or one already running."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Target:
    """Where the benchmark connects, and how it mints tokens the server accepts."""

    url: str
    secret: str
    issuer: str | None = None
    audience: str | None = None
    pid: int | None = None  # for RSS; None when the server is elsewhere
    description: str = ""
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _tmp: Path | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return self.url.rsplit("/graphql", 1)[0]

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    def rss_kib(self) -> int | None:
        """Resident set size of the server process, from /proc/<pid>/status."""
        return None if self.pid is None else rss_kib(self.pid)

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process so far, from /proc/<pid>/stat."""
        return None if self.pid is None else cpu_seconds(self.pid)

    def metrics(self) -> dict[str, float]:
        """Unlabelled samples of /metrics (empty when it cannot be read)."""
        try:
            text = httpx.get(f"{self.base}/metrics", timeout=10).text
            return {
                s.name: s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if not s.labels
            }
        except (httpx.HTTPError, ValueError):
            return {}

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def rss_kib(pid: int) -> int | None:
    """Resident set size of a process, from /proc/<pid>/status (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far, from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)"; utime, stime: 14, 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mark1_command() -> list[str]:
    """The venv's ``mark1`` script run directly, so the child pid is the server itself."""
    script = Path(sys.executable).with_name("mark1")
    if script.exists():
        return [str(script)]
    found = shutil.which("mark1")
    if found:
        return [found]
    return [sys.executable, "-c", "from api.cli.main import app; app()"]


def spawn(
    *,
    database_url: str | None,
    broadcast_url: str | None,
    secret: str | None = None,
    settings: dict[str, str] | None = None,
) -> Target:
    """``mark1 serve`` on a free port with a temporary data dir and a generated secret
    (or ``secret``: several processes of one install share it); ``settings`` are more
    ``MARK1_*`` variables."""
    tmp = Path(tempfile.mkdtemp(prefix="mark1-bench-"))
    port = _free_port()
    secret = secret or secrets.token_urlsafe(48)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARK1_")}
    env |= {
        "MARK1_DATA_DIR": str(tmp),
        "MARK1_JWT_SECRET": secret,
        "MARK1_HOST": "127.0.0.1",
        "MARK1_PORT": str(port),
        # The publisher is one subject: let it publish at any rate asked for.
        "MARK1_MUTATION_RATE": "100000",
        "MARK1_MUTATION_BURST": "100000",
    }
    if database_url:
        env["MARK1_DATABASE_URL"] = database_url
    if broadcast_url:
        env["MARK1_BROADCAST_URL"] = broadcast_url
    env |= settings or {}
    log = (tmp / "server.log").open("wb")
    process = subprocess.Popen(
        [*_mark1_command(), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    target = Target(
        url=f"http://127.0.0.1:{port}/graphql",
        secret=secret,
        pid=process.pid,
        description=(
            f"mark1 serve (1 worker), {database_url or 'SQLite'}, {broadcast_url or 'memory://'}"
        ),
        _process=process,
        _tmp=tmp,
    )
    try:
        wait_ready(target, process)
    except BaseException:
        target.stop()
        raise
    return target


def spawn_command(argv: list[str], *, cwd: Path | None = None, description: str) -> Target:
    """Another server under test (the Node reference, the raw floor): ``argv + [port]``."""
    tmp = Path(tempfile.mkdtemp(prefix="mark1-bench-"))
    port = _free_port()
    log = (tmp / "server.log").open("wb")
    process = subprocess.Popen([*argv, str(port)], cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    target = Target(
        url=f"http://127.0.0.1:{port}/graphql",
        secret="",
        pid=process.pid,
        description=description,
        _process=process,
        _tmp=tmp,
    )
    try:
        wait_ready(target, process)
    except BaseException:
        target.stop()
        raise
    return target


def external(url: str, *, pid: int | None) -> Target:
    """A server already running; tokens are minted from this environment's MARK1_* settings."""
    from api.settings import Settings

    settings = Settings()
    return Target(
        url=url,
        secret=settings.hs256_secret(),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        pid=pid,
        description=f"existing server at {url}",
    )


def wait_ready(
    target: Target, process: subprocess.Popen[bytes] | None, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            log = target._tmp / "server.log" if target._tmp else None
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {process.returncode}:\n{tail}")
        try:
            if httpx.get(f"{target.base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server at {target.base} not ready after {timeout:.0f}s")
