"""Credentials never reach a log line, whatever the format."""

from __future__ import annotations

import logging
import re

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
# At DEBUG, websockets logs each frame as ``TEXT '<start>...<end>' [N bytes]``: elided
# in the middle, so a token in connection_init shows only its tail, which no pattern
# above recognises. A frame that mentions credentials, or continues one that might,
# keeps only its kind and size.
_FRAME = re.compile(r"\b(TEXT|BINARY|CONT) (['\"].*['\"]) (\[\d+ bytes?[^\]]*\])", re.DOTALL)
_CREDENTIAL_WORDS = re.compile(r"author|token|bearer|eyJ", re.IGNORECASE)
REDACTED = "[redacted]"


def _frame(match: re.Match[str]) -> str:
    kind, payload, size = match.groups()
    if kind == "CONT" or _CREDENTIAL_WORDS.search(payload):
        return f"{kind} {REDACTED} {size}"
    return match.group(0)


def _may_hold_secret(text: str) -> bool:
    """False only when no pattern above can match: each needs one of these substrings.
    uvicorn's access line (its format string and arguments, on every request) takes
    this path: a few substring tests instead of four regex substitutions (issue #8)."""
    return (
        "=" in text  # _SECRET_PARAM
        or "eyJ" in text  # _JWT
        or "TEXT " in text  # _FRAME
        or "BINARY " in text
        or "CONT " in text
        or "bearer" in text.lower()  # _BEARER (b, e, a, r fold only to themselves)
    )


def redact(text: str) -> str:
    """``text`` with credentials replaced by ``[redacted]``."""
    if not _may_hold_secret(text):
        return text
    text = _FRAME.sub(_frame, text)
    text = _SECRET_PARAM.sub(rf"\1{REDACTED}", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    return _JWT.sub(REDACTED, text)


def _redact_arg(arg: object) -> object:
    """A string redacted; any other object replaced by its redacted text only when that
    differs (a websockets frame, an exception), so numbers keep their ``%d``."""
    if isinstance(arg, str):
        return redact(arg)
    if arg is None or isinstance(arg, int | float):
        return arg
    text = str(arg)
    clean = redact(text)
    return arg if clean == text else clean


class RedactSecrets(logging.Filter):
    """Rewrites a record's message, arguments and traceback in place, keeping their
    shape (uvicorn's access formatter unpacks ``args`` by position)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set: format the traceback once, redacted.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
