"""A database outage as the driver shows it, and the one place it becomes UNAVAILABLE.

The database is unreachable when a connection cannot be made (refused, reset,
the connect timeout), the pool has none to give within its timeout, or the
server dropped the connection (SQLAlchemy then marks it invalidated). Only
work that provably committed nothing may say UNAVAILABLE: clients retry it,
mutations included (the SDK does). A connection lost during the commit itself
leaves the outcome unknown and stays INTERNAL (api/services/unit.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from api.errors import Unavailable

# SQLSTATE class 08 (connection exception); 57P01-03 (the server is shutting down,
# crashed or starting: "operator intervention"); 53300 (too many connections).
_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached, rather than refused the work."""
    if isinstance(exc, OSError | PoolTimeout):  # OSError: refused, reset, connect timeout
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None)
        return isinstance(sqlstate, str) and sqlstate.startswith(_SQLSTATES)
    return False


@contextmanager
def unavailable_when_unreachable() -> Iterator[None]:
    """Turn an outage inside the block into ``Unavailable``; anything else passes as is.

    Use it only around work that commits nothing inside the block.
    """
    try:
        yield
    except Exception as exc:
        if unreachable(exc):
            raise Unavailable() from exc
        raise
