"""A real uvicorn server on a free loopback port, in a thread (httpx's pattern)."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import uvicorn

from api.app import create_app
from api.auth.tokens import mint_token
from api.cli.server import uvicorn_config
from api.domain import Role
from api.runtime import Runtime
from api.settings import Settings

# One secret for every test process; servers and minted tokens agree on it.
TEST_SECRET = secrets.token_urlsafe(48)


def make_settings(database_url: str, data_dir: object, **overrides: Any) -> Settings:
    """Test settings (a bus channel of their own, fast gap checks) with ``overrides``
    applied and validated, as they would be from the environment.

    The background sweeper is off: it sweeps every tenant, so on the shared database a
    test's server would act on every earlier test's agents (and publish their events
    into its counters). Tests of the sweeper set ``sweep_interval`` on a
    ``fresh_database``.
    """
    fields: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "jwt_secret": TEST_SECRET,
        "broadcast_url": "memory://",
        "broadcast_channel": f"mark1_test_{secrets.token_hex(6)}",
        "gap_check_interval": 0.5,
        "sweep_interval": 86_400.0,
    }
    return Settings(_env_file=None, **{**fields, **overrides})  # type: ignore[call-arg]


def shared_settings(database_url: str, data_dir: object, **overrides: Any) -> Settings:
    """Settings for a server all of a module's tests share: they share its per-subject
    mutation buckets too, so those are wide enough never to refuse one of them."""
    wide = {"mutation_rate": 10_000, "mutation_burst": 10_000}
    return make_settings(database_url, data_dir, **{**wide, **overrides})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    settings: Settings
    runtime: Runtime
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(
        self,
        *roles: str,
        sub: str = "tester",
        tenant: str = "default",
        agent_id: str | None = None,
        ttl: timedelta = timedelta(hours=1),
    ) -> str:
        return mint(self.settings, *roles, sub=sub, tenant=tenant, agent_id=agent_id, ttl=ttl)


def mint(
    settings: Settings,
    *roles: str,
    sub: str = "tester",
    tenant: str = "default",
    agent_id: str | None = None,
    ttl: timedelta = timedelta(hours=1),
) -> str:
    return mint_token(
        settings.hs256_secret(),
        sub=sub,
        roles=[Role(r) for r in roles],
        tenant=tenant,
        agent_id=agent_id,
        ttl=ttl,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:
        pass


@contextmanager
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """Start the real app under uvicorn; stop it (and wait) on exit."""
    port = free_port()
    settings = settings.model_copy(update={"port": port, "host": "127.0.0.1"})
    app = create_app(settings)
    config = uvicorn_config(settings, app)
    config.log_level = "warning"
    server = _ThreadServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server failed to start")
        time.sleep(0.02)
    try:
        yield LiveServer(settings=settings, runtime=app.state.runtime, port=port)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
