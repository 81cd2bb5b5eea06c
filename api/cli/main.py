"""The ``mark1`` command line."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from api.cli.configuration import load_settings
from api.settings import Settings

if TYPE_CHECKING:
    from api.db.engine import Database

T = TypeVar("T")

app = typer.Typer(
    help="Mark-1 Realtime: the real-time GraphQL API of Mark-1.", no_args_is_help=True
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"mark1 {installed_version('mark1')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Mark-1 Realtime: the real-time GraphQL API of Mark-1."""


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str) -> timedelta:
    """``90``, ``30s``, ``15m``, ``1h``, ``7d``."""
    match = _DURATION.match(value.strip())
    if not match:
        raise typer.BadParameter(f"{value!r} is not a duration like 30s, 15m, 1h or 7d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _settings(**overrides: object) -> Settings:
    return load_settings(**overrides)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (MARK1_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (MARK1_PORT).")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (MARK1_WORKERS).")] = None,
) -> None:
    """Run the API server."""
    from api.cli.server import run_server

    run_server(_settings(host=host, port=port, workers=workers))


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


def _on_database(work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work(db)`` against MARK1_DATABASE_URL; a database that cannot be reached
    is one line on stderr and exit code 1, not a traceback."""
    from sqlalchemy.exc import DBAPIError

    from api.db.engine import Database
    from api.errors import Unavailable

    settings = _settings()

    async def go() -> T:
        db = Database(
            settings.resolved_database_url,
            connect_timeout=settings.db_connect_timeout,
            pool_timeout=settings.db_pool_timeout,
        )
        try:
            return await work(db)
        finally:
            await db.close()

    try:
        return asyncio.run(go())
    except (OSError, DBAPIError, Unavailable) as exc:
        typer.secho(f"mark1: database error: {exc.__class__.__name__}: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration to MARK1_DATABASE_URL."""
    from api.db.migrate import upgrade

    _on_database(upgrade)
    typer.echo("database is up to date")


@db_app.command("current")
def db_current() -> None:
    """Print the revision MARK1_DATABASE_URL is at, and whether it is the newest."""
    from api.db.migrate import current, history

    at = _on_database(current)
    heads = {r.id for r in history() if r.is_head}
    if not at:
        typer.echo("none (the database has no schema yet: run `mark1 db upgrade`)")
    for rev in at:
        typer.echo(f"{rev} (head)" if rev in heads else f"{rev} (behind: run `mark1 db upgrade`)")


@db_app.command("history")
def db_history() -> None:
    """List the migrations, newest first, marking the head and the database's revision."""
    from api.db.migrate import current, history

    at = set(_on_database(current))
    for rev in history():
        marks = [m for m, on in (("head", rev.is_head), ("current", rev.id in at)) if on]
        label = f" ({', '.join(marks)})" if marks else ""
        typer.echo(f"{rev.down or '<base>'} -> {rev.id}{label}: {rev.title}")


# ignore_unknown_options: so "-1" (one step down, as alembic spells it) is the argument.
@db_app.command("downgrade", context_settings={"ignore_unknown_options": True})
def db_downgrade(
    revision: Annotated[
        str,
        typer.Argument(
            metavar="REVISION", help="Revision to go back to: an id, -1 for one step, or base."
        ),
    ],
) -> None:
    """Undo migrations on MARK1_DATABASE_URL down to REVISION (data in dropped tables is lost)."""
    from alembic.util.exc import CommandError

    from api.db.migrate import current, downgrade

    async def go(db: Database) -> tuple[str, ...]:
        await downgrade(db, revision)
        return await current(db)

    try:
        at = _on_database(go)
    except CommandError as exc:
        raise typer.BadParameter(str(exc), param_hint="REVISION") from None
    typer.echo(f"database is at {', '.join(at) or 'base (no schema)'}")


def parse_cutoff(value: str) -> int | datetime:
    """An event id (``5000``) or an ISO-8601 time (``2026-01-31``, ``…T12:00:00+02:00``;
    without a zone, UTC)."""
    text = value.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither an event id nor an ISO-8601 time such as 2026-01-31T00:00:00Z",
            param_hint="--before",
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@db_app.command("prune")
def db_prune(
    before: Annotated[
        str,
        typer.Option(
            help="Delete events older than this: an event id (per tenant) or an ISO-8601 time."
        ),
    ],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (default: all).")] = None,
    batch: Annotated[int, typer.Option(min=1, help="Events per DELETE transaction.")] = 1000,
    dry_run: Annotated[bool, typer.Option(help="Say what would go; delete nothing.")] = False,
) -> None:
    """Delete old events from the outbox, in batches; the newest event of each tenant stays.

    A client resuming after a pruned id gets EVENTS_PRUNED (with oldestEventId)."""
    from api.db.retention import Progress, exclusive, plan, prune

    cutoff = parse_cutoff(before)
    shown = {"at": time.monotonic()}

    def progress(p: Progress) -> None:
        now = time.monotonic()
        if p.tenant_deleted < p.tenant_planned and now - shown["at"] < 1:
            return
        shown["at"] = now
        typer.echo(
            f"tenant {p.tenant}: {p.tenant_deleted:,}/{p.tenant_planned:,} deleted "
            f"({p.deleted:,}/{p.planned:,} in all)"
        )

    async def go(db: Database) -> int:
        if dry_run:
            plans = await plan(db, before=cutoff, tenant=tenant)
            for p in plans:
                typer.echo(
                    f"tenant {p.tenant}: would delete {p.count:,} events "
                    f"(ids {p.oldest} to {p.keep_from - 1}; oldest kept {p.keep_from})"
                )
            return sum(p.count for p in plans)
        async with exclusive(db, wait=False) as free:
            if free:
                return await prune(db, before=cutoff, tenant=tenant, batch=batch, progress=progress)
        typer.echo("another prune is running (a server's retention job?); waiting for it")
        async with exclusive(db, wait=True):
            return await prune(db, before=cutoff, tenant=tenant, batch=batch, progress=progress)

    count = _on_database(go)
    if dry_run:
        typer.echo(f"would prune {count:,} events (nothing deleted)")
    elif count:
        typer.echo(f"pruned {count:,} events; the newest event of each tenant is always kept")
    else:
        typer.echo("nothing to prune")


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
