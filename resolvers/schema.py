"""The schema, with its limits: one function, called by the composition root and the CLI."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import strawberry
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLID,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    StringValueNode,
    TypeInfo,
    TypeInfoVisitor,
    VariableDefinitionNode,
    Visitor,
    get_named_type,
    type_from_ast,
    visit,
)
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.types.base_scalars import DateTimeDefinition

from resolvers.errors import ErrorCodes
from resolvers.mutations import Mutation
from resolvers.queries import Query
from resolvers.subscriptions import Subscription

# The caches are keyed by the whole document text and parsed before any auth
# check: only documents a real client would send are worth keeping.
CACHEABLE_DOCUMENT = 16 * 1024


class _ParserCache(ParserCache):
    """ParserCache that leaves a document it cannot parse to strawberry.

    ``ParserCache.on_parse`` raises syntax errors (and ``max_tokens``) from the hook
    itself, outside strawberry's handling, so they reach the client without passing
    ``ErrorCodes`` — no ``extensions.code``, nothing masked. Left unparsed, the
    document is parsed again where the error becomes an ordinary pre-execution error.
    """

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None and len(context.query) > CACHEABLE_DOCUMENT:
            yield  # too big to keep: strawberry parses it once, uncached
            return
        try:
            context.graphql_document = self.cached_parse_document(
                context.query, **context.parse_options
            )
        except Exception:
            context.graphql_document = None
        yield


class _ValidationCache(ValidationCache):
    """ValidationCache that keeps only small documents (the cache pins each key)."""

    def on_validate(self) -> Iterator[None]:
        query = self.execution_context.query
        if query is not None and len(query) > CACHEABLE_DOCUMENT:
            yield  # strawberry validates it, uncached
            return
        yield from super().on_validate()


# DESIGN: timestamps are ISO-8601 with offset and microsecond precision; plain
# isoformat() drops the fraction when it is zero.
DATETIME = dataclasses.replace(
    DateTimeDefinition, serialize=lambda value: value.isoformat(timespec="microseconds")
)

MAX_ID_LENGTH = 200
_ID_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _IdChecker(Visitor):
    """Finds ``ID`` values, literal or in variables, that no record can have."""

    def __init__(self, schema: GraphQLSchema, type_info: TypeInfo, variables: dict[str, Any]):
        super().__init__()
        self.schema, self.type_info, self.variables = schema, type_info, variables
        self.bad: str | None = None

    def check(self, value: str) -> None:
        if self.bad is None and (len(value) > MAX_ID_LENGTH or _ID_CONTROL.search(value)):
            self.bad = value

    def check_value(self, type_: GraphQLInputType | None, value: Any) -> None:
        if isinstance(type_, GraphQLNonNull):
            type_ = type_.of_type
        if isinstance(type_, GraphQLList):
            for item in value if isinstance(value, list) else [value]:
                self.check_value(type_.of_type, item)
        elif isinstance(type_, GraphQLInputObjectType) and isinstance(value, dict):
            for name, field in type_.fields.items():
                if name in value:
                    self.check_value(field.type, value[name])
        elif type_ is GraphQLID and isinstance(value, str):
            self.check(value)

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        if get_named_type(self.type_info.get_input_type()) is GraphQLID:
            self.check(node.value)

    def enter_variable_definition(self, node: VariableDefinitionNode, *_: Any) -> None:
        name = node.variable.name.value
        if name in self.variables:
            type_ = type_from_ast(self.schema, node.type)
            self.check_value(type_, self.variables[name])  # type: ignore[arg-type]


def first_bad_id(
    schema: GraphQLSchema, document: DocumentNode, variables: dict[str, Any]
) -> str | None:
    """An ID argument with control characters or over MAX_ID_LENGTH, if the call has one."""
    type_info = TypeInfo(schema)
    checker = _IdChecker(schema, type_info, variables)
    visit(document, TypeInfoVisitor(type_info, checker))
    return checker.bad


class IdLimiter(SchemaExtension):
    """Refuses IDs no record can have as BAD_USER_INPUT, before any resolver runs.

    Ids are looked up as given, and PostgreSQL cannot even compare a string holding
    a NUL byte: without this, ``task(id: "\\u0000")`` is an INTERNAL error.
    """

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None:
            bad = first_bad_id(
                context.schema._schema, context.graphql_document, context.variables or {}
            )
            if bad is not None:
                # strawberry turns an exception from on_execute into the operation's
                # error (HTTP and both socket protocols); it carries its code already.
                raise GraphQLError(
                    f"An ID is at most {MAX_ID_LENGTH} characters, without control characters",
                    extensions={"code": "BAD_USER_INPUT"},
                )
        yield


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Silence strawberry's own logging: ``ErrorCodes`` logs what is unexpected, and
        expected errors (bad input, auth) are the client's business, not the log's."""


def build_schema(
    *,
    max_query_depth: int = 12,
    max_aliases: int = 30,
    max_tokens: int = 2000,
    introspection: bool = True,
) -> strawberry.Schema:
    # Factories, so each request gets fresh extension state (strawberry#4369).
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        ErrorCodes,
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        lambda: _ParserCache(maxsize=1000),
        lambda: QueryDepthLimiter(max_depth=max_query_depth),
        lambda: MaxAliasesLimiter(max_alias_count=max_aliases),
        lambda: _ValidationCache(maxsize=1000),
        IdLimiter,
    ]
    if not introspection:
        extensions.append(DisableIntrospection)
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        scalar_overrides={datetime: DATETIME},
    )
