"""Simulated agents and operators for ``mark1 demo``: every screen has something live.

They are ordinary clients of the served API, written with the Python SDK
(``mark1_client``) over real HTTP and WebSocket: agents heartbeat, are woken
by a subscription when work is queued, claim, report progress, fail and
retry; an operator queues tasks and starts workflows, following each one
over ``workflowProgress`` until it ends; one agent goes silent, turns
UNHEALTHY then OFFLINE (the server requeues its task), and comes back. So
the demo shows the SDK working every time it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from api.auth.tokens import mint_token
from api.domain import Role
from api.settings import Settings
from mark1_client import (
    Agent,
    Mark1Client,
    Mark1Error,
    Task,
    TaskStatus,
    WorkflowStepInput,
)

log = logging.getLogger("mark1.demo")

_AGENTS = [
    ("scribe", ["summarize"], 0.12),
    ("babel", ["translate"], 0.12),
    ("sorter", ["classify", "summarize"], 0.12),
    ("coder", ["code"], 0.12),
    ("generalist", ["classify", "translate", "code"], 0.12),
]
_FLAKY = ("wanderer", ["summarize", "translate"], 0.3)

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
_FOLLOW = (
    "subscription Follow($id: ID!) { workflowProgress(workflowId: $id) "
    "{ workflow { name status } } }"
)
_MAX_RUNNING_WORKFLOWS = 3


class SimulatedFailure(Exception):
    """What a simulated model does now and then; the task is failed and retried."""


@dataclass
class _SimAgent:
    name: str
    token: str
    id: str
    failure_rate: float


class Simulation:
    """Runs until stopped; every loop tolerates errors so the demo keeps going.

    ``url``: the served GraphQL endpoint. Tokens are minted with the install's
    HS256 secret, as ``mark1 token`` does.
    """

    def __init__(self, url: str, settings: Settings, *, seed: int | None = None) -> None:
        self._url = url
        self._settings = settings
        self._random = random.Random(seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._operator = Mark1Client(url, self._mint("demo:operator", Role.OPERATOR))

    def _mint(self, sub: str, role: Role, agent_id: str | None = None) -> str:
        return mint_token(
            self._settings.hs256_secret(),
            sub=sub,
            roles=[role],
            agent_id=agent_id,
            ttl=self._settings.agent_token_ttl if agent_id else timedelta(days=30),
            issuer=self._settings.jwt_issuer,
            audience=self._settings.jwt_audience,
        )

    async def start(self) -> None:
        page = await self._operator.agents(first=500)
        known = {a.name: a.id for a in page.items if (a.metadata or {}).get("simulated")}
        for name, capabilities, failure_rate in _AGENTS:
            agent = await self._enlist(known, name, capabilities, failure_rate)
            self._spawn(self._work(agent, release_on_exit=True))
        self._spawn(self._wander(await self._enlist(known, *_FLAKY)))
        self._spawn(self._operate())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._operator.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _enlist(
        self, known: dict[str, str], name: str, capabilities: list[str], failure_rate: float
    ) -> _SimAgent:
        """Reuse the agent a previous demo run registered (a fresh token for it), or register."""
        if (agent_id := known.get(name)) is not None:
            token = self._mint(f"agent:{agent_id}", Role.AGENT, agent_id)
            return _SimAgent(name, token, agent_id, failure_rate)
        registration = await self._operator.register_agent(
            name, capabilities, metadata={"simulated": True}
        )
        return _SimAgent(name, registration.token, registration.agent.id, failure_rate)

    # -- agents ----------------------------------------------------------------

    async def _work(self, sim: _SimAgent, *, release_on_exit: bool) -> None:
        """One agent on the SDK; started again should anything stop it."""
        while True:
            agent = Agent(
                self._url,
                sim.token,
                agent_id=sim.id,
                heartbeat_interval=2.0,
                poll_interval=3.0,
                release_on_exit=release_on_exit,
            )
            try:
                async with agent:
                    await agent.run(lambda task, agent: self._perform(sim, task, agent))
            except Mark1Error as exc:
                log.warning("demo: agent %s stopped (%s); restarting", sim.name, exc.message)
            await asyncio.sleep(1.0)

    async def _perform(self, sim: _SimAgent, task: Task, agent: Agent) -> dict[str, Any]:
        steps = self._random.randint(3, 6)
        for i in range(1, steps + 1):
            await asyncio.sleep(self._random.uniform(0.4, 1.2))
            await agent.progress(i / (steps + 1), f"step {i} of {steps}")
        if self._random.random() < sim.failure_rate:
            raise SimulatedFailure("simulated model timeout")
        return {"by": sim.name, "tokens": self._random.randint(200, 4000)}

    async def _wander(self, sim: _SimAgent) -> None:
        """Works for a while, then goes silent mid-task (no heartbeats, no release: the
        sweeper marks it UNHEALTHY, then OFFLINE, and requeues its task), then comes back."""
        settings = self._settings
        while True:
            worker = asyncio.create_task(self._work(sim, release_on_exit=False))
            try:
                await asyncio.sleep(20)
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            log.info("demo: agent %s goes silent", sim.name)
            await asyncio.sleep(settings.offline_after + 2 * settings.sweep_interval + 5)
            log.info("demo: agent %s is back", sim.name)

    # -- the operator -------------------------------------------------------------

    async def _operate(self) -> None:
        """A steady stream of tasks, and a workflow every so often."""
        tick = 0
        following: set[str] = set()
        while True:
            with contextlib.suppress(Mark1Error):
                pending = await self._operator.tasks(status=[TaskStatus.PENDING], first=0)
                if pending.total_count < 25:
                    capability = self._random.choice(list(_TITLES))
                    await self._operator.create_task(
                        self._random.choice(_TITLES[capability]),
                        capability=capability,
                        priority=self._random.choice([0, 0, 0, 5, 10]),
                        input={"source": "demo", "n": tick},
                    )
                if tick % 8 == 0 and len(following) < _MAX_RUNNING_WORKFLOWS:
                    name, steps = self._random.choice(_PIPELINES)
                    workflow = await self._operator.start_workflow(
                        name,
                        [WorkflowStepInput(step, cap, {"step": step}) for step, cap in steps],
                    )
                    following.add(workflow.id)
                    self._spawn(self._follow(workflow.id, following))
            tick += 1
            await asyncio.sleep(self._random.uniform(1.0, 2.0))

    async def _follow(self, workflow_id: str, following: set[str]) -> None:
        """Follow one workflow over WebSocket until it ends (the subscription completes)."""
        last: dict[str, Any] = {}
        try:
            async with self._operator.subscribe(_FOLLOW, {"id": workflow_id}) as progress:
                async for data in progress:
                    last = data["workflowProgress"]["workflow"]
            log.info("demo: workflow %s ended %s", last.get("name"), last.get("status"))
        except Mark1Error as exc:
            log.warning("demo: lost workflow %s (%s)", workflow_id, exc.message)
        finally:
            following.discard(workflow_id)


def demo_timeouts() -> dict[str, float]:
    """Health timeouts short enough to watch an agent go UNHEALTHY and OFFLINE."""
    return {"heartbeat_timeout": 8.0, "offline_after": 20.0}
