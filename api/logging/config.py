"""The logging configuration of a process the service owns (``mark1 serve``, ``demo``)."""

from __future__ import annotations

import copy
import logging
from typing import Any, Literal

from uvicorn.config import LOGGING_CONFIG

LogFormat = Literal["text", "json"]
# Libraries whose DEBUG lines are every call they make (aiosqlite logs each cursor
# operation) or whose INFO lines say nothing to an operator: never below these levels.
_QUIETER = {"aiosqlite": "INFO", "alembic.runtime.plugins": "WARNING"}


def log_config(
    *, root: bool = False, format: LogFormat = "text", level: str = "INFO"
) -> dict[str, Any]:
    """uvicorn's logging, with RedactSecrets on its loggers (a dict, so every worker
    process applies it too). Logger-level filters run before any handler sees a record.

    With ``root``, the root logger (where the app's own loggers end up) also gets a
    redacting handler at ``level``; only processes the service owns ask for that, so
    embedding the app (tests) leaves the host's logging alone. ``json`` turns every
    line, uvicorn's included, into one JSON object.
    """
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": "api.logging.redaction.RedactSecrets"}}
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        config["loggers"].setdefault(name, {})["filters"] = ["redact"]
    config["loggers"]["uvicorn"]["level"] = level
    config["formatters"]["access"]["()"] = "api.logging.formatters.AccessFormatter"
    if format == "json":
        json_formatter = {"()": "api.logging.formatters.JsonFormatter"}
        config["formatters"] = {"default": json_formatter, "access": dict(json_formatter)}
    if root:
        config["formatters"]["plain"] = (
            {"()": "api.logging.formatters.JsonFormatter"}
            if format == "json"
            else {"()": "api.logging.formatters.TextFormatter"}
        )
        config["handlers"]["root"] = {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
            "filters": ["redact"],
        }
        config["root"] = {"handlers": ["root"], "level": level}
        for name, floor in _QUIETER.items():
            stricter = max(logging.getLevelName(level), logging.getLevelName(floor))
            config["loggers"][name] = {"level": logging.getLevelName(stricter)}
    return config
