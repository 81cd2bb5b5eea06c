"""Page through the whole event history over HTTP, then follow live over WebSocket.

    MARK1_URL=http://127.0.0.1:8000/graphql MARK1_TOKEN=… python client/examples/integrator.py

Prints one line per event and never misses or repeats one: the live stream
starts after the last event the history returned, and resumes by itself after
a dropped connection, a server restart or (with a token provider) an expired token.
"""

import asyncio
import os

from mark1_client import Event, Mark1Client


def show(event: Event) -> None:
    what = event.task.title if event.task else event.agent.name if event.agent else ""
    print(f"#{event.id} {event.type} {what}", flush=True)


async def main() -> None:
    async with Mark1Client(os.environ["MARK1_URL"], os.environ["MARK1_TOKEN"]) as client:
        last = "0"
        async for event in client.history(after=last, page_size=100):  # oldest first
            show(event)
            last = event.id
        async for event in client.events(after=last):  # then live, from where history ended
            show(event)


asyncio.run(main())
