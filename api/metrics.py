"""Process-wide counters, exported at /metrics and read back by ``systemMetrics``.

With several workers (``mark1 serve --workers N``) a scrape reaches one of them,
so ``serve`` runs prometheus_client's multiprocess mode: it sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start, each worker writes its
samples to files there, and whichever worker answers a scrape sums them all
(gauges of open sockets and subscriptions over the live workers only).
"""

from __future__ import annotations

import os
from collections import Counter as Counter_
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from api.clock import utcnow
from api.domain import EventRecord

# prometheus_client's own switch: read when it is imported, so set before workers start.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """One registry per app, so several apps in one process (tests) never collide."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = multiprocess_dir
        self.sockets = Gauge(
            "mark1_websockets_open",
            "Open GraphQL WebSocket connections",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.http_streams = Gauge(
            "mark1_http_streams_open",
            "Open subscription streams over HTTP (graphql-sse and multipart)",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.subscriptions = Gauge(
            "mark1_subscriptions_active",
            "Active subscription operations",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.subscription_groups = Gauge(
            "mark1_subscription_groups",
            "Shared executions of multiplexed subscriptions (one per distinct operation)",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.events_published = Counter(
            "mark1_events_published", "Events committed and published", registry=self.registry
        )
        self.events_delivered = Counter(
            "mark1_events_delivered", "Events sent to subscribers", registry=self.registry
        )
        self.fanout_latency = CountedHistogram(
            "mark1_fanout_latency_seconds",
            "From commit to hand-off to a subscriber's socket",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.slow_consumers = Counter(
            "mark1_slow_consumers_dropped",
            "Subscriptions ended because their buffer overflowed",
            registry=self.registry,
        )
        self.gaps_filled = Counter(
            "mark1_bus_gap_events_filled",
            "Events read from the outbox: committed by another process, or announced out of order",
            registry=self.registry,
        )
        self.doorbells_dropped = Counter(
            "mark1_bus_doorbells_dropped",
            "Bus publishes given up (broker slow or down); the outbox tailing delivers them",
            registry=self.registry,
        )
        self.bus_rejected = Counter(
            "mark1_bus_messages_rejected",
            "Bus messages ignored: another install's, or not a doorbell at all",
            registry=self.registry,
        )
        self.bus_reconnects = Counter(
            "mark1_bus_reconnects", "Times the bus listener reconnected", registry=self.registry
        )
        self.bus_overflows = Counter(
            "mark1_bus_inbox_overflows",
            "Times broker messages were dropped because the inbox was full (every head is read)",
            registry=self.registry,
        )
        self.bus_pending = Gauge(
            "mark1_bus_pending",
            "Bus work waiting, by queue (each bounded): inbox = broker messages, doorbells = "
            "tenants named, held = own events not yet dispatched, reads = tenants being read",
            ["queue"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )

        # Per tenant as well, for `systemMetrics` (a tenant sees only its own volume).
        self._published_by_tenant: Counter_[str] = Counter_()
        self._delivered_by_tenant: Counter_[str] = Counter_()

    def published(self, tenant: str, count: int = 1) -> None:
        self.events_published.inc(count)
        self._published_by_tenant[tenant] += count

    def delivered(self, record: EventRecord, *, live: bool, count: int = 1) -> None:
        """One event handed to ``count`` subscribers; live ones also time the fan-out.

        A multiplexed group counts all the sockets it wrote to at once: one clock
        read and one counter update per event instead of one per socket.
        """
        if count <= 0:
            return
        self.events_delivered.inc(count)
        self._delivered_by_tenant[record.tenant] += count
        if live:
            latency = (utcnow() - record.occurred_at).total_seconds()
            self.fanout_latency.observe_many(latency, count)

    def exposition(self) -> bytes:
        """The Prometheus text of this process, or of every worker in multiprocess mode."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        _forget_dead_workers(self.multiprocess_dir)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def figures(self) -> dict[str, int]:
        """What this process shares with the others for ``systemMetrics`` (api/cluster/)."""
        shared = {"c": self.connections(), "n": self.value(self.subscriptions)}
        shared |= {f"p:{t}": n for t, n in self._published_by_tenant.items()}
        shared |= {f"d:{t}": n for t, n in self._delivered_by_tenant.items()}
        return shared

    def connections(self) -> int:
        """Open client connections: WebSockets and HTTP subscription streams alike."""
        return self.value(self.sockets) + self.value(self.http_streams)

    def tenant_counts(self, tenant: str) -> tuple[int, int]:
        """Events published and delivered by this process for one tenant."""
        return self._published_by_tenant[tenant], self._delivered_by_tenant[tenant]

    @staticmethod
    def value(metric: Counter | Gauge) -> int:
        """Current value of an unlabelled counter or gauge."""
        for family in metric.collect():
            for sample in family.samples:
                if (
                    sample.name.endswith(("_total", "_open", "_active"))
                    or sample.name == family.name
                ):
                    return int(sample.value)
        return 0


def _forget_dead_workers(path: str) -> None:
    """Drop the live gauges of workers that died (uvicorn replaces them), so that their
    last open-socket counts stop adding up; their counters stay, as counters do."""
    for file in Path(path).glob("gauge_live*_*.db"):
        pid = int(file.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, someone else's


class CountedHistogram(Histogram):
    """A histogram that takes one observation for ``count`` equal values at once.

    A group hands one event to a thousand sockets at the same instant: one call,
    not a thousand (each takes prometheus_client's value lock, and in
    multiprocess mode writes its file). Written for prometheus_client 0.26
    (``Histogram.observe``'s ``_sum``, ``_buckets`` and ``_upper_bounds``):
    api/overrides.py states the range.
    """

    def observe_many(self, amount: float, count: int) -> None:
        self._raise_if_not_observable()  # type: ignore[no-untyped-call]
        self._sum.inc(amount * count)
        for i, bound in enumerate(self._upper_bounds):
            if amount <= bound:
                self._buckets[i].inc(count)
                break
