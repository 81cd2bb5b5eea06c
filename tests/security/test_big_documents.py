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
    # Parsing 900 KB without the token limit took seconds; with it, a blink.
    assert answered_in < 1.0, f"the event loop stalled for {answered_in:.2f}s"
    assert refused["type"] == "error"
    assert refused["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
