"""Running the app under uvicorn, with the limits and logging that belong to the server."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.supervisors import Multiprocess

from api.settings import Settings

# What must never reach a log line: query-string credentials (the dashboard is opened
# at /app?token=…, and uvicorn logs every request line and WebSocket upgrade with its
# query string), bearer values, and anything shaped like a JWT.
_SECRET_PARAM = re.compile(
    r"([?&;](?:token|access_token|id_token|jwt|auth|authorization|key|secret|password)=)"
    r"[^&;#\s\"']*",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(Bearer\s+)[^\s\"',;]+", re.IGNORECASE)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with credentials replaced by ``[redacted]``."""
    text = _SECRET_PARAM.sub(rf"\1{REDACTED}", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    return _JWT.sub(REDACTED, text)


class RedactSecrets(logging.Filter):
    """Rewrites a record's message, arguments and traceback in place, keeping their
    shape (uvicorn's access formatter unpacks ``args`` by position)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set: format the traceback once, redacted.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def log_config(*, root: bool = False) -> dict[str, Any]:
    """uvicorn's logging, with RedactSecrets on its loggers (a dict, so every worker
    process applies it too). Logger-level filters run before any handler sees a record.

    With ``root``, the root logger (where the app's own loggers end up) also gets a
    redacting handler; only ``mark1 serve`` asks for that, so embedding the app
    (tests, ``mark1 demo``) leaves the host's logging alone.
    """
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": "api.cli.server.RedactSecrets"}}
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        config["loggers"].setdefault(name, {})["filters"] = ["redact"]
    if root:
        config["formatters"]["plain"] = {
            "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"
        }
        config["handlers"]["root"] = {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
            "filters": ["redact"],
        }
        config["root"] = {"handlers": ["root"], "level": "INFO"}
    return config


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
        log_level="info",
        log_config=log_config(root=app is None),
        timeout_graceful_shutdown=5,
    )


def app_from_env() -> object:
    from api.app import create_app

    return create_app(Settings())


def run_server(settings: Settings) -> None:
    config = uvicorn_config(settings)  # configures logging, the root logger included
    print(f"Mark-1 Realtime on http://{settings.host}:{settings.port}/graphql", flush=True)
    server = uvicorn.Server(config)
    if settings.workers > 1:
        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
    else:
        server.run()
