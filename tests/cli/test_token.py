"""``mark1 token`` mints development tokens the server accepts, signed with the same secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from typer.testing import CliRunner

from api.cli.main import app as cli
from api.settings import Settings
from tests.support.graphql import data, gql
from tests.support.server import TEST_SECRET, live_server

MARK1 = str(Path(sys.executable).parent / "mark1")
ME = "{ me { subject roles tenant agentId } }"


def mark1(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``mark1`` as a user would, with only the given MARK1_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MARK1_")}
    return subprocess.run(
        [MARK1, *args],
        cwd=cwd,  # no stray .env file
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'mark1.db'}",
        **overrides,  # type: ignore[arg-type]
    )


async def test_token_carries_the_claims_it_was_given(tmp_path: Path) -> None:
    run = mark1(
        "token",
        "--sub", "robot",
        "--role", "agent",
        "--role", "VIEWER",
        "--tenant", "acme",
        "--agent-id", "a-1",
        "--ttl", "2h",
        cwd=tmp_path,
        MARK1_JWT_SECRET=TEST_SECRET,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    token = run.stdout.strip()
    assert "\n" not in token

    claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 2 * 3600
    with live_server(_settings(tmp_path, jwt_secret=TEST_SECRET)) as server:
        body = await gql(server.url, ME, token=token)

    assert data(body)["me"] == {
        "subject": "robot",
        "roles": ["AGENT", "VIEWER"],
        "tenant": "acme",
        "agentId": "a-1",
    }


async def test_generated_secret_is_kept_in_the_data_dir_and_shared_with_the_server(
    tmp_path: Path,
) -> None:
    data_dir = str(tmp_path / "data")
    first = mark1(
        "token", "--sub", "ops", "--role", "OPERATOR", cwd=tmp_path, MARK1_DATA_DIR=data_dir
    )
    second = mark1("token", "--sub", "ops", cwd=tmp_path, MARK1_DATA_DIR=data_dir)
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    secret_file = tmp_path / "data" / "jwt_secret"
    assert secret_file.exists()
    assert secret_file.stat().st_mode & 0o077 == 0  # readable by its owner only
    secret = secret_file.read_text().strip()
    assert len(secret.encode()) >= 32
    # Both tokens are signed with the one generated secret (not a new one each time).
    for run in (first, second):
        jwt.decode(run.stdout.strip(), secret, algorithms=["HS256"])

    with live_server(_settings(tmp_path)) as server:
        operator = data(await gql(server.url, ME, token=first.stdout.strip()))
        viewer = data(await gql(server.url, ME, token=second.stdout.strip()))

    assert operator["me"]["roles"] == ["OPERATOR"] and operator["me"]["tenant"] == "default"
    assert viewer["me"]["roles"] == ["VIEWER"]  # the default role
    assert secret_file.read_text().strip() == secret


def test_short_configured_secret_is_refused_clearly() -> None:
    run = CliRunner().invoke(cli, ["token", "--sub", "x"], env={"MARK1_JWT_SECRET": "too-short"})

    assert run.exit_code != 0
    assert run.stdout == ""
    assert "MARK1_JWT_SECRET" in run.stderr and "32 bytes" in run.stderr
    assert "Traceback" not in run.stderr
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Settings(_env_file=None, jwt_secret="x" * 31)


def test_bad_role_and_ttl_are_refused() -> None:
    env = {"MARK1_JWT_SECRET": TEST_SECRET}
    bad_role = CliRunner().invoke(cli, ["token", "--role", "ROOT"], env=env)
    bad_ttl = CliRunner().invoke(cli, ["token", "--ttl", "soon"], env=env)

    assert bad_role.exit_code != 0 and "role" in bad_role.stderr.lower()
    assert bad_ttl.exit_code != 0 and "duration" in bad_ttl.stderr.lower()
    assert bad_role.stdout == bad_ttl.stdout == ""
