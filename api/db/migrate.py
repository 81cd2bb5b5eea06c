"""Bring a database to the newest schema; safe when several processes start at once."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from api.db.engine import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x4D41524B31  # "MARK1": one advisory lock for schema upgrades


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Serialise concurrent starters; the loser finds the schema current.
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
        connection.commit()
    try:
        command.upgrade(alembic_config(connection), "head")
    finally:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
            connection.commit()


async def upgrade(db: Database) -> None:
    """Run every pending migration."""
    if db.url.startswith("sqlite"):
        path = db.url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    async with db.engine.connect() as conn:
        await conn.run_sync(_upgrade)
        await conn.commit()
