"""Log lines as text or as JSON objects, both carrying the request context."""

from __future__ import annotations

import http
import logging
from datetime import UTC, datetime
from typing import Any

import orjson
import uvicorn.logging

from api.logging import context
from api.logging.redaction import redact

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_PHRASES = {status.value: status.phrase for status in http.HTTPStatus}


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [request_id=… tenant=… subject=…]``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = context.current()
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # keep a traceback below the line
        known = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{head} [{known}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, then
    ``request_id``, ``operation_id``, ``tenant`` and ``subject`` where known, the
    parts of an access line, and ``exception`` with the traceback.

    Everything is redacted here as well as by ``RedactSecrets``, so a record that
    reaches this formatter without passing the filter still cannot carry a token.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        entry.update(context.current())
        entry.update(_access_fields(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(entry, default=str).decode()


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    """uvicorn's access line, as fields: ``'%s - "%s %s HTTP/%s" %d'`` with the client,
    method, path, HTTP version and status as its arguments."""
    if record.name != "uvicorn.access" or not isinstance(record.args, tuple):
        return {}
    if len(record.args) != 5:
        return {}
    client, method, path, _version, status = record.args
    return {"client": client, "method": method, "path": redact(str(path)), "status": status}


class AccessFormatter(uvicorn.logging.AccessFormatter):
    """uvicorn's access line, the same text, from one cheap copy of the record.

    uvicorn's own copies every record twice with ``copy.copy`` and looks its status
    phrase up in ``HTTPStatus``: a quarter of the access line's cost, on every
    request (issue #8). Coloured output (a terminal) is left to uvicorn.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        args = record.args
        if self.use_colors or not isinstance(args, tuple) or len(args) != 5:
            return super().formatMessage(record)
        client_addr, method, full_path, http_version, status_code = args
        code = int(status_code)  # type: ignore[call-overload]
        line = logging.LogRecord.__new__(logging.LogRecord)
        line.__dict__.update(record.__dict__)
        line.__dict__.update(
            levelprefix=record.levelname + ":" + " " * (8 - len(record.levelname)),
            client_addr=client_addr,
            request_line=f"{method} {full_path} HTTP/{http_version}",
            status_code=f"{code} {_PHRASES.get(code, '')}",
        )
        return logging.Formatter.formatMessage(self, line)
