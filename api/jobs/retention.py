"""The outbox retention job: events older than ``MARK1_EVENT_RETENTION`` days are pruned.

It runs in every process, soon after start and then about hourly (jittered, so
processes started together do not all wake at once); an advisory lock lets one
process prune at a time and the others skip that round, and a batch's DELETE
removes each row once however the rounds interleave, so every event is counted
as pruned exactly once across the processes.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from api.clock import utcnow
from api.db.engine import Database
from api.db.retention import exclusive, prune
from api.jobs.periodic import PeriodicJob

log = logging.getLogger(__name__)

INTERVAL = 3600.0  # seconds between rounds
FIRST_WITHIN = 5.0  # seconds after start for the first round


class Retention(PeriodicJob):
    def __init__(self, db: Database, *, keep: timedelta, interval: float = INTERVAL) -> None:
        super().__init__(
            name="mark1-retention", log=log, failure="event retention failed; retrying next round"
        )
        self._db = db
        self._keep = keep
        self._interval = interval

    async def run_once(self) -> int:
        """One round: the number of events this process deleted (0 when another holds
        the lock)."""
        cutoff = utcnow() - self._keep
        async with exclusive(self._db, wait=False) as mine:
            if not mine:
                log.info("event retention: another process is pruning; skipping this round")
                return 0
            deleted = await prune(self._db, before=cutoff)
        log.info("event retention: pruned %d events older than %s", deleted, cutoff.isoformat())
        return deleted

    def first_delay(self) -> float:
        return random.uniform(0, FIRST_WITHIN)

    def next_delay(self) -> float:
        return self._interval * random.uniform(0.9, 1.1)
