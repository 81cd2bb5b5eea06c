"""Reads filter exactly what they say."""

from __future__ import annotations

from api.auth.principal import Principal
from api.runtime import Runtime
from tests.domain.helpers import register


async def test_capability_filter_takes_underscores_literally(
    runtime: Runtime, operator: Principal, tenant: str
) -> None:
    wanted = await register(runtime, operator, name="gen", capabilities=["code_gen"])
    await register(runtime, operator, name="lookalike", capabilities=["codeXgen"])
    await register(runtime, operator, name="other", capabilities=["code", "gen"])

    page = await runtime.reads.agents(
        tenant, statuses=None, capability="code_gen", first=50, after=None
    )

    assert [agent.id for _, agent in page.items] == [wanted.id]
    assert page.total_count == 1
