"""The dashboard against a server in trusted-documents mode, in a real browser.

The server runs with ``MARK1_TRUSTED_DOCUMENTS`` pointing at the manifest the
frontend build ships (``frontend-example/dist/persisted-documents.json``), so
only the dashboard's own documents run there. Those are all queries and
subscriptions, so the data the page shows is written beforehand through the
service layer into the server's database (nothing else could write it: a
mutation is not in the manifest).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from api.app import build_runtime
from api.auth.principal import Principal
from api.clock import utcnow
from api.db.migrate import upgrade
from api.domain import Role
from api.settings import Settings
from tests.e2e.support import MANIFEST, Server, free_port, run_scenario, server_env

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


async def _seed(settings: Settings) -> tuple[str, str]:
    """A task and an agent in the default tenant; their ids."""
    runtime = build_runtime(settings)
    await upgrade(runtime.db)
    await runtime.bus.start()
    try:
        operator = Principal(
            subject="alice",
            roles=frozenset({Role.OPERATOR}),
            tenant="default",
            agent_id=None,
            expires_at=utcnow() + timedelta(minutes=5),
        )
        task = await runtime.tasks.create(
            operator, title="seeded", capability=None, priority=0, input=None, max_attempts=3
        )
        agent, _ = await runtime.agents.register(
            operator, name="seeded-agent", capabilities=["seeded"], metadata=None
        )
        return task.id, agent.id
    finally:
        await runtime.bus.stop()
        await runtime.db.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str, str]]:
    base = tmp_path_factory.mktemp("mark1-trusted")
    env = server_env(base / "data", MARK1_TRUSTED_DOCUMENTS=str(MANIFEST))
    seeding = Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=base / "data", jwt_secret=env["MARK1_JWT_SECRET"]
    )
    task_id, agent_id = asyncio.run(_seed(seeding))
    started = Server(free_port(), env, base / "server.log")
    started.start()
    try:
        yield started, task_id, agent_id
    finally:
        started.stop()


def test_dashboard_runs_on_its_manifest_and_the_server_refuses_other_documents(
    server: tuple[Server, str, str], tmp_path: Path
) -> None:
    served, task_id, agent_id = server
    run_scenario(
        "dashboard-trusted.mjs",
        served,
        served.token("OPERATOR"),
        tmp_path,
        MARK1_SEED_TASK=task_id,
        MARK1_SEED_AGENT=agent_id,
    )
