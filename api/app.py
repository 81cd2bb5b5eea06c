"""The composition root: the only place that reads settings and wires everything."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from datetime import timedelta

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from api.auth.tokens import TokenVerifier
from api.cluster.sockets import SocketSlots
from api.cluster.store import ClusterStore
from api.db.engine import Database
from api.db.migrate import upgrade
from api.db.outbox import OutboxReader
from api.drain import Drain
from api.events.bus import EventBus
from api.http.limits import BodyLimit
from api.http.ops import routes_for
from api.http.sockets import WebSocketShortcut
from api.jobs.retention import Retention
from api.jobs.sweeper import Sweeper
from api.logging.context import RequestContext
from api.metrics import MULTIPROCESS_DIR, Metrics
from api.ratelimit import MutationLimiter
from api.runtime import Runtime
from api.services.agents import AgentService
from api.services.reads import ReadService
from api.services.tasks import TaskService
from api.services.unit import UnitOfWork
from api.services.workflows import WorkflowService
from api.settings import Settings
from resolvers.schema import build_schema
from resolvers.transport import GraphQLEndpoint
from resolvers.transport.frames import RawSend
from resolvers.transport.sse import TOKEN_HEADER

log = logging.getLogger(__name__)


def build_runtime(settings: Settings) -> Runtime:
    """Construct every collaborator; nothing connects until the lifespan starts."""
    db = Database(
        settings.resolved_database_url,
        connect_timeout=settings.db_connect_timeout,
        pool_timeout=settings.db_pool_timeout,
    )
    reads = ReadService(db)
    # Set by `mark1 serve --workers N` (api/cli/server.py) before the workers start.
    metrics = Metrics(os.environ.get(MULTIPROCESS_DIR))
    outbox = OutboxReader(db)
    bus = EventBus(
        settings.broadcast_url,
        outbox,
        metrics,
        channel=settings.broadcast_channel,
        gap_check_interval=settings.gap_check_interval,
    )
    uow = UnitOfWork(db, bus)
    cluster = (
        ClusterStore(settings.redis_url, heartbeat=settings.cluster_heartbeat)
        if settings.redis_url
        else None
    )
    return Runtime(
        settings=settings,
        db=db,
        outbox=outbox,
        bus=bus,
        metrics=metrics,
        verifier=TokenVerifier(settings),
        mutation_limiter=MutationLimiter(settings.mutation_rate, settings.mutation_burst, cluster),
        sockets=SocketSlots(settings.max_sockets_per_subject, cluster),
        cluster=cluster,
        reads=reads,
        tasks=TaskService(uow),
        agents=AgentService(
            uow,
            db,
            token_secret=settings.hs256_secret(),
            token_ttl=settings.agent_token_ttl,
            heartbeat_timeout=timedelta(seconds=settings.heartbeat_timeout),
            offline_after=timedelta(seconds=settings.offline_after),
            token_issuer=settings.jwt_issuer,
            token_audience=settings.jwt_audience,
        ),
        workflows=WorkflowService(uow),
        drain=Drain(settings.drain_seconds),
    )


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    runtime = build_runtime(settings)
    schema = build_schema(
        max_query_depth=settings.max_query_depth,
        max_aliases=settings.max_aliases,
        max_tokens=settings.max_tokens,
        introspection=settings.introspection,
    )
    graphql = GraphQLEndpoint(schema, runtime)
    sweeper = Sweeper(runtime.agents, interval=settings.sweep_interval)
    retention = (
        None
        if settings.event_retention is None
        else Retention(runtime.db, keep=timedelta(days=settings.event_retention))
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.auto_migrate:
            await upgrade(runtime.db)
        await runtime.bus.start()  # serves degraded, tailing the outbox, without the broker
        if runtime.cluster is not None:  # serves degraded, per process, without Redis
            await runtime.cluster.start(runtime.bus.install, runtime.metrics.figures)
        elif not settings.broadcast_url.startswith("memory"):
            log.info(
                "rate limits, sockets per subject and systemMetrics are per process: "
                "set MARK1_REDIS_URL to share them between processes"
            )
        sweeper.start()
        if retention is not None:
            retention.start()
        runtime.drain.attach()  # SIGTERM drains first (api/drain.py), then stops
        try:
            yield
        finally:
            await runtime.drain.stop()
            if retention is not None:
                await retention.stop()
            await sweeper.stop()
            await graphql.close()
            if runtime.cluster is not None:
                await runtime.cluster.stop()
            await runtime.bus.stop()
            await runtime.db.close()

    healthz, readyz, metrics = routes_for(runtime)
    sockets = WebSocketRoute("/graphql", graphql)
    routes: list[Route | WebSocketRoute | Mount] = [
        # PUT and DELETE: graphql-sse's single-connection mode (resolvers/transport/sse.py).
        Route("/graphql", graphql, methods=["GET", "POST", "PUT", "DELETE"]),
        sockets,
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]
    if settings.frontend_dir.is_dir():
        routes.append(Mount("/app", StaticFiles(directory=settings.frontend_dir, html=True)))

        async def to_app(_: Request) -> Response:
            return RedirectResponse("/app/")

        routes.append(Route("/", to_app))
    middleware = [
        # Outermost, so it sees the server's own send (resolvers/transport/frames.py).
        Middleware(RawSend),
        Middleware(RequestContext),  # every log line of a request carries its id
        Middleware(BodyLimit, max_bytes=settings.max_message_bytes),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=["authorization", "content-type", TOKEN_HEADER],
            )
        )
    # Innermost: sockets on /graphql skip the exception middleware and the router.
    middleware.append(Middleware(WebSocketShortcut, route=sockets))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.runtime = runtime
    return app
