"""The schema, with its limits: one function, called by the composition root and the CLI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)

from resolvers.errors import ErrorCodes
from resolvers.mutations import Mutation
from resolvers.queries import Query
from resolvers.subscriptions import Subscription


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
        lambda: ParserCache(maxsize=1000),
        lambda: QueryDepthLimiter(max_depth=max_query_depth),
        lambda: MaxAliasesLimiter(max_alias_count=max_aliases),
        lambda: ValidationCache(maxsize=1000),
    ]
    if not introspection:
        extensions.append(DisableIntrospection)
    return Schema(query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions)
