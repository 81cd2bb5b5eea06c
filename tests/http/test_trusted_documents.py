"""Trusted-documents mode (MARK1_TRUSTED_DOCUMENTS): only the manifest's documents run,
named by documentId, by APQ hash or sent as their exact text, over HTTP and both
socket protocols; anything else is PERSISTED_QUERY_NOT_ALLOWED."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from api.settings import Settings
from resolvers.schema import STATS
from tests.http.streams import MULTIPART, SSE, EventStream, PartStream
from tests.realtime.wire import PROTOCOLS, Protocol, Socket
from tests.support.server import LiveServer, live_server, make_settings

URL = "/graphql"
# Unique texts, so the first use in this module misses the parse and validation caches.
ME = f"query Me{uuid.uuid4().hex} {{ me {{ subject tenant }} }}"
CREATE = (
    f"mutation Create{uuid.uuid4().hex}($title: String!) "
    "{ createTask(input: {title: $title}) { id title } }"
)
FEED = f"subscription Feed{uuid.uuid4().hex}($after: ID) {{ events(after: $after) {{ id type }} }}"
UNLISTED = "query Unlisted { me { subject } }"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def document_id(text: str) -> str:
    """The id graphql-codegen's client preset gives a document (sha256 by default)."""
    return f"sha256:{sha256(text)}"


def apq(text: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256(text)}}


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('trusted') / 'mark1.db'}"


@pytest.fixture(scope="module")
def module_settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    directory = tmp_path_factory.mktemp("manifest")
    manifest = directory / "persisted-documents.json"
    manifest.write_text(json.dumps({document_id(text): text for text in (ME, CREATE, FEED)}))
    return make_settings(
        database_url, tmp_path_factory.mktemp("data"), trusted_documents=str(manifest)
    )


@pytest.fixture(scope="module")
def server(module_settings: Settings) -> Iterator[LiveServer]:
    with live_server(module_settings) as live:
        yield live


@pytest.fixture
async def http(server: LiveServer, tenant: str) -> AsyncIterator[httpx.AsyncClient]:
    token = server.token("OPERATOR", tenant=tenant)
    async with httpx.AsyncClient(
        base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        yield client


def refused(body: dict[str, Any]) -> str:
    """The message of a PERSISTED_QUERY_NOT_ALLOWED refusal (and no data)."""
    assert "data" not in body, body
    [error] = body["errors"]
    assert error["extensions"] == {"code": "PERSISTED_QUERY_NOT_ALLOWED"}, body
    message: str = error["message"]
    return message


async def test_a_listed_document_runs_by_document_id_hash_or_text(
    http: httpx.AsyncClient, tenant: str
) -> None:
    expected = {"data": {"me": {"subject": "tester", "tenant": tenant}}}
    requests = [
        {"documentId": document_id(ME)},  # as the client preset sends it
        {"documentId": sha256(ME)},
        {"extensions": apq(ME)},
        {"query": ME},
        {"query": ME, "extensions": apq(ME)},
    ]
    for request in requests:
        assert (await http.post(URL, json=request)).json() == expected, request
    assert (await http.get(URL, params={"documentId": document_id(ME)})).json() == expected
    created = await http.post(
        URL, json={"documentId": document_id(CREATE), "variables": {"title": "trusted"}}
    )
    assert created.json()["data"]["createTask"]["title"] == "trusted"


async def test_anything_else_is_refused(http: httpx.AsyncClient) -> None:
    assert "not in its manifest" in refused((await http.post(URL, json={"query": UNLISTED})).json())
    unknown = await http.post(URL, json={"documentId": document_id(UNLISTED)})
    assert sha256(UNLISTED) in refused(unknown.json())
    by_hash = await http.get(URL, params={"extensions": json.dumps(apq(UNLISTED))})
    refused(by_hash.json())
    # An APQ registration adds nothing in this mode.
    registering = await http.post(URL, json={"query": UNLISTED, "extensions": apq(UNLISTED)})
    refused(registering.json())
    refused((await http.post(URL, json={"extensions": apq(UNLISTED)})).json())
    # Not even introspection, unless the manifest lists it.
    refused((await http.post(URL, json={"query": "{ __typename }"})).json())


async def test_a_refusal_is_a_400_for_graphql_response_json(http: httpx.AsyncClient) -> None:
    response = await http.post(
        URL,
        json={"documentId": document_id(UNLISTED)},
        headers={"Accept": "application/graphql-response+json"},
    )
    assert response.status_code == 400
    refused(response.json())


async def test_a_listed_document_is_parsed_and_validated_once(http: httpx.AsyncClient) -> None:
    # CREATE's first use may have been an earlier test's; one more request makes sure.
    variables = {"title": "first"}
    await http.post(URL, json={"documentId": document_id(CREATE), "variables": variables})
    before = STATS.parses, STATS.validations
    for title in ("second", "third"):
        body = await http.post(
            URL, json={"documentId": document_id(CREATE), "variables": {"title": title}}
        )
        assert body.json()["data"]["createTask"]["title"] == title
    assert (STATS.parses, STATS.validations) == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_sockets_run_listed_subscriptions_and_refuse_others(
    server: LiveServer, http: httpx.AsyncClient, tenant: str, protocol: Protocol
) -> None:
    await http.post(URL, json={"documentId": document_id(CREATE), "variables": {"title": "t"}})
    kind = "subscribe" if protocol == "graphql-transport-ws" else "start"
    token = server.token("VIEWER", tenant=tenant)
    variables = {"after": "0"}
    async with await Socket.open(server.ws_url, token, protocol=protocol) as socket:
        await socket.send(
            {
                "id": "listed",
                "type": kind,
                "payload": {"documentId": document_id(FEED), "variables": variables},
            }
        )
        assert (await socket.field("listed")) == {"id": "1", "type": "TASK_CREATED"}

        unlisted = 'subscription { events(after: "0") { id } }'
        await socket.send(
            {"id": "unlisted", "type": kind, "payload": {"query": unlisted, "variables": {}}}
        )
        refused({"errors": [await socket.error("unlisted")]})

        await socket.send(
            {
                "id": "by-hash",
                "type": kind,
                "payload": {"extensions": apq(FEED), "variables": variables},
            }
        )
        assert (await socket.field("by-hash")) == {"id": "1", "type": "TASK_CREATED"}
        for op in ("listed", "by-hash"):
            await socket.stop(op)


async def test_http_streams_run_listed_subscriptions_and_refuse_others(
    server: LiveServer, http: httpx.AsyncClient, tenant: str
) -> None:
    await http.post(URL, json={"documentId": document_id(CREATE), "variables": {"title": "t"}})
    token = server.token("VIEWER", tenant=tenant)
    listed = {"documentId": document_id(FEED), "variables": {"after": "0"}}
    unlisted = {"query": 'subscription { events(after: "0") { id } }'}
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30) as client:
        async with client.stream(
            "POST", server.url, json=listed, headers={**auth, "Accept": SSE}
        ) as response:
            assert await EventStream(response).expect("next") == {
                "data": {"events": {"id": "1", "type": "TASK_CREATED"}}
            }
        async with client.stream(
            "POST", server.url, json=unlisted, headers={**auth, "Accept": SSE}
        ) as response:
            events = EventStream(response)
            refused(await events.expect("next"))
            await events.expect("complete")
        async with client.stream(
            "POST", server.url, json=listed, headers={**auth, "Accept": MULTIPART}
        ) as response:
            assert await PartStream(response).payload() == {
                "data": {"events": {"id": "1", "type": "TASK_CREATED"}}
            }
        # A refused document is no subscription: GraphQL over HTTP answers it.
        plain = await client.post(server.url, json=unlisted, headers={**auth, "Accept": MULTIPART})
        refused(plain.json())
