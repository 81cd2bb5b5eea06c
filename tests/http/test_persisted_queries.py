"""Automatic persisted queries (Apollo's APQ) over HTTP GET and POST and both WebSocket
protocols: a hash alone is PERSISTED_QUERY_NOT_FOUND until hash and text are sent
together, then the hash alone runs the document, with no parse or validation."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from api.errors import BadUserInput, PersistedQueryNotFound
from api.settings import Settings
from resolvers.schema import CACHEABLE_DOCUMENT, STATS
from resolvers.transport.persisted import PersistedDocuments
from tests.realtime.wire import PROTOCOLS, Protocol, Socket
from tests.support.node import CLIENTS, node_with
from tests.support.server import LiveServer, live_server, make_settings

GRAPHQL_RESPONSE = "application/graphql-response+json"
URL = "/graphql"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Persisted documents are about the wire, not the database: SQLite is enough."""
    yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('apq') / 'mark1.db'}"


@pytest.fixture(scope="module")
def module_settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(database_url, tmp_path_factory.mktemp("data"))


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


def unique_query() -> str:
    """A document no earlier request sent, so its first use misses every cache."""
    return f"query Viewer{uuid.uuid4().hex} {{ me {{ subject tenant }} }}"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def apq(text: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256(text)}}


def first_error(body: dict[str, Any]) -> dict[str, Any]:
    assert body.get("errors"), body
    error: dict[str, Any] = body["errors"][0]
    return error


def counts() -> tuple[int, int]:
    return STATS.parses, STATS.validations


async def test_post_hash_alone_is_not_found_until_hash_and_query_are_sent(
    http: httpx.AsyncClient, tenant: str
) -> None:
    query = unique_query()
    missed = await http.post(URL, json={"extensions": apq(query)})
    assert missed.status_code == 200
    assert first_error(missed.json()) == {
        "message": "PersistedQueryNotFound",
        "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
    }

    registered = await http.post(URL, json={"query": query, "extensions": apq(query)})
    assert registered.json() == {"data": {"me": {"subject": "tester", "tenant": tenant}}}

    before = counts()
    for _ in range(3):
        again = await http.post(URL, json={"extensions": apq(query)})
        assert again.json() == registered.json()
    assert counts() == before, "a persisted document is parsed or validated again"


async def test_get_round_trip_with_variables_and_operation_name(
    http: httpx.AsyncClient,
) -> None:
    name = f"Tasks{uuid.uuid4().hex}"
    query = f"query {name}($first: Int) {{ tasks(first: $first) {{ totalCount }} }}"
    params = {
        "extensions": json.dumps(apq(query)),
        "variables": json.dumps({"first": 1}),
        "operationName": name,
    }
    missed = await http.get(URL, params=params)
    assert first_error(missed.json())["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"

    registered = await http.get(URL, params={**params, "query": query})
    assert registered.json() == {"data": {"tasks": {"totalCount": 0}}}
    before = counts()
    assert (await http.get(URL, params=params)).json() == registered.json()
    assert counts() == before


async def test_graphql_response_json_gets_200_for_an_unknown_hash_and_400_for_a_bad_one(
    http: httpx.AsyncClient,
) -> None:
    query = unique_query()
    accept = {"Accept": GRAPHQL_RESPONSE}
    missed = await http.post(URL, json={"extensions": apq(query)}, headers=accept)
    # A step of the round trip, not a failure: browsers log every 4xx as an error.
    assert missed.status_code == 200
    assert missed.headers["content-type"] == GRAPHQL_RESPONSE
    assert first_error(missed.json())["message"] == "PersistedQueryNotFound"

    wrong = await http.post(
        URL, json={"query": query, "extensions": apq(query + " ")}, headers=accept
    )
    assert wrong.status_code == 400
    assert first_error(wrong.json())["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_query_that_does_not_match_its_hash_is_refused_and_not_kept(
    http: httpx.AsyncClient,
) -> None:
    query, other = unique_query(), unique_query()
    refused = await http.post(URL, json={"query": other, "extensions": apq(query)})
    error = first_error(refused.json())
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "does not match" in error["message"]
    assert "data" not in refused.json()

    still_missing = await http.post(URL, json={"extensions": apq(query)})
    assert first_error(still_missing.json())["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.parametrize(
    "persisted",
    [
        {"version": 2, "sha256Hash": "0" * 64},
        {"version": 1, "sha256Hash": "not-a-hash"},
        {"version": 1},
        "sha256",
    ],
    ids=["version 2", "not hex", "no hash", "not an object"],
)
async def test_a_malformed_persisted_query_is_bad_user_input(
    http: httpx.AsyncClient, persisted: object
) -> None:
    response = await http.post(URL, json={"extensions": {"persistedQuery": persisted}})
    assert first_error(response.json())["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_registered_document_also_runs_by_document_id(http: httpx.AsyncClient) -> None:
    query = unique_query()
    await http.post(URL, json={"query": query, "extensions": apq(query)})
    by_id = await http.post(URL, json={"documentId": f"sha256:{sha256(query)}"})
    assert by_id.json()["data"]["me"]["subject"] == "tester"
    by_get = await http.get(URL, params={"documentId": sha256(query).upper()})
    assert by_get.json() == by_id.json()
    unknown = await http.post(URL, json={"documentId": f"sha256:{sha256(unique_query())}"})
    assert first_error(unknown.json())["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_a_request_without_any_document_is_still_a_400(http: httpx.AsyncClient) -> None:
    response = await http.post(URL, json={"variables": {}})
    assert response.status_code == 400


def events_subscription() -> str:
    return (
        f"subscription Feed{uuid.uuid4().hex}($after: ID) {{ events(after: $after) {{ id type }} }}"
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_socket_subscribe_round_trip(
    server: LiveServer, http: httpx.AsyncClient, tenant: str, protocol: Protocol
) -> None:
    await http.post(URL, json={"query": 'mutation { createTask(input: {title: "t"}) { id } }'})
    query = events_subscription()
    kind = "subscribe" if protocol == "graphql-transport-ws" else "start"
    token = server.token("VIEWER", tenant=tenant)

    def payload(**fields: Any) -> dict[str, Any]:
        return {"variables": {"after": "0"}, **fields}

    async with await Socket.open(server.ws_url, token, protocol=protocol) as socket:
        await socket.send({"id": "1", "type": kind, "payload": payload(extensions=apq(query))})
        missed = await socket.error("1")
        assert missed["message"] == "PersistedQueryNotFound"
        assert missed["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"

        await socket.send(
            {"id": "2", "type": kind, "payload": payload(query=query, extensions=apq(query))}
        )
        assert (await socket.field("2")) == {"id": "1", "type": "TASK_CREATED"}

        before = counts()
        await socket.send({"id": "3", "type": kind, "payload": payload(extensions=apq(query))})
        assert (await socket.field("3")) == {"id": "1", "type": "TASK_CREATED"}
        # graphql-ws clients must send a string query: an empty one beside an id is none.
        by_id = payload(query="", documentId=f"sha256:{sha256(query)}")
        await socket.send({"id": "4", "type": kind, "payload": by_id})
        assert (await socket.field("4")) == {"id": "1", "type": "TASK_CREATED"}
        assert counts() == before, "a persisted subscription is parsed or validated again"

        # The socket and its other operations go on after a refusal.
        await socket.send(
            {"id": "5", "type": kind, "payload": payload(query=query, extensions=apq("x"))}
        )
        assert (await socket.error("5"))["extensions"]["code"] == "BAD_USER_INPUT"
        for op in ("2", "3", "4"):
            await socket.stop(op)


def test_the_store_keeps_the_most_recently_used_documents() -> None:
    documents = PersistedDocuments(capacity=2)
    texts = [unique_query() for _ in range(3)]

    def register(text: str) -> None:
        assert documents.document(query=text, extensions=apq(text), document_id=None) == text

    def lookup(text: str) -> str | None:
        return documents.document(query=None, extensions=apq(text), document_id=None)

    register(texts[0])
    register(texts[1])
    assert lookup(texts[0]) == texts[0]  # now the most recently used
    register(texts[2])  # evicts texts[1], the least recently used
    assert lookup(texts[0]) == texts[0]
    assert lookup(texts[2]) == texts[2]
    with pytest.raises(PersistedQueryNotFound):
        lookup(texts[1])


def test_a_document_too_big_to_cache_runs_but_is_not_kept() -> None:
    documents = PersistedDocuments()
    big = unique_query() + " " * CACHEABLE_DOCUMENT
    assert documents.document(query=big, extensions=apq(big), document_id=None) == big
    with pytest.raises(PersistedQueryNotFound):
        documents.document(query=None, extensions=apq(big), document_id=None)


def test_a_document_id_must_be_a_non_empty_string() -> None:
    documents = PersistedDocuments()
    for bad in ("", 42):
        with pytest.raises(BadUserInput):
            documents.document(query=None, extensions=None, document_id=bad)


def test_apollo_clients_persisted_query_link_does_the_round_trip(server: LiveServer) -> None:
    """Apollo Client's own PersistedQueryLink, over its HttpLink, in node."""
    node = node_with("@apollo/client")
    suffix = uuid.uuid4().hex
    run = subprocess.run(
        [node, "apollo-persisted-queries.mjs"],
        cwd=CLIENTS,
        env={
            **os.environ,
            "MARK1_URL": server.url,
            "MARK1_TOKEN": server.token("OPERATOR", sub="apollo"),
            "MARK1_SUFFIX": suffix,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    requests = [
        (r["method"], r["query"], r["hash"] is not None, r["code"])
        for line in lines
        if (r := line.get("request"))
    ]
    results = [line["result"] for line in lines if "result" in line]

    miss = ("POST", False, True, "PERSISTED_QUERY_NOT_FOUND")
    register = ("POST", True, True, None)
    hit = ("POST", False, True, None)
    assert requests == [
        miss,  # Me: the hash alone; unknown
        register,  # Me again, with its text
        miss,  # Create: likewise
        register,
        hit,  # Create's second call: the hash alone is enough now
        ("GET", False, True, None),  # another client: Me as a GET with the hash alone
    ], lines
    assert results[0] == results[3] == {"me": {"__typename": "Viewer", "subject": "apollo"}}
    assert results[1]["createTask"]["title"] == f"apq {suffix}"
    assert results[2]["createTask"]["title"] == f"apq again {suffix}"
