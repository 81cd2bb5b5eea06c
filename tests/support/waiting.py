"""Waiting for conditions, never for time: one polling helper and one ceiling.

The ceiling only bounds how long a failing test hangs; a passing test returns as soon
as its condition holds. It is generous because the suite must pass with the other
core loaded by a CPU hog.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

PATIENCE = 20.0


async def until(
    condition: Callable[[], bool | Awaitable[bool]], within: float = PATIENCE, what: str = ""
) -> None:
    """Poll ``condition`` (plain or async: a query to the server) until it holds; fail
    after ``within`` seconds. A query is asked 20 times a second, a plain check 100:
    a test waiting up to a minute must not load the server it waits on."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            holds, pause = bool(await value), 0.05
        else:
            holds, pause = bool(value), 0.01
        if holds:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what or condition}")
        await asyncio.sleep(pause)
