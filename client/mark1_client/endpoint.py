"""Where the API is (its HTTP and WebSocket URLs) and how to get a token for it."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

# A token, or a callable that returns a current one (sync or async). A provider is
# called for every request and every connection, so it should cache and refresh.
TokenProvider = Callable[[], str | Awaitable[str]]
TokenSource = str | TokenProvider


@dataclass(frozen=True)
class Endpoint:
    """The GraphQL endpoint in both forms: ``http(s)://…`` and ``ws(s)://…``."""

    http: str
    ws: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Accepts either form; raises ValueError on anything else (the message says why)."""
        parts = urlsplit(url)
        pairs = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
        if parts.scheme not in pairs or not parts.hostname:
            raise ValueError(
                f"bad URL {url!r}: expected http(s)://host[:port]/graphql or ws(s)://…"
            )
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError as exc:
            raise ValueError(f"bad URL {url!r}: {exc}") from exc
        ws_scheme = pairs[parts.scheme]
        http_scheme = "https" if ws_scheme == "wss" else "http"
        return cls(
            http=urlunsplit(parts._replace(scheme=http_scheme)),
            ws=urlunsplit(parts._replace(scheme=ws_scheme)),
        )


class Credentials:
    """A fixed token or a provider; ``refreshable`` says whether asking again can help."""

    def __init__(self, source: TokenSource) -> None:
        if not isinstance(source, str) and not callable(source):
            raise TypeError("token must be a string or a callable returning one")
        self._source = source

    @property
    def refreshable(self) -> bool:
        return not isinstance(self._source, str)

    async def token(self) -> str:
        if isinstance(self._source, str):
            return self._source
        value = self._source()
        if inspect.isawaitable(value):
            value = await value
        if not isinstance(value, str) or not value:
            raise TypeError("the token provider must return a non-empty string")
        return value
