"""``mark1 db upgrade`` brings an empty database up to the models' schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import asyncpg
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import api.db.models  # noqa: F401  (registers the tables)
from api.db.migrate import alembic_config
from tests.support.databases import PgDatabase

MARK1 = str(Path(sys.executable).parent / "mark1")


def _upgrade(url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARK1_")}
    return subprocess.run(
        [MARK1, "db", "upgrade"],
        cwd=cwd,
        env={**env, "MARK1_DATABASE_URL": url, "MARK1_DATA_DIR": str(cwd)},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_db_upgrade_creates_every_table_on_empty_postgres(
    pg_database: PgDatabase, tmp_path: Path
) -> None:
    run = _upgrade(pg_database.url, tmp_path)

    assert run.returncode == 0, run.stderr
    assert "up to date" in run.stdout
    engine = create_async_engine(pg_database.url)
    try:
        async with engine.connect() as conn:
            tables, columns = await conn.run_sync(
                lambda sync: (
                    set(inspect(sync).get_table_names()),
                    {
                        t: {c["name"] for c in inspect(sync).get_columns(t)}
                        for t in inspect(sync).get_table_names()
                    },
                )
            )
    finally:
        await engine.dispose()
    expected = {
        name: {c.name for c in table.columns} for name, table in SQLModel.metadata.tables.items()
    }
    assert tables == set(expected) | {"alembic_version"}
    for name, cols in expected.items():
        assert columns[name] == cols, name
    pg = await asyncpg.connect(pg_database.url.replace("postgresql+asyncpg", "postgresql"))
    try:
        versions = await pg.fetch("SELECT version_num FROM alembic_version")
    finally:
        await pg.close()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert [v["version_num"] for v in versions] == [head]
