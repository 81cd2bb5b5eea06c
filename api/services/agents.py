"""Agents: registration, heartbeats, and the health sweeper's transitions."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from api.auth.principal import Principal
from api.auth.tokens import mint_token
from api.clock import utcnow
from api.db import agents as agent_rows
from api.db import tasks as task_rows
from api.db.engine import Database
from api.db.models import AgentRow
from api.domain import AgentState, AgentStatus, EventType, Role
from api.services import tasks, transitions, validation
from api.services.unit import Tx, UnitOfWork

log = logging.getLogger(__name__)

SWEEPER = "system:sweeper"


class AgentService:
    def __init__(
        self,
        uow: UnitOfWork,
        db: Database,
        *,
        token_secret: str,
        token_ttl: timedelta,
        heartbeat_timeout: timedelta,
        offline_after: timedelta,
        token_issuer: str | None = None,
        token_audience: str | None = None,
    ) -> None:
        self._uow = uow
        self._db = db
        self._token_secret = token_secret
        self._token_ttl = token_ttl
        # Where MARK1_JWT_ISSUER / MARK1_JWT_AUDIENCE are checked, agent tokens must carry them.
        self._token_issuer = token_issuer
        self._token_audience = token_audience
        self._heartbeat_timeout = heartbeat_timeout
        self._offline_after = offline_after

    async def register(
        self, principal: Principal, *, name: str, capabilities: list[str], metadata: Any
    ) -> tuple[AgentState, str]:
        name = validation.text(name, field="name", max_length=validation.MAX_NAME)
        caps = validation.capabilities(capabilities)
        metadata = validation.json_value(metadata, field="metadata", object_only=True)

        async def work(tx: Tx) -> AgentState:
            row = AgentRow(
                id=transitions.new_id(),
                tenant=tx.tenant,
                name=name,
                capabilities=caps,
                status=AgentStatus.ONLINE.value,
                last_heartbeat_at=tx.now,
                registered_at=tx.now,
                metadata_=metadata,
            )
            tx.session.add(row)
            state = agent_rows.agent_state(row)
            tx.emit(EventType.AGENT_REGISTERED, agent=state)
            return state

        agent = await self._uow.run(principal.tenant, principal.subject, work)
        token = mint_token(
            self._token_secret,
            sub=f"agent:{agent.id}",
            roles=[Role.AGENT],
            tenant=agent.tenant,
            agent_id=agent.id,
            ttl=self._token_ttl,
            issuer=self._token_issuer,
            audience=self._token_audience,
        )
        return agent, token

    async def heartbeat(self, principal: Principal, agent_id: str) -> AgentState:
        """Record a sign of life; publishes only when it changes the agent's status."""

        async def work(tx: Tx) -> AgentState:
            if principal.acts_as(agent_id):
                # The common case in one UPDATE; a status change (or no such agent)
                # takes the path below.
                touched = await agent_rows.touch_heartbeat(
                    await tx.connection(), tenant=tx.tenant, id=agent_id, now=tx.now
                )
                if touched is not None:
                    return touched
            agent = await transitions.load_agent_for(tx, principal, agent_id)
            agent.last_heartbeat_at = tx.now
            if agent.status in (AgentStatus.UNHEALTHY.value, AgentStatus.OFFLINE.value):
                status = AgentStatus.BUSY if agent.current_task_id else AgentStatus.ONLINE
                transitions.set_agent_status(tx, agent, status)
            return agent_rows.agent_state(agent)

        return await self._uow.run(principal.tenant, principal.subject, work)

    async def sweep(self) -> int:
        """Apply heartbeat timeouts; returns how many transitions this process made.

        Safe in every process at once: each transition is a conditional UPDATE
        that only one sweeper can win.
        """
        now = utcnow()
        made = 0
        offline_cutoff = now - self._offline_after
        unhealthy_cutoff = now - self._heartbeat_timeout
        async with self._db.session() as session:
            to_offline = await agent_rows.stale_agent_ids(
                session,
                statuses=[AgentStatus.ONLINE, AgentStatus.BUSY, AgentStatus.UNHEALTHY],
                cutoff=offline_cutoff,
            )
            to_unhealthy = await agent_rows.stale_agent_ids(
                session, statuses=[AgentStatus.ONLINE, AgentStatus.BUSY], cutoff=unhealthy_cutoff
            )
        for tenant, id in to_offline:
            made += await self._mark(tenant, id, AgentStatus.OFFLINE, offline_cutoff)
        for tenant, id in to_unhealthy:
            if (tenant, id) not in to_offline:
                made += await self._mark(tenant, id, AgentStatus.UNHEALTHY, unhealthy_cutoff)
        return made

    async def _mark(self, tenant: str, id: str, status: AgentStatus, cutoff: Any) -> int:
        sources = (
            [AgentStatus.ONLINE, AgentStatus.BUSY, AgentStatus.UNHEALTHY]
            if status is AgentStatus.OFFLINE
            else [AgentStatus.ONLINE, AgentStatus.BUSY]
        )

        async def work(tx: Tx) -> int:
            # Locked first, so "from" is the status this transition really left, even
            # when another process's sweeper moved the agent a moment ago.
            agent = await agent_rows.get_agent(tx.session, tenant=tenant, id=id, for_update=True)
            if agent is None:
                return 0
            previous = agent.status
            won = await agent_rows.transition_if_stale(
                tx.session,
                tenant=tenant,
                id=id,
                from_statuses=sources,
                to_status=status,
                cutoff=cutoff,
            )
            if not won:
                return 0
            await tx.session.refresh(agent)
            held = agent.current_task_id if status is AgentStatus.OFFLINE else None
            if held is not None:
                # An offline agent holds nothing: its task is requeued (or failed) below,
                # in this transaction, so no event shows an OFFLINE agent holding it.
                agent.current_task_id = None
            tx.emit(
                EventType.AGENT_STATUS_CHANGED,
                agent=agent_rows.agent_state(agent),
                data={"from": previous, "to": status.value, "reason": "heartbeat timeout"},
            )
            if held is not None:
                task = await task_rows.get_task(tx.session, tenant=tenant, id=held, for_update=True)
                if task is not None and task.status == "RUNNING" and task.agent_id == agent.id:
                    await tasks.end_attempt(
                        tx, task, None, error=f"agent {agent.name} went offline", retry=True
                    )
            return 1

        return await self._uow.run(tenant, SWEEPER, work)
