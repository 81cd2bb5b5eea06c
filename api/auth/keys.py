"""Public keys of an identity provider: one PEM key, or a JWKS URL cached and refetched.

Only RS256 and ES256 are accepted from these sources, and each key is bound to
one algorithm by its own type, so a token cannot pick how its key is used
(RFC 8725 §3.1: "each key MUST be used with exactly one algorithm").
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from api.errors import Unauthenticated

log = logging.getLogger(__name__)

ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256"})
MIN_RSA_BITS = 2048


class KeySource(Protocol):
    async def key_for(self, alg: str, kid: str | None) -> Any:
        """The verification key for a token's ``alg`` and ``kid``; Unauthenticated if none."""
        ...


def algorithm_of(key: object) -> str:
    """The one algorithm a public key may verify, or ValueError for keys we do not accept."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ValueError("only RSA (RS256) and P-256 EC (ES256) public keys are accepted")


class PemKey:
    """A single configured public key (``MARK1_JWT_PUBLIC_KEY``), checked at start-up."""

    def __init__(self, pem: str) -> None:
        # Environment variables often carry a PEM on one line with literal "\n".
        text = pem.strip().replace("\\n", "\n")
        try:
            self._key = load_pem_public_key(text.encode())
        except ValueError as exc:
            raise ValueError(f"MARK1_JWT_PUBLIC_KEY is not a PEM public key: {exc}") from exc
        try:
            self.algorithm = algorithm_of(self._key)
        except ValueError as exc:
            raise ValueError(f"MARK1_JWT_PUBLIC_KEY: {exc}") from exc

    async def key_for(self, alg: str, kid: str | None) -> Any:
        if alg != self.algorithm:
            raise Unauthenticated(f"Token algorithm {alg!r} is not accepted")
        return self._key


class JwksKeys:
    """The key set at a JWKS URL: cached, refetched when stale or when a token names an
    unknown ``kid`` (so key rotation needs no restart).

    Refetches are serialised and at most one per ``min_refresh`` seconds: tokens with
    made-up ``kid`` values cannot turn the service into a flood against the provider.
    A caller that meets an unknown ``kid`` waits for the next allowed refetch instead of
    being refused, so a freshly rotated key is accepted after at most that delay.
    """

    def __init__(
        self,
        url: str,
        *,
        max_age: float = 300.0,
        min_refresh: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self._max_age = max_age
        self._min_refresh = min_refresh
        self._timeout = timeout
        self._keys: list[jwt.PyJWK] = []
        self._fetched_at: float | None = None
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key_for(self, alg: str, kid: str | None) -> Any:
        asked_at = time.monotonic()
        stale = self._fetched_at is None or asked_at - self._fetched_at > self._max_age
        if stale or self._find(alg, kid) is None:
            await self._refresh(asked_at)
        key = self._find(alg, kid)
        if key is None:
            raise Unauthenticated("Token signing key not found")
        return key.key

    def _find(self, alg: str, kid: str | None) -> jwt.PyJWK | None:
        candidates = [k for k in self._keys if k.algorithm_name == alg and k.key_id == kid]
        if kid is None:
            # Without a kid, only a set with one key for that algorithm is unambiguous.
            candidates = [k for k in self._keys if k.algorithm_name == alg]
        return candidates[0] if len(candidates) == 1 else None

    async def _refresh(self, asked_at: float) -> None:
        async with self._lock:
            if self._attempted_at >= asked_at:
                return  # someone fetched while we waited for the lock
            wait = self._attempted_at + self._min_refresh - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._attempted_at = time.monotonic()
            try:
                self._keys = await self._fetch()
                self._fetched_at = self._attempted_at
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                # Keep the keys we have: a provider outage must not lock everyone out.
                log.warning("could not fetch the JWKS at %s: %s", self.url, exc)

    async def _fetch(self) -> list[jwt.PyJWK]:
        async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as client:
            response = await client.get(self.url, headers={"accept": "application/json"})
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("a JWKS document is an object with a 'keys' list")
        keys: list[jwt.PyJWK] = []
        for data in document["keys"]:
            if not isinstance(data, dict) or data.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(data)
                if algorithm_of(key.key) != key.algorithm_name:
                    continue
            except (jwt.PyJWTError, ValueError):
                continue  # skip keys we cannot or will not use
            keys.append(key)
        if not keys:
            raise ValueError("the JWKS holds no RS256 or ES256 signing key")
        return keys
