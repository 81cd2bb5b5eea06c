"""The graphql-http audit (the GraphQL-over-HTTP spec's own test suite) passes in full."""

from __future__ import annotations

import json
import os
import subprocess

from tests.support.node import CLIENTS, node_with
from tests.support.server import LiveServer


def test_every_graphql_http_audit_check_passes_musts_and_shoulds(server: LiveServer) -> None:
    node = node_with("graphql-http")
    run = subprocess.run(
        [node, "graphql-http-audit.mjs"],
        cwd=CLIENTS,
        env={**os.environ, "MARK1_URL": server.url, "MARK1_TOKEN": server.token("OPERATOR")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    summary = lines[-1]
    failures = lines[:-1]
    assert failures == [], failures
    assert summary["total"] >= 50 and summary["ok"] == summary["total"], summary
