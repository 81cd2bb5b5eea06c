"""Move a database between schema revisions; safe when several processes start at once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from api.db.engine import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x4D41524B31  # "MARK1": one advisory lock for schema upgrades


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@dataclass(frozen=True)
class Revision:
    """One migration script, as ``mark1 db history`` lists it."""

    id: str
    down: str | None
    title: str
    is_head: bool


def _locked(migrate: Callable[[Config], None]) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Serialise concurrent starters; the loser finds the schema current.
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
            connection.commit()
        try:
            migrate(alembic_config(connection))
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                connection.commit()

    return run


async def _migrate(db: Database, migrate: Callable[[Config], None]) -> None:
    if db.url.startswith("sqlite"):
        path = db.url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    async with db.engine.connect() as conn:
        await conn.run_sync(_locked(migrate))
        await conn.commit()


async def upgrade(db: Database) -> None:
    """Run every pending migration."""
    await _migrate(db, lambda config: command.upgrade(config, "head"))


async def downgrade(db: Database, revision: str) -> None:
    """Undo migrations down to ``revision`` (an id, ``-1`` for one step, or ``base``).

    An unknown revision raises alembic's ``CommandError`` before anything changes.
    """
    await _migrate(db, lambda config: command.downgrade(config, revision))


async def current(db: Database) -> tuple[str, ...]:
    """The revisions the database is at; empty when it has no schema yet."""
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: tuple(MigrationContext.configure(sync).get_current_heads())
        )


def history() -> list[Revision]:
    """Every migration, newest first."""
    scripts = ScriptDirectory.from_config(alembic_config())
    heads = set(scripts.get_heads())
    return [
        Revision(
            id=script.revision,
            down=script.down_revision if isinstance(script.down_revision, str) else None,
            title=(script.doc or "").strip(),
            is_head=script.revision in heads,
        )
        for script in scripts.walk_revisions()
    ]
