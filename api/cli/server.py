"""Running the app under uvicorn, with the limits that belong to the server."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from api.settings import Settings


def uvicorn_config(settings: Settings, app: Any = None) -> uvicorn.Config:
    """uvicorn enforces the WebSocket message limit itself (close 1009)."""
    return uvicorn.Config(
        app if app is not None else "api.cli.server:app_from_env",
        factory=app is None,
        host=settings.host,
        port=settings.port,
        workers=settings.workers if app is None else None,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_max_size=settings.max_message_bytes,
        ws_ping_interval=20,
        lifespan="on",
        log_level="info",
        timeout_graceful_shutdown=5,
    )


def app_from_env() -> Any:
    from api.app import create_app

    return create_app(Settings())


def run_server(settings: Settings) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = uvicorn_config(settings)
    print(f"Mark-1 Realtime on http://{settings.host}:{settings.port}/graphql", flush=True)
    if settings.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        uvicorn.Server(config).run()
