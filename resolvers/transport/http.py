"""GraphQL over HTTP: the media type a client gets, its status code, and no subscriptions.

Data flow of one POST or GET: a client that accepts an event stream or
multipart subscriptions never gets here with a subscription (sse.py,
multipart.py); for any other ``execute_single`` refuses one with 400 (it runs
over WebSocket, SSE or multipart HTTP at this URL) and lets strawberry execute
anything else; ``get_sub_response`` keeps strawberry's sub-response on the request so
``process_result`` can negotiate: a client that accepts
application/graphql-response+json gets that media type, and 400 without
``data`` when the request never executed (parse, validation or variable
coercion failed). application/json stays 200 (GraphQL over HTTP, "Legacy
watershed"). ``create_response`` then writes the negotiated Content-Type.
Before any of that, ``parse_http_body`` swaps a persisted document's hash or
``documentId`` for its text (persisted.py); a refused document is answered in
``run`` with its error alone: 400 for application/graphql-response+json, 200
otherwise and always for PERSISTED_QUERY_NOT_FOUND, a step of the APQ round
trip rather than a failure (a browser logs every 4xx as an error, and Apollo
Client 3 turns persisted queries off for good on a 400).
"""

from __future__ import annotations

import contextlib
from typing import Any

from graphql import OperationType
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLRequestData
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.types.unset import UNSET

from api.errors import Mark1Error, PersistedQueryNotFound
from resolvers.context import Context
from resolvers.transport.admission import DocumentRejected, chosen_operation
from resolvers.transport.persisted import PersistedDocuments, refusal

GRAPHQL_RESPONSE = "application/graphql-response+json"
_SUB_RESPONSE = "mark1.sub_response"
SUBSCRIPTIONS_ELSEWHERE = (
    "Subscriptions run over WebSocket (graphql-transport-ws), over SSE (Accept: "
    'text/event-stream) or multipart HTTP (Accept: multipart/mixed;subscriptionSpec="1.0") '
    "at this URL"
)


class _Refused(Exception):
    """A persisted document refused while the request was read; answered by ``run``."""

    def __init__(self, error: Mark1Error) -> None:
        super().__init__(error.message)
        self.error = error


class GraphQLOverHTTP(GraphQL[Context, None]):
    """strawberry's ASGI view with this API's GraphQL-over-HTTP rules."""

    max_tokens: int
    """Parser token limit (MAX_TOKENS), set by the endpoint."""
    documents: PersistedDocuments
    """The APQ store or trusted documents, set by the endpoint."""

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        try:
            return await super().run(request, context, root_value)
        except _Refused as refused:
            return self._refused(request, refused.error)

    async def parse_http_body(self, request: Any) -> Any:
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData):  # batches are refused (batching is off)
            # `documentId` matters only without a query: only then read the body again.
            document_id = None if data.query is not None else await self._document_id(request)
            try:
                text = self.documents.document(
                    query=data.query, extensions=data.extensions, document_id=document_id
                )
            except Mark1Error as error:
                raise _Refused(error) from None
            data.query = text if text is not None else data.query
        return data

    async def _document_id(self, request: Any) -> object:
        if request.method == "GET":
            return request.query_params.get("documentId")
        body = self.parse_json(await request.get_body())  # read and parsed once before: valid
        return body.get("documentId") if isinstance(body, dict) else None

    def _refused(self, request: Request, error: Mark1Error) -> Response:
        status, media_type = 200, "application/json"
        if GRAPHQL_RESPONSE in request.headers.get("accept", ""):
            media_type = GRAPHQL_RESPONSE
            status = 200 if isinstance(error, PersistedQueryNotFound) else 400
        return Response(
            self.encode_json({"errors": [refusal(error)]}), status, media_type=media_type
        )

    async def execute_single(
        self, request: Any, request_adapter: Any, *args: Any, **kwargs: Any
    ) -> Any:
        """A subscription over plain HTTP is the client's mistake, not INTERNAL."""
        data = kwargs.get("request_data") or (args[-1] if args else None)
        query = getattr(data, "query", None)
        # A subscription's document spells its keyword: any other needs no look-up.
        maybe_subscription = not isinstance(query, str) or "subscription" in query
        with contextlib.suppress(DocumentRejected):
            if maybe_subscription and (
                chosen_operation(
                    query, getattr(data, "operation_name", None), max_tokens=self.max_tokens
                )
                is OperationType.SUBSCRIPTION
            ):
                raise HTTPException(400, SUBSCRIPTIONS_ELSEWHERE)
        return await super().execute_single(request, request_adapter, *args, **kwargs)

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        request.scope[_SUB_RESPONSE] = sub_response  # cheaper than request.state
        return sub_response

    async def process_result(self, request: Request, result: ExecutionResult) -> Any:
        body = await super().process_result(request, result)
        if GRAPHQL_RESPONSE in request.headers.get("accept", ""):
            sub_response = request.scope[_SUB_RESPONSE]
            sub_response.mark1_media_type = GRAPHQL_RESPONSE
            if isinstance(result, PreExecutionError):
                body.pop("data", None)
                sub_response.status_code = 400
        return body

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        response = super().create_response(response_data, sub_response)
        media_type = getattr(sub_response, "mark1_media_type", None)
        if media_type is not None:
            response.headers["content-type"] = media_type
        return response
