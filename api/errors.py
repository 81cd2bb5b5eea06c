"""The one error hierarchy of the service; each error carries its ``extensions.code``.

    Mark1Error
     ├── Unauthenticated   UNAUTHENTICATED  no or bad token
     ├── Forbidden         FORBIDDEN        authenticated, but the role does not allow it
     ├── NotFound          NOT_FOUND        no such id in the caller's tenant
     ├── BadUserInput      BAD_USER_INPUT   invalid arguments or documents
     ├── Conflict          CONFLICT         an illegal state transition
     ├── RateLimited       RATE_LIMITED     too many mutations or subscriptions
     ├── SlowConsumer      SLOW_CONSUMER    a subscription fell too far behind
     ├── PersistedQueryNotFound   PERSISTED_QUERY_NOT_FOUND    an unknown hash: send the query too
     ├── PersistedQueryNotAllowed PERSISTED_QUERY_NOT_ALLOWED  not a trusted document
     ├── EventsPruned      EVENTS_PRUNED    a cursor older than the oldest event kept
     ├── Unavailable       UNAVAILABLE      the database is unreachable; nothing was written
     └── Internal          INTERNAL         anything unexpected (message masked)

Translated to GraphQL errors at one edge: ``resolvers/errors.py``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class Mark1Error(Exception):
    """Base of every error a client may see."""

    code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions: dict[str, Any] = {"code": self.code, **extensions}


class Unauthenticated(Mark1Error):
    code = "UNAUTHENTICATED"


class Forbidden(Mark1Error):
    code = "FORBIDDEN"


class NotFound(Mark1Error):
    code = "NOT_FOUND"

    def __init__(self, kind: str, id: str) -> None:
        super().__init__(f"{kind} {id!r} not found")


class BadUserInput(Mark1Error):
    code = "BAD_USER_INPUT"


class Conflict(Mark1Error):
    code = "CONFLICT"


class RateLimited(Mark1Error):
    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        if retry_after is None:
            super().__init__(message)
        else:
            super().__init__(message, retryAfter=round(retry_after, 3))


class SlowConsumer(Mark1Error):
    code = "SLOW_CONSUMER"

    def __init__(self, last_event_id: int | None) -> None:
        super().__init__(
            "Subscriber fell too far behind; resume with after: lastEventId",
            lastEventId=None if last_event_id is None else str(last_event_id),
        )


class PersistedQueryNotFound(Mark1Error):
    """APQ: the hash names no document this process knows; the client resends it with its text.

    The message is the one Apollo's and urql's persisted-query links look for.
    """

    code = "PERSISTED_QUERY_NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("PersistedQueryNotFound")


class PersistedQueryNotAllowed(Mark1Error):
    """Trusted-documents mode: the request names no document of the manifest."""

    code = "PERSISTED_QUERY_NOT_ALLOWED"


class EventsPruned(Mark1Error):
    code = "EVENTS_PRUNED"

    def __init__(self, after: int, oldest: int) -> None:
        # Replaying from the oldest kept event would skip the pruned ones silently:
        # the client must rebuild what it derives from events, then resume.
        super().__init__(
            f"Events after {after} were pruned; the oldest kept is {oldest}: reload the "
            "state you follow, then resume with after: oldestEventId - 1 (or live)",
            oldestEventId=str(oldest),
        )


class Unavailable(Mark1Error):
    """The database cannot be reached: nothing was written, so retrying is safe."""

    code = "UNAVAILABLE"
    RETRY_AFTER: ClassVar[float] = 2.0

    def __init__(
        self,
        message: str = "The database is unreachable; retry later",
        retry_after: float = RETRY_AFTER,
    ) -> None:
        super().__init__(message, retryAfter=round(retry_after, 3))


class Internal(Mark1Error):
    code = "INTERNAL"
