"""``mark1 serve`` refuses deployments that cannot work, through the real CLI: exit code 2
and one sentence naming the settings, before anything listens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.server import TEST_SECRET, free_port

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/mark1_never_reached"
REDIS = "redis://127.0.0.1:6379/0"
JWKS = "https://idp.example.com/.well-known/jwks.json"
PUBLIC_KEY = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``mark1 serve`` in a scratch directory with only these MARK1_ settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MARK1_")}
    clean.update(
        MARK1_DATA_DIR=str(tmp_path),
        MARK1_PORT=str(free_port()),
        **{f"MARK1_{k}": v for k, v in env.items()},
    )
    return subprocess.run(
        [sys.executable, "-m", "api.cli.main", "serve", *args],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--workers", "2"], {"BROADCAST_URL": REDIS, "JWT_SECRET": TEST_SECRET}),
        ([], {"BROADCAST_URL": REDIS, "JWT_SECRET": TEST_SECRET}),
        ([], {"BROADCAST_URL": "postgres://postgres@127.0.0.1/x", "JWT_SECRET": TEST_SECRET}),
    ],
    ids=["two-workers", "redis-bus", "postgres-bus"],
)
def test_serve_refuses_several_processes_or_a_shared_bus_on_sqlite(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    run = serve(tmp_path, *args, **env)

    assert run.returncode == 2
    assert "SQLite is single-process" in run.stderr
    assert "MARK1_DATABASE_URL" in run.stderr
    assert TEST_SECRET not in run.stderr + run.stdout
    assert not (tmp_path / "mark1.db").exists(), "refused before touching anything"


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--workers", "2"], {"BROADCAST_URL": REDIS, "JWT_JWKS_URL": JWKS}),
        ([], {"BROADCAST_URL": REDIS, "JWT_JWKS_URL": JWKS}),
        (["--workers", "3"], {"BROADCAST_URL": REDIS, "JWT_PUBLIC_KEY": PUBLIC_KEY}),
    ],
    ids=["workers-jwks", "shared-bus-jwks", "workers-public-key"],
)
def test_serve_refuses_several_processes_with_an_identity_provider_and_no_shared_agent_key(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    run = serve(tmp_path, *args, DATABASE_URL=PG, **env)

    assert run.returncode == 2
    assert "one signing key for agent tokens" in run.stderr
    assert "set MARK1_JWT_SECRET, the same on every process" in run.stderr
    assert not (tmp_path / "jwt_secret").exists(), "no per-process secret was generated"


def test_serve_refuses_a_shared_bus_without_a_configured_secret(tmp_path: Path) -> None:
    """Each data directory would generate its own secret: hosts refuse each other's tokens."""
    run = serve(tmp_path, DATABASE_URL=PG, BROADCAST_URL=REDIS)

    assert run.returncode == 2
    assert "without MARK1_JWT_SECRET each data directory generates its own" in run.stderr


def test_serve_refuses_several_workers_on_the_in_memory_bus(tmp_path: Path) -> None:
    run = serve(tmp_path, "--workers", "2", DATABASE_URL=PG, JWT_SECRET=TEST_SECRET)

    assert run.returncode == 2
    assert "MARK1_WORKERS > 1 needs a shared bus" in run.stderr
