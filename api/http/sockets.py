"""ASGI middleware that hands a WebSocket for one route straight to its endpoint.

Starlette's exception middleware and router stay on the stack of every
connection they pass on: their frames, the exception middleware's
``WebSocket`` and its wrappers, about 2 KiB on each socket for its whole
life (the tracemalloc figures in README, Performance, Fan-out). A socket for
``route`` needs neither: the router would pick that route, and the endpoint
raises none of the exceptions the exception middleware turns into a close.
Every other connection, and a socket for any other path, takes the ordinary
way.
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.routing import Match, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send


class WebSocketShortcut:
    """A WebSocket that ``route`` matches goes to it directly; the rest to ``app``."""

    def __init__(self, app: ASGIApp, route: WebSocketRoute) -> None:
        self.app = app
        self.route = route

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: it adds no frame to any connection either.
        if scope["type"] == "websocket":
            match, child_scope = self.route.matches(scope)
            if match is Match.FULL:
                scope["route"] = self.route  # as the router sets it
                scope.update(child_scope)
                return self.route.app(scope, receive, send)
        return self.app(scope, receive, send)
