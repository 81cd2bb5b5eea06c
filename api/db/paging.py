"""Keyset pagination with opaque cursors: stable while rows are inserted between pages."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson
from sqlalchemy import ColumnElement, and_, or_

from api.errors import BadUserInput

T = TypeVar("T")

MAX_PAGE = 500


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows, each with its cursor, and what the client needs to go on."""

    items: list[tuple[str, T]]
    has_next_page: bool
    total_count: int | None  # None when the caller did not ask (COUNT is not free)

    @property
    def end_cursor(self) -> str | None:
        return self.items[-1][0] if self.items else None


def check_first(first: int) -> int:
    if first < 0 or first > MAX_PAGE:
        raise BadUserInput(f"first must be between 0 and {MAX_PAGE}")
    return first


def encode_cursor(created_at: datetime, id: str) -> str:
    raw = orjson.dumps([created_at.isoformat(), id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor points after; anything else is BAD_USER_INPUT."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        ts, id = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(ts, str) or not isinstance(id, str):
            raise TypeError("cursor parts must be strings")
        created_at = datetime.fromisoformat(ts)
        # Only our own cursors are valid: an aware UTC time (a naive one, or one out
        # of range once in UTC, would otherwise fail deep in the database driver).
        if created_at.tzinfo is None:
            raise ValueError("cursor time has no zone")
        return created_at.astimezone(UTC), id
    except (ValueError, TypeError, OverflowError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise BadUserInput(f"invalid cursor {cursor[:100]!r}") from exc


def after_clause(
    created_col: Any, id_col: Any, cursor: str, *, descending: bool
) -> ColumnElement[bool]:
    """Rows strictly after the cursor in (created_at, id) order."""
    created_at, id = decode_cursor(cursor)
    if descending:
        return or_(created_col < created_at, and_(created_col == created_at, id_col < id))
    return or_(created_col > created_at, and_(created_col == created_at, id_col > id))


def make_page(rows: Sequence[T], first: int, cursor_of: Any, total: int | None) -> Page[T]:
    """Build a page from up to first + 1 fetched rows."""
    visible = list(rows[:first])
    return Page(
        items=[(cursor_of(row), row) for row in visible],
        has_next_page=len(rows) > first,
        total_count=total,
    )
