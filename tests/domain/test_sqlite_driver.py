"""SQLite runs on the event loop's thread (api/db/sqlite.py), with aiosqlite's interface."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from api.db.engine import Database


def _workers() -> list[str]:
    return [t.name for t in threading.enumerate() if "connection_worker" in t.name]


async def test_statements_run_without_a_worker_thread(tmp_path: Path) -> None:
    before = _workers()
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}")
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
            await conn.execute(text("INSERT INTO t (v) VALUES ('a'), ('b')"))
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT v FROM t ORDER BY id"))).all()
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            assert _workers() == before
    finally:
        await db.close()
    assert [r[0] for r in rows] == ["a", "b"]
    assert mode == "wal"


async def test_a_failed_statement_rolls_back_and_the_connection_goes_on(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}")
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        try:
            async with db.engine.begin() as conn:
                await conn.execute(text("INSERT INTO t (id) VALUES (1)"))
                await conn.execute(text("INSERT INTO t (id) VALUES (1)"))
        except Exception as exc:
            assert "UNIQUE" in str(exc)
        else:
            raise AssertionError("the duplicate key was accepted")
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
    finally:
        await db.close()
