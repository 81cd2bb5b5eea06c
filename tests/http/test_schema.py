"""schema.graphql is what the code defines and what the server serves."""

from __future__ import annotations

from pathlib import Path

from graphql import (
    build_client_schema,
    build_schema,
    get_introspection_query,
    lexicographic_sort_schema,
    print_schema,
)
from typer.testing import CliRunner

from api.cli.main import app as cli
from resolvers.schema import build_schema as build_app_schema
from tests.http.helpers import Api

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schema.graphql"


def test_schema_file_is_current() -> None:
    """Fails when the code changed and `mark1 export-schema > schema.graphql` was not run."""
    run = CliRunner().invoke(cli, ["export-schema"])
    assert run.exit_code == 0, run.output
    exported = run.stdout

    assert exported == build_app_schema().as_str() + "\n"
    assert SCHEMA_FILE.read_text() == exported, "schema.graphql is stale: run `make schema`"


async def test_served_schema_matches_the_file(api: Api) -> None:
    body = await api.ok(get_introspection_query(specified_by_url=True), token=api.viewer)

    served = print_schema(lexicographic_sort_schema(build_client_schema(body)))  # type: ignore[arg-type]
    written = print_schema(lexicographic_sort_schema(build_schema(SCHEMA_FILE.read_text())))

    assert served == written
