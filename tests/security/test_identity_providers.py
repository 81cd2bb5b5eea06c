"""Tokens from an identity provider: RS256/ES256 with a PEM key or a rotating JWKS.

Every check goes through the real server (HTTP ``Authorization`` header and the
WebSocket ``connection_init``), so a regression anywhere between the header and
the verifier shows up here.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import websockets

from api.auth.tokens import TokenVerifier, mint_token
from api.domain import Role
from api.settings import Settings
from tests.security.conftest import base_settings
from tests.security.support import (
    JwksServer,
    PrivateKey,
    claims,
    closed_with,
    ec_key,
    forge,
    public_jwk,
    public_pem,
    rsa_key,
    sign,
)
from tests.support.graphql import WSClient, data, error_code, gql
from tests.support.server import LiveServer, live_server

ISSUER = "https://idp.example.test/"
AUDIENCE = "mark1-realtime"
ME = "{ me { subject roles tenant } }"


@pytest.fixture(scope="module", params=["RS256", "ES256"])
def idp(
    request: pytest.FixtureRequest, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, PrivateKey]]:
    """A server that trusts one PEM public key (and no shared secret), with iss and aud."""
    key: PrivateKey = rsa_key() if request.param == "RS256" else ec_key()
    settings = base_settings(
        database_url,
        tmp_path_factory.mktemp("idp"),
        jwt_secret=None,
        jwt_public_key=public_pem(key),
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    with live_server(settings) as live:
        yield live, key


def good(*roles: str, **extra: Any) -> dict[str, Any]:
    return claims(*roles, iss=ISSUER, aud=AUDIENCE, **extra)


async def accepted(server: LiveServer, token: str) -> dict[str, Any]:
    me: dict[str, Any] = data(await gql(server.url, ME, token=token))["me"]
    return me


async def refused(server: LiveServer, token: str) -> None:
    """UNAUTHENTICATED over HTTP, and close 4403 over WebSocket."""
    assert error_code(await gql(server.url, ME, token=token)) == "UNAUTHENTICATED"
    ws = await WSClient.connect(server.ws_url, init=False)
    await ws.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    assert await closed_with(ws.ws) == 4403


async def test_a_token_signed_with_the_configured_key_is_accepted(
    idp: tuple[LiveServer, PrivateKey],
) -> None:
    server, key = idp
    token = sign(key, good("OPERATOR", sub="alice", tenant="acme"))
    assert await accepted(server, token) == {
        "subject": "alice",
        "roles": ["OPERATOR"],
        "tenant": "acme",
    }
    async with await WSClient.connect(server.ws_url, token) as ws:
        await ws.send({"type": "ping"})
        assert (await ws.recv())["type"] == "pong"


@pytest.mark.parametrize(
    "change",
    [
        {"iss": "https://evil.example.test/"},
        {"iss": None},
        {"aud": "someone-else"},
        {"aud": None},
        {"exp": None},
        {"sub": None},
        {"exp": "tomorrow"},
    ],
    ids=["wrong-iss", "no-iss", "wrong-aud", "no-aud", "no-exp", "no-sub", "exp-not-a-number"],
)
async def test_issuer_audience_exp_and_sub_are_checked(
    idp: tuple[LiveServer, PrivateKey], change: dict[str, Any]
) -> None:
    server, key = idp
    body = good("ADMIN")
    for name, value in change.items():
        if value is None:
            body.pop(name)
        else:
            body[name] = value
    await refused(server, sign(key, body))


async def test_leeway_applies_when_accepting(idp: tuple[LiveServer, PrivateKey]) -> None:
    server, key = idp
    now = int(time.time())
    assert server.settings.jwt_leeway == 10
    await accepted(server, sign(key, good("VIEWER", exp=now - 4)))
    await accepted(server, sign(key, good("VIEWER", nbf=now + 4)))
    await refused(server, sign(key, good("VIEWER", exp=now - 30)))
    await refused(server, sign(key, good("VIEWER", nbf=now + 60)))


async def test_a_token_from_another_key_is_refused(idp: tuple[LiveServer, PrivateKey]) -> None:
    server, _ = idp
    for other in (rsa_key(), ec_key()):
        await refused(server, sign(other, good("ADMIN")))


async def test_alg_confusion_and_alg_none_are_refused(idp: tuple[LiveServer, PrivateKey]) -> None:
    """The public key is public: an HS256 MAC over it must not pass as a signature."""
    server, key = idp
    pem = public_pem(key).encode()
    body = good("ADMIN")
    for secret in (pem, pem.strip(), pem.replace(b"\n", b"")):
        await refused(server, forge({"alg": "HS256", "typ": "JWT"}, body, secret))
    for none in ("none", "None", "NONE", ""):
        await refused(server, forge({"alg": none, "typ": "JWT"}, body, None))
    # A valid signature under a header that lies about the algorithm.
    signature = sign(key, body).rsplit(".", 1)[1]
    for alg in ("RS256", "ES256", "RS512", "PS256", "EdDSA"):
        lying = forge({"alg": alg, "typ": "JWT"}, body, None).rsplit(".", 1)[0]
        await refused(server, f"{lying}.{signature}")


async def test_shared_secret_tokens_are_refused_with_an_identity_provider(
    idp: tuple[LiveServer, PrivateKey], tenant: str
) -> None:
    """Without MARK1_JWT_SECRET, the generated secret signs agent tokens and nothing else."""
    server, key = idp
    local_secret = server.settings.hs256_secret()
    admin = mint_token(local_secret, sub="mallory", roles=[Role.ADMIN], tenant=tenant)
    await refused(server, admin)
    # registerAgent's own tokens still work, for that agent only.
    operator = sign(key, good("OPERATOR", tenant=tenant))
    registration = data(
        await gql(
            server.url,
            'mutation { registerAgent(input: {name: "a1", capabilities: []}) '
            "{ token agent { id } } }",
            token=operator,
        )
    )["registerAgent"]
    agent_id = registration["agent"]["id"]
    beat = await gql(
        server.url,
        "mutation($id: ID!) { heartbeat(agentId: $id) { id status } }",
        {"id": agent_id},
        token=registration["token"],
    )
    assert data(beat)["heartbeat"] == {"id": agent_id, "status": "ONLINE"}
    forged_agent = mint_token(
        local_secret,
        sub=f"agent:{agent_id}",
        roles=[Role.AGENT, Role.ADMIN],
        tenant=tenant,
        agent_id=agent_id,
    )
    await refused(server, forged_agent)


async def test_jwks_keys_rotate_without_a_restart(database_url: str, tmp_path: Any) -> None:
    first, second = rsa_key(), ec_key()
    jwks = JwksServer()
    jwks.keys = [public_jwk(first, "k1")]
    settings = base_settings(database_url, tmp_path, jwt_secret=None, jwt_jwks_url=jwks.url)
    with jwks.running(), live_server(settings) as server:
        token1 = sign(first, claims("VIEWER"), kid="k1")
        await accepted(server, token1)
        await accepted(server, token1)
        assert jwks.fetches == 1, "the key set is cached"

        # The provider rotates: k1 is gone, k2 (an ES256 key) signs from now on.
        jwks.keys = [public_jwk(second, "k2")]
        token2 = sign(second, claims("OPERATOR"), kid="k2")
        assert (await accepted(server, token2))["roles"] == ["OPERATOR"]
        assert jwks.fetches == 2, "an unknown kid refetches the key set once"
        async with await WSClient.connect(server.ws_url, token2) as ws:
            await ws.send({"type": "ping"})
            assert (await ws.recv())["type"] == "pong"

        # A retired key no longer verifies once the set was refetched; forged tokens (a
        # kid never published, a published kid over our own key) never do.
        forged = [
            token1,
            sign(ec_key(), claims("ADMIN"), kid="k3"),
            sign(ec_key(), claims("ADMIN"), kid="k2"),
            sign(rsa_key(), claims("ADMIN"), kid="k2"),
            sign(ec_key(), claims("ADMIN")),
        ]
        answers = await asyncio.gather(*(gql(server.url, ME, token=t) for t in forged))
        assert [error_code(a) for a in answers] == ["UNAUTHENTICATED"] * len(forged)
        ws = await WSClient.connect(server.ws_url, init=False)
        await ws.send(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {forged[2]}"}}
        )
        assert await closed_with(ws.ws) == 4403


async def test_unknown_kids_cannot_flood_the_identity_provider(
    database_url: str, tmp_path: Any
) -> None:
    key = rsa_key()
    jwks = JwksServer()
    jwks.keys = [public_jwk(key, "k1")]
    settings = base_settings(database_url, tmp_path, jwt_secret=None, jwt_jwks_url=jwks.url)
    with jwks.running(), live_server(settings) as server:
        await accepted(server, sign(key, claims("VIEWER"), kid="k1"))
        before = jwks.fetches
        forged = [sign(key, claims("ADMIN"), kid=secrets.token_hex(8)) for _ in range(30)]
        started = time.monotonic()
        answers = await asyncio.gather(*(gql(server.url, ME, token=t) for t in forged))
        assert {error_code(a) for a in answers} == {"UNAUTHENTICATED"}
        assert jwks.fetches - before <= 2, f"{jwks.fetches - before} refetches for 30 tokens"
        assert time.monotonic() - started < 10


async def test_sockets_authenticate_like_design_says(server: LiveServer) -> None:
    """connection_init's key in any case, or the upgrade request's own header; a bad or
    missing token closes with 4403, and the legacy protocol says connection_error first."""
    token = server.token("VIEWER", sub="socket-user")
    for payload in ({"authorization": f"Bearer {token}"}, {"Authorization": f"Bearer {token}"}):
        ws = await WSClient.connect(server.ws_url, init=False)
        await ws.send({"type": "connection_init", "payload": payload})
        assert (await ws.recv())["type"] == "connection_ack"
        await ws.close()
    ws = await WSClient.connect(
        server.ws_url, init=False, additional_headers={"Authorization": f"Bearer {token}"}
    )
    await ws.send({"type": "connection_init", "payload": {}})
    assert (await ws.recv())["type"] == "connection_ack"
    await ws.close()
    refused_payloads: list[dict[str, Any]] = [
        {},
        {"authorization": "Bearer nope"},
        {"authorization": token},
        {"authorization": 7},
    ]
    for payload in refused_payloads:
        ws = await WSClient.connect(server.ws_url, init=False)
        await ws.send({"type": "connection_init", "payload": payload})
        assert await closed_with(ws.ws) == 4403
    legacy = await websockets.connect(server.ws_url, subprotocols=["graphql-ws"])  # type: ignore[list-item]
    await legacy.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": "Bearer nope"}})
    )
    assert json.loads(await legacy.recv())["type"] == "connection_error"
    assert await closed_with(legacy) == 4403


def test_misconfigured_keys_fail_at_start(tmp_path: Any) -> None:
    def verifier(**overrides: Any) -> TokenVerifier:
        settings = Settings(_env_file=None, data_dir=tmp_path, **overrides)
        return TokenVerifier(settings)

    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="at least 2048 bits"):
        verifier(jwt_public_key=public_pem(weak))
    with pytest.raises(ValueError, match="P-256"):
        verifier(jwt_public_key=public_pem(ec.generate_private_key(ec.SECP384R1())))
    with pytest.raises(ValueError, match="not a PEM public key"):
        verifier(jwt_public_key="-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----")
    with pytest.raises(ValueError, match="not both"):
        verifier(jwt_public_key=public_pem(rsa_key()), jwt_jwks_url="http://127.0.0.1:1/jwks")
    # A PEM pasted into an environment variable on one line still loads.
    one_line = public_pem(rsa_key()).replace("\n", "\\n")
    verifier(jwt_public_key=one_line)


async def test_huge_exp_does_not_break_the_socket_timer(server: LiveServer) -> None:
    """A far-future exp (validly signed) is clamped, not a 500 or a dead socket."""
    body = {"sub": "forever", "roles": ["VIEWER"], "exp": 10**15}
    forever = jwt.encode(body, server.settings.hs256_secret(), algorithm="HS256")
    assert data(await gql(server.url, ME, token=forever))["me"]["subject"] == "forever"
    async with await WSClient.connect(server.ws_url, forever) as ws:
        await ws.send({"type": "ping"})
        assert (await ws.recv())["type"] == "pong"
