"""Deployments that cannot work, refused before anything starts (DESIGN: Scale-out).

Several processes — ``--workers > 1``, or a shared bus, which is there for
processes on several hosts — need a database they can share and the same
signing key for the tokens they hand out to one another's clients.
"""

from __future__ import annotations

from api.settings import Settings


def refusal(settings: Settings) -> str | None:
    """Why ``settings`` cannot work, in one sentence naming the settings; None when it can."""
    # Several workers on the in-memory bus never get this far: Settings refuses them.
    if settings.broadcast_url.startswith("memory"):
        return None
    if settings.resolved_database_url.startswith("sqlite"):
        return (
            "SQLite is single-process: several workers or a shared bus (MARK1_BROADCAST_URL) "
            "need PostgreSQL, so that every process sees the same tasks; set "
            "MARK1_DATABASE_URL=postgresql+asyncpg://…"
        )
    if settings.jwt_secret is None and (settings.jwt_public_key or settings.jwt_jwks_url):
        return (
            "several processes need one signing key for agent tokens: with "
            "MARK1_JWT_PUBLIC_KEY or MARK1_JWT_JWKS_URL, registerAgent still signs with "
            "MARK1_JWT_SECRET, and without it each process would generate its own (so one "
            "process's agent tokens are refused by the others); set MARK1_JWT_SECRET, the "
            "same on every process"
        )
    if settings.jwt_secret is None:
        return (
            "several processes need one signing key: without MARK1_JWT_SECRET each data "
            "directory generates its own, and a token from one host is refused by another; "
            "set MARK1_JWT_SECRET, the same on every process"
        )
    return None
