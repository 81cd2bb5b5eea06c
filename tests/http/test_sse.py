"""GraphQL over SSE, distinct-connections mode (graphql-sse PROTOCOL.md), over raw httpx."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta

import httpx
import pytest

from api.settings import Settings
from tests.http.streams import (
    SSE,
    EventStream,
    all_closed,
    request_body,
    sse,
    streams_open,
    subscribed,
)
from tests.realtime.activity import Tenant
from tests.support.databases import sqlite_url
from tests.support.server import LiveServer, shared_settings
from tests.support.waiting import until

TASKS = "subscription { taskUpdates { title status } }"
EVENTS = "subscription($after: ID) { events(after: $after) { id type task { title } } }"
PROGRESS = "subscription($w: ID!) { workflowProgress(workflowId: $w) { workflow { status } } }"
KEEPALIVE = 0.2


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """On SQLite: the wire format is under test, not the database (replay runs on both
    elsewhere)."""
    data = tmp_path_factory.mktemp("sse")
    return shared_settings(sqlite_url(data), data, http_stream_keepalive=KEEPALIVE)


async def test_a_subscription_streams_each_change_as_a_next_event(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    t = Tenant(server, tenant)
    async with sse(client, server, server.token("VIEWER", tenant=tenant), TASKS) as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert stream.response.headers["cache-control"] == "no-cache, no-transform"
        await subscribed(server, 1)
        task = await t.create_task("over sse")
        await t.cancel_task(task["id"])
        first = await stream.expect("next")
        second = await stream.expect("next")
    assert first == {"data": {"taskUpdates": {"title": "over sse", "status": "PENDING"}}}
    assert second == {"data": {"taskUpdates": {"title": "over sse", "status": "CANCELLED"}}}


async def test_a_subscription_that_completes_sends_complete_and_ends_the_response(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    t = Tenant(server, tenant)
    workflow = await t.start_workflow("done", ["only"])
    await t.cancel_workflow(workflow)
    viewer = server.token("VIEWER", tenant=tenant)
    async with sse(client, server, viewer, PROGRESS, {"w": workflow}) as stream:
        state = await stream.expect("next")
        assert await stream.expect("complete") is None
        await stream.ended()
    assert state == {"data": {"workflowProgress": {"workflow": {"status": "CANCELLED"}}}}


async def test_a_validation_error_is_a_next_event_carrying_the_errors_then_complete(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    async with sse(client, server, viewer, "subscription { nope }") as stream:
        assert stream.response.status_code == 200
        result = await stream.expect("next")
        await stream.expect("complete")
        await stream.ended()
    assert "data" not in result
    (error,) = result["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "nope" in error["message"]


async def test_a_subscription_the_role_may_not_run_ends_with_forbidden_in_a_next_event(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    async with sse(client, server, viewer, "subscription { systemMetrics { at } }") as stream:
        result = await stream.expect("next")
        await stream.expect("complete")
    assert [e["extensions"]["code"] for e in result["errors"]] == ["FORBIDDEN"]


async def test_a_query_over_sse_is_one_next_event_then_complete(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", sub="ann", tenant=tenant)
    async with sse(client, server, viewer, "{ me { subject tenant } }") as stream:
        result = await stream.expect("next")
        await stream.expect("complete")
        await stream.ended()
    assert result == {"data": {"me": {"subject": "ann", "tenant": tenant}}}


# urql's fetch exchange sends this Accept with every request: text/event-stream and
# multipart/mixed only if the server must (an incremental or streamed result).
URQL_ACCEPT = (
    "application/graphql-response+json, application/graphql+json, application/json, "
    "text/event-stream, multipart/mixed"
)


async def test_a_client_ranking_json_first_gets_json_for_a_query_and_a_stream_for_a_subscription(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    headers = {"Accept": URQL_ACCEPT, "Authorization": f"Bearer {viewer}"}
    answer = await client.post(server.url, json=request_body("{ me { subject } }"), headers=headers)
    unauthenticated = await client.post(
        server.url, json=request_body("{ me { role } }"), headers={"Accept": URQL_ACCEPT}
    )
    assert answer.headers["content-type"].startswith("application/graphql-response+json")
    assert "subject" in answer.json()["data"]["me"]
    assert unauthenticated.headers["content-type"].startswith("application/graphql-response+json")

    async with sse(client, server, viewer, TASKS, headers={"Accept": URQL_ACCEPT}) as stream:
        assert stream.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        await subscribed(server, 1)
        await Tenant(server, tenant).create_task("to urql")
        assert await stream.expect("next") == {
            "data": {"taskUpdates": {"title": "to urql", "status": "PENDING"}}
        }


async def test_a_get_with_the_query_in_the_url_streams_too_but_never_runs_a_mutation(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    t = Tenant(server, tenant)
    await t.create_task("before")
    params = {"query": EVENTS, "variables": json.dumps({"after": "0"})}
    headers = {"Accept": SSE, "Authorization": f"Bearer {t.token}"}
    async with client.stream("GET", server.url, params=params, headers=headers) as response:
        first = await EventStream(response).expect("next")
    assert first["data"]["events"]["task"] == {"title": "before"}

    mutation = {"query": 'mutation { createTask(input: {title: "no"}) { id } }'}
    async with client.stream("GET", server.url, params=mutation, headers=headers) as response:
        result = await EventStream(response).expect("next")
    assert result["errors"][0]["message"] == "Mutations cannot run over GET"
    assert await t.event_ids() == [1]


@pytest.mark.parametrize(
    "authorization", [None, "Bearer not-a-token", "Basic abc"], ids=["none", "bad", "scheme"]
)
async def test_without_a_good_token_the_stream_is_refused_with_401_before_anything_runs(
    client: httpx.AsyncClient, server: LiveServer, authorization: str | None
) -> None:
    headers = {"Accept": SSE, **({"Authorization": authorization} if authorization else {})}
    response = await client.post(server.url, json=request_body(TASKS), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert streams_open(server) == 0


async def test_events_after_an_id_replay_the_history_then_go_live_without_gap_or_duplicate(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    t = Tenant(server, tenant)
    for title in ("one", "two", "three"):
        await t.create_task(title)
    viewer = server.token("VIEWER", tenant=tenant)
    async with sse(client, server, viewer, EVENTS, {"after": "1"}) as stream:
        seen = [(await stream.expect("next"))["data"]["events"] for _ in range(2)]
        await subscribed(server, 1)
        await t.create_task("four")
        seen.append((await stream.expect("next"))["data"]["events"])
    assert [(e["id"], e["task"]["title"]) for e in seen] == [
        ("2", "two"),
        ("3", "three"),
        ("4", "four"),
    ]


async def test_a_tenant_never_sees_another_tenants_events(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    mine, other = Tenant(server, tenant), Tenant(server, tenant + "x")
    viewer = server.token("VIEWER", tenant=tenant)
    async with sse(client, server, viewer, EVENTS) as stream:
        await subscribed(server, 1)
        await other.create_task("not yours")
        await mine.create_task("yours")
        first = (await stream.expect("next"))["data"]["events"]
    assert first["task"] == {"title": "yours"}
    assert first["id"] == "1"  # ids count per tenant: the other tenant's event is not here


async def test_keep_alive_comments_flow_while_no_event_does(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    async with sse(client, server, viewer, TASKS) as stream:
        raw = stream.response.aiter_raw()
        seen = b""
        while seen.count(b":\n\n") < 3:  # the opening comment, then one per KEEPALIVE
            seen += await anext(raw)
    assert seen.strip(b":\n") == b""  # nothing but comments while nothing happens


async def test_a_client_that_disconnects_ends_its_subscription_at_once(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    query = "subscription($after: ID) { events(after: $after) { id } }"
    async with (
        sse(client, server, viewer, TASKS),
        sse(client, server, viewer, query, {"after": "0"}),
    ):
        await subscribed(server, 2)
        assert streams_open(server) == 2
        assert server.runtime.bus.subscriber_count >= 1
    await all_closed(server)


async def test_at_the_tokens_expiry_the_stream_ends_with_unauthenticated_then_complete(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    short = server.token("VIEWER", tenant=tenant, ttl=timedelta(seconds=2))
    t = Tenant(server, tenant)
    async with sse(client, server, short, EVENTS, {"after": "0"}) as stream:
        await subscribed(server, 1)
        await t.create_task("seen")
        assert (await stream.expect("next"))["data"]["events"]["id"] == "1"
        result = await stream.expect("next", within=10)
        await stream.expect("complete")
        await stream.ended()
    assert result["data"] is None
    assert result["errors"] == [
        {"message": "Token expired", "extensions": {"code": "UNAUTHENTICATED"}}
    ]
    await until(lambda: streams_open(server) == 0, 5, "the expired stream to close")


async def test_persisted_queries_round_trip_over_sse(
    client: httpx.AsyncClient, server: LiveServer, tenant: str
) -> None:
    query = f"query Apq{uuid.uuid4().hex} {{ me {{ tenant }} }}"
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha256(query)}}
    viewer = server.token("VIEWER", tenant=tenant)
    headers = {"Accept": SSE, "Authorization": f"Bearer {viewer}"}

    async def ask(body: dict[str, object]) -> object:
        async with client.stream("POST", server.url, json=body, headers=headers) as response:
            events = EventStream(response)
            result = await events.expect("next")
            await events.expect("complete")
            return result

    missing = await ask({"extensions": extensions})
    assert missing == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }
    expected = {"data": {"me": {"tenant": tenant}}}
    assert await ask({"query": query, "extensions": extensions}) == expected
    assert await ask({"extensions": extensions}) == expected
