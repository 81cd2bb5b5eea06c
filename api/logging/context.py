"""Who and what a log line is about: request, operation, tenant and subject.

The HTTP and WebSocket layer binds these as it learns them — a request or socket
arrives (``RequestContext``), a token is verified, an operation starts — and every
line logged afterwards in that task carries them, without being passed down. asyncio
copies context variables into each task it creates, so an operation's task inherits
its socket's request id, tenant and subject.
"""

from __future__ import annotations

import logging
import random
import re
from contextvars import Context, ContextVar, copy_context

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("api.requests")

request_id: ContextVar[str | None] = ContextVar("mark1_request_id", default=None)
operation_id: ContextVar[str | None] = ContextVar("mark1_operation_id", default=None)
tenant: ContextVar[str | None] = ContextVar("mark1_tenant", default=None)
subject: ContextVar[str | None] = ContextVar("mark1_subject", default=None)

FIELDS: dict[str, ContextVar[str | None]] = {
    "request_id": request_id,
    "operation_id": operation_id,
    "tenant": tenant,
    "subject": subject,
}

# A caller's X-Request-ID is kept (so a proxy's id follows the request into our
# logs) only when it is short and plain; anything else could forge log content.
_GOOD_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
REQUEST_ID_HEADER = b"x-request-id"


def current() -> dict[str, str]:
    """The fields known in this task, for a log line."""
    return {name: value for name, var in FIELDS.items() if (value := var.get()) is not None}


def bind_principal(tenant_: str, subject_: str) -> None:
    """Called where a token has just been verified."""
    tenant.set(tenant_)
    subject.set(subject_)


def bind_operation(id: str, name: str | None = None) -> None:
    """Called at the start of the task that runs one WebSocket operation."""
    operation_id.set(id)
    log.debug("operation %s started", name or "(anonymous)")


def shared() -> Context:
    """A copy of this context for work several requests share (one execution of a
    multiplexed subscription group): it keeps the tenant but not whose request or
    operation happened to start it."""
    context = copy_context()
    context.run(_forget_requester)
    return context


def _forget_requester() -> None:
    for var in (request_id, operation_id, subject):
        var.set(None)


def _new_id() -> str:
    """16 hex digits. An id only tells log lines apart, it guards nothing: the
    pseudo-random generator (reseeded in a forked child) serves, without the system
    call per request that ``secrets`` makes (issue #8)."""
    return f"{random.getrandbits(64):016x}"


class RequestContext:
    """ASGI middleware: a request id for every HTTP request and WebSocket connection,
    bound for the logs and sent back as ``X-Request-ID`` on HTTP responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                given = value  # the last one wins
        rid = given.decode("latin-1")
        if not _GOOD_ID.match(rid):
            rid = _new_id()
        tokens = [request_id.set(rid), operation_id.set(None), tenant.set(None), subject.set(None)]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != REQUEST_ID_HEADER]
                message = {**message, "headers": [*headers, (REQUEST_ID_HEADER, rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id if scope["type"] == "http" else send)
        finally:
            for var, token in zip(FIELDS.values(), tokens, strict=True):
                var.reset(token)
