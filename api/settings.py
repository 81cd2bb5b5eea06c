"""Service settings, read from ``MARK1_*`` environment variables and a ``.env`` file."""

from __future__ import annotations

import os
import secrets
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from api.manifest import load_manifest

MIN_SECRET_BYTES = 32
_SECRET_FILE = "jwt_secret"
# Drivers the service runs on, and the bus backends api/events/backends.py builds.
DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")
BUS_SCHEMES = ("memory", "redis", "rediss", "postgres", "postgresql")
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


class Settings(BaseSettings):
    """Every tunable of the service; the defaults are safe for a laptop."""

    model_config = SettingsConfigDict(
        env_prefix="MARK1_",
        env_file=".env",
        extra="ignore",
        validate_default=True,
        # A refused value is never repeated in the error: it may be a secret.
        hide_input_in_errors=True,
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    data_dir: Path = Path(".mark1")
    agent_token_ttl: timedelta = timedelta(days=30)

    database_url: str | None = None
    broadcast_url: str = "memory://"
    broadcast_channel: str = Field(default="mark1_events", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # Where every process keeps what they share: token buckets, socket counts, counters
    # (api/cluster/). Unset: limits and systemMetrics are per process.
    redis_url: str | None = None
    cluster_heartbeat: float = Field(default=2.0, gt=0)
    auto_migrate: bool = True
    # While the database is away a request fails with UNAVAILABLE after at most about
    # these two (PostgreSQL): waiting for a free pooled connection, then making one.
    db_connect_timeout: float = Field(default=5.0, gt=0)
    db_pool_timeout: float = Field(default=5.0, gt=0)

    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway: float = Field(default=10.0, ge=0)

    ws_init_timeout: float = Field(default=5.0, gt=0)
    # Transport keepalive (uvicorn): a socket that leaves a ping unanswered for
    # ws_ping_timeout seconds is closed with 1011 (README: A client that stops reading).
    ws_ping_interval: float = Field(default=20.0, gt=0)
    ws_ping_timeout: float = Field(default=20.0, gt=0)
    # A comment line (SSE) or an empty part (multipart) this often on every HTTP
    # subscription stream, so proxies that cut idle responses keep it open.
    http_stream_keepalive: float = Field(default=12.0, gt=0, le=300)
    max_query_depth: int = Field(default=12, ge=1)
    max_aliases: int = Field(default=30, ge=1)
    max_tokens: int = Field(default=2000, ge=1)
    max_message_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_subscriptions_per_socket: int = Field(default=100, ge=1)
    max_sockets_per_subject: int = Field(default=100, ge=1)
    mutation_rate: float = Field(default=50.0, gt=0)
    mutation_burst: int = Field(default=100, ge=1)
    subscriber_buffer: int = Field(default=1000, ge=1)
    allowed_origins: Annotated[list[str], NoDecode] = []
    cors_origins: Annotated[list[str], NoDecode] = []
    introspection: bool = True
    metrics_token: SecretStr | None = None

    heartbeat_timeout: float = Field(default=30.0, gt=0)
    offline_after: float = Field(default=120.0, gt=0)
    sweep_interval: float = Field(default=2.0, gt=0)
    gap_check_interval: float = Field(default=2.0, gt=0)
    # Days of events the outbox keeps (api/jobs/retention.py); None keeps them all.
    event_retention: float | None = Field(default=None, gt=0)
    # SIGTERM: readiness 503 at once, sockets closed with 1012 spread over this, then exit.
    drain_seconds: float = Field(default=10.0, gt=0)

    frontend_dir: Path = Path(__file__).resolve().parent.parent / "frontend-example" / "dist"
    # A persisted-documents manifest (api/manifest.py): when set, only its documents run.
    trusted_documents: Path | None = None

    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    @field_validator("allowed_origins", "cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """Accept a comma-separated list, as environment variables carry it."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _refuse_short_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_SECRET_BYTES} bytes long; "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return value

    # The checks below name what is wrong but never repeat the value: URLs carry
    # passwords, and a key pasted into the wrong variable may be a private one.

    @field_validator("jwt_public_key")
    @classmethod
    def _load_public_key(cls, value: str | None) -> str | None:
        if value is not None:
            from api.auth.keys import PemKey

            PemKey(value)  # its ValueError says what is wrong with the key
        return value

    @field_validator("jwt_jwks_url")
    @classmethod
    def _http_jwks(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is not None and value.partition("://")[0] not in DATABASE_SCHEMES:
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
                f"(got scheme {_scheme(value)!r})"
            )
        return value

    @field_validator("broadcast_url")
    @classmethod
    def _known_bus(cls, value: str) -> str:
        if value.partition("://")[0] not in BUS_SCHEMES:
            raise ValueError(
                f"unsupported scheme {_scheme(value)!r}: use memory://, redis://host:6379/0 "
                "(or rediss://) or postgres://user@host/db"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is not None and value.partition("://")[0] not in ("redis", "rediss"):
            raise ValueError(
                f"unsupported scheme {_scheme(value)!r}: use redis://host:6379/0 (or rediss://)"
            )
        return value

    @field_validator("trusted_documents")
    @classmethod
    def _readable_manifest(cls, value: Path | None) -> Path | None:
        if value is not None:
            load_manifest(value)  # its ValueError says what is wrong with the file
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().upper()
            if value not in LOG_LEVELS:
                raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Settings that are fine alone but contradict each other."""
        if self.jwt_public_key and self.jwt_jwks_url:
            raise ValueError(
                "MARK1_JWT_PUBLIC_KEY and MARK1_JWT_JWKS_URL are both set: "
                "set one of them, not both"
            )
        if self.offline_after <= self.heartbeat_timeout:
            raise ValueError(
                f"MARK1_OFFLINE_AFTER ({self.offline_after:g} s) must be greater than "
                f"MARK1_HEARTBEAT_TIMEOUT ({self.heartbeat_timeout:g} s): an agent turns "
                "UNHEALTHY first, OFFLINE later"
            )
        if self.workers > 1 and self.broadcast_url.startswith("memory"):
            raise ValueError(
                "MARK1_WORKERS > 1 needs a shared bus: "
                "set MARK1_BROADCAST_URL to redis:// or postgres://"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        """The configured database, or the embedded SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'mark1.db'}"

    def hs256_secret(self) -> str:
        """The HS256 secret: configured, or generated once and kept in the data directory.

        Never a built-in default, so two installs never share a signing key.
        """
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.data_dir / _SECRET_FILE
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            # O_EXCL: of several processes starting at once, exactly one writes it.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _read_secret(path)
        secret = secrets.token_urlsafe(48)
        with os.fdopen(fd, "w") as out:
            out.write(secret)
        return secret


def _scheme(url: str) -> str:
    """The scheme of a URL, or a placeholder: never the rest, which may hold a password."""
    scheme, sep, _ = url.partition("://")
    return scheme if sep and scheme.replace("+", "").isalnum() else "(none)"


def _read_secret(path: Path) -> str:
    """The generated secret, waiting briefly while its creator is still writing it."""
    for _ in range(200):
        if secret := path.read_text().strip():
            return secret
        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty: delete it, or set MARK1_JWT_SECRET")
