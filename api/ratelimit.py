"""Token buckets per subject: a steady rate with a burst allowance.

``MutationLimiter`` keeps the buckets in Redis when a cluster store is
configured and answering (one atomic Lua script per spend, so every process
draws on the same bucket), and in this process otherwise: without Redis, or
while it does not answer, each process allows a subject the full rate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from api.cluster.store import ClusterStore
from api.errors import RateLimited

_MAX_SUBJECTS = 100_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``rate`` tokens per second per subject, holding at most ``burst``, in this process."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def spend(self, subject: str, cost: float = 1.0) -> None:
        """Take tokens or raise RATE_LIMITED with the seconds until enough are back."""
        now = time.monotonic()
        bucket = self._buckets.get(subject)
        if bucket is None:
            if len(self._buckets) >= _MAX_SUBJECTS:
                self._forget_full(now)
            bucket = self._buckets[subject] = _Bucket(tokens=float(self.burst), updated=now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < cost:
            raise _limited((cost - bucket.tokens) / self.rate)
        bucket.tokens -= cost

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: they carry no state worth keeping."""
        self._buckets = {
            s: b
            for s, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self.rate < self.burst
        }


class MutationLimiter:
    """The mutation rate per subject: shared by every process through Redis when it can be."""

    def __init__(self, rate: float, burst: int, store: ClusterStore | None = None) -> None:
        self._local = RateLimiter(rate, burst)
        self._store = store

    async def spend(self, subject: str, cost: float = 1.0) -> None:
        """Take tokens or raise RATE_LIMITED with the seconds until enough are back."""
        if self._store is not None:
            wait = await self._store.take(subject, self._local.rate, self._local.burst, cost)
            if wait is not None:
                if wait > 0:
                    raise _limited(wait)
                return
        self._local.spend(subject, cost)


def _limited(wait: float) -> RateLimited:
    # Rounded up to the millisecond: retrying after it always succeeds.
    retry_after = math.ceil(wait * 1000) / 1000
    return RateLimited(f"Too many mutations; retry in {retry_after:.2f}s", retry_after=retry_after)
