"""The GraphQL request of an HTTP subscription stream, and how such a request is refused.

``read_params`` is the one place SSE and multipart read a document (the query
string of a GET, the JSON body of a POST), and resolves it through the
persisted documents (persisted.py: APQ hash, ``documentId``, trusted-documents
mode) as every other transport does. A request that cannot be served at all is
a ``StreamRefused``: an HTTP status and one error with its ``extensions.code``;
a document that may not run travels in ``GraphQLParams.refused``, for the
operation to end with (SSE) or for GraphQL over HTTP to answer (multipart).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import GraphQLFormattedError, OperationType
from starlette.requests import Request
from starlette.responses import Response

from api.errors import Mark1Error
from resolvers.transport.admission import DocumentRejected, chosen_operation
from resolvers.transport.persisted import PersistedDocuments


@dataclass(frozen=True)
class GraphQLParams:
    """One GraphQL request as it arrived; ``query`` is checked when the operation runs."""

    query: object
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None
    refused: Mark1Error | None = None  # a persisted document that may not run


class StreamRefused(Exception):
    """A request answered with an HTTP status and one error instead of a stream."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error: GraphQLFormattedError = {"message": message, "extensions": {"code": code}}
        self.headers = dict(headers or {})

    @classmethod
    def of(cls, status: int, error: Mark1Error, **headers: str) -> StreamRefused:
        return cls(status, error.code, error.message, headers)

    def response(self) -> Response:
        return Response(
            orjson.dumps({"errors": [self.error]}),
            status_code=self.status,
            media_type="application/json",
            headers=self.headers,
        )


def _json(text: str | bytes, what: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise StreamRefused(400, "BAD_USER_INPUT", f"{what} is not valid JSON") from None


async def read_params(request: Request, documents: PersistedDocuments) -> GraphQLParams:
    """The GraphQL request: the query string of a GET, the JSON body of anything else,
    with the text of the document it names.

    Raises StreamRefused (400, 415) for a request that is not a GraphQL request.
    """
    raw: Any
    if request.method == "GET":
        raw = dict(request.query_params)
        for key in ("variables", "extensions"):
            raw[key] = _json(raw[key], key) if raw.get(key) else None
    else:
        if "application/json" not in request.headers.get("content-type", ""):
            raise StreamRefused(415, "BAD_USER_INPUT", "The body must be application/json")
        raw = _json(await request.body(), "The body")
        if not isinstance(raw, dict):
            raise StreamRefused(400, "BAD_USER_INPUT", "The body must be a JSON object")
    variables, extensions, name = (
        raw.get("variables"),
        raw.get("extensions"),
        raw.get("operationName"),
    )
    if not isinstance(variables, dict | None) or not isinstance(extensions, dict | None):
        raise StreamRefused(400, "BAD_USER_INPUT", "variables and extensions must be objects")
    if not isinstance(name, str | None):
        raise StreamRefused(400, "BAD_USER_INPUT", "operationName must be a string")
    query = raw.get("query")
    try:
        text = documents.document(
            query=query, extensions=extensions, document_id=raw.get("documentId")
        )
    except Mark1Error as refused:
        return GraphQLParams(None, variables, name, extensions, refused=refused)
    return GraphQLParams(query if text is None else text, variables, name, extensions)


async def subscription_params(
    request: Request, documents: PersistedDocuments, *, max_tokens: int
) -> GraphQLParams | None:
    """The request when it is a subscription that can run; None to let GraphQL over HTTP
    answer it (a query or mutation, or a request it refuses with its own error)."""
    try:
        params = await read_params(request, documents)
        if params.refused is not None:
            return None
        kind = chosen_operation(params.query, params.operation_name, max_tokens=max_tokens)
    except (StreamRefused, DocumentRejected):
        return None
    return params if kind is OperationType.SUBSCRIPTION else None
