"""Everything a request needs, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field

from api.auth.tokens import TokenVerifier
from api.cluster.sockets import SocketSlots
from api.cluster.store import ClusterStore
from api.db.engine import Database
from api.db.outbox import OutboxReader
from api.drain import Drain
from api.events.bus import EventBus
from api.metrics import Metrics
from api.ratelimit import MutationLimiter
from api.services.agents import AgentService
from api.services.reads import ReadService
from api.services.tasks import TaskService
from api.services.ticker import Tickers
from api.services.workflows import WorkflowService
from api.settings import Settings


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: Database
    outbox: OutboxReader
    bus: EventBus
    metrics: Metrics
    verifier: TokenVerifier
    mutation_limiter: MutationLimiter
    sockets: SocketSlots
    # Redis shared by every process (MARK1_REDIS_URL); None: everything is per process.
    cluster: ClusterStore | None
    reads: ReadService
    tasks: TaskService
    agents: AgentService
    workflows: WorkflowService
    drain: Drain
    tickers: Tickers = field(default_factory=Tickers)
