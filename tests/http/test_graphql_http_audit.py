"""The graphql-http audit (the GraphQL-over-HTTP spec's own test suite) passes in full."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.databases import IN_CI
from tests.support.server import LiveServer

CLIENTS = Path(__file__).resolve().parents[1] / "clients"


def test_every_graphql_http_audit_check_passes_musts_and_shoulds(server: LiveServer) -> None:
    node = shutil.which("node")
    if node is None or not (CLIENTS / "node_modules" / "graphql-http").is_dir():
        reason = "node or tests/clients/node_modules is missing (npm ci --prefix tests/clients)"
        if IN_CI:
            pytest.fail(f"{reason}, and CI=true requires it")
        pytest.skip(reason)
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
