"""The SQL a live server's engine runs, recorded as it runs: for tests that prove some
work costs the database nothing (or one query, not one per subscriber)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from tests.support.server import LiveServer


@contextmanager
def recorded(server: LiveServer, wanted: Callable[[str], bool]) -> Iterator[list[str]]:
    """The statements the server runs inside the block for which ``wanted`` holds."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if wanted(statement):
            seen.append(statement)

    engine = server.runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
