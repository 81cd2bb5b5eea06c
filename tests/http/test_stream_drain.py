"""A drain ends HTTP subscription streams as it closes sockets: as a dropped connection
(no ``complete``, no closing delimiter), so clients reconnect elsewhere; new streams get
503 with Retry-After. (tests/realtime/test_drain.py stops real processes.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.http.streams import SSE, all_closed, multipart, request_body, sse, subscribed
from tests.realtime.activity import Tenant
from tests.support.server import live_server, make_settings
from tests.support.waiting import PATIENCE

TASKS = "subscription { taskUpdates { title } }"


async def test_a_drain_ends_open_streams_without_complete_and_refuses_new_ones(
    tmp_path: Path, tenant: str
) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'mark1.db'}", tmp_path)
    with live_server(settings) as live:
        viewer = live.token("VIEWER", tenant=tenant)
        async with (
            httpx.AsyncClient(timeout=30) as client,
            sse(client, live, viewer, TASKS) as events,
            multipart(client, live, viewer, TASKS) as parts,
        ):
            await subscribed(live, 2)
            await Tenant(live, tenant).create_task("before the drain")
            before = await events.expect("next")
            part = await parts.payload()

            live.runtime.drain.request()  # as SIGTERM does
            await events.ended()  # the response ends with no `complete` event
            rest = await parts.rest()
            # Bounded: were it not refused, the stream's keep-alives would hold it open.
            async with asyncio.timeout(PATIENCE):
                refused = await client.post(
                    live.url,
                    json=request_body(TASKS),
                    headers={"Accept": SSE, "Authorization": f"Bearer {viewer}"},
                )
        await all_closed(live)

    assert before == {"data": {"taskUpdates": {"title": "before the drain"}}}
    assert part == {"data": {"taskUpdates": {"title": "before the drain"}}}
    assert not rest.rstrip().endswith(b"--graphql--"), rest
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
