"""Every configuration mistake stops ``mark1 serve`` before it starts: one line naming
the setting, exit code 2, no traceback, and never the refused value (it may be a secret)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.ops.serve import run_mark1
from tests.security.support import ec_key, public_pem, rsa_key

PUBLIC_PEM = public_pem(rsa_key())
PRIVATE_PEM = (
    ec_key()
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    .decode()
)
NOT_A_KEY = "-----BEGIN PUBLIC KEY-----\nbm90LWEta2V5\n-----END PUBLIC KEY-----"


@dataclass(frozen=True)
class Mistake:
    settings: dict[str, str]
    names: tuple[str, ...]  # the settings the message must name
    secret: str  # what must not appear anywhere in the output


MISTAKES = {
    "public key and JWKS URL both set": Mistake(
        {
            "MARK1_JWT_PUBLIC_KEY": PUBLIC_PEM,
            "MARK1_JWT_JWKS_URL": "https://idp.example/.well-known/jwks.json?key=jwks-secret-1",
        },
        ("MARK1_JWT_PUBLIC_KEY", "MARK1_JWT_JWKS_URL"),
        "jwks-secret-1",
    ),
    "a PEM that is not a key": Mistake(
        {"MARK1_JWT_PUBLIC_KEY": NOT_A_KEY},
        ("MARK1_JWT_PUBLIC_KEY",),
        "bm90LWEta2V5",
    ),
    "a private key where the public key goes": Mistake(
        {"MARK1_JWT_PUBLIC_KEY": PRIVATE_PEM},
        ("MARK1_JWT_PUBLIC_KEY",),
        PRIVATE_PEM.splitlines()[1],
    ),
    "an unknown bus URL scheme": Mistake(
        {"MARK1_BROADCAST_URL": "kafka://ops:hunter2-bus@bus:9092/events"},
        ("MARK1_BROADCAST_URL",),
        "hunter2-bus",
    ),
    "a Redis URL that is not redis://": Mistake(
        {"MARK1_REDIS_URL": "memcached://ops:hunter2-redis@cache:11211"},
        ("MARK1_REDIS_URL",),
        "hunter2-redis",
    ),
    "OFFLINE_AFTER below HEARTBEAT_TIMEOUT": Mistake(
        {"MARK1_HEARTBEAT_TIMEOUT": "30", "MARK1_OFFLINE_AFTER": "10"},
        ("MARK1_OFFLINE_AFTER", "MARK1_HEARTBEAT_TIMEOUT"),
        "no secret here",
    ),
    "a JWT secret under 32 bytes": Mistake(
        {"MARK1_JWT_SECRET": "thirty-one-bytes-secret-value-x"},
        ("MARK1_JWT_SECRET",),
        "thirty-one-bytes-secret-value-x",
    ),
    "a port that is not a number": Mistake(
        {"MARK1_PORT": "eighty-eighty"},
        ("MARK1_PORT",),
        "eighty-eighty",
    ),
    "an unknown database driver": Mistake(
        {"MARK1_DATABASE_URL": "mysql://ops:hunter2-db@db/mark1"},
        ("MARK1_DATABASE_URL",),
        "hunter2-db",
    ),
    "a JWKS URL that is not http(s)": Mistake(
        {"MARK1_JWT_JWKS_URL": "file:///etc/keys-secret-path"},
        ("MARK1_JWT_JWKS_URL",),
        "keys-secret-path",
    ),
    "an unknown log format": Mistake(
        {"MARK1_LOG_FORMAT": "xml-format"}, ("MARK1_LOG_FORMAT",), "xml-format"
    ),
    "an unknown log level": Mistake(
        {"MARK1_LOG_LEVEL": "chatty-level"}, ("MARK1_LOG_LEVEL",), "chatty-level"
    ),
    "several workers on the in-memory bus": Mistake(
        {"MARK1_WORKERS": "2"}, ("MARK1_WORKERS", "MARK1_BROADCAST_URL"), "no secret here"
    ),
    "a trusted-documents manifest that does not exist": Mistake(
        {"MARK1_TRUSTED_DOCUMENTS": "/nonexistent/persisted-documents.json"},
        ("MARK1_TRUSTED_DOCUMENTS", "No such file"),
        "no secret here",
    ),
}


@pytest.mark.parametrize("mistake", MISTAKES.values(), ids=MISTAKES.keys())
def test_serve_refuses_a_configuration_mistake_with_one_clear_line(
    mistake: Mistake, tmp_path: Path
) -> None:
    run = run_mark1("serve", cwd=tmp_path, MARK1_DATA_DIR=str(tmp_path), **mistake.settings)
    output = run.stdout + run.stderr

    assert run.returncode == 2, output
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("mark1: configuration error: "), output
    for name in mistake.names:
        assert name in lines[0], output
    assert "Traceback" not in output and 'File "' not in output, output
    assert mistake.secret not in output, output
    assert "Uvicorn running" not in output  # nothing started
    assert not (tmp_path / "mark1.db").exists()


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ("{not json", "is not JSON"),
        ('["query { me { subject } }"]', "is not a persisted-documents manifest"),
        ('{"sha256:abc": 42}', "is not a persisted-documents manifest"),
        ("{}", "lists no documents"),
    ],
    ids=["not JSON", "a list", "a value that is no document", "empty"],
)
def test_serve_refuses_a_manifest_that_is_not_one(
    content: str, complaint: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "persisted-documents.json"
    manifest.write_text(content)
    run = run_mark1(
        "serve", cwd=tmp_path, MARK1_DATA_DIR=str(tmp_path), MARK1_TRUSTED_DOCUMENTS=str(manifest)
    )

    assert run.returncode == 2, run.stderr
    [line] = run.stderr.strip().splitlines()
    assert line.startswith("mark1: configuration error: MARK1_TRUSTED_DOCUMENTS: "), line
    assert complaint in line, line
    assert "Traceback" not in run.stderr and "Uvicorn running" not in run.stdout + run.stderr


def test_several_mistakes_are_all_named_at_once(tmp_path: Path) -> None:
    run = run_mark1(
        "serve",
        cwd=tmp_path,
        MARK1_DATA_DIR=str(tmp_path),
        MARK1_PORT="eighty",
        MARK1_JWT_SECRET="short-secret",
        MARK1_BROADCAST_URL="nats://bus",
    )

    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert [line.split(": ")[2] for line in lines] == [
        "MARK1_PORT",
        "MARK1_BROADCAST_URL",
        "MARK1_JWT_SECRET",
    ], run.stderr
    assert "short-secret" not in run.stderr


def test_a_command_line_option_is_checked_like_its_setting(tmp_path: Path) -> None:
    run = run_mark1("serve", "--port", "70000", cwd=tmp_path, MARK1_DATA_DIR=str(tmp_path))

    assert run.returncode == 2, run.stderr
    assert "MARK1_PORT" in run.stderr and "65535" in run.stderr
    assert "Traceback" not in run.stderr


def test_other_commands_check_the_configuration_too(tmp_path: Path) -> None:
    for args in (["token"], ["db", "upgrade"], ["demo"]):
        run = run_mark1(*args, cwd=tmp_path, MARK1_OFFLINE_AFTER="1")
        assert run.returncode == 2, (args, run.stderr)
        assert "MARK1_OFFLINE_AFTER" in run.stderr and "Traceback" not in run.stderr


def test_a_refusal_is_a_json_line_when_json_logs_were_asked_for(tmp_path: Path) -> None:
    secret = "json-short-secret"
    run = run_mark1("serve", cwd=tmp_path, MARK1_LOG_FORMAT="json", MARK1_JWT_SECRET=secret)

    assert run.returncode == 2, run.stderr
    [line] = run.stderr.strip().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["message"].startswith("MARK1_JWT_SECRET: ")
    assert secret not in run.stderr


def test_a_mistyped_setting_is_named_with_what_was_meant(tmp_path: Path) -> None:
    run = run_mark1(
        "token",
        cwd=tmp_path,
        MARK1_DATA_DIR=str(tmp_path),
        MARK1_LOG_FORMT="json",
        MARK1_TOKEN="not a setting, but mark1 watch reads it",
    )

    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines() == [
        "mark1: warning: MARK1_LOG_FORMT is not a setting and is ignored; "
        "did you mean MARK1_LOG_FORMAT?"
    ]
