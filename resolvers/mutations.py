"""Root mutation fields: thin calls into the domain services, each rate limited."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.scalars import JSON

from api.services.workflows import StepInput
from resolvers.context import Info
from resolvers.permissions import IsAgent, IsOperator
from resolvers.types import (
    Agent,
    AgentRegistration,
    CreateTaskInput,
    RegisterAgentInput,
    StartWorkflowInput,
    Task,
    Workflow,
)


class MutationRate(FieldExtension):
    """Counts each executed mutation field against the caller's token bucket."""

    def resolve(self, next_: Any, source: Any, info: Info, **kwargs: Any) -> Any:
        raise NotImplementedError("mutations are async")

    async def resolve_async(self, next_: Any, source: Any, info: Info, **kwargs: Any) -> Any:
        await info.context.runtime.mutation_limiter.spend(info.context.principal.subject)
        return await next_(source, info, **kwargs)


def mutation(permission: type, description: str) -> Any:
    return strawberry.mutation(
        permission_classes=[permission], extensions=[MutationRate()], description=description
    )


@strawberry.type
class Mutation:
    @mutation(IsOperator, "Queue a task (OPERATOR).")
    async def create_task(self, info: Info, input: CreateTaskInput) -> Task:
        ctx = info.context
        state = await ctx.runtime.tasks.create(
            ctx.principal,
            title=input.title,
            capability=input.capability,
            priority=0 if input.priority is None else input.priority,
            input=input.input,
            max_attempts=3 if input.max_attempts is None else input.max_attempts,
        )
        return Task.of(state)

    @mutation(IsOperator, "Cancel a PENDING or RUNNING task (OPERATOR).")
    async def cancel_task(self, info: Info, id: strawberry.ID) -> Task:
        return Task.of(await info.context.runtime.tasks.cancel(info.context.principal, id))

    @mutation(IsOperator, "Register an agent; returns a token for it (OPERATOR).")
    async def register_agent(self, info: Info, input: RegisterAgentInput) -> AgentRegistration:
        ctx = info.context
        agent, token = await ctx.runtime.agents.register(
            ctx.principal, name=input.name, capabilities=input.capabilities, metadata=input.metadata
        )
        return AgentRegistration(agent=Agent.of(agent), token=token)

    @mutation(IsAgent, "Sign of life from an agent (the agent itself).")
    async def heartbeat(self, info: Info, agent_id: strawberry.ID) -> Agent:
        return Agent.of(
            await info.context.runtime.agents.heartbeat(info.context.principal, agent_id)
        )

    @mutation(IsAgent, "Take the next task this agent can do; null when there is none.")
    async def claim_task(self, info: Info, agent_id: strawberry.ID) -> Task | None:
        state = await info.context.runtime.tasks.claim(info.context.principal, agent_id)
        return Task.of(state) if state else None

    @mutation(IsAgent, "Report progress (0..1) on a task this agent holds.")
    async def report_progress(
        self, info: Info, task_id: strawberry.ID, progress: float, message: str | None = None
    ) -> Task:
        ctx = info.context
        return Task.of(
            await ctx.runtime.tasks.report_progress(ctx.principal, task_id, progress, message)
        )

    @mutation(IsAgent, "Finish a task this agent holds.")
    async def complete_task(
        self, info: Info, task_id: strawberry.ID, result: JSON | None = None
    ) -> Task:
        ctx = info.context
        return Task.of(await ctx.runtime.tasks.complete(ctx.principal, task_id, result))

    @mutation(IsAgent, "Fail a task this agent holds; requeued while attempts are left.")
    async def fail_task(
        self, info: Info, task_id: strawberry.ID, error: str, retry: bool | None = True
    ) -> Task:
        ctx = info.context
        return Task.of(
            await ctx.runtime.tasks.fail(ctx.principal, task_id, error, retry is not False)
        )

    @mutation(IsOperator, "Start a multi-step workflow (OPERATOR).")
    async def start_workflow(self, info: Info, input: StartWorkflowInput) -> Workflow:
        ctx = info.context
        steps = [StepInput(s.name, s.capability, s.input) for s in input.steps]
        return Workflow.of(
            await ctx.runtime.workflows.start(ctx.principal, name=input.name, steps=steps)
        )

    @mutation(IsOperator, "Cancel a workflow and its running step (OPERATOR).")
    async def cancel_workflow(self, info: Info, id: strawberry.ID) -> Workflow:
        return Workflow.of(await info.context.runtime.workflows.cancel(info.context.principal, id))
