"""Capped exponential backoff with jitter: never hammer a restarting server, never in step."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """How long to wait before retry number ``attempt`` (1-based), and how many to try.

    "Equal jitter": half the capped exponential delay, plus a random part of
    the other half, so clients that failed together do not return together.
    """

    base: float = 0.25
    cap: float = 10.0
    attempts: int | None = 5  # retries before giving up; None: forever

    def delay(self, attempt: int, *, at_least: float | None = None) -> float:
        """Seconds to wait; ``at_least`` is a server's ``retryAfter``, jittered upwards."""
        if at_least is not None:
            return at_least + random.uniform(0, min(self.base, at_least / 4 + 0.01))
        ceiling = min(self.cap, self.base * 2.0 ** max(attempt - 1, 0))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def allows(self, attempt: int) -> bool:
        """Whether retry number ``attempt`` may happen."""
        return self.attempts is None or attempt <= self.attempts
