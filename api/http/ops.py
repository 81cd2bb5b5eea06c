"""Operational endpoints: liveness, readiness (database, bus, drain), Prometheus metrics."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from api.runtime import Runtime

Endpoint = Callable[[Request], Awaitable[Response]]

# A database that hangs (rather than refusing) must still get an answer from
# /readyz before the probe gives up on it; set probe timeouts above this.
READY_TIMEOUT = 2.0


async def _database(runtime: Runtime) -> str:
    """ "ok", or why not, within READY_TIMEOUT even when the database hangs."""
    ping = asyncio.ensure_future(runtime.db.ping())
    done, _ = await asyncio.wait({ping}, timeout=READY_TIMEOUT)
    if not done:
        # Cancelling may itself wait on the hung connection: let that finish
        # in the background and answer the probe now.
        ping.cancel()
        ping.add_done_callback(lambda task: task.cancelled() or task.exception())
        return "error: TimeoutError"
    exc = ping.exception()
    return "ok" if exc is None else f"error: {type(exc).__name__}"


def routes_for(runtime: Runtime) -> tuple[Endpoint, Endpoint, Endpoint]:
    """The ``/healthz``, ``/readyz`` and ``/metrics`` endpoints."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        if runtime.drain.draining:  # out of rotation at once (api/drain.py)
            return JSONResponse({"status": "draining"}, status_code=503)
        checks = {"database": await _database(runtime)}
        # Without the broker the process still delivers everything, from the outbox:
        # reported, but no reason to take it out of the load balancer.
        checks["bus"] = runtime.bus.health
        ready = checks["database"] == "ok"
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    async def metrics(request: Request) -> Response:
        token = runtime.settings.metrics_token
        if token is not None:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
                return PlainTextResponse("metrics token required", status_code=401)
        return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return healthz, readyz, metrics
