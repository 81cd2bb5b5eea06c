"""JWT verification (HS256 secret, PEM public key or JWKS URL) and development minting."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from api.auth.principal import Principal
from api.clock import utcnow
from api.domain import Role
from api.errors import Unauthenticated
from api.settings import Settings

_ASYMMETRIC = ["RS256", "ES256"]
_TENANT = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class TokenVerifier:
    """Turns a bearer token into a Principal, or raises Unauthenticated."""

    def __init__(self, settings: Settings) -> None:
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway
        self._secret = settings.hs256_secret() if not _asymmetric_only(settings) else None
        self._public_key = settings.jwt_public_key
        self._jwks = (
            jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, lifespan=300)
            if settings.jwt_jwks_url
            else None
        )

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("Malformed token") from exc
        alg = header.get("alg")
        key: Any
        if alg == "HS256" and self._secret is not None:
            key = self._secret
        elif alg in _ASYMMETRIC and self._jwks is not None:
            try:
                # PyJWKClient refetches the key set when it meets an unknown kid,
                # so a rotated key works without a restart.
                key = (await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)).key
            except jwt.PyJWTError as exc:
                raise Unauthenticated("Token signing key not found") from exc
        elif alg in _ASYMMETRIC and self._public_key is not None:
            key = self._public_key
        else:
            raise Unauthenticated(f"Token algorithm {alg!r} is not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._audience is not None,
                    "verify_iss": self._issuer is not None,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"Invalid token: {exc}") from exc
        return principal_from_claims(claims)


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
    tenant = claims.get("tenant", "default")
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise Unauthenticated("Token tenant is invalid")
    agent_id = claims.get("agent_id")
    if agent_id is not None and not isinstance(agent_id, str):
        raise Unauthenticated("Token agent_id must be a string")
    return Principal(
        subject=sub,
        roles=roles,
        tenant=tenant,
        agent_id=agent_id,
        expires_at=datetime.fromtimestamp(float(claims["exp"]), UTC),
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


def _asymmetric_only(settings: Settings) -> bool:
    """With a public key or JWKS and no explicit secret, HS256 is not accepted at all."""
    has_asymmetric = settings.jwt_public_key is not None or settings.jwt_jwks_url is not None
    return has_asymmetric and settings.jwt_secret is None


def parse_bearer(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer`` value, or None when absent."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization must be 'Bearer <token>'")
    return token.strip()
