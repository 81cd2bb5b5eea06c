"""The heartbeat sweeper: a background loop, safe to run in every process."""

from __future__ import annotations

import logging

from api.jobs.periodic import PeriodicJob
from api.services.agents import AgentService

log = logging.getLogger(__name__)


class Sweeper(PeriodicJob):
    def __init__(self, agents: AgentService, *, interval: float) -> None:
        super().__init__(
            name="mark1-sweeper",
            log=log,
            failure="heartbeat sweep failed; retrying next interval",
        )
        self._agents = agents
        self._interval = interval

    async def run_once(self) -> int:
        """One sweep: the number of transitions this process made."""
        return await self._agents.sweep()

    def next_delay(self) -> float:
        return self._interval
