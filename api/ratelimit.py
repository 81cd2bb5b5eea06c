"""Token buckets per subject: a steady rate with a burst allowance."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from api.errors import RateLimited

_MAX_SUBJECTS = 100_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``rate`` tokens per second per subject, holding at most ``burst``."""

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
            # Rounded up to the millisecond: retrying after it always succeeds.
            retry_after = math.ceil((cost - bucket.tokens) / self.rate * 1000) / 1000
            raise RateLimited(
                f"Too many mutations; retry in {retry_after:.2f}s", retry_after=retry_after
            )
        bucket.tokens -= cost

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: they carry no state worth keeping."""
        self._buckets = {
            s: b
            for s, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self.rate < self.burst
        }
