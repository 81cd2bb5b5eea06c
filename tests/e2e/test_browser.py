"""The built dashboard, Apollo example and GraphiQL in a real browser, against one real
``mark1 serve`` (tests/e2e/support.py): live updates, the Apollo cache, GraphiQL and its
share links, resuming after a server restart, what the pages do when the server
refuses their token (4403), and the Apollo example's subscriptions over multipart HTTP."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.e2e.support import (
    FRONTEND,
    SCENARIO_TIMEOUT,
    Server,
    free_port,
    run_scenario,
    scenario_env,
    server_env,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("mark1-browser")
    started = Server(free_port(), server_env(base / "data"), base / "server.log")
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def operator_token(server: Server) -> str:
    return server.token("OPERATOR")


def test_dashboard_shows_new_task_within_a_second_and_its_progress(
    server: Server, operator_token: str, tmp_path: Path
) -> None:
    run_scenario("dashboard-live.mjs", server, operator_token, tmp_path)


def test_apollo_cache_follows_task_updates(
    server: Server, operator_token: str, tmp_path: Path
) -> None:
    run_scenario("apollo-cache.mjs", server, operator_token, tmp_path)


def test_graphiql_opens_share_links_and_runs_query_and_subscription(
    server: Server, operator_token: str, tmp_path: Path
) -> None:
    run_scenario("graphiql.mjs", server, operator_token, tmp_path)


def test_a_refused_token_stops_reconnecting_and_asks_for_a_new_one(
    server: Server, operator_token: str, tmp_path: Path
) -> None:
    secret = server.env["MARK1_JWT_SECRET"]  # to mint a token that expires during the run
    run_scenario("token-refused.mjs", server, operator_token, tmp_path, MARK1_JWT_SECRET=secret)


def test_apollo_example_runs_subscriptions_over_multipart_http(
    server: Server, operator_token: str, tmp_path: Path
) -> None:
    secret = server.env["MARK1_JWT_SECRET"]  # to mint a token that expires during the run
    run_scenario("apollo-multipart.mjs", server, operator_token, tmp_path, MARK1_JWT_SECRET=secret)


def test_dashboard_resumes_event_feed_after_server_restart(
    server: Server, operator_token: str, tmp_path: Path
) -> None:
    script = subprocess.Popen(
        ["node", "e2e/dashboard-reconnect.mjs"],
        cwd=FRONTEND,
        env=scenario_env(server, operator_token, tmp_path),
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
