"""The heartbeat sweeper: a background loop, safe to run in every process."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from api.services.agents import AgentService

log = logging.getLogger(__name__)


class Sweeper:
    def __init__(self, agents: AgentService, *, interval: float) -> None:
        self._agents = agents
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mark1-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._agents.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("heartbeat sweep failed; retrying next interval")
