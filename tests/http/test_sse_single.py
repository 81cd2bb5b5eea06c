"""GraphQL over SSE, single-connection mode: reservations, operations by id, DELETE to stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest

from api.settings import Settings
from tests.http.streams import SSE, EventStream, all_closed, request_body, streams_open, subscribed
from tests.realtime.activity import Tenant
from tests.support.databases import sqlite_url
from tests.support.server import LiveServer, shared_settings
from tests.support.waiting import PATIENCE, until

TOKEN = "X-GraphQL-Event-Stream-Token"
TASKS = "subscription { taskUpdates { title status } }"
MAX_OPERATIONS = 3
LAPSE = 0.5  # seconds a reservation waits for its stream (WS_INIT_TIMEOUT)


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """On SQLite: the wire format is under test, not the database."""
    data = tmp_path_factory.mktemp("sse1")
    return shared_settings(
        sqlite_url(data),
        data,
        http_stream_keepalive=0.2,
        max_subscriptions_per_socket=MAX_OPERATIONS,
        ws_init_timeout=LAPSE,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def reserve(client: httpx.AsyncClient, server: LiveServer, token: str) -> str:
    response = await client.put(server.url, headers=bearer(token))
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


@asynccontextmanager
async def connected(
    client: httpx.AsyncClient, server: LiveServer, reservation: str
) -> AsyncIterator[EventStream]:
    headers = {"Accept": SSE, TOKEN: reservation}
    async with client.stream("GET", server.url, headers=headers) as response:
        assert response.status_code == 200
        yield EventStream(response)


async def start(
    client: httpx.AsyncClient,
    server: LiveServer,
    reservation: str,
    op_id: str | None,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
) -> httpx.Response:
    extensions = {"operationId": op_id} if op_id is not None else {}
    headers = {TOKEN: reservation, **(bearer(token) if token else {})}
    return await client.post(
        server.url, json=request_body(query, variables, extensions=extensions), headers=headers
    )


async def test_operations_run_on_one_reserved_stream_and_delete_stops_one(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    t = Tenant(server, tenant)
    viewer = server.token("VIEWER", tenant=tenant)
    reservation = await reserve(client, server, viewer)
    async with connected(client, server, reservation) as stream:
        assert streams_open(server) == 1
        a = await start(client, server, reservation, "a", TASKS, token=viewer)
        b = await start(client, server, reservation, "b", "subscription { events { type } }")
        assert (a.status_code, b.status_code) == (202, 202)
        await subscribed(server, 2)
        await t.create_task("first")
        got = sorted([await stream.expect("next"), await stream.expect("next")], key=str)
        assert got == [
            {
                "id": "a",
                "payload": {"data": {"taskUpdates": {"title": "first", "status": "PENDING"}}},
            },
            {"id": "b", "payload": {"data": {"events": {"type": "TASK_CREATED"}}}},
        ]

        stop = await client.delete(
            server.url, params={"operationId": "a"}, headers={TOKEN: reservation}
        )
        assert stop.status_code == 200
        await subscribed(server, 1)
        await t.create_task("second")
        assert await stream.expect("next") == {
            "id": "b",
            "payload": {"data": {"events": {"type": "TASK_CREATED"}}},
        }
    await all_closed(server)


async def test_an_operation_that_ends_sends_complete_with_its_id_and_the_stream_goes_on(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    reservation = await reserve(client, server, viewer)
    async with connected(client, server, reservation) as stream:
        assert (
            await start(client, server, reservation, "q", "{ me { tenant } }")
        ).status_code == 202
        assert await stream.expect("next") == {
            "id": "q",
            "payload": {"data": {"me": {"tenant": tenant}}},
        }
        assert await stream.expect("complete") == {"id": "q"}
        bad = await start(client, server, reservation, "v", "subscription { nope }")
        assert bad.status_code == 202
        rejected = await stream.expect("next")
        assert await stream.expect("complete") == {"id": "v"}
        assert streams_open(server) == 1
    assert rejected["id"] == "v"
    assert rejected["payload"]["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_requests_that_break_the_protocol_get_its_status_codes(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    unknown = await start(client, server, "no-such-token", "a", TASKS)
    assert unknown.status_code == 404
    reservation = await reserve(client, server, viewer)
    async with connected(client, server, reservation):
        second = await client.get(server.url, headers={"Accept": SSE, TOKEN: reservation})
        assert second.status_code == 409  # one stream per reservation
        assert (await start(client, server, reservation, None, TASKS)).status_code == 400
        assert (await start(client, server, reservation, "a", TASKS)).status_code == 202
        assert (await start(client, server, reservation, "a", TASKS)).status_code == 409
        missing = await client.delete(server.url, headers={TOKEN: reservation})
        assert missing.status_code == 400
        other = server.token("VIEWER", sub="someone-else", tenant=tenant)
        foreign = await start(client, server, reservation, "b", TASKS, token=other)
        assert foreign.status_code == 403
        assert foreign.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    unauthenticated = await client.put(server.url)
    assert unauthenticated.status_code == 401


async def test_operations_beyond_the_limit_per_stream_are_refused_and_the_others_go_on(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    t = Tenant(server, tenant)
    viewer = server.token("VIEWER", tenant=tenant)
    reservation = await reserve(client, server, viewer)
    async with connected(client, server, reservation) as stream:
        for i in range(MAX_OPERATIONS):
            assert (await start(client, server, reservation, f"op{i}", TASKS)).status_code == 202
        over = await start(client, server, reservation, "over", TASKS)
        assert over.status_code == 429
        (error,) = over.json()["errors"]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        await subscribed(server, MAX_OPERATIONS)
        await t.create_task("fan")
        ids = sorted([(await stream.expect("next"))["id"] for _ in range(MAX_OPERATIONS)])
    assert ids == [f"op{i}" for i in range(MAX_OPERATIONS)]


async def test_operations_started_before_the_stream_opens_are_delivered_once_it_does(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    reservation = await reserve(client, server, viewer)
    assert (
        await start(client, server, reservation, "early", "{ me { tenant } }")
    ).status_code == 202
    async with connected(client, server, reservation) as stream:
        assert await stream.expect("next") == {
            "id": "early",
            "payload": {"data": {"me": {"tenant": tenant}}},
        }


async def test_a_reservation_never_connected_lapses(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    reservation = await reserve(client, server, viewer)
    assert (await start(client, server, reservation, "a", TASKS)).status_code == 202

    # Poll the reservation: DELETE of an unknown operation is 200 while it exists.
    deadline = asyncio.get_running_loop().time() + LAPSE + PATIENCE
    while True:
        answer = await client.delete(
            server.url, params={"operationId": "x"}, headers={TOKEN: reservation}
        )
        if answer.status_code == 404:
            break
        assert asyncio.get_running_loop().time() < deadline, "the reservation never lapsed"
        await asyncio.sleep(0.05)
    await until(lambda: server.runtime.bus.subscriber_count == 0, 5, "its operation to stop")


async def test_closing_the_stream_ends_its_operations_and_its_reservation(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    reservation = await reserve(client, server, viewer)
    async with connected(client, server, reservation):
        for op in ("a", "b"):
            assert (await start(client, server, reservation, op, TASKS)).status_code == 202
        await subscribed(server, 2)
    await all_closed(server)
    assert (await start(client, server, reservation, "c", TASKS)).status_code == 404


async def test_at_the_tokens_expiry_every_operation_ends_with_unauthenticated_then_the_stream(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    short = server.token("VIEWER", tenant=tenant, ttl=timedelta(seconds=2))
    reservation = await reserve(client, server, short)
    async with connected(client, server, reservation) as stream:
        for op in ("a", "b"):
            assert (await start(client, server, reservation, op, TASKS)).status_code == 202
        ended = [await stream.next(within=10) for _ in range(4)]
        await stream.ended()
    expired = {"message": "Token expired", "extensions": {"code": "UNAUTHENTICATED"}}
    assert sorted((e.event, e.data["id"]) for e in ended if e is not None) == [
        ("complete", "a"),
        ("complete", "b"),
        ("next", "a"),
        ("next", "b"),
    ]
    for event in ended:
        assert event is not None
        if event.event == "next":
            assert event.data["payload"] == {"data": None, "errors": [expired]}
    await all_closed(server)


async def test_an_event_source_presents_its_token_in_the_url_and_no_one_else_does(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    reservation = await reserve(client, server, viewer)
    params = {"token": reservation}
    async with client.stream("GET", server.url, params=params, headers={"Accept": SSE}) as stream:
        assert stream.status_code == 200
        assert (
            await start(client, server, reservation, "q", "{ me { tenant } }")
        ).status_code == 202
        assert (await EventStream(stream).expect("next"))["id"] == "q"
    # A browser opening GraphiQL with a JWT in its URL gets GraphiQL, not this protocol.
    page = await client.get(server.url, params={"token": viewer}, headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
