"""Hostile input against the real server: property tests over every mutation's
arguments, and a bounded WebSocket frame fuzzer.

Properties, for any input: never a 5xx, never INTERNAL, every GraphQL error has a
code, and a refused request writes nothing: no event is published (every change
publishes exactly one, in its own transaction), and at the end the tenant's
stored events, tasks, agents and workflows match what was accepted. Inputs are
generated from the schema itself, so a new mutation or argument is fuzzed without
touching this file.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.metrics import Metrics
from resolvers.schema import build_schema
from tests.security.support import still_serving
from tests.support.graphql import WSClient, data, gql
from tests.support.server import LiveServer

# Inputs that reach the database run on both engines (PostgreSQL refuses things SQLite
# stores); the frame fuzzer and the protocol checks do not touch it and run once.
both_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)

SCHEMA = build_schema()._schema
assert SCHEMA.mutation_type is not None
MUTATIONS = sorted(SCHEMA.mutation_type.fields)

# -- values ---------------------------------------------------------------------

ODD_STRINGS = [
    "",
    " ",
    "\x00",
    "nul\x00byte",
    "\t\r\n",
    "\u202eevil",
    "\ufeff",
    "\ud800",  # a lone surrogate: not valid UTF-8
    "😀" * 500,
    "x" * 201,
    "x" * 100_000,
    "\n" * 5000,
    "'; DROP TABLE task; --",
    '" OR 1=1 --',
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "{{7*7}}",
    "%s%s%s%n",
    "../../../../etc/passwd",
    "null",
    "NaN",
    "Infinity",
    "-0",
    "1e309",
    "0x7fffffff",
    "agent:someone-else",
]
ODD_NUMBERS = [
    0,
    -1,
    2**31,
    -(2**31) - 1,
    2**53 + 1,
    2**63,
    -(2**63) - 1,
    10**30,
    1e308,
    -0.0,
    5e-324,
    0.5,
    1.0000001,
]

strings = st.one_of(st.text(max_size=300), st.sampled_from(ODD_STRINGS))
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(ODD_NUMBERS),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(strings, inner, max_size=6),
    max_leaves=25,
)


class Deep:
    """JSON nested ``depth`` levels deep, written out as text when the body is encoded
    (json.dumps, and hypothesis's printer, would recurse too deep themselves)."""

    def __init__(self, depth: int, kind: str) -> None:
        self.depth, self.kind = depth, kind

    def __repr__(self) -> str:
        return f"Deep({self.depth}, {self.kind!r})"

    def text(self) -> str:
        if self.kind == "list":
            return "[" * self.depth + '"bottom"' + "]" * self.depth
        return '{"a":' * self.depth + '"bottom"' + "}" * self.depth


deep_json = st.builds(
    Deep, st.integers(min_value=20, max_value=3000), st.sampled_from(["list", "dict"])
)
anything = st.one_of(json_values, deep_json)


def value_of(graphql_type: GraphQLInputType, ids: list[str]) -> st.SearchStrategy[Any]:
    """Values shaped like ``graphql_type`` but hostile inside, or of another type entirely."""
    if isinstance(graphql_type, GraphQLNonNull):
        return value_of(graphql_type.of_type, ids)
    if isinstance(graphql_type, GraphQLList):
        return st.one_of(st.lists(value_of(graphql_type.of_type, ids), max_size=60), anything)
    if isinstance(graphql_type, GraphQLInputObjectType):
        required = {
            n: value_of(f.type, ids)
            for n, f in graphql_type.fields.items()
            if isinstance(f.type, GraphQLNonNull)
        }
        optional = {
            n: value_of(f.type, ids) for n, f in graphql_type.fields.items() if n not in required
        }
        shaped = st.fixed_dictionaries(required, optional=optional)
        extra = st.tuples(shaped, strings, anything).map(lambda t: {**t[0], t[1] or "extra": t[2]})
        return st.one_of(shaped, extra, anything)
    if isinstance(graphql_type, GraphQLEnumType):
        return st.one_of(st.sampled_from(list(graphql_type.values)), strings)
    assert isinstance(graphql_type, GraphQLScalarType)
    typed: dict[str, st.SearchStrategy[Any]] = {
        "String": strings,
        "ID": st.one_of(st.sampled_from(ids), strings),
        "Int": st.one_of(st.integers(min_value=-2000, max_value=2000), numbers),
        "Float": st.one_of(st.floats(min_value=0, max_value=1), numbers),
        "Boolean": st.booleans(),
        "JSON": anything,
        "DateTime": st.one_of(st.datetimes().map(lambda d: d.isoformat()), strings),
    }
    return st.one_of(typed.get(graphql_type.name, strings), anything)


def mutation_call(name: str, ids: list[str]) -> tuple[str, st.SearchStrategy[dict[str, Any]]]:
    """The document calling mutation ``name`` with every argument a variable, and a
    strategy for the variables (optional ones sometimes left out)."""
    assert SCHEMA.mutation_type is not None
    field = SCHEMA.mutation_type.fields[name]
    declared = ", ".join(f"${arg}: {spec.type}" for arg, spec in field.args.items())
    passed = ", ".join(f"{arg}: ${arg}" for arg in field.args)
    document = f"mutation Fuzz({declared}) {{ {name}({passed}) {{ __typename }} }}"
    required = {
        a: value_of(s.type, ids)
        for a, s in field.args.items()
        if isinstance(s.type, GraphQLNonNull)
    }
    optional = {a: value_of(s.type, ids) for a, s in field.args.items() if a not in required}
    return document, st.fixed_dictionaries(required, optional=optional)


# -- the target -------------------------------------------------------------------


class Target:
    """A tenant with real ids to aim at, and a synchronous client for hypothesis."""

    COUNTS = (
        "{ events { totalCount } tasks { totalCount } agents { totalCount }"
        " workflows { totalCount } }"
    )

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.tenant = f"hostile-{secrets.token_hex(4)}"
        self.token = server.token("ADMIN", sub="fuzzer", tenant=self.tenant)
        self.client = httpx.Client(timeout=30, headers={"authorization": f"Bearer {self.token}"})
        self.ids: list[str] = []

    def call(self, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = self.client.post(self.server.url, json={"query": document, "variables": variables})
        assert body.status_code == 200, body.text
        result: dict[str, Any] = body.json()
        assert not result.get("errors"), result
        found: dict[str, Any] = result["data"]
        return found

    def published(self) -> int:
        """Events this server committed and published (read in-process: no request)."""
        return Metrics.value(self.server.runtime.metrics.events_published)

    def counts(self) -> list[int]:
        return [v["totalCount"] for v in self.call(self.COUNTS, {}).values()]

    def populate(self) -> None:
        agent = self.call(
            'mutation { registerAgent(input: {name: "f", capabilities: ["fuzz"]})'
            " { agent { id } } }",
            {},
        )["registerAgent"]["agent"]["id"]
        held = self.call(
            'mutation { createTask(input: {title: "held", capability: "fuzz", priority: 1000})'
            " { id } }",
            {},
        )["createTask"]["id"]
        self.call("mutation($a: ID!) { claimTask(agentId: $a) { id } }", {"a": agent})
        pending = self.call(
            'mutation { createTask(input: {title: "p", capability: "none"}) { id } }', {}
        )["createTask"]["id"]
        workflow = self.call(
            'mutation { startWorkflow(input: {name: "w", steps: [{name: "s", capability: "none"}]})'
            " { id } }",
            {},
        )["startWorkflow"]["id"]
        self.ids = [agent, held, pending, workflow]


@pytest.fixture(scope="module")
def target(module_server: LiveServer) -> Iterator[Target]:
    t = Target(module_server)
    t.populate()
    yield t
    t.client.close()


def _encode(document: str, variables: dict[str, Any]) -> bytes:
    # json.dumps writes NaN/Infinity tokens and lone surrogates as escapes: both are
    # things a hostile client sends; the server must refuse them cleanly.
    deep: dict[str, str] = {}

    def placeholder(value: object) -> str:
        assert isinstance(value, Deep)
        key = f"@@deep{len(deep)}@@"
        deep[f'"{key}"'] = value.text()
        return key

    text = json.dumps({"query": document, "variables": variables}, default=placeholder)
    for key, raw in deep.items():
        text = text.replace(key, raw, 1)
    return text.encode()


@both_databases
@pytest.mark.parametrize("name", MUTATIONS)
def test_mutations_survive_hostile_input(target: Target, name: str) -> None:
    document, variables_strategy = mutation_call(name, target.ids)

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(variables=variables_strategy)
    def property(variables: dict[str, Any]) -> None:
        before = target.published()
        response = target.client.post(
            target.server.url,
            content=_encode(document, variables),
            headers={"content-type": "application/json"},
        )
        assert response.status_code < 500, response.text[:500]
        accepted = False
        if response.status_code == 200:
            body = response.json()
            errors = body.get("errors") or []
            for error in errors:
                code = (error.get("extensions") or {}).get("code")
                assert code, f"an error without a code: {error}"
                assert code != "INTERNAL", f"{name} failed inside on {variables!r:.500}"
            accepted = not errors
        else:
            assert response.status_code in (400, 413), response.status_code
        if not accepted:
            assert target.published() == before, f"a refused {name} wrote something"

    stored_before, published_before = target.counts(), target.published()
    property()
    # What the database holds moved exactly as far as what was published.
    assert target.counts()[0] - stored_before[0] == target.published() - published_before


@both_databases
def test_queries_survive_hostile_filters(target: Target) -> None:
    """The read side takes input too: filters, cursors and page sizes."""
    document = (
        "query($f: EventFilter, $first: Int, $after: String, $s: [TaskStatus!], $c: String) {"
        " events(filter: $f, first: $first, after: $after) { totalCount }"
        " tasks(status: $s, first: $first, after: $after) { totalCount }"
        " agents(capability: $c, first: $first, after: $after) { totalCount } }"
    )
    assert SCHEMA.query_type is not None
    filter_type = SCHEMA.get_type("EventFilter")
    assert isinstance(filter_type, GraphQLInputObjectType)
    variables_strategy = st.fixed_dictionaries(
        {},
        optional={
            "f": value_of(filter_type, target.ids),
            "first": st.one_of(st.integers(min_value=-5, max_value=2000), numbers),
            "after": strings,
            "s": anything,
            "c": strings,
        },
    )

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(variables=variables_strategy)
    def property(variables: dict[str, Any]) -> None:
        response = target.client.post(
            target.server.url,
            content=_encode(document, variables),
            headers={"content-type": "application/json"},
        )
        assert response.status_code < 500, response.text[:500]
        if response.status_code == 200:
            for error in response.json().get("errors") or []:
                assert error["extensions"]["code"] not in (None, "INTERNAL"), error

    property()


@both_databases
@pytest.mark.parametrize("bad", ["\x00", "a\x00b", "tab\there", "x" * 201])
async def test_ids_no_record_can_have_are_bad_user_input(target: Target, bad: str) -> None:
    """PostgreSQL cannot compare a NUL byte: such ids must stop at the edge, literal or not."""
    url, token = target.server.url, target.token
    calls: list[tuple[str, dict[str, Any]]] = [
        ("query($id: ID!) { task(id: $id) { id } }", {"id": bad}),
        ("mutation($id: ID!) { cancelTask(id: $id) { id } }", {"id": bad}),
        ("query($f: EventFilter) { events(filter: $f) { totalCount } }", {"f": {"agentId": bad}}),
        (f"{{ task(id: {json.dumps(bad)}) {{ id }} }}", {}),
    ]
    for document, variables in calls:
        body = await gql(url, document, variables, token=token)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    async with await WSClient.connect(target.server.ws_url, token) as ws:
        await ws.subscribe(
            "t", "subscription($id: ID) { taskUpdates(taskId: $id) { id } }", {"id": bad}
        )
        message = await ws.next_for("t")
    assert message["type"] == "error"
    assert message["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    await still_serving(target.server)


# -- WebSocket frames ---------------------------------------------------------------

FRAME_COUNT = 300
SEED = 20240611
MESSAGE_TYPES = [
    "connection_init",
    "ping",
    "pong",
    "subscribe",
    "complete",
    "next",
    "error",
    "start",
    "stop",
    "ka",
    "",
    "SUBSCRIBE",
]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice(
            [None, True, 0, -1, 2**64, 1.5, "x" * rng.randint(0, 200), "😀", "\x00", [], {}]
        )
    if roll < 0.55:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if roll < 0.75:
        return {
            rng.choice(
                ["query", "variables", "id", "type", "payload", "operationName", "x"]
            ): _random_value(rng, depth + 1)
            for _ in range(rng.randint(0, 3))
        }
    return rng.choice(
        [
            "subscription { events { id } }",
            "{ me { subject } }",
            "mutation { x }",
            "subscription {",
            "query Q { me { subject } } query R { me { subject } }",
        ]
    )


def _frame(rng: random.Random, token: str) -> str | bytes | list[str]:
    kind = rng.randrange(10)
    if kind == 0:
        return rng.randbytes(rng.randint(0, 300))
    if kind == 1:
        return "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(0, 100)))
    if kind == 2:
        valid = json.dumps(
            {"type": "subscribe", "id": "1", "payload": {"query": "subscription { events { id } }"}}
        )
        return valid[: rng.randint(0, len(valid) - 1)]
    if kind == 3:
        return "[" * rng.randint(1000, 3000) + "]" * rng.randint(0, 3000)
    if kind == 4:
        return json.dumps(
            {
                "type": "subscribe",
                "id": "x" * rng.randint(10_000, 60_000),
                "payload": {"query": "subscription { events { id } }"},
            }
        )
    if kind == 5:
        return json.dumps(
            {
                "type": "connection_init",
                "payload": rng.choice(
                    [
                        {"authorization": f"Bearer {token}"},
                        {"Authorization": token},
                        {"authorization": 5},
                        "x",
                        [],
                        None,
                    ]
                ),
            }
        )
    if kind == 6:
        return json.dumps(_random_value(rng))
    if kind == 7:
        message = json.dumps(
            {
                "type": rng.choice(MESSAGE_TYPES),
                "id": _random_value(rng),
                "payload": _random_value(rng),
            }
        )
        return [message[:5], message[5:]] if len(message) > 5 else message
    return json.dumps(
        {
            "type": rng.choice(MESSAGE_TYPES),
            "id": str(rng.randint(0, 5)),
            "payload": {"query": _random_value(rng), "variables": _random_value(rng)},
        }
    )


async def test_a_websocket_frame_fuzzer_does_not_hurt_the_server(module_server: LiveServer) -> None:
    server = module_server
    rng = random.Random(SEED)
    tenant = f"fuzz-{secrets.token_hex(4)}"
    token = server.token("ADMIN", sub="frame-fuzzer", tenant=tenant)
    watcher_token = server.token("VIEWER", sub="watcher", tenant=tenant)
    codes: dict[int | None, int] = {}
    async with await WSClient.connect(server.ws_url, watcher_token) as watcher:
        await watcher.subscribe("w", "subscription { taskUpdates { title } }")
        fuzz: websockets.ClientConnection | None = None
        for i in range(FRAME_COUNT):
            if fuzz is None:
                fuzz = await websockets.connect(
                    server.ws_url,
                    subprotocols=[rng.choice(["graphql-transport-ws", "graphql-ws"])],  # type: ignore[list-item]
                    max_queue=None,
                )
                if rng.random() < 0.7:
                    await fuzz.send(
                        json.dumps(
                            {
                                "type": "connection_init",
                                "payload": {"authorization": f"Bearer {token}"},
                            }
                        )
                    )
            try:
                await fuzz.send(_frame(rng, token))
                # A WebSocket ping is answered in order: once its pong is back, the
                # server has taken the frame (or closed the socket over it).
                await asyncio.wait_for(await fuzz.ping(), 5)
            except websockets.ConnectionClosed:
                await fuzz.wait_closed()
            if fuzz.close_code is not None or (i % 25 == 24):
                if fuzz.close_code is None:
                    await fuzz.close()
                codes[fuzz.close_code] = codes.get(fuzz.close_code, 0) + 1
                fuzz = None
        if fuzz is not None:
            await fuzz.close()

        # The watcher's socket lived through all of it and still gets live events.
        operator = server.token("OPERATOR", sub="after-fuzz", tenant=tenant)
        data(
            await gql(
                server.url,
                'mutation { createTask(input: {title: "still here"}) { id } }',
                token=operator,
            )
        )
        message = await watcher.next_for("w")
        assert message["payload"]["data"]["taskUpdates"]["title"] == "still here"
    await still_serving(server)
    assert codes, "the fuzzer never closed a socket"


# Closed with 4400 today.
MALFORMED = [
    '{"type": "subscribe", "id": "1"}',
    '{"type": ["ping"]}',
    '{"id": "1"}',
    "{not json",
    "[" * 2000,
]
# Not yet: each raises TypeError inside strawberry's handler.
CRASHING = [
    "[1, 2]",
    '"subscribe"',
    "5",
    "null",
    '{"type": "subscribe", "id": ["1"], "payload": {"query": "subscription { events { id } }"}}',
    '{"type": "subscribe", "id": "1", "payload": "subscription { events { id } }"}',
    '{"type": "complete", "id": {"a": 1}}',
]


async def closes_with_4400(server: LiveServer, frame: str) -> None:
    """PROTOCOL.md: a message the server cannot handle closes the socket with 4400."""
    token = server.token("VIEWER", sub="malformed")
    async with await WSClient.connect(server.ws_url, token) as ws:
        await ws.ws.send(frame)
        try:
            async with asyncio.timeout(5):
                while True:
                    await ws.ws.recv()
        except websockets.ConnectionClosed:
            pass
        received = ws.ws.protocol.close_rcvd
        assert received is not None, "dropped without a close frame"
        assert received.code == 4400


@pytest.mark.parametrize("frame", MALFORMED)
async def test_a_malformed_message_closes_the_socket_with_4400(
    module_server: LiveServer, frame: str
) -> None:
    await closes_with_4400(module_server, frame)


@pytest.mark.parametrize("frame", CRASHING)
async def test_a_message_of_the_wrong_shape_closes_the_socket_with_4400(
    module_server: LiveServer, frame: str
) -> None:
    await closes_with_4400(module_server, frame)
