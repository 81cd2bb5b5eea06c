"""The one edge where exceptions become GraphQL errors with ``extensions.code``."""

from __future__ import annotations

import logging

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from api.errors import Mark1Error

log = logging.getLogger("mark1.errors")


class ErrorCodes(MaskErrors):
    """Our errors pass with their code; document errors become BAD_USER_INPUT;
    anything else is logged and masked as INTERNAL — no stack trace or SQL leaks."""

    def __init__(self) -> None:
        super().__init__(error_message="Internal server error")

    def _process_result(self, result: object) -> None:
        # strawberry's own checks a runtime Protocol with isinstance, which costs more
        # than the rest of the hook on every result of every subscription.
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [self._translate(error) for error in errors]

    def _translate(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, Mark1Error):
            error.extensions = dict(original.extensions)
            return error
        if original is None:
            code = (error.extensions or {}).get("code") or "BAD_USER_INPUT"
            error.extensions = {**(error.extensions or {}), "code": code}
            return error
        if _is_input_coercion(error, original):
            error.extensions = {**(error.extensions or {}), "code": "BAD_USER_INPUT"}
            return error
        log.error("unexpected error at %s", error.path, exc_info=original)
        masked = self.anonymise_error(error)
        masked.extensions = {"code": "INTERNAL"}
        return masked


def _is_input_coercion(error: GraphQLError, original: BaseException) -> bool:
    """Whether graphql-core refused a value the client sent, rather than one the server
    produced: both arrive as a bare GraphQLError wrapped in another.

    graphql-core 3.3 (``execution/values.py``) reports a variable it cannot coerce
    before any field runs, so without a ``path``; an argument it cannot coerce while
    executing a field is located at the argument's node in the document. A scalar's
    ``coerce_output_value`` (``Executor.complete_leaf_value``), refusing a value a
    resolver returned (a priority beyond 32 bits), knows nothing of the document: its
    error has no nodes of its own, and ``located_error`` gives it the field's path.
    """
    if not isinstance(original, GraphQLError) or original.original_error is not None:
        return False
    return error.path is None or bool(original.nodes)
