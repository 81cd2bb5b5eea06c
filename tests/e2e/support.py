"""What the browser-test modules share: prerequisites, a ``mark1 serve`` subprocess, tokens,
and running a node scenario from ``frontend-example/e2e/``.

Each scenario is a node script that drives Debian's Chromium through
playwright-core. A module starts one real ``mark1 serve`` on a free port with
its own data directory and JWT secret, mints tokens with ``mark1 token`` (same
secret) and runs its scenarios with ``node``.

Without Chromium, node, ``frontend-example/node_modules`` or a built
``frontend-example/dist`` the tests skip, except under ``CI=true``, where a
missing prerequisite is a failure: CI must really run them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend-example"
MANIFEST = FRONTEND / "dist" / "persisted-documents.json"
CHROMIUM = Path("/usr/bin/chromium")
SCENARIO_TIMEOUT = 120.0
STARTUP_TIMEOUT = 60.0

MARK1 = [sys.executable, "-m", "api.cli.main"]


def missing_prerequisite() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (FRONTEND / "node_modules" / "playwright-core").is_dir():
        return "frontend-example/node_modules is missing (cd frontend-example && npm ci)"
    for page in ("index.html", "graphiql.html", "apollo-example/index.html"):
        if not (FRONTEND / "dist" / page).is_file():
            return f"frontend-example/dist/{page} is missing (cd frontend-example && npm run build)"
    if not MANIFEST.is_file():
        return "frontend-example/dist/persisted-documents.json is missing (npm run build)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a server with its own data and secret, plus ``settings``."""
    # Nothing of the caller's MARK1_* (say a CI database URL) leaks in.
    env = {key: value for key, value in os.environ.items() if not key.startswith("MARK1_")}
    alphabet = string.ascii_letters + string.digits
    env["MARK1_DATA_DIR"] = str(data_dir)
    env["MARK1_JWT_SECRET"] = "".join(secrets.choice(alphabet) for _ in range(48))
    return {**env, **settings}


class Server:
    """``mark1 serve`` as a subprocess that can be stopped and started again."""

    def __init__(self, port: int, env: dict[str, str], log_path: Path) -> None:
        self.port = port
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            # Its own session, so stop() can signal the server and anything under it.
            self.process = subprocess.Popen(
                [*MARK1, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_healthy()

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no server log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def token(self, *roles: str, sub: str = "alice") -> str:
        """A token minted by ``mark1 token`` with this server's secret."""
        args = [arg for role in roles for arg in ("--role", role)]
        result = subprocess.run(
            [*MARK1, "token", "--sub", sub, *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT,
            check=False,
        )
        token = result.stdout.strip()
        assert result.returncode == 0 and token.count(".") == 2, (
            f"mark1 token failed ({result.returncode}): {result.stdout}\n{result.stderr}"
        )
        return token

    def _wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"mark1 serve exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        pytest.fail(
            f"GET /healthz never answered 200 within {STARTUP_TIMEOUT} s:\n{self.log_tail()}"
        )


def scenario_env(server: Server, token: str, artifacts: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "MARK1_URL": server.url,
        "MARK1_TOKEN": token,
        "MARK1_E2E_ARTIFACTS": str(artifacts),
        **extra,
    }


def run_scenario(script: str, server: Server, token: str, artifacts: Path, **extra: str) -> None:
    """Run ``frontend-example/e2e/<script>``; fail with its output and the server's log."""
    result = subprocess.run(
        ["node", f"e2e/{script}"],
        cwd=FRONTEND,
        env=scenario_env(server, token, artifacts, **extra),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, (
        f"e2e/{script} exited {result.returncode}\n--- stdout ---\n{result.stdout}"
        f"\n--- stderr ---\n{result.stderr}\n--- server log ---\n{server.log_tail()}"
    )
