"""Between the schema's JSON and the dataclasses of ``types``, driven by their type hints.

``selection(Task)`` is the GraphQL selection set a dataclass needs, so the
documents always ask for exactly the fields the types hold; ``decode``
builds the dataclass from a response; ``encode`` turns an input dataclass
into variables. Field names are snake_case here and camelCase on the wire.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

T = TypeVar("T")


def camel(name: str) -> str:
    """``max_attempts`` → ``maxAttempts``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@functools.cache
def hints(cls: type) -> dict[str, Any]:
    """The dataclass's fields and their resolved types, in declaration order."""
    resolved = typing.get_type_hints(cls)
    return {f.name: resolved[f.name] for f in dataclasses.fields(cls)}


def unwrap(hint: Any) -> tuple[Any, bool]:
    """``X | None`` → (X, True); anything else → (hint, False)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def item_type(hint: Any) -> Any | None:
    """X for ``list[X]``; None for anything else."""
    if typing.get_origin(hint) is list:
        (arg,) = typing.get_args(hint)
        return arg
    return None


def _is_object(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


@functools.cache
def selection(cls: type) -> str:
    """The selection set (without braces) that fetches every field of ``cls``."""
    parts = []
    for name, hint in hints(cls).items():
        inner, _ = unwrap(hint)
        inner = item_type(inner) or inner
        if _is_object(inner):
            parts.append(f"{camel(name)} {{ {selection(inner)} }}")
        else:
            parts.append(camel(name))
    return " ".join(parts)


def decode(cls: type[T], value: Any) -> T:
    """The dataclass ``cls`` from a JSON object selected with ``selection(cls)``."""
    return typing.cast(T, _decoder(typing.cast(Any, cls))(value))


@functools.cache
def _decoder(hint: Any) -> Callable[[Any], Any]:
    """A converter for one type hint, built once: events are decoded by the thousand."""
    inner, optional = unwrap(hint)
    if inner is Any:
        return _identity
    convert = _converter(inner)
    if optional:
        return lambda value: None if value is None else convert(value)

    def required(value: Any) -> Any:
        if value is None:
            raise ValueError(f"null for non-null {inner}")
        return convert(value)

    return required


def _converter(inner: Any) -> Callable[[Any], Any]:
    if (item := item_type(inner)) is not None:
        each = _decoder(item)
        return lambda values: [each(v) for v in values]
    if _is_object(inner):
        fields = [(name, camel(name), _decoder(h)) for name, h in hints(inner).items()]
        return lambda value: inner(**{name: conv(value[key]) for name, key, conv in fields})
    if inner is datetime:
        return datetime.fromisoformat
    if inner is float:
        return float
    if isinstance(inner, type) and issubclass(inner, Enum | str | int | bool):
        return typing.cast(Callable[[Any], Any], inner)
    raise TypeError(f"cannot decode {inner!r}")


def _identity(value: Any) -> Any:
    return value


def encode(value: Any) -> Any:
    """An input dataclass (or list, enum, datetime) as GraphQL variables; None fields left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            camel(f.name): encode(v)
            for f in dataclasses.fields(value)
            if (v := getattr(value, f.name)) is not None
        }
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("datetimes sent to the API need a time zone")
        return value.isoformat()
    return value
