"""Queries and mutations over GraphQL over HTTP, retried only where that is safe.

A request is retried, with jittered backoff, when
- the server answered RATE_LIMITED or UNAVAILABLE: it ran nothing, and says when to retry;
- it provably never reached the server (connection refused, DNS, connect timeout);
- the connection broke or a gateway failed (502/503/504) and the operation is safe
  to repeat: a query, or an idempotent mutation such as ``heartbeat``.
A non-idempotent mutation (``createTask``) whose request may have arrived is never
sent twice: the caller gets ``TransportError(request_sent=True)`` and decides.
With a token provider, an UNAUTHENTICATED answer is retried once with a fresh token.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from mark1_client.endpoint import Credentials, Endpoint
from mark1_client.errors import (
    Mark1Error,
    ProtocolError,
    RateLimited,
    TransportError,
    Unauthenticated,
    Unavailable,
    error_from,
)
from mark1_client.retry import Backoff

log = logging.getLogger("mark1_client")

_ACCEPT = "application/graphql-response+json, application/json;q=0.9"
_GATEWAY = frozenset({502, 503, 504})


class HttpTransport:
    """Posts documents to the endpoint; owns its httpx client unless given one."""

    def __init__(
        self,
        endpoint: Endpoint,
        credentials: Credentials,
        *,
        backoff: Backoff,
        timeout: float,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._credentials = credentials
        self._backoff = backoff
        self._timeout = timeout
        self._owned = http is None
        # Made on first use: building its TLS context costs a noticeable fraction of a
        # second, which a client that only subscribes never needs to pay.
        self._http = http

    async def aclose(self) -> None:
        if self._owned and self._http is not None:
            await self._http.aclose()
            self._http = None

    async def execute(
        self, document: str, variables: dict[str, Any], *, repeatable: bool
    ) -> dict[str, Any]:
        """The ``data`` of the response; raises the typed error of its first error.

        ``repeatable``: sending it twice does no harm (queries, heartbeats).
        """
        attempt = 0
        refreshed = False
        while True:
            try:
                return await self._once(document, variables)
            except Unauthenticated:
                if refreshed or not self._credentials.refreshable:
                    raise
                refreshed = True  # the provider's token may have expired in between
            except Mark1Error as exc:
                attempt += 1
                delay = self._retry_delay(exc, attempt, repeatable)
                if delay is None:
                    raise
                log.warning("%s; retrying in %.1fs", exc.message, delay)
                await asyncio.sleep(delay)

    def _retry_delay(self, exc: Mark1Error, attempt: int, repeatable: bool) -> float | None:
        if not self._backoff.allows(attempt):
            return None
        if isinstance(exc, RateLimited | Unavailable):
            return self._backoff.delay(attempt, at_least=exc.retry_after)
        if isinstance(exc, TransportError) and (repeatable or not exc.request_sent):
            return self._backoff.delay(attempt)
        if isinstance(exc, ProtocolError) and exc.status in _GATEWAY and repeatable:
            return self._backoff.delay(attempt)
        return None

    async def _once(self, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        headers = {
            "Authorization": f"Bearer {await self._credentials.token()}",
            "Accept": _ACCEPT,
        }
        body = {"query": document, "variables": variables}
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._timeout)
        try:
            response = await self._http.post(self._endpoint.http, json=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TransportError(
                f"cannot reach {self._endpoint.http}: {_describe(exc)}", request_sent=False
            ) from exc
        except httpx.TransportError as exc:
            raise TransportError(
                f"no answer from {self._endpoint.http}: {_describe(exc)}", request_sent=True
            ) from exc
        return _data(response)


def _data(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and ("errors" in payload or "data" in payload):
        if errors := payload.get("errors"):
            raise error_from(errors)
        data = payload.get("data")
        if isinstance(data, dict):
            return data
    status = response.status_code
    if status == 404:
        raise ProtocolError(
            f"no GraphQL endpoint at {response.request.url} (HTTP 404)", status=status
        )
    raise ProtocolError(f"HTTP {status}: not a GraphQL response", status=status)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
