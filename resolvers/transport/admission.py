"""What a socket message and its document must be before strawberry runs it.

Both protocol handlers (and the HTTP view, for subscriptions sent over HTTP)
check a message here first: its shape (``well_formed``), the operation its
document selects (``chosen_operation``) and the per-socket operation limit
(``over_limit``). A refusal becomes the protocol's own ``error`` message, so
strawberry never meets input that would make it drop the socket or answer
INTERNAL.
"""

from __future__ import annotations

from collections.abc import Mapping

from graphql import (
    GraphQLError,
    GraphQLFormattedError,
    OperationDefinitionNode,
    OperationType,
)

from api.errors import RateLimited
from resolvers.schema import parse_document


class DocumentRejected(Exception):
    """A document that cannot run at all; ``error`` is its GraphQL error (BAD_USER_INPUT)."""

    def __init__(self, message: str, error: GraphQLError | None = None) -> None:
        super().__init__(message)
        self.error: GraphQLFormattedError = GraphQLError(
            message,
            source=error.source if error else None,
            positions=error.positions if error else None,
            extensions={"code": "BAD_USER_INPUT"},
        ).formatted


def chosen_operation(query: object, operation_name: object, *, max_tokens: int) -> OperationType:
    """The type of the operation a message selects, per GraphQL's GetOperation.

    Checked before execution because strawberry lets a syntax error escape its
    parser-cache extension (the operation task dies and the client only sees
    ``complete``), masks a document without an operation as INTERNAL, and runs
    the first operation when several are given without ``operationName``.
    """
    if not isinstance(query, str):
        raise DocumentRejected("query must be a string")
    try:
        document = parse_document(query, max_tokens=max_tokens)
    except GraphQLError as error:
        raise DocumentRejected(error.message, error) from None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        if len(operations) != 1:
            raise DocumentRejected(
                "The document has no operation"
                if not operations
                else "Must provide operation name if query contains multiple operations."
            )
        return operations[0].operation
    chosen = [o for o in operations if o.name is not None and o.name.value == operation_name]
    if not chosen:
        raise DocumentRejected(f"Unknown operation named '{operation_name}'.")
    return chosen[0].operation


def _optional(value: object, kind: type) -> bool:
    return value is None or isinstance(value, kind)


def well_formed(message: object, *, legacy: bool) -> bool:
    """Whether a socket message has the shape its protocol requires.

    strawberry's handlers index into messages and raise TypeError/KeyError on
    other shapes (a dropped connection, no close frame); PROTOCOL.md wants 4400.
    """
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return False
    kind = message["type"]
    if kind in ("subscribe", "start", "complete", "stop") and not isinstance(
        message.get("id"), str
    ):
        return False
    if kind in ("subscribe", "start"):
        payload = message.get("payload")
        return (
            isinstance(payload, dict)
            and isinstance(payload.get("query"), str)
            and _optional(payload.get("variables"), dict)
            and _optional(payload.get("operationName"), str)
            and _optional(payload.get("extensions"), dict)
        )
    if kind in ("ping", "pong") and not legacy:
        return _optional(message.get("payload"), dict)
    return True


def over_limit(limit: int | None, id: object, active: Mapping[str, object]) -> bool:
    """A new operation id on a socket already running ``limit`` operations."""
    return limit is not None and isinstance(id, str) and id not in active and len(active) >= limit


def operation_limit_error(limit: int) -> GraphQLFormattedError:
    """The ``error`` payload for an operation over MAX_SUBSCRIPTIONS_PER_SOCKET."""
    error = RateLimited(f"Too many operations on this socket (at most {limit})")
    return GraphQLError(error.message, extensions={**error.extensions, "limit": limit}).formatted
