"""Input rules shared by the services; every violation is BAD_USER_INPUT and writes nothing."""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from api.errors import BadUserInput

MAX_TITLE = 200
MAX_NAME = 200
MAX_MESSAGE = 2000
MAX_ERROR = 5000
# Task results of 100 KB and more are real (issue #9); events reach the bus by reference,
# so no broker payload limit applies, and a request stays well under MAX_MESSAGE_BYTES.
MAX_JSON_BYTES = 256 * 1024
MAX_JSON_DEPTH = 32
PRIORITY_RANGE = (-1000, 1000)
ATTEMPTS_RANGE = (1, 100)
MAX_CAPABILITIES = 50
MAX_STEPS = 50
_CAPABILITY = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def text(value: str, *, field: str, max_length: int, required: bool = True) -> str:
    """A stripped single-line-ish string of bounded length, with no control characters."""
    cleaned = value.strip()
    if required and not cleaned:
        raise BadUserInput(f"{field} must not be empty")
    if len(cleaned) > max_length:
        raise BadUserInput(f"{field} must be at most {max_length} characters")
    if _CONTROL.search(cleaned):
        raise BadUserInput(f"{field} must not contain control characters")
    return cleaned


def optional_text(value: str | None, *, field: str, max_length: int) -> str | None:
    if value is None:
        return None
    return text(value, field=field, max_length=max_length, required=False) or None


def capability(value: str | None, *, field: str = "capability") -> str | None:
    if value is None:
        return None
    if not _CAPABILITY.match(value):
        raise BadUserInput(
            f"{field} must be 1-100 characters of letters, digits, '_', '.', ':', '-'"
        )
    return value


def capabilities(values: list[str]) -> list[str]:
    if len(values) > MAX_CAPABILITIES:
        raise BadUserInput(f"capabilities must have at most {MAX_CAPABILITIES} entries")
    checked = [capability(v, field="capabilities") for v in values]
    return sorted({c for c in checked if c is not None})


def in_range(value: int, *, field: str, bounds: tuple[int, int]) -> int:
    low, high = bounds
    if not low <= value <= high:
        raise BadUserInput(f"{field} must be between {low} and {high}")
    return value


def fraction(value: float, *, field: str) -> float:
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise BadUserInput(f"{field} must be between 0 and 1")
    return value


def json_value(value: Any, *, field: str, object_only: bool) -> Any:
    """Bounded JSON: size, depth, and (where asked) an object or null."""
    if value is None:
        return None
    if object_only and not isinstance(value, dict):
        raise BadUserInput(f"{field} must be a JSON object")
    if _depth(value) > MAX_JSON_DEPTH:
        raise BadUserInput(f"{field} is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise BadUserInput(f"{field} is not valid JSON") from exc
    if size > MAX_JSON_BYTES:
        raise BadUserInput(f"{field} must be at most {MAX_JSON_BYTES} bytes of JSON")
    return value


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level)
    return level
