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
    after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await _holds(condition):
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what or condition}")
        await asyncio.sleep(0.01)


async def _holds(condition: Callable[[], bool | Awaitable[bool]]) -> bool:
    value = condition()
    return bool(await value) if inspect.isawaitable(value) else bool(value)
