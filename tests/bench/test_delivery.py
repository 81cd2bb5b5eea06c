"""The soak's per-subscriber judge: crafted id sequences, each fault counted where it belongs."""

from __future__ import annotations

import pytest

from bench.delivery import Histogram, Sequence, Verdict, judge


def _judged(ids: list[int], *, live_from: int = 10, head: int = 20) -> Verdict:
    sequence = Sequence()
    for event_id in ids:
        sequence.see(event_id)
    return judge(sequence, live_from=live_from, head=head)


def test_every_id_once_in_order_is_clean() -> None:
    # The socket went live at 8 (priming), writing began after 10 and ended at 20.
    assert _judged(list(range(8, 21))) == Verdict(lost=0, duplicated=0, out_of_order=0)
    assert _judged(list(range(8, 21))).ok


@pytest.mark.parametrize(
    ("ids", "verdict"),
    [
        # One id skipped in the middle, never delivered.
        ([*range(8, 15), *range(16, 21)], Verdict(lost=1, duplicated=0, out_of_order=0)),
        # The tail never came.
        (list(range(8, 18)), Verdict(lost=3, duplicated=0, out_of_order=0)),
        # One id delivered twice, right away and later on.
        ([*range(8, 15), 14, *range(15, 21)], Verdict(lost=0, duplicated=1, out_of_order=0)),
        ([*range(8, 21), 12], Verdict(lost=0, duplicated=1, out_of_order=0)),
        # Two neighbours swapped: nothing lost, one late.
        ([*range(8, 14), 15, 14, *range(16, 21)], Verdict(lost=0, duplicated=0, out_of_order=1)),
        # A late id that arrives twice: once out of order, once a duplicate.
        ([*range(8, 14), 15, 14, 14, *range(16, 21)], Verdict(0, 1, 1)),
        # Nothing at all reached this socket after it went live.
        ([8, 9, 10], Verdict(lost=10, duplicated=0, out_of_order=0)),
        ([], Verdict(lost=10, duplicated=0, out_of_order=0)),
        # It first heard of the tenant at 13: 11 and 12 are lost.
        (list(range(13, 21)), Verdict(lost=2, duplicated=0, out_of_order=0)),
        # ... unless they arrive after 13 (late), and one of them twice.
        ([13, 11, 12, 12, *range(14, 21)], Verdict(lost=0, duplicated=1, out_of_order=2)),
        # A wide gap costs one range, not one entry per id; half of it arrives late.
        ([*range(8, 12), 20, 16, 17, 18, 19], Verdict(lost=4, duplicated=0, out_of_order=4)),
    ],
)
def test_each_fault_is_counted_where_it_belongs(ids: list[int], verdict: Verdict) -> None:
    assert _judged(ids) == verdict
    assert not verdict.ok


def test_losses_before_writing_began_are_not_the_soaks() -> None:
    # Ids up to live_from happened during priming; only what follows is judged.
    assert _judged([5, 11, *range(12, 21)]) == Verdict(0, 0, 0)


def test_memory_stays_bounded_by_the_faults_not_the_events() -> None:
    sequence = Sequence()
    for event_id in range(1, 1_000_001):
        sequence.see(event_id)
    sequence.see(2_000_000)
    assert sequence.gaps == [(1_000_001, 1_999_999)] and not sequence.early
    assert judge(sequence, live_from=0, head=2_000_000).lost == 999_999


def test_histogram_percentiles_are_within_one_percent() -> None:
    histogram, other = Histogram(), Histogram()
    for ms in range(1, 1001):  # 1 ms .. 1 s, uniformly
        (histogram if ms % 2 else other).add(ms / 1000)
    histogram.merge(other)
    assert histogram.total == 1000 and histogram.max == 1.0
    assert histogram.percentile(50) == pytest.approx(0.500, rel=0.01)
    assert histogram.percentile(99) == pytest.approx(0.990, rel=0.01)
    assert histogram.percentile(100) == 1.0
    assert len(histogram.counts) < 700  # buckets, not samples
