"""The figures ``systemMetrics`` reports: this process's, or every live process's summed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from api.cluster.store import ClusterStore
from api.metrics import Metrics


class MetricsScope(StrEnum):
    """What the counters cover."""

    PROCESS = "PROCESS"  # the process that answered
    CLUSTER = "CLUSTER"  # every live process sharing MARK1_REDIS_URL


@dataclass(frozen=True)
class SystemFigures:
    scope: MetricsScope
    connections: int
    subscriptions: int
    events_published: int
    events_delivered: int


async def system_figures(
    metrics: Metrics, store: ClusterStore | None, tenant: str
) -> SystemFigures:
    """Sockets and subscriptions, and the tenant's events published and delivered.

    Other processes' figures are as of their last heartbeat; this one's are live.
    """
    published, delivered = metrics.tenant_counts(tenant)
    mine = {
        "c": metrics.connections(),
        "n": Metrics.value(metrics.subscriptions),
        f"p:{tenant}": published,
        f"d:{tenant}": delivered,
    }
    others = await store.totals(list(mine)) if store is not None else None
    scope = MetricsScope.PROCESS if others is None else MetricsScope.CLUSTER
    total = {field: value + (others or {}).get(field, 0) for field, value in mine.items()}
    return SystemFigures(
        scope=scope,
        connections=total["c"],
        subscriptions=total["n"],
        events_published=total[f"p:{tenant}"],
        events_delivered=total[f"d:{tenant}"],
    )
