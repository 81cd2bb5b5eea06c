"""Settings for a command, checked before anything starts: a mistake is one clear line
per setting on stderr and exit code 2 — no traceback, and never the refused value,
which may be a secret."""

from __future__ import annotations

import difflib
import logging
import os
from typing import NoReturn

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError

from api.logging.formatters import JsonFormatter
from api.settings import Settings

EXIT_CONFIGURATION = 2  # the exit code of a usage error, as click uses it
# MARK1_* variables that are not service settings: `mark1 watch --token`'s default,
# and the test suite's service addresses.
NOT_SETTINGS = ("MARK1_TOKEN", "MARK1_TEST_")


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
        settings = Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = describe(exc)
    except SettingsError as exc:  # a value pydantic-settings could not even decode
        lines = [str(exc)]
    else:
        for line in unknown_variables(os.environ):
            _say(logging.WARNING, line, json=settings.log_format == "json")
        return settings
    # The settings are wrong, but the operator may still have asked for JSON lines.
    json = os.environ.get("MARK1_LOG_FORMAT", "").strip().lower() == "json"
    for line in lines:
        _say(logging.ERROR, line, json=json)
    raise typer.Exit(EXIT_CONFIGURATION)


def refuse(line: str, settings: Settings) -> NoReturn:
    """Refuse a configuration that validated but cannot work (api/cli/deployment.py):
    the line on stderr, in the operator's log format, and exit code 2."""
    _say(logging.ERROR, line, json=settings.log_format == "json")
    raise typer.Exit(EXIT_CONFIGURATION)


def unknown_variables(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """A line for each MARK1_* variable that is no setting: most likely a typo, which
    would otherwise leave the default in force without a word."""
    known = [f"MARK1_{name.upper()}" for name in Settings.model_fields]
    lines = []
    for name in sorted(environ):
        if not name.startswith("MARK1_") or name in known or name.startswith(NOT_SETTINGS):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"{name} is not a setting and is ignored{hint}")
    return lines


def _say(level: int, line: str, *, json: bool) -> None:
    """On stderr, in the log format the operator chose (logging is not set up yet)."""
    if json:
        record = logging.LogRecord(__name__, level, __file__, 0, line, None, None)
        typer.echo(JsonFormatter().format(record), err=True)
    elif level >= logging.ERROR:
        typer.secho(f"mark1: configuration error: {line}", fg="red", err=True)
    else:
        typer.secho(f"mark1: warning: {line}", fg="yellow", err=True)
