"""Settings for a command, checked before anything starts: a mistake is one clear line
per setting on stderr and exit code 2 — no traceback, and never the refused value,
which may be a secret."""

from __future__ import annotations

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError

from api.settings import Settings

EXIT_CONFIGURATION = 2  # the exit code of a usage error, as click uses it


def describe(error: ValidationError) -> list[str]:
    """One line per refused setting, each starting with the variable's name."""
    lines = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        message = item["msg"].removeprefix("Value error, ")
        loc = item["loc"]
        name = f"MARK1_{str(loc[0]).upper()}" if loc else ""
        if name and not message.startswith(name):
            message = f"{name}: {message}"
        lines.append(message)
    return lines


def load_settings(**overrides: object) -> Settings:
    """The settings from the environment and ``.env``, with the command line's options
    (those given) on top, validated together; exits with code 2 when they are wrong."""
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = describe(exc)
    except SettingsError as exc:  # a value pydantic-settings could not even decode
        lines = [str(exc)]
    for line in lines:
        typer.secho(f"mark1: configuration error: {line}", fg="red", err=True)
    raise typer.Exit(EXIT_CONFIGURATION)
