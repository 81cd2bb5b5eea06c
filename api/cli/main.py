"""The ``mark1`` command line."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from api.settings import Settings

app = typer.Typer(
    help="Mark-1 Realtime: the real-time GraphQL API of Mark-1.", no_args_is_help=True
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str) -> timedelta:
    """``90``, ``30s``, ``15m``, ``1h``, ``7d``."""
    match = _DURATION.match(value.strip())
    if not match:
        raise typer.BadParameter(f"{value!r} is not a duration like 30s, 15m, 1h or 7d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _settings(**overrides: object) -> Settings:
    try:
        base = Settings()
    except Exception as exc:  # pydantic's message names the bad setting
        typer.secho(f"configuration error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    return base.model_copy(update={k: v for k, v in overrides.items() if v is not None})


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (MARK1_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (MARK1_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (MARK1_WORKERS).")] = None,
) -> None:
    """Run the API server."""
    from api.cli.server import run_server

    settings = _settings(host=host, port=port, workers=workers)
    if settings.workers > 1 and settings.broadcast_url.startswith("memory"):
        typer.secho(
            "MARK1_WORKERS > 1 needs a shared bus: set MARK1_BROADCAST_URL to redis:// or postgres://",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    run_server(settings)


@app.command()
def demo() -> None:
    """Serve with simulated agents working through tasks and workflows (SQLite, memory bus)."""
    from api.cli.demo import run_demo

    run_demo(_settings())


@app.command()
def token(
    sub: Annotated[str, typer.Option(help="Subject (who the token is for).")] = "dev",
    role: Annotated[list[str], typer.Option(help="Role; repeat for several.")] = ["VIEWER"],  # noqa: B006
    tenant: Annotated[str, typer.Option(help="Tenant.")] = "default",
    agent_id: Annotated[str | None, typer.Option(help="Agent id, for AGENT tokens.")] = None,
    ttl: Annotated[str, typer.Option(help="Lifetime: 30s, 15m, 1h, 7d.")] = "1h",
) -> None:
    """Print a development JWT signed with this install's HS256 secret."""
    from api.auth.tokens import mint_token
    from api.domain import Role

    settings = _settings()
    try:
        roles = [Role(r.upper()) for r in role]
    except ValueError as exc:
        raise typer.BadParameter(f"role must be one of {', '.join(Role)}") from exc
    typer.echo(
        mint_token(
            settings.hs256_secret(),
            sub=sub,
            roles=roles,
            tenant=tenant,
            agent_id=agent_id,
            ttl=parse_duration(ttl),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    )


@app.command("export-schema")
def export_schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file.")] = None,
) -> None:
    """Print the GraphQL schema (SDL) as the code defines it."""
    from resolvers.schema import build_schema

    sdl = build_schema().as_str() + "\n"
    if output is None:
        typer.echo(sdl, nl=False)
    else:
        output.write_text(sdl)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration to MARK1_DATABASE_URL."""
    from api.db.engine import Database
    from api.db.migrate import upgrade

    settings = _settings()

    async def go() -> None:
        db = Database(settings.resolved_database_url)
        try:
            await upgrade(db)
        finally:
            await db.close()

    asyncio.run(go())
    typer.echo("database is up to date")


@app.command()
def watch(
    what: Annotated[
        str, typer.Argument(help="events, tasks, agents, or a .graphql file.")
    ] = "events",
    url: Annotated[str, typer.Option(help="GraphQL URL.")] = "http://127.0.0.1:8000/graphql",
    token: Annotated[str | None, typer.Option(envvar="MARK1_TOKEN", help="Bearer token.")] = None,
    after: Annotated[str | None, typer.Option(help="Resume events after this id.")] = None,
) -> None:
    """Follow a subscription in the terminal; reconnects and resumes by itself."""
    from api.cli.watch import run_watch

    run_watch(what=what, url=url, token=token, after=after)


if __name__ == "__main__":
    app()
