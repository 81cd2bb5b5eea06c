"""The schema's extension runner (resolvers/schema.py ``_Runner``) runs lifecycle hooks
as strawberry's own runner does: the same order, the same exceptions, the same results."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.extensions.runner import SchemaExtensionsRunner

from resolvers.schema import Schema

Log = list[str]


def _recording(tag: str, log: Log, fail_on: str | None = None) -> type[SchemaExtension]:
    """An extension whose every phase hook logs entering and leaving, and what it saw."""

    def phase(name: str) -> Any:
        def hook(self: SchemaExtension) -> Iterator[None]:
            log.append(f"{tag}>{name}")
            if name == fail_on:
                raise GraphQLError(f"{tag} refused at {name}")
            try:
                yield
            except Exception as exc:
                log.append(f"{tag}!{name}:{exc}")
                raise
            log.append(f"{tag}<{name}")

        return hook

    return type(
        f"Recording{tag}",
        (SchemaExtension,),
        {n: phase(n) for n in ("on_operation", "on_parse", "on_validate", "on_execute")},
    )


@strawberry.type
class _Query:
    @strawberry.field
    def ok(self) -> int:
        return 1

    @strawberry.field
    def boom(self) -> int:
        raise ValueError("resolver failed")


class _Plain(Schema):
    """The same schema class with strawberry's own runner."""

    def create_extensions_runner(
        self, execution_context: Any, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        return SchemaExtensionsRunner(execution_context, extensions)


async def _run(schema_class: type[Schema], query: str, fail_on: str | None) -> tuple[Log, Any]:
    """What the hooks logged, and the result (or the exception execute() let out)."""
    log: Log = []
    extensions = [_recording("a", log), _recording("b", log, fail_on)]
    schema = schema_class(query=_Query, extensions=extensions)
    try:
        result = await schema.execute(query)
    except Exception as exc:
        return log, ("raised", type(exc).__name__, str(exc))
    errors = [(e.message, e.path, e.extensions) for e in result.errors or []]
    return log, (result.data, errors)


@pytest.mark.parametrize("fail_on", [None, "on_operation", "on_parse", "on_validate", "on_execute"])
@pytest.mark.parametrize("query", ["{ ok }", "{ boom }", "{ nope }", "{"])
async def test_hooks_run_as_strawberrys_runner_runs_them(query: str, fail_on: str | None) -> None:
    ours, theirs = await _run(Schema, query, fail_on), await _run(_Plain, query, fail_on)
    assert ours == theirs
    assert ours[0]  # the hooks did run
