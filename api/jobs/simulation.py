"""Simulated agents and operators for ``mark1 demo``: every screen has something live.

They use the same domain services (and tokens) as real clients, in-process,
so the demo exercises the real rules: claims, progress, failures and
retries, workflows, and one agent that goes silent and drops OFFLINE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from api.auth.principal import Principal
from api.domain import AgentState, Role, TaskStatus
from api.errors import Mark1Error
from api.runtime import Runtime

log = logging.getLogger("mark1.demo")

_OPERATOR = Principal(
    subject="demo:operator",
    roles=frozenset({Role.OPERATOR}),
    tenant="default",
    agent_id=None,
    expires_at=datetime.max.replace(tzinfo=UTC),
)

_AGENTS = [
    ("scribe", ["summarize"]),
    ("babel", ["translate"]),
    ("sorter", ["classify", "summarize"]),
    ("coder", ["code"]),
    ("generalist", ["classify", "translate", "code"]),
]
_FLAKY = ("wanderer", ["summarize", "translate"])

_TITLES = {
    "summarize": [
        "Summarize Q3 earnings call",
        "Digest incident report",
        "Summarize support thread",
    ],
    "translate": ["Translate release notes to German", "Localize onboarding emails"],
    "classify": ["Classify inbound tickets", "Tag product reviews by sentiment"],
    "code": ["Write unit tests for parser", "Refactor billing module", "Review pull request"],
}
_PIPELINES = [
    (
        "Customer feedback digest",
        [("collect", "classify"), ("summarize", "summarize"), ("translate", "translate")],
    ),
    (
        "Release preparation",
        [("changelog", "summarize"), ("tests", "code"), ("announce", "translate")],
    ),
    ("Research brief", [("gather", "classify"), ("draft", "summarize")]),
]


@dataclass
class _SimAgent:
    state: AgentState
    principal: Principal
    failure_rate: float
    silent: bool = False


class Simulation:
    """Runs until cancelled; every loop tolerates errors so the demo keeps going."""

    def __init__(self, runtime: Runtime, *, seed: int | None = None) -> None:
        self._rt = runtime
        self._random = random.Random(seed)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        page = await self._rt.reads.agents(
            _OPERATOR.tenant, statuses=None, capability=None, first=500, after=None
        )
        known = {a.name: a for _, a in page.items if (a.metadata or {}).get("simulated")}
        agents = [await self._enlist(known, name, caps, 0.12) for name, caps in _AGENTS]
        flaky = await self._enlist(known, *_FLAKY, 0.3)
        for agent in agents:
            self._spawn(self._work(agent))
            self._spawn(self._heartbeat(agent))
        self._spawn(self._work(flaky))
        self._spawn(self._heartbeat(flaky))
        self._spawn(self._wander(flaky))
        self._spawn(self._operate())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(coro))

    async def _enlist(
        self, known: dict[str, AgentState], name: str, caps: list[str], failure_rate: float
    ) -> _SimAgent:
        """Reuse the agent a previous demo run registered, or register it."""
        state = known.get(name)
        if state is None:
            state, token = await self._rt.agents.register(
                _OPERATOR, name=name, capabilities=caps, metadata={"simulated": True}
            )
            principal = await self._rt.verifier.verify(token)
            return _SimAgent(state=state, principal=principal, failure_rate=failure_rate)
        principal = Principal(
            subject=f"agent:{state.id}",
            roles=frozenset({Role.AGENT}),
            tenant=state.tenant,
            agent_id=state.id,
            expires_at=_OPERATOR.expires_at,
        )
        if state.current_task_id is not None:
            # Left holding a task when the last demo stopped: give it back.
            with contextlib.suppress(Mark1Error):
                await self._rt.tasks.fail(principal, state.current_task_id, "demo restarted", True)
        return _SimAgent(state=state, principal=principal, failure_rate=failure_rate)

    async def _operate(self) -> None:
        """A steady stream of tasks, and a workflow every so often."""
        tick = 0
        while True:
            with contextlib.suppress(Mark1Error):
                pending = (await self._rt.reads.counts("default"))[0][TaskStatus.PENDING.value]
                if pending < 25:
                    capability = self._random.choice(list(_TITLES))
                    await self._rt.tasks.create(
                        _OPERATOR,
                        title=self._random.choice(_TITLES[capability]),
                        capability=capability,
                        priority=self._random.choice([0, 0, 0, 5, 10]),
                        input={"source": "demo", "n": tick},
                        max_attempts=3,
                    )
                if tick % 8 == 0:
                    await self._start_workflow()
            tick += 1
            await asyncio.sleep(self._random.uniform(1.0, 2.0))

    async def _start_workflow(self) -> None:
        from api.services.workflows import StepInput

        name, steps = self._random.choice(_PIPELINES)
        await self._rt.workflows.start(
            _OPERATOR,
            name=name,
            steps=[StepInput(step, cap, {"step": step}) for step, cap in steps],
        )

    async def _heartbeat(self, agent: _SimAgent) -> None:
        while True:
            if not agent.silent:
                with contextlib.suppress(Mark1Error):
                    await self._rt.agents.heartbeat(agent.principal, agent.state.id)
            await asyncio.sleep(2.0)

    async def _wander(self, agent: _SimAgent) -> None:
        """Goes silent for a while (UNHEALTHY, then OFFLINE), then comes back."""
        settings = self._rt.settings
        while True:
            await asyncio.sleep(20)
            agent.silent = True
            log.info("demo: agent %s goes silent", agent.state.name)
            await asyncio.sleep(settings.offline_after + 2 * settings.sweep_interval + 5)
            agent.silent = False
            log.info("demo: agent %s is back", agent.state.name)

    async def _work(self, agent: _SimAgent) -> None:
        while True:
            if agent.silent:
                await asyncio.sleep(1)
                continue
            try:
                task = await self._rt.tasks.claim(agent.principal, agent.state.id)
            except Mark1Error:
                await asyncio.sleep(1)
                continue
            if task is None:
                await asyncio.sleep(self._random.uniform(0.5, 1.5))
                continue
            with contextlib.suppress(Mark1Error):
                await self._perform(agent, task.id)

    async def _perform(self, agent: _SimAgent, task_id: str) -> None:
        steps = self._random.randint(3, 6)
        for i in range(1, steps + 1):
            await asyncio.sleep(self._random.uniform(0.4, 1.2))
            if agent.silent:
                return  # it holds the task until the sweeper requeues it
            await self._rt.tasks.report_progress(
                agent.principal, task_id, i / (steps + 1), f"step {i} of {steps}"
            )
        if self._random.random() < agent.failure_rate:
            await self._rt.tasks.fail(agent.principal, task_id, "simulated model timeout", True)
        else:
            await self._rt.tasks.complete(
                agent.principal,
                task_id,
                {"by": agent.state.name, "tokens": self._random.randint(200, 4000)},
            )


def demo_timeouts() -> dict[str, float]:
    """Health timeouts short enough to watch an agent go UNHEALTHY and OFFLINE."""
    return {"heartbeat_timeout": 8.0, "offline_after": 20.0}
