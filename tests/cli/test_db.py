"""``mark1 db current``, ``history`` and ``downgrade`` on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import api.db.models  # noqa: F401  (registers the tables)
from api.db.migrate import alembic_config
from tests.ops.serve import run_mark1
from tests.support import databases

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's own (these tests drop every table)."""
    with databases.database(request.param, tmp_path) as url:
        yield url


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


@pytest.mark.timeout(600)  # nine `mark1` starts, each seconds long under load
async def test_current_history_and_downgrade_move_the_database_between_revisions(
    database_url: str, tmp_path: Path
) -> None:
    def mark1(*args: str, status: int = 0) -> str:
        run = run_mark1(*args, cwd=tmp_path, MARK1_DATABASE_URL=database_url)
        assert run.returncode == status, (args, run.stdout, run.stderr)
        assert "Traceback" not in run.stderr, run.stderr
        return run.stdout + run.stderr

    assert mark1("db", "current").startswith("none (the database has no schema yet")
    mark1("db", "upgrade")
    assert mark1("db", "current") == f"{HEAD} (head)\n"
    assert await _tables(database_url) == set(SQLModel.metadata.tables) | {"alembic_version"}
    history = mark1("db", "history").splitlines()
    assert f"-> {HEAD} (head, current): " in history[0], history
    assert history[-1].startswith("<base> -> 0001") and "initial schema" in history[-1], history

    # An unknown revision is refused before anything changes.
    assert "Can't locate revision identified by 'nope'" in mark1(
        "db", "downgrade", "nope", status=2
    )
    assert await _tables(database_url) == set(SQLModel.metadata.tables) | {"alembic_version"}

    # "-1" is one step down (alembic's spelling), not an unknown option.
    assert mark1("db", "downgrade", "-1").startswith("database is at ")
    if HEAD == "0001":
        assert mark1("db", "current").startswith("none")
        assert await _tables(database_url) <= {"alembic_version"}

    mark1("db", "upgrade")
    assert mark1("db", "downgrade", "base") == "database is at base (no schema)\n"
    assert await _tables(database_url) <= {"alembic_version"}


def test_an_unreachable_database_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://nobody:hunter2-pg@127.0.0.1:1/none"
    run = run_mark1("db", "current", cwd=tmp_path, MARK1_DATABASE_URL=url)

    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith("mark1: database error: ")
    assert "Traceback" not in run.stderr and "hunter2-pg" not in run.stderr
