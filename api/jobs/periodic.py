"""A background job that runs one round of work, again and again, until stopped.

Every process runs its jobs (the heartbeat sweeper, event retention). A round
that raises is logged and the next one runs on schedule, so a passing fault (a
database restart) never ends a job for good; ``stop()`` cancels the loop, even
mid-round or mid-sleep, and waits for it to end.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging


class PeriodicJob(abc.ABC):
    """Subclasses say what one round does and how long to wait before each."""

    def __init__(self, *, name: str, log: logging.Logger, failure: str) -> None:
        """``name`` names the asyncio task; ``failure`` is logged, with the traceback,
        on ``log`` when a round raises."""
        self._name = name
        self._log = log
        self._failure = failure
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @abc.abstractmethod
    async def run_once(self) -> object:
        """One round of the job's work."""

    @abc.abstractmethod
    def next_delay(self) -> float:
        """Seconds to wait before the next round."""

    def first_delay(self) -> float:
        """Seconds to wait before the first round; by default as before any other."""
        return self.next_delay()

    async def _run(self) -> None:
        delay = self.first_delay()
        while True:
            await asyncio.sleep(delay)
            try:
                await self.run_once()
            except Exception:  # CancelledError is not an Exception: stop() still ends the loop
                self._log.exception(self._failure)
            delay = self.next_delay()
