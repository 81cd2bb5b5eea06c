"""A Mark-1 agent in about 20 lines: claims tasks, reports progress, returns a result."""

import asyncio
import os
import signal

from mark1_client import Agent, Task


async def summarize(task: Task, agent: Agent) -> dict[str, str]:
    text = str((task.input or {}).get("text", ""))
    for step in (1, 2, 3):
        await asyncio.sleep(0.2)  # the real work: call a model, run a tool, ...
        await agent.progress(step / 4, f"step {step} of 3")
    return {"summary": text[:40]}  # completes the task; an exception fails it (retried)


async def main() -> None:
    async with Agent(os.environ["MARK1_URL"], os.environ["MARK1_AGENT_TOKEN"]) as agent:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, agent.stop)
        await agent.run(summarize)  # until SIGTERM: finishes the current task, then exits


asyncio.run(main())
