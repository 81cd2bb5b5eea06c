"""A huge document is refused by the token limit without stalling anyone else."""

from __future__ import annotations

import asyncio
import time

from tests.support.graphql import WSClient
from tests.support.server import LiveServer


async def test_a_huge_subscription_document_is_refused_while_others_are_answered(
    module_server: LiveServer,
) -> None:
    token = module_server.token("VIEWER", sub="huge")
    bystander_token = module_server.token("VIEWER", sub="bystander")
    # About 900 KB: under MAX_MESSAGE_BYTES, far over MAX_TOKENS.
    huge = "subscription { events { " + "id " * 300_000 + "} }"
    async with (
        await WSClient.connect(module_server.ws_url, token) as attacker,
        await WSClient.connect(module_server.ws_url, bystander_token) as bystander,
    ):
        await attacker.subscribe("huge", huge)
        # The bystander pings, one ping always in flight, from before the server can
        # have read the document until its refusal is back: a stall anywhere in its
        # handling (it is parsed more than once) holds up a pong for as long.
        slowest, pongs = 0.0, []
        async with asyncio.TaskGroup() as tasks:
            refusal = tasks.create_task(attacker.next_for("huge", within=10))
            while not refusal.done():
                started = time.monotonic()
                await bystander.send({"type": "ping"})
                pongs.append(await bystander.recv(within=5))
                slowest = max(slowest, time.monotonic() - started)
        refused = refusal.result()

    assert pongs and all(pong["type"] == "pong" for pong in pongs)
    assert refused["type"] == "error"
    assert refused["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # The parser gave up at the token limit rather than reading 900 KB...
    assert "tokens" in refused["payload"][0]["message"], refused
    # ...so the loop was free. Parsing the whole document takes over 10 s on this
    # machine (and validating its 300,000 fields far longer); a loaded machine may
    # make a ping itself take a second or two, which is why the bound is loose.
    assert slowest < 5.0, f"the event loop stalled for {slowest:.2f}s"
