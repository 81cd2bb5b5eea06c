"""JWT verification (HS256 secret, PEM public key or JWKS URL) and development minting."""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from api.auth.keys import ASYMMETRIC_ALGORITHMS, JwksKeys, KeySource, PemKey
from api.auth.principal import Principal
from api.clock import utcnow
from api.domain import Role
from api.errors import Unauthenticated
from api.settings import Settings

_TENANT = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
# Far enough for any real token, near enough for datetime and event-loop timers.
_MAX_EXP = datetime(9999, 1, 1, tzinfo=UTC).timestamp()
# Verified tokens are kept by their text: an agent sends the same token with every
# mutation, and verifying one (header, signature, claims) costs more than the rest
# of the request's auth. Only tokens checked against a key that cannot change while
# the process runs (the HS256 secret, a PEM public key) are kept: a JWKS key retired
# by the provider must stop verifying at the next refetch.
_CACHED_TOKENS = 10_000
# Every principal with the same roles shares one set (there are few combinations, and
# a principal lives as long as its socket).
_ROLE_SETS: dict[frozenset[Role], frozenset[Role]] = {}


class TokenVerifier:
    """Turns a bearer token into a Principal, or raises Unauthenticated.

    Keys are chosen by the server, never by the token: HS256 only with the shared
    secret, RS256/ES256 only with the configured public key or JWKS, ``none`` never —
    so an HS256 token "signed" with the public key is just a bad signature.
    """

    def __init__(self, settings: Settings) -> None:
        if settings.jwt_public_key and settings.jwt_jwks_url:
            raise ValueError("set MARK1_JWT_PUBLIC_KEY or MARK1_JWT_JWKS_URL, not both")
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway
        self._keys: KeySource | None = None
        if settings.jwt_jwks_url:
            self._keys = JwksKeys(settings.jwt_jwks_url)
        elif settings.jwt_public_key:
            self._keys = PemKey(settings.jwt_public_key)
        # With an identity provider and no explicit secret, the generated secret still
        # signs the tokens registerAgent hands out, and nothing else: HS256 tokens are
        # then accepted only when they are such agent tokens.
        self._secret = settings.hs256_secret()
        self._hs256_agents_only = self._keys is not None and settings.jwt_secret is None
        # By the token's SHA-256, oldest first: a token is a few hundred bytes, kept as
        # long as its socket.
        self._verified: dict[bytes, tuple[Principal, float]] = {}

    async def verify(self, token: str) -> Principal:
        """The token's Principal; a token verified with a fixed key before is taken
        from the cache until its ``exp`` plus the leeway it was accepted with."""
        key = hashlib.sha256(token.encode()).digest()
        cached = self._verified.get(key)
        if cached is not None:
            principal, until = cached
            if time.time() < until:
                return principal
            del self._verified[key]
        principal, fixed_key = await self._verify(token)
        if fixed_key:
            until = principal.expires_at.timestamp() + self._leeway
            self._verified[key] = (principal, until)
            if len(self._verified) > _CACHED_TOKENS:
                del self._verified[next(iter(self._verified))]
        return principal

    async def _verify(self, token: str) -> tuple[Principal, bool]:
        """The Principal, and whether the key that verified it is fixed for the process."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("Malformed token") from exc
        alg = header.get("alg")
        kid = header.get("kid")
        key: Any
        issuer, audience = self._issuer, self._audience
        if alg == "HS256":
            key = self._secret
            if self._hs256_agents_only:
                # Our own agent tokens: the provider's iss and aud do not apply to them.
                issuer = audience = None
        elif alg in ASYMMETRIC_ALGORITHMS and self._keys is not None:
            key = await self._keys.key_for(alg, kid if isinstance(kid, str) else None)
        else:
            raise Unauthenticated(f"Token algorithm {alg!r} is not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=issuer,
                audience=audience,
                leeway=self._leeway,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": audience is not None,
                    "verify_iss": issuer is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"Invalid token: {exc}") from exc
        principal = principal_from_claims(claims)
        if alg == "HS256" and self._hs256_agents_only and not _is_agent_token(principal):
            raise Unauthenticated("Token algorithm 'HS256' is not accepted")
        return principal, alg == "HS256" or isinstance(self._keys, PemKey)


def _is_agent_token(principal: Principal) -> bool:
    """The shape of a token registerAgent mints: only AGENT, for its own agent."""
    return (
        principal.roles == frozenset({Role.AGENT})
        and principal.agent_id is not None
        and principal.subject == f"agent:{principal.agent_id}"
    )


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthenticated("Token has no subject")
    raw_roles = claims.get("roles", [])
    if isinstance(raw_roles, str):
        raw_roles = [raw_roles]
    if not isinstance(raw_roles, list):
        raise Unauthenticated("Token roles must be a list")
    roles = frozenset(Role(r) for r in raw_roles if isinstance(r, str) and r in Role.__members__)
    roles = _ROLE_SETS.setdefault(roles, roles)
    tenant = claims.get("tenant", "default")
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise Unauthenticated("Token tenant is invalid")
    agent_id = claims.get("agent_id")
    if agent_id is not None and not isinstance(agent_id, str):
        raise Unauthenticated("Token agent_id must be a string")
    exp = claims["exp"]
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise Unauthenticated("Token exp must be a number")
    return Principal(
        subject=sub,
        roles=roles,
        tenant=tenant,
        agent_id=agent_id,
        expires_at=datetime.fromtimestamp(min(float(exp), _MAX_EXP), UTC),
    )


def mint_token(
    secret: str,
    *,
    sub: str,
    roles: list[Role],
    tenant: str = "default",
    agent_id: str | None = None,
    ttl: timedelta = timedelta(hours=1),
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """An HS256 token with the claims the service reads."""
    now = utcnow()
    claims: dict[str, Any] = {
        "sub": sub,
        "roles": [r.value for r in roles],
        "tenant": tenant,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    if agent_id is not None:
        claims["agent_id"] = agent_id
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")


def parse_bearer(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` value, or None when absent."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization must be 'Bearer <token>'")
    return token.strip()
