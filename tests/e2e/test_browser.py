"""The built dashboard, Apollo example and GraphiQL in a real browser.

Each scenario is a node script in ``frontend-example/e2e/`` that drives
Debian's Chromium through playwright-core. This module starts a real
``mark1 serve`` on a free port with its own data directory and JWT secret,
mints tokens with ``mark1 token`` (same secret), runs the scripts with
``node`` and, for the reconnect scenario, restarts the server while the page
stays open.

Without Chromium, node, ``frontend-example/node_modules`` or a built
``frontend-example/dist`` the tests skip, except under ``CI=true``, where a
missing prerequisite is a failure: CI must really run them.
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend-example"
CHROMIUM = Path("/usr/bin/chromium")
SCENARIO_TIMEOUT = 120.0
STARTUP_TIMEOUT = 60.0


MARK1 = [sys.executable, "-m", "api.cli.main"]


def _missing_prerequisite() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (FRONTEND / "node_modules" / "playwright-core").is_dir():
        return "frontend-example/node_modules is missing (cd frontend-example && npm ci)"
    for page in ("index.html", "graphiql.html", "apollo-example/index.html"):
        if not (FRONTEND / "dist" / page).is_file():
            return f"frontend-example/dist/{page} is missing (cd frontend-example && npm run build)"
    return None


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    reason = _missing_prerequisite()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run under CI=true: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_env(data_dir: Path) -> dict[str, str]:
    # Nothing of the caller's MARK1_* (say a CI database URL) leaks in.
    env = {key: value for key, value in os.environ.items() if not key.startswith("MARK1_")}
    alphabet = string.ascii_letters + string.digits
    env["MARK1_DATA_DIR"] = str(data_dir)
    env["MARK1_JWT_SECRET"] = "".join(secrets.choice(alphabet) for _ in range(48))
    return env


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
                [
                    sys.executable,
                    "-m",
                    "api.cli.main",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("mark1-browser")
    started = Server(_free_port(), _server_env(base / "data"), base / "server.log")
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def operator_token(server: Server) -> str:
    result = subprocess.run(
        [*MARK1, "token", "--sub", "alice", "--role", "OPERATOR"],
        cwd=ROOT,
        env=server.env,
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


def _scenario_env(server: Server, token: str, artifacts: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MARK1_URL": server.url,
        "MARK1_TOKEN": token,
        "MARK1_E2E_ARTIFACTS": str(artifacts),
    }


def _run_scenario(script: str, server: Server, token: str, artifacts: Path) -> None:
    result = subprocess.run(
        ["node", f"e2e/{script}"],
        cwd=FRONTEND,
        env=_scenario_env(server, token, artifacts),
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


def test_dashboard_shows_new_task_within_a_second_and_its_progress(
    server: Server, operator_token: str, tmp_path: Path
) -> None:
    _run_scenario("dashboard-live.mjs", server, operator_token, tmp_path)


def test_apollo_cache_follows_task_updates(
    server: Server, operator_token: str, tmp_path: Path
) -> None:
    _run_scenario("apollo-cache.mjs", server, operator_token, tmp_path)


def test_graphiql_loads_offline_and_runs_query_and_subscription(
    server: Server, operator_token: str, tmp_path: Path
) -> None:
    _run_scenario("graphiql.mjs", server, operator_token, tmp_path)


def test_dashboard_resumes_event_feed_after_server_restart(
    server: Server, operator_token: str, tmp_path: Path
) -> None:
    script = subprocess.Popen(
        ["node", "e2e/dashboard-reconnect.mjs"],
        cwd=FRONTEND,
        env=_scenario_env(server, operator_token, tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert script.stdin is not None and script.stdout is not None
    output: list[str] = []
    lines: queue.Queue[str | None] = queue.Queue()

    def pump(stream: IO[str]) -> None:
        for line in stream:
            output.append(line)
            lines.put(line)
        lines.put(None)

    pumper = threading.Thread(target=pump, args=(script.stdout,), daemon=True)
    pumper.start()
    try:
        deadline = time.monotonic() + SCENARIO_TIMEOUT
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None or line.strip() == "READY_FOR_RESTART":
                break
        if line is not None:
            server.stop()
            server.start()
            script.stdin.write("RESTARTED\n")
            script.stdin.close()
        returncode = script.wait(timeout=SCENARIO_TIMEOUT)
    except (queue.Empty, subprocess.TimeoutExpired):
        returncode = None
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()
        if not script.stdin.closed:
            script.stdin.close()
        pumper.join(timeout=5)
        script.stdout.close()
    outcome = "timed out" if returncode is None else f"exited {returncode}"
    assert returncode == 0, (
        f"e2e/dashboard-reconnect.mjs {outcome}\n{''.join(output)}"
        f"\n--- server log ---\n{server.log_tail()}"
    )
