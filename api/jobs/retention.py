"""The outbox retention job: events older than ``MARK1_EVENT_RETENTION`` days are pruned.

It runs in every process, soon after start and then about hourly (jittered, so
processes started together do not all wake at once); an advisory lock lets one
process prune at a time and the others skip that round, and a batch's DELETE
removes each row once however the rounds interleave, so every event is counted
as pruned exactly once across the processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import timedelta

from api.clock import utcnow
from api.db.engine import Database
from api.db.retention import exclusive, prune

log = logging.getLogger(__name__)

INTERVAL = 3600.0  # seconds between rounds
FIRST_WITHIN = 5.0  # seconds after start for the first round


class Retention:
    def __init__(self, db: Database, *, keep: timedelta, interval: float = INTERVAL) -> None:
        self._db = db
        self._keep = keep
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mark1-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

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

    async def _run(self) -> None:
        await asyncio.sleep(random.uniform(0, FIRST_WITHIN))
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event retention failed; retrying next round")
            await asyncio.sleep(self._interval * random.uniform(0.9, 1.1))
