"""Server logs for failure reports: a failing test prints the logs of the servers it ran.

Server processes write their output to files; each registers a reader here. A failing
test's report gets a section per server that was running during it (module-scoped
ones included) or that it started and already stopped. In-thread servers log through
the logging module, which pytest shows under "Captured log" (``log_level`` in
pyproject.toml keeps their INFO lines).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

TAIL_LINES = 200


@dataclass(frozen=True)
class LogSource:
    label: str
    read: Callable[[], str]


_running: dict[int, LogSource] = {}
_seen_this_test: dict[int, LogSource] = {}


@contextmanager
def registered(label: str, read: Callable[[], str]) -> Iterator[None]:
    """Offer a server's log to the reports of tests that fail while (or after) it runs."""
    source = LogSource(label, read)
    _running[id(source)] = source
    _seen_this_test[id(source)] = source
    try:
        yield
    finally:
        _running.pop(id(source), None)


def test_started() -> None:
    """Forget the servers earlier tests stopped; keep the ones still running."""
    _seen_this_test.clear()
    _seen_this_test.update(_running)


def sections() -> list[tuple[str, str]]:
    """(title, last lines) for each server of the current test."""
    result = []
    for source in _seen_this_test.values():
        try:
            lines = source.read().splitlines()[-TAIL_LINES:]
        except OSError as exc:
            lines = [f"(log unreadable: {exc})"]
        result.append((f"server log: {source.label}", "\n".join(lines)))
    return result
