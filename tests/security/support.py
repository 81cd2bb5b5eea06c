"""Helpers for the security suite: keys, a JWKS server, waiting, and a liveness probe."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.graphql import WSClient, data, gql
from tests.support.server import LiveServer
from tests.support.waiting import PATIENCE

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


async def closed_with(ws: websockets.ClientConnection, within: float = PATIENCE) -> int | None:
    """Read until the server closes the socket; the close code it sent."""
    try:
        async with asyncio.timeout(within):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed:
        pass
    return ws.close_code


async def still_serving(server: LiveServer) -> None:
    """The server answers /healthz, and a client nobody has touched works over HTTP and WS."""
    async with httpx.AsyncClient(timeout=10) as client:
        health = await client.get(f"{server.base}/healthz")
    assert health.status_code == 200, health.text
    bystander = server.token("OPERATOR", sub=f"bystander-{secrets.token_hex(4)}", tenant="bystand")
    assert data(await gql(server.url, "{ me { subject } }", token=bystander))["me"]
    async with await WSClient.connect(server.ws_url, bystander) as ws:
        await ws.subscribe("s", "subscription { systemMetrics(intervalSeconds: 1) { at } }")
        message = await ws.next_for("s")
    assert message["type"] == "next", message


# -- keys and tokens ---------------------------------------------------------


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def public_jwk(key: PrivateKey, kid: str) -> dict[str, Any]:
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    algorithm = jwt.get_algorithm_by_name(alg)
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": alg}


def claims(
    *roles: str,
    sub: str = "idp-user",
    tenant: str = "default",
    ttl: float | None = 3600,
    **extra: Any,
) -> dict[str, Any]:
    now = int(time.time())
    body: dict[str, Any] = {"sub": sub, "roles": list(roles), "tenant": tenant, "iat": now}
    if ttl is not None:
        body["exp"] = now + ttl
    body.update(extra)
    return body


def sign(key: PrivateKey, body: dict[str, Any], *, kid: str | None = None) -> str:
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(header: dict[str, Any], body: dict[str, Any], secret: bytes | None) -> str:
    """A token built by hand, as an attacker would: HS256 over ``secret``, or unsigned."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
    if secret is None:
        return f"{signing_input}."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


class JwksServer:
    """A JWKS endpoint on loopback, in a thread, whose keys a test can rotate."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/.well-known/jwks.json"

    @contextmanager
    def running(self) -> Iterator[JwksServer]:
        thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()
            thread.join(timeout=5)
