"""What an operation that fails inside the server tells its client: ``error`` INTERNAL.

Both protocol handlers route an unexpected exception of an operation here: it
is logged with the operation id and the operation ends with one ``error``
message carrying the same masked INTERNAL error as any other unexpected
failure (resolvers/errors.py) — never a silent end with neither ``error`` nor
``complete``. A socket that is already closed (the client left, or the
server closed it: 1009, 4403 at expiry) cannot be told anything; that is not
a failure of the operation and is not logged as one.
"""

from __future__ import annotations

import logging

from starlette.websockets import WebSocket, WebSocketState

from resolvers.member import internal_error

__all__ = ["internal_error", "operation_failed", "socket_closed"]

log = logging.getLogger("mark1.operations")


def socket_closed(socket: WebSocket) -> bool:
    """Either side has closed the socket: nothing more can be sent on it."""
    return WebSocketState.DISCONNECTED in (socket.application_state, socket.client_state)


def operation_failed(operation_id: str, protocol: str) -> None:
    """Log the exception being handled as the failure of one operation."""
    log.exception("%s operation %r failed", protocol, operation_id)
