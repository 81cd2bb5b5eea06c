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
        await asyncio.sleep(0.3)  # the server has it and is working on it
        started = time.monotonic()
        await bystander.send({"type": "ping"})
        pong = await bystander.recv(within=5)
        answered_in = time.monotonic() - started
        refused = await attacker.next_for("huge", within=10)

    assert pong["type"] == "pong"
    assert refused["type"] == "error"
    assert refused["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # The parser gave up at the token limit rather than reading 900 KB...
    assert "tokens" in refused["payload"][0]["message"], refused
    # ...so the loop was free. Parsing the whole document takes over 10 s on this
    # machine (and validating its 300,000 fields far longer); a loaded machine may
    # make the ping itself take a second or two, which is why the bound is loose.
    assert answered_in < 5.0, f"the event loop stalled for {answered_in:.2f}s"
