"""SQLite on the event loop's own thread: aiosqlite's interface without its thread.

aiosqlite runs every call (cursor, execute, fetch, close, commit) on a worker
thread and hands the result back through the event loop: about four thread
hand-offs per statement, each waiting for the GIL. A profile of
``reportProgress`` showed the main thread blocked in those hand-offs for more
CPU than the SQL itself (issue #8). Here SQLAlchemy's aiosqlite dialect gets
a connection whose calls run at once, on the loop's thread: a statement on a
local SQLite file takes microseconds, less than one hand-off.

The cost: a call that waits blocks the loop. SQLite is single-process here
(DESIGN), the engine keeps one connection, and WAL readers never wait for the
writer, so the only wait left is another connection's write lock (another
engine on the same file: a CLI command, a test). The busy timeout is short
for that reason; a transaction that still finds the database locked is
retried by the unit of work.

Written for aiosqlite 0.22 (``Connection._execute``, ``_connect``, ``_tx``,
``stop``): api/overrides.py states the range, pyproject.toml bounds it, and
tests/ops/test_dependency_bounds.py checks both.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import aiosqlite

BUSY_TIMEOUT = 0.05
"""Seconds a statement waits for another connection's write lock (it blocks the loop)."""


class _RunNow:
    """Stands in for aiosqlite's queue: SQLAlchemy's adapter puts (future, function)
    pairs on it directly (to set the isolation level); run them at once."""

    def put_nowait(self, item: tuple[Any, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection whose calls run on the caller's thread, without a worker."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _RunNow()  # type: ignore[assignment]

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    @property
    def driver(self) -> sqlite3.Connection:
        """The ``sqlite3`` connection itself, for statements run without any adapter
        (api/db/direct.py)."""
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        return self._connection

    def __await__(self) -> Generator[Any, None, InlineConnection]:
        return self._connect().__await__()  # no worker thread to start

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def inline_connector(path: str) -> Callable[[], InlineConnection]:
    """SQLAlchemy's ``async_creator`` for a SQLite file at ``path``."""
    # check_same_thread off: a test may close the engine from another thread; every
    # use is still serialised by the pool's single connection.
    connect = partial(sqlite3.connect, path, timeout=BUSY_TIMEOUT, check_same_thread=False)
    return lambda: InlineConnection(connect)
