"""The write path's hot statements, run straight on SQLite's driver.

A profile of ``reportProgress`` on SQLite (issue #8) put SQLAlchemy's
per-statement execution layer (a greenlet per call, the execution context,
parameter and result processing through generic machinery, the result
object) at about as much CPU as SQLite itself. A ``Statement`` here wraps one
Core statement built once at import: on SQLite, whose driver runs on the
event loop's own thread (api/db/sqlite.py), it is compiled once with the
engine's dialect and run with ``sqlite3`` directly, its parameters and rows
converted by the very bind and result processors SQLAlchemy would use
(so what is stored and read back is the same); on PostgreSQL it runs through
the ``AsyncConnection`` as before, where asyncpg's own protocol and the
round trips dominate instead.

It runs on the transaction's connection, inside the transaction the session
began, so ORM statements before or after it see its writes. A driver error
is raised as SQLAlchemy would raise it (``DBAPIError.instance``), so the unit
of work's retry of "database is locked" and the outage mapping are unchanged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement, ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler

from api.db.sqlite import InlineConnection

Row = Mapping[str, Any]
_Processor = Callable[[Any], Any] | None
_REQUIRED = object()
"""A parameter the caller must give (a ``bindparam`` without a value)."""


@dataclass(frozen=True, slots=True)
class _Compiled:
    """One statement as SQLite's driver takes it."""

    sql: str
    # Each positional parameter: its name, the value compiled into the statement
    # (a literal such as ``status = 'RUNNING'``) and its bind processor.
    binds: tuple[tuple[str, Any, _Processor], ...]
    columns: tuple[str, ...]
    results: tuple[_Processor, ...]

    def parameters(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        out = []
        for name, literal, process in self.binds:
            value = params[name] if literal is _REQUIRED else params.get(name, literal)
            out.append(value if process is None else process(value))
        return tuple(out)

    def row(self, values: Sequence[Any]) -> dict[str, Any]:
        return {
            name: value if process is None else process(value)
            for name, value, process in zip(self.columns, values, self.results, strict=True)
        }


class Statement:
    """A Core statement run on SQLite's driver directly, elsewhere through SQLAlchemy.

    ``column_keys``: the columns an INSERT without ``values()`` writes.
    """

    def __init__(self, statement: Any, *, column_keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self._column_keys = list(column_keys) if column_keys is not None else None
        self._compiled: _Compiled | None = None

    async def first(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Row | None:
        """The first row returned, as a mapping of column names; None when none is."""
        driver = _sqlite_of(conn)
        if driver is None:
            row = (await conn.execute(self.statement, dict(params))).first()
            return None if row is None else dict(row._mapping)
        compiled = self._compile(conn.dialect)
        try:
            found = driver.execute(compiled.sql, compiled.parameters(params)).fetchone()
        except sqlite3.Error as error:
            raise _as_sqlalchemy(error, compiled.sql) from error
        return None if found is None else compiled.row(found)

    async def scalar(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row; None when no row is returned."""
        row = await self.first(conn, params)
        return None if row is None else next(iter(row.values()))

    async def execute_many(self, conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per parameter set (an INSERT of several rows); nothing is returned."""
        driver = _sqlite_of(conn)
        if driver is None:
            await conn.execute(self.statement, [dict(r) for r in rows])
            return
        compiled = self._compile(conn.dialect)
        try:
            driver.executemany(compiled.sql, [compiled.parameters(r) for r in rows])
        except sqlite3.Error as error:
            raise _as_sqlalchemy(error, compiled.sql) from error

    def _compile(self, dialect: Dialect) -> _Compiled:
        # Once, with the first SQLite engine's dialect: every engine is made by
        # api/db/engine.py with the same settings (its JSON serialiser included).
        if self._compiled is None:
            self._compiled = _compile(self.statement, dialect, self._column_keys)
        return self._compiled


def _compile(statement: Any, dialect: Dialect, column_keys: list[str] | None) -> _Compiled:
    element = cast(ClauseElement, statement)
    compiled = cast(SQLCompiler, element.compile(dialect=dialect, column_keys=column_keys))
    binds = []
    for name in compiled.positiontup or ():
        bind = compiled.binds[name]
        literal = _REQUIRED if bind.required else bind.effective_value
        binds.append((name, literal, bind.type.dialect_impl(dialect).bind_processor(dialect)))
    columns: list[ColumnElement[Any]] = list(getattr(statement, "exported_columns", ()))
    return _Compiled(
        sql=compiled.string,
        binds=tuple(binds),
        columns=tuple(str(c.key) for c in columns),
        results=tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        ),
    )


def _sqlite_of(conn: AsyncConnection) -> sqlite3.Connection | None:
    """The ``sqlite3`` connection under ``conn`` when it runs on this thread; else None."""
    if conn.dialect.name != "sqlite":
        return None
    inline = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]
    if not isinstance(inline, InlineConnection):
        return None
    return inline.driver


def _as_sqlalchemy(error: sqlite3.Error, sql: str) -> exc.StatementError:
    """The error SQLAlchemy raises for this driver error (``OperationalError`` for
    "database is locked", and so on)."""
    return exc.DBAPIError.instance(sql, None, error, sqlite3.Error)
