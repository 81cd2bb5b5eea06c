"""Every error the SDK raises; server errors carry the ``extensions.code`` they came with.

    Mark1Error
     ├── Unauthenticated          UNAUTHENTICATED   no, bad or expired token (also close 4403)
     ├── Forbidden                FORBIDDEN         the token's role does not allow it
     ├── NotFound                 NOT_FOUND         no such id in the caller's tenant
     ├── BadUserInput             BAD_USER_INPUT    invalid arguments or document
     ├── Conflict                 CONFLICT          an illegal state transition; nothing written
     ├── RateLimited              RATE_LIMITED      .retry_after seconds (None when not given)
     ├── Unavailable              UNAVAILABLE       the database is unreachable; .retry_after
     ├── Internal                 INTERNAL          anything unexpected on the server
     ├── SlowConsumer             SLOW_CONSUMER     .last_event_id to resume from
     ├── EventsPruned             EVENTS_PRUNED     the cursor is older than the oldest event
     │                                              kept; .oldest_event_id
     ├── PersistedQueryNotFound   PERSISTED_QUERY_NOT_FOUND
     └── ClientError                                raised by the SDK itself, no server code
          ├── TransportError                        no answer; .request_sent says whether the
          │                                         server may have run it anyway
          └── ProtocolError                         an answer that is not GraphQL (.status)

``error_from`` turns one GraphQL error object into the matching exception; an
unknown code gives a plain ``Mark1Error`` whose ``code`` is that code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class Mark1Error(Exception):
    """Base of everything the SDK raises."""

    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        extensions: Mapping[str, Any] | None = None,
        errors: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.extensions: dict[str, Any] = dict(extensions or {})
        self.code: str | None = code or self.extensions.get("code") or self.default_code
        # Every error of the response, for callers that want more than the first.
        self.errors: list[Mapping[str, Any]] = list(errors)


class Unauthenticated(Mark1Error):
    default_code = "UNAUTHENTICATED"


class Forbidden(Mark1Error):
    default_code = "FORBIDDEN"


class NotFound(Mark1Error):
    default_code = "NOT_FOUND"


class BadUserInput(Mark1Error):
    default_code = "BAD_USER_INPUT"


class Conflict(Mark1Error):
    default_code = "CONFLICT"


class _RetryAfter(Mark1Error):
    """An error the server says is worth retrying, after ``retry_after`` seconds."""

    @property
    def retry_after(self) -> float | None:
        value = self.extensions.get("retryAfter")
        return float(value) if isinstance(value, int | float) else None


class RateLimited(_RetryAfter):
    default_code = "RATE_LIMITED"


class Unavailable(_RetryAfter):
    default_code = "UNAVAILABLE"


class Internal(Mark1Error):
    default_code = "INTERNAL"


class SlowConsumer(Mark1Error):
    default_code = "SLOW_CONSUMER"

    @property
    def last_event_id(self) -> str | None:
        value = self.extensions.get("lastEventId")
        return None if value is None else str(value)


class EventsPruned(Mark1Error):
    """Events after the cursor were pruned: rebuild what you derive from events (queries),
    then resume after ``oldest_event_id - 1``, or live."""

    default_code = "EVENTS_PRUNED"

    @property
    def oldest_event_id(self) -> str | None:
        value = self.extensions.get("oldestEventId")
        return None if value is None else str(value)


class PersistedQueryNotFound(Mark1Error):
    default_code = "PERSISTED_QUERY_NOT_FOUND"


class ClientError(Mark1Error):
    """Raised by the SDK itself: the server gave no GraphQL answer."""


class TransportError(ClientError):
    """The server could not be reached, or the connection broke before its answer."""

    def __init__(self, message: str, *, request_sent: bool) -> None:
        super().__init__(message)
        # False: provably never reached the server (refused, DNS, connect timeout).
        self.request_sent = request_sent


class ProtocolError(ClientError):
    """An answer that is not GraphQL: a wrong URL (HTTP 404), a proxy's error page, bad JSON,
    or a close code that means the client broke the protocol."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def is_transient(exc: Mark1Error) -> bool:
    """Worth waiting out and trying again: the server is restarting, unreachable or busy."""
    if isinstance(exc, ProtocolError):
        return exc.status in (502, 503, 504)
    return isinstance(exc, TransportError | Unavailable | RateLimited)


_BY_CODE: dict[str, type[Mark1Error]] = {
    cls.default_code: cls
    for cls in (
        Unauthenticated,
        Forbidden,
        NotFound,
        BadUserInput,
        Conflict,
        RateLimited,
        Unavailable,
        Internal,
        SlowConsumer,
        EventsPruned,
        PersistedQueryNotFound,
    )
    if cls.default_code is not None
}


def error_from(errors: Sequence[Mapping[str, Any]]) -> Mark1Error:
    """The exception for a GraphQL ``errors`` list (its first error decides the class)."""
    first: Mapping[str, Any] = errors[0] if errors else {}
    extensions = first.get("extensions") or {}
    code = extensions.get("code") if isinstance(extensions, Mapping) else None
    cls = _BY_CODE.get(code, Mark1Error) if isinstance(code, str) else Mark1Error
    message = str(first.get("message") or code or "unknown error")
    return cls(
        message,
        extensions=extensions if isinstance(extensions, Mapping) else None,
        errors=errors,
    )
