"""GraphQL over HTTP: the media type a client gets, its status code, and no subscriptions.

Data flow of one POST or GET: ``execute_single`` refuses a subscription with
400 (it runs over WebSocket at this URL) and lets strawberry execute anything
else; ``get_sub_response`` keeps strawberry's sub-response on the request so
``process_result`` can negotiate: a client that accepts
application/graphql-response+json gets that media type, and 400 without
``data`` when the request never executed (parse, validation or variable
coercion failed). application/json stays 200 (GraphQL over HTTP, "Legacy
watershed"). ``create_response`` then writes the negotiated Content-Type.
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
from strawberry.types.execution import ExecutionResult, PreExecutionError

from resolvers.context import Context
from resolvers.transport.admission import DocumentRejected, chosen_operation

GRAPHQL_RESPONSE = "application/graphql-response+json"


class GraphQLOverHTTP(GraphQL[Context, None]):
    """strawberry's ASGI view with this API's GraphQL-over-HTTP rules."""

    max_tokens: int
    """Parser token limit (MAX_TOKENS), set by the endpoint."""

    async def execute_single(
        self, request: Any, request_adapter: Any, *args: Any, **kwargs: Any
    ) -> Any:
        """A subscription over plain HTTP is the client's mistake, not INTERNAL."""
        data = kwargs.get("request_data") or (args[-1] if args else None)
        query = getattr(data, "query", None)
        with contextlib.suppress(DocumentRejected):
            kind = chosen_operation(
                query, getattr(data, "operation_name", None), max_tokens=self.max_tokens
            )
            if kind is OperationType.SUBSCRIPTION:
                raise HTTPException(
                    400, "Subscriptions run over WebSocket (graphql-transport-ws) at this URL"
                )
        return await super().execute_single(request, request_adapter, *args, **kwargs)

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        request.state.mark1_sub_response = sub_response
        return sub_response

    async def process_result(self, request: Request, result: ExecutionResult) -> Any:
        body = await super().process_result(request, result)
        if GRAPHQL_RESPONSE in request.headers.get("accept", ""):
            sub_response = request.state.mark1_sub_response
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
