"""``mark1 demo``: the server on SQLite and the in-memory bus, plus simulated agents."""

from __future__ import annotations

import asyncio
import logging
import logging.config
import os
from datetime import timedelta

import uvicorn

from api.app import create_app
from api.auth.tokens import mint_token
from api.cli.server import uvicorn_config
from api.domain import Role
from api.jobs.simulation import Simulation, demo_timeouts
from api.logging.config import log_config
from api.settings import Settings


def run_demo(settings: Settings) -> None:
    # The demo owns its process: redact secrets from every logger, the root included.
    logging.config.dictConfig(
        log_config(root=True, format=settings.log_format, level=settings.log_level)
    )
    # The simulated agents are clients of this server: their SDK notices (a failed task, a
    # retry) and their requests and sockets are part of the show, not news.
    logging.getLogger("mark1_client").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    overrides: dict[str, object] = {
        "database_url": None,
        "broadcast_url": "memory://",
        "workers": 1,
    }
    for name, value in demo_timeouts().items():
        if f"MARK1_{name.upper()}" not in os.environ:
            overrides[name] = value
    settings = settings.model_copy(update=overrides)
    asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    app = create_app(settings)
    config = uvicorn_config(settings, app)
    config.log_level = "warning"
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving  # surfaces the startup error (port in use, bad settings, ...)
            return
        await asyncio.sleep(0.05)
    # The simulated agents are clients of this server: reach a wildcard bind over loopback.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)
    host = f"[{host}]" if ":" in host else host
    simulation = Simulation(f"http://{host}:{settings.port}/graphql", settings)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # per-socket open/accept lines
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    await simulation.start()
    _print_banner(settings)
    try:
        await serving
    finally:
        await simulation.stop()


def _print_banner(settings: Settings) -> None:
    secret = settings.hs256_secret()
    day = timedelta(days=1)
    viewer = mint_token(secret, sub="demo-viewer", roles=[Role.VIEWER], ttl=day)
    operator = mint_token(secret, sub="demo-operator", roles=[Role.OPERATOR], ttl=day)
    base = f"http://{settings.host}:{settings.port}"
    lines = [
        "",
        "Mark-1 Realtime demo is running (SQLite in "
        f"{settings.data_dir.resolve()}, in-memory bus). Ctrl-C stops it.",
        "",
        f"  GraphQL (HTTP + WebSocket): {base}/graphql",
        f"  GraphiQL:                   {base}/graphql   (open in a browser)",
    ]
    if settings.frontend_dir.is_dir():
        lines.append(f"  Dashboard:                  {base}/app/?token={viewer}")
    lines += [
        f"  Metrics:                    {base}/metrics",
        "",
        "  Simulated agents and an operator work through it with the Python SDK",
        "  (mark1_client, over HTTP and WebSocket): see client/examples/ for your own.",
        "",
        f"  Viewer token:   {viewer}",
        f"  Operator token: {operator}",
        "",
        "  Try:",
        f"    export TOKEN={operator}",
        f'    curl -s {base}/graphql -H "Authorization: Bearer $TOKEN" \\',
        "      -H 'Content-Type: application/json' \\",
        '      -d \'{"query": "{ tasks(first: 5) { edges { node { title status } } } }"}\'',
        "",
    ]
    print("\n".join(lines), flush=True)
