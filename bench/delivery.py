"""One subscriber's deliveries judged against its tenant's event sequence, in bounded memory.

In the soak every socket subscribes to every event of one tenant (``events``
with no filter), and a tenant's ids are consecutive (one counter, bumped in
the writing transaction). So each socket must receive every id from the head
at which the writers started up to the head at which they stopped, each once,
in increasing order. ``Sequence`` checks that as the ids arrive, keeping only
the ranges still missing (empty when all is well), so ten minutes of events
to thousands of sockets cost a few integers each; ``judge`` gives the verdict.

``Histogram`` keeps latencies in buckets 1 % wide, so percentiles over
millions of deliveries cost a couple of thousand counters per process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Sequence:
    """The event ids one socket received, in arrival order."""

    first: int | None = None
    last: int = 0
    received: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    # Inclusive [low, high] ranges above ``first`` skipped so far; a late arrival
    # splits its range and counts as out of order.
    gaps: list[tuple[int, int]] = field(default_factory=list)
    # Ids below ``first`` that arrived after it (out of order; a second copy is a duplicate).
    early: set[int] = field(default_factory=set)

    def see(self, event_id: int) -> None:
        self.received += 1
        if self.first is None:
            self.first = self.last = event_id
        elif event_id > self.last:
            if event_id > self.last + 1:
                self.gaps.append((self.last + 1, event_id - 1))
            self.last = event_id
        elif event_id < self.first:
            if event_id in self.early:
                self.duplicated += 1
            else:
                self.early.add(event_id)
                self.out_of_order += 1
        elif not self._fill(event_id):
            self.duplicated += 1

    def _fill(self, event_id: int) -> bool:
        """Take ``event_id`` out of the gaps; False when it was not missing (a duplicate)."""
        for index, (low, high) in enumerate(self.gaps):
            if low <= event_id <= high:
                pieces = [(low, event_id - 1), (event_id + 1, high)]
                self.gaps[index : index + 1] = [(a, b) for a, b in pieces if a <= b]
                self.out_of_order += 1
                return True
        return False


@dataclass(frozen=True)
class Verdict:
    """What one socket lost, received twice and received out of order."""

    lost: int
    duplicated: int
    out_of_order: int

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order)


def judge(sequence: Sequence, *, live_from: int, head: int) -> Verdict:
    """The verdict on one socket that was live before id ``live_from + 1`` was written and
    should have received every id up to ``head``."""
    if sequence.first is None:
        return Verdict(head - live_from, sequence.duplicated, sequence.out_of_order)
    wanted = range(live_from + 1, head + 1)
    lost = sum(
        len(range(max(low, wanted.start), min(high + 1, wanted.stop)))
        for low, high in sequence.gaps
    )
    lost += max(0, head - sequence.last)  # the tail that never came
    # Ids after live_from below the socket's first (not late arrivals) never came either.
    lost += len([i for i in range(live_from + 1, sequence.first) if i not in sequence.early])
    return Verdict(lost, sequence.duplicated, sequence.out_of_order)


_STEP = math.log(1.01)  # bucket width: 1 %
_FLOOR = 1e-6  # seconds; anything below lands in bucket 0


@dataclass
class Histogram:
    """Latencies in seconds, in logarithmic buckets 1 % wide (percentiles within 1 %)."""

    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0
    max: float = 0.0

    def add(self, seconds: float) -> None:
        bucket = 0 if seconds <= _FLOOR else int(math.log(seconds / _FLOOR) / _STEP) + 1
        self.counts[bucket] = self.counts.get(bucket, 0) + 1
        self.total += 1
        self.max = max(self.max, seconds)

    def merge(self, other: Histogram) -> None:
        for bucket, count in other.counts.items():
            self.counts[bucket] = self.counts.get(bucket, 0) + count
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> float:
        """The upper edge of the bucket holding the nearest-rank ``q``-th percentile."""
        if not self.total:
            return float("nan")
        rank = max(1, math.ceil(q / 100 * self.total))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return min(self.max, _FLOOR * math.exp(bucket * _STEP))
        return self.max
