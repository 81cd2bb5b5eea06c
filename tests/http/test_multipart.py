"""Multipart subscriptions over HTTP (Apollo's protocol, subscriptionSpec 1.0), over raw httpx."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from api.settings import Settings
from tests.http.streams import (
    MULTIPART,
    all_closed,
    multipart,
    request_body,
    streams_open,
    subscribed,
)
from tests.realtime.activity import Tenant
from tests.support.databases import sqlite_url
from tests.support.server import LiveServer, shared_settings

TASKS = "subscription { taskUpdates { title status } }"
EVENTS = "subscription($after: ID) { events(after: $after) { id task { title } } }"
PROGRESS = "subscription($w: ID!) { workflowProgress(workflowId: $w) { workflow { status } } }"
CONTENT_TYPE = 'multipart/mixed; boundary="graphql"; subscriptionSpec="1.0"'


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """On SQLite: the wire format is under test, not the database."""
    data = tmp_path_factory.mktemp("multipart")
    return shared_settings(sqlite_url(data), data, http_stream_keepalive=0.2)


@pytest.mark.parametrize(
    "accept",
    [
        MULTIPART,  # Apollo's docs
        "multipart/mixed;boundary=graphql;subscriptionSpec=1.0,application/json",  # Apollo Client
        'multipart/mixed; boundary="graphql"; subscriptionSpec="1.0", application/json',
    ],
    ids=["docs", "apollo-client", "quoted-boundary"],
)
async def test_a_finished_subscription_is_a_heartbeat_a_payload_part_and_the_closing_delimiter(
    client: httpx.AsyncClient, server: LiveServer, tenant: str, accept: str
) -> None:
    t = Tenant(server, tenant)
    workflow = await t.start_workflow("done", ["only"])
    await t.cancel_workflow(workflow)
    viewer = server.token("VIEWER", tenant=tenant)
    async with multipart(client, server, viewer, PROGRESS, {"w": workflow}, accept=accept) as parts:
        assert parts.response.status_code == 200
        assert parts.response.headers["content-type"] == CONTENT_TYPE
        result = await parts.payload()
        assert await parts.part() is None
        body = await parts.rest()
    assert result == {"data": {"workflowProgress": {"workflow": {"status": "CANCELLED"}}}}
    heartbeat = b"\r\n--graphql\r\nContent-Type: application/json\r\n\r\n{}"
    assert body.startswith(heartbeat)
    assert body.endswith(
        b'{"payload":{"data":{"workflowProgress":{"workflow":{"status":"CANCELLED"}}}}}\r\n--graphql--\r\n'
    )


async def test_live_events_arrive_as_parts_with_heartbeats_between_them(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    t = Tenant(server, tenant)
    viewer = server.token("VIEWER", tenant=tenant)
    async with multipart(client, server, viewer, TASKS) as parts:
        await subscribed(server, 1)
        await t.create_task("one")
        first = await parts.payload()
        assert [await parts.any_part(), await parts.any_part()] == [{}, {}]  # idle: heartbeats
        await t.create_task("two")
        second = await parts.payload()
    assert first == {"data": {"taskUpdates": {"title": "one", "status": "PENDING"}}}
    assert second == {"data": {"taskUpdates": {"title": "two", "status": "PENDING"}}}
    await all_closed(server)


async def test_events_after_an_id_replay_then_go_live(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    t = Tenant(server, tenant)
    await t.create_task("old")
    viewer = server.token("VIEWER", tenant=tenant)
    async with multipart(client, server, viewer, EVENTS, {"after": "0"}) as parts:
        old = await parts.payload()
        await subscribed(server, 1)
        await t.create_task("new")
        new = await parts.payload()
    assert [old["data"]["events"], new["data"]["events"]] == [
        {"id": "1", "task": {"title": "old"}},
        {"id": "2", "task": {"title": "new"}},
    ]


async def test_a_document_that_cannot_run_is_a_payload_with_its_errors(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    async with multipart(client, server, viewer, "subscription { systemMetrics { at } }") as parts:
        result = await parts.payload()
        assert await parts.part() is None
    assert [e["extensions"]["code"] for e in result["errors"]] == ["FORBIDDEN"]


async def test_an_expired_token_ends_the_stream_with_a_fatal_error_part(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    short = server.token("VIEWER", tenant=tenant, ttl=timedelta(seconds=2))
    async with multipart(client, server, short, TASKS) as parts:
        fatal = await parts.part(within=10)
        assert await parts.part() is None
    assert fatal == {
        "payload": None,
        "errors": [{"message": "Token expired", "extensions": {"code": "UNAUTHENTICATED"}}],
    }


async def test_a_query_or_a_broken_document_with_the_multipart_accept_gets_plain_json(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    headers = {
        "Accept": MULTIPART,
        "Authorization": f"Bearer {server.token('VIEWER', tenant=tenant)}",
    }
    query = await client.post(server.url, json=request_body("{ me { tenant } }"), headers=headers)
    assert query.headers["content-type"] == "application/json"
    assert query.json() == {"data": {"me": {"tenant": tenant}}}
    broken = await client.post(server.url, json=request_body("subscription {"), headers=headers)
    assert broken.headers["content-type"] == "application/json"
    assert broken.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert streams_open(server) == 0


async def test_without_a_token_the_subscription_is_refused_with_401(
    client: httpx.AsyncClient, server: LiveServer
) -> None:
    response = await client.post(
        server.url, json=request_body(TASKS), headers={"Accept": MULTIPART}
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_client_that_disconnects_ends_its_subscription_at_once(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    async with multipart(client, server, viewer, TASKS), multipart(client, server, viewer, TASKS):
        await subscribed(server, 2)
        assert streams_open(server) == 2
    await all_closed(server)
