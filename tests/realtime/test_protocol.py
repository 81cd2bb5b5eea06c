"""The WebSocket protocols on the wire: messages and close codes, per graphql-ws PROTOCOL.md."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
import websockets

from api.settings import Settings
from resolvers.transport import CloseCode
from tests.realtime.activity import Tenant
from tests.realtime.conftest import nothing_left, serving, subscribed
from tests.realtime.wire import LEGACY_WS, TRANSPORT_WS, Protocol, Socket
from tests.support.server import LiveServer, mint
from tests.support.waiting import until

EVENTS = "subscription { events { id type } }"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The protocol does not touch the database's dialect: SQLite is enough here."""
    yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('protocol') / 'mark1.db'}"


async def _open_raw(
    server: LiveServer, protocol: Protocol = TRANSPORT_WS, headers: dict[str, str] | None = None
) -> Socket:
    return await Socket.open(server.ws_url, protocol=protocol, init=False, headers=headers)


async def _init(ws: Socket, token: str | None) -> None:
    payload = {"authorization": f"Bearer {token}"} if token else {}
    await ws.send({"type": "connection_init", "payload": payload})


async def test_a_socket_for_another_path_is_refused_by_the_router(server: LiveServer) -> None:
    # Sockets on /graphql skip the router (api/http/sockets.py); no other path does.
    url = server.ws_url.removesuffix("/graphql") + "/healthz"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, subprotocols=[TRANSPORT_WS])  # type: ignore[list-item]
    assert refused.value.response.status_code == 403


async def test_a_message_that_is_not_json_closes_the_socket_with_4400(server: LiveServer) -> None:
    ws = await _open_raw(server)
    await _init(ws, server.token("VIEWER"))
    assert (await ws.control_message())["type"] == "connection_ack"
    await ws.ws.send("{not json")
    assert (await ws.closed())[0] == CloseCode.BAD_REQUEST


@pytest.mark.parametrize(
    "message",
    [
        {"type": "subscribed"},
        {"id": "1", "type": "subscribe"},
        {"type": "subscribe", "payload": {"query": EVENTS}},
        {"payload": {}},
    ],
    ids=["unknown type", "no payload", "no id", "no type"],
)
async def test_a_malformed_message_closes_the_socket_with_4400(
    server: LiveServer, message: dict[str, object]
) -> None:
    ws = await Socket.open(server.ws_url, server.token("VIEWER"))
    await ws.send(message)
    assert (await ws.closed())[0] == CloseCode.BAD_REQUEST


async def test_subscribe_before_the_connection_is_acknowledged_closes_with_4401(
    server: LiveServer,
) -> None:
    ws = await _open_raw(server)
    await ws.subscribe("1", EVENTS)
    assert (await ws.closed())[0] == CloseCode.UNAUTHORIZED
    assert server.runtime.bus.subscriber_count == 0


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_start_before_connection_init_closes_with_4401_in_both_protocols(
    server: LiveServer, protocol: Protocol
) -> None:
    ws = await _open_raw(server, protocol)
    await ws.subscribe("1", EVENTS)
    assert (await ws.closed())[0] == CloseCode.UNAUTHORIZED


def _bad_tokens(settings: Settings) -> dict[str, str | None]:
    other = Settings(_env_file=None, jwt_secret="x" * 48)
    return {
        "missing": None,
        "not a jwt": "not-a-jwt",
        "wrong signature": mint(other, "VIEWER"),
        "expired": mint(settings, "VIEWER", ttl=timedelta(seconds=-60)),
    }


@pytest.mark.parametrize("case", ["missing", "not a jwt", "wrong signature", "expired"])
async def test_a_connection_init_without_a_valid_token_closes_with_4403(
    server: LiveServer, case: str
) -> None:
    token = _bad_tokens(server.settings)[case]
    ws = await _open_raw(server)
    await _init(ws, token)
    assert (await ws.closed())[0] == CloseCode.FORBIDDEN
    assert ws.control.empty(), "no connection_ack may precede the close"
    await nothing_left(server)


@pytest.mark.parametrize("case", ["missing", "not a jwt", "wrong signature", "expired"])
async def test_the_legacy_protocol_answers_a_bad_token_with_connection_error_then_closes(
    server: LiveServer, case: str
) -> None:
    token = _bad_tokens(server.settings)[case]
    ws = await _open_raw(server, LEGACY_WS)
    await _init(ws, token)
    message = await ws.control_message()
    assert message["type"] == "connection_error"
    assert message["payload"]["message"]
    assert (await ws.closed())[0] == CloseCode.FORBIDDEN
    await nothing_left(server)


async def test_no_connection_init_in_time_closes_with_4408(settings: Settings) -> None:
    with serving(settings, ws_init_timeout=0.3) as server:
        ws = await _open_raw(server)
        started = asyncio.get_running_loop().time()
        code, _ = await ws.closed(within=5)
        waited = asyncio.get_running_loop().time() - started
        await nothing_left(server)
    assert code == CloseCode.CONNECTION_INIT_TIMEOUT
    assert 0.2 < waited < 3


async def test_a_connection_init_in_time_is_not_closed_by_the_init_timeout(
    settings: Settings,
) -> None:
    with serving(settings, ws_init_timeout=0.3) as server:
        async with await Socket.open(server.ws_url, server.token("VIEWER")) as ws:
            await asyncio.sleep(0.5)
            await ws.send({"type": "ping"})
            assert (await ws.control_message())["type"] == "pong"


async def test_a_duplicate_operation_id_closes_with_4409(server: LiveServer) -> None:
    ws = await Socket.open(server.ws_url, server.token("VIEWER"))
    await ws.subscribe("same", EVENTS)
    await subscribed(server, 1)
    await ws.subscribe("same", EVENTS)
    assert (await ws.closed())[0] == 4409
    await nothing_left(server)


async def test_a_second_connection_init_closes_with_4429(server: LiveServer) -> None:
    ws = await Socket.open(server.ws_url, server.token("VIEWER"))
    await _init(ws, server.token("VIEWER"))
    assert (await ws.closed())[0] == CloseCode.TOO_MANY_SOCKETS
    await nothing_left(server)


async def test_ping_is_answered_with_pong_before_and_after_the_ack(server: LiveServer) -> None:
    ws = await _open_raw(server)
    await ws.send({"type": "ping"})
    assert await ws.control_message() == {"type": "pong"}
    await _init(ws, server.token("VIEWER"))
    assert (await ws.control_message())["type"] == "connection_ack"
    await ws.send({"type": "ping", "payload": {"t": 1}})
    assert (await ws.control_message())["type"] == "pong"
    await ws.send({"type": "pong"})  # an unsolicited pong is allowed and ignored
    await ws.send({"type": "ping"})
    assert (await ws.control_message())["type"] == "pong"
    await ws.close()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_client_complete_stops_the_stream(
    server: LiveServer, tenant: str, protocol: Protocol
) -> None:
    t = Tenant(server, tenant)
    viewer = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, viewer, protocol=protocol) as ws:
        await ws.subscribe("a", EVENTS)
        await ws.subscribe("b", EVENTS)
        await subscribed(server, 2)
        await t.create_task("one")
        await ws.field("a")
        await ws.field("b")
        await ws.stop("a")
        await subscribed(server, 1)
        await t.create_task("two")
        assert (await ws.field("b"))["id"] == "2"
        if protocol == LEGACY_WS:
            await ws.completed("a")  # the legacy protocol confirms a stop
        await ws.silent("a", 0.2)


async def test_a_query_over_the_socket_gets_next_then_complete(server: LiveServer) -> None:
    async with await Socket.open(server.ws_url, server.token("VIEWER", sub="ann")) as ws:
        await ws.subscribe("q", "query { me { subject roles } }")
        assert await ws.next("q") == {"me": {"subject": "ann", "roles": ["VIEWER"]}}
        await ws.completed("q")


@pytest.mark.parametrize(
    "document",
    [
        "subscription { events { id noSuchField } }",
        "subscription { events { id ",
        "subscription($after: ID!) { events(after: $after) { id } }",
        "subscription A { events { id } } subscription B { events { type } }",
        "fragment F on Event { id }",
    ],
    ids=["unknown field", "syntax error", "missing variable", "no operation chosen", "no op"],
)
@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_an_invalid_document_gets_an_error_and_the_socket_stays_open(
    server: LiveServer, tenant: str, document: str, protocol: Protocol
) -> None:
    viewer = server.token("VIEWER", tenant=tenant)
    async with await Socket.open(server.ws_url, viewer, protocol=protocol) as ws:
        await ws.subscribe("bad", document)
        error = await ws.error("bad")
        await ws.subscribe("good", EVENTS)
        await subscribed(server, 1)
        await Tenant(server, tenant).create_task("after the error")
        assert (await ws.field("good"))["type"] == "TASK_CREATED"
        await ws.silent("bad", 0.01)
    assert error["message"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize("how", ["authorization", "Authorization", "AUTHORIZATION", "header"])
async def test_the_token_is_taken_from_the_init_payload_in_any_case_or_the_upgrade_header(
    server: LiveServer, tenant: str, how: str
) -> None:
    token = server.token("VIEWER", sub="carol", tenant=tenant)
    if how == "header":
        ws = await Socket.open(
            server.ws_url, payload={}, headers={"Authorization": f"Bearer {token}"}
        )
    else:
        ws = await Socket.open(server.ws_url, payload={how: f"Bearer {token}"})
    async with ws:
        await ws.subscribe("q", "query { me { subject tenant } }")
        assert await ws.next("q") == {"me": {"subject": "carol", "tenant": tenant}}


async def test_a_bad_token_in_the_payload_is_not_rescued_by_a_good_header(
    server: LiveServer,
) -> None:
    token = server.token("VIEWER")
    ws = await _open_raw(server, headers={"Authorization": f"Bearer {token}"})
    await ws.send({"type": "connection_init", "payload": {"authorization": "Bearer nonsense"}})
    assert (await ws.closed())[0] == CloseCode.FORBIDDEN


async def test_the_legacy_protocol_acknowledges_then_sends_keep_alives(server: LiveServer) -> None:
    async with await Socket.open(server.ws_url, server.token("VIEWER"), protocol=LEGACY_WS) as ws:
        await until(lambda: ws.keep_alives > 0, what="a ka message")
