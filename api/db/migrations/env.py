"""Alembic environment: runs on the connection the caller hands over (see api/db/migrate.py)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import api.db.models  # noqa: F401  (registers the tables on SQLModel.metadata)

target_metadata = SQLModel.metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("use `mark1 db upgrade`: migrations run on a connection it provides")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run()
