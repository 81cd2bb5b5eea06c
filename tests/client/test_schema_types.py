"""The SDK's types and documents match schema.graphql: drift in either fails here."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    build_schema,
    parse,
    validate,
)

from mark1_client import documents, types
from mark1_client.codec import camel, hints, item_type, unwrap

SCHEMA = build_schema((Path(__file__).resolve().parents[2] / "schema.graphql").read_text())
_SCALARS: dict[str, Any] = {
    "ID": str,
    "String": str,
    "Int": int,
    "Float": float,
    "Boolean": bool,
    "DateTime": datetime,
    "JSON": Any,
}


def mismatch(hint: Any, gql: Any, schema: GraphQLSchema) -> str | None:
    """Why a Python type hint cannot hold what the schema type sends; None when it can."""
    inner, optional = unwrap(hint)
    if isinstance(gql, GraphQLNonNull):
        gql = gql.of_type
    elif not optional and inner is not Any:
        return f"the schema's {gql} is nullable but the SDK's {hint} is not"
    if isinstance(gql, GraphQLList):
        item = item_type(inner)
        if item is None:
            return f"the schema sends a list ({gql}), the SDK expects {inner}"
        return mismatch(item, gql.of_type, schema)
    if isinstance(gql, GraphQLScalarType):
        expected = _SCALARS[gql.name]
        return None if inner is expected else f"{gql.name} needs {expected}, not {inner}"
    if isinstance(gql, GraphQLEnumType):
        if getattr(inner, "__name__", None) != gql.name:
            return f"enum {gql.name} decoded as {inner}"
        return None
    if isinstance(gql, GraphQLObjectType | GraphQLInputObjectType):
        if getattr(inner, "typename", None) != gql.name:
            return f"{gql.name} decoded as {inner}"
        return None
    return f"unexpected schema type {gql}"


@pytest.mark.parametrize("kind", types.OUTPUT_TYPES + types.INPUT_TYPES, ids=lambda k: k.__name__)
def test_every_field_of_an_sdk_type_exists_in_the_schema_with_a_compatible_type(kind: type) -> None:
    gql = SCHEMA.get_type(kind.typename)  # type: ignore[attr-defined]
    assert isinstance(gql, GraphQLObjectType | GraphQLInputObjectType), kind.typename
    problems = []
    for name, hint in hints(kind).items():
        field = gql.fields.get(camel(name))
        if field is None:
            problems.append(f"{kind.typename}.{camel(name)} is not in the schema")
        elif why := mismatch(hint, field.type, SCHEMA):
            problems.append(f"{kind.typename}.{camel(name)}: {why}")
    assert problems == []


@pytest.mark.parametrize("kind", types.ENUMS, ids=lambda k: k.__name__)
def test_every_enum_has_exactly_the_schemas_values(kind: type) -> None:
    gql = SCHEMA.get_type(kind.__name__)
    assert isinstance(gql, GraphQLEnumType)
    assert sorted(m.value for m in kind) == sorted(gql.values)  # type: ignore[attr-defined]


def test_snapshot_types_hold_every_field_of_their_schema_type_that_is_not_a_link() -> None:
    """A field added to the schema shows up in the SDK (links to other types are chosen)."""
    for kind in (types.TaskSnapshot, types.AgentSnapshot, types.WorkflowSnapshot, types.Event):
        gql = SCHEMA.get_type(kind.typename)
        assert isinstance(gql, GraphQLObjectType)
        fields = {camel(f.name) for f in dataclasses.fields(kind)}
        scalars = {
            name
            for name, field in gql.fields.items()
            if not isinstance(_named(field.type), GraphQLObjectType)
        }
        assert scalars <= fields, f"{kind.typename} lacks {scalars - fields}"


def _named(gql: Any) -> Any:
    while isinstance(gql, GraphQLNonNull | GraphQLList):
        gql = gql.of_type
    return gql


@pytest.mark.parametrize("name", sorted(documents.ALL))
def test_every_document_the_sdk_sends_validates_against_the_schema(name: str) -> None:
    assert validate(SCHEMA, parse(documents.ALL[name])) == []


def test_a_type_that_drifted_from_the_schema_is_caught() -> None:
    """The checker itself: a renamed field and a wrong nullability are both reported."""

    @dataclasses.dataclass(frozen=True)
    class Drifted:
        typename = "Task"
        id: str
        name: str  # Task has `title`, not `name`
        error: str  # nullable in the schema

    gql = SCHEMA.get_type("Task")
    assert isinstance(gql, GraphQLObjectType)
    assert "name" not in gql.fields
    assert mismatch(hints(Drifted)["error"], gql.fields["error"].type, SCHEMA)
    assert mismatch(hints(Drifted)["id"], gql.fields["id"].type, SCHEMA) is None


def test_mark1_client_is_importable_from_the_installed_environment(tmp_path: Path) -> None:
    """Not from the repository root on sys.path: from the install (wheel or editable)."""
    import subprocess
    import sys
    import tomllib

    root = Path(__file__).resolve().parents[2]
    wheel = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    assert "client/mark1_client" in wheel["targets"]["wheel"]["packages"]
    found = subprocess.run(
        [sys.executable, "-I", "-c", "import mark1_client; print(mark1_client.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(found).parent.name == "mark1_client"
