"""Subscriptions over multipart HTTP (Apollo's multipart subscription protocol, spec 1.0).

A GET or POST whose Accept lists ``multipart/mixed`` with ``subscriptionSpec``
1.0 (and no boundary, or ``graphql``) and whose document selects a subscription
is answered with ``multipart/mixed; boundary="graphql"; subscriptionSpec="1.0"``:
one ``application/json`` part ``{"payload": <execution result>}`` per result, an
empty ``{}`` part at once and every HTTP_STREAM_KEEPALIVE seconds (clients
ignore it), and the closing delimiter ``--graphql--`` when the subscription ends.
A document that cannot run gets one part whose payload carries its errors; an
error that ends a running subscription (SLOW_CONSUMER, an expired token, a
failure inside the server) is a fatal ``{"payload": null, "errors": […]}``.
Anything else (a query, a document that does not parse) goes on to GraphQL over
HTTP, which these clients also accept. Auth, slots, limits, expiry and
disconnects are the HTTP stream core's (streaming.py).
"""

from __future__ import annotations

import orjson
from graphql import GraphQLFormattedError
from starlette.requests import Request
from starlette.responses import Response

from resolvers.member import Framing
from resolvers.transport.params import StreamRefused, subscription_params
from resolvers.transport.streaming import (
    HTTPStream,
    HTTPStreams,
    Wire,
)

BOUNDARY = "graphql"
_DELIMITER = "\r\n--" + BOUNDARY


def _part(body: str) -> str:
    """One part and the delimiter after it: a part is written whole, never split."""
    return "\r\nContent-Type: application/json\r\n\r\n" + body + _DELIMITER


WIRE = Wire(
    headers={
        "content-type": f'multipart/mixed; boundary="{BOUNDARY}"; subscriptionSpec="1.0"',
        "cache-control": "no-cache, no-transform",
        "x-accel-buffering": "no",  # nginx: pass each part on at once
    },
    opening=_DELIMITER + _part("{}"),
    heartbeat=_part("{}"),
    closing="--\r\n",  # after the last delimiter: `--graphql--`
)


def _parameters(media_range: str) -> tuple[str, dict[str, str]]:
    kind, *rest = media_range.split(";")
    parameters = {}
    for item in rest:
        name, _, value = item.partition("=")
        parameters[name.strip().lower()] = value.strip().strip("'\"")
    return kind.strip().lower(), parameters


def accepts_multipart(accept: str) -> bool:
    """Whether an Accept header asks for multipart subscriptions (spec 1.0).

    Apollo Client sends ``multipart/mixed;boundary=graphql;subscriptionSpec=1.0``,
    Apollo's docs ``multipart/mixed;subscriptionSpec="1.0"``: both, quoted or not.
    """
    for media_range in accept.split(","):
        kind, parameters = _parameters(media_range)
        if (
            kind == "multipart/mixed"
            and parameters.get("subscriptionspec", "").startswith("1.0")
            and parameters.get("boundary", BOUNDARY) == BOUNDARY
        ):
            return True
    return False


class MultipartFraming(Framing):
    """One JSON part per message; the closing delimiter says the operation ended."""

    complete = ""

    def data(self, payload: str) -> str:
        return _part('{"payload":' + payload + "}")

    def failed(self, errors: str) -> list[str]:
        return [_part('{"payload":null,"errors":' + errors + "}")]

    def rejected(self, errors: list[GraphQLFormattedError]) -> list[str]:
        return [_part(orjson.dumps({"payload": {"errors": errors}}).decode())]


class MultipartSubscriptions:
    """Answers multipart subscription requests on /graphql."""

    def __init__(self, streams: HTTPStreams) -> None:
        self._streams = streams
        self._max_tokens = streams.runtime.settings.max_tokens

    async def respond(self, request: Request) -> Response | HTTPStream | None:
        """The multipart stream of a subscription, or None to let GraphQL over HTTP answer."""
        if request.method not in ("GET", "POST") or not accepts_multipart(
            request.headers.get("accept", "")
        ):
            return None
        params = await subscription_params(
            request, self._streams.documents, max_tokens=self._max_tokens
        )
        if params is None:
            return None
        try:
            context = await self._streams.admit(request)
            stream = await self._streams.open(context, WIRE, one_operation=True)
        except StreamRefused as refused:
            return refused.response()
        stream.start("", params, MultipartFraming(), method=request.method)
        return stream
