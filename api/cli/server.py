"""Running the app under uvicorn, with the limits and logging that belong to the server."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from api.cli.configuration import refuse
from api.cli.deployment import refusal
from api.drain import grace_seconds
from api.logging.config import log_config
from api.logging.redaction import REDACTED, RedactSecrets, redact
from api.metrics import MULTIPROCESS_DIR
from api.settings import Settings

# Re-exported: redaction lived here before it moved to api/logging/.
__all__ = ["REDACTED", "RedactSecrets", "app_from_env", "log_config", "redact", "run_server"]

log = logging.getLogger(__name__)


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
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_timeout,
        # permessage-deflate cost ~25% of server CPU in the fan-out profile; events are small.
        ws_per_message_deflate=False,
        lifespan="on",
        log_level=settings.log_level.lower(),
        log_config=log_config(
            root=app is None, format=settings.log_format, level=settings.log_level
        ),
        # After a drain's sockets are closed (api/drain.py), what is in flight gets this long.
        # Typed int, but uvicorn only passes it to asyncio.wait_for: fractions work.
        timeout_graceful_shutdown=grace_seconds(settings.drain_seconds),  # type: ignore[arg-type]
    )


def app_from_env() -> object:
    from api.app import create_app

    app = create_app(Settings())
    settle_heap()
    return app


YOUNG_COLLECTION_EVERY = 10_000
"""Allocations (net) between collections of the youngest generation; Python's default is 700."""


def settle_heap() -> None:
    """The server process's garbage-collector policy, set once its app is built.

    What startup built (the schema, its types, the ORM's tables, every module) lives as
    long as the process, yet each full collection walked all of it again: a profile of
    the fan-out found full collections of about 350 ms each, several per burst (issue
    #8). Frozen, it is never walked again. The youngest generation is collected less
    often: a request or an event allocates hundreds of objects, nearly all freed by
    reference counting, and 700 made a collection every few requests. Not done for an
    app built in a test process (``create_app``): freezing there would keep every
    earlier test's garbage for good.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, oldest)


def run_server(settings: Settings) -> None:
    """Serve, unless the deployment cannot work: then say why and exit with code 2."""
    problem = refusal(settings)
    if problem is not None:
        refuse(problem, settings)
    config = uvicorn_config(settings)  # configures logging, the root logger included
    logging.captureWarnings(True)  # a warning is a log line too (one JSON object in json)
    log.info("Mark-1 Realtime on http://%s:%s/graphql", settings.host, settings.port)
    server = uvicorn.Server(config)
    if settings.workers > 1:
        with _multiprocess_metrics():
            sock = config.bind_socket()
            supervisor = Multiprocess(config, sockets=[sock])
            # uvicorn's supervisor reads its signals every 0.5 s; a drain's clock
            # (api/drain.py) starts at SIGTERM, so pass it on to the workers at once.
            signal.signal(signal.SIGTERM, lambda *_: supervisor.should_exit.set())
            supervisor.run()
    else:
        server.run()


@contextlib.contextmanager
def _multiprocess_metrics() -> Iterator[None]:
    """Have every worker's samples summed in each scrape (api/metrics.py).

    The operator's PROMETHEUS_MULTIPROC_DIR is used when set, emptied of the last
    run's samples (prometheus_client's rule); else a directory of our own, removed
    at exit. Workers inherit the variable when they start.
    """
    given = os.environ.get(MULTIPROCESS_DIR)
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix="mark1-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROCESS_DIR] = str(path)
    try:
        yield
    finally:
        if not given:
            shutil.rmtree(path, ignore_errors=True)
            os.environ.pop(MULTIPROCESS_DIR, None)
