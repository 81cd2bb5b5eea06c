"""The schema, with its limits: one function, called by the composition root and the CLI."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import re
import types
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator
from datetime import datetime
from typing import Any, ClassVar

import strawberry
from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLID,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    NoSchemaIntrospectionCustomRule,
    StringValueNode,
    TypeInfo,
    TypeInfoVisitor,
    VariableDefinitionNode,
    Visitor,
    get_named_type,
    parse,
    specified_rules,
    type_from_ast,
    visit,
)
from strawberry.extensions import SchemaExtension
from strawberry.extensions.max_aliases import create_validator as alias_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.schema import validate_document
from strawberry.schema.types.base_scalars import DateTimeDefinition
from strawberry.utils.await_maybe import await_maybe

from resolvers.errors import ErrorCodes
from resolvers.execution import Executor
from resolvers.mutations import Mutation
from resolvers.queries import Query
from resolvers.subscriptions import Subscription

# DESIGN: timestamps are ISO-8601 with offset and microsecond precision; plain
# isoformat() drops the fraction when it is zero.
DATETIME = dataclasses.replace(
    DateTimeDefinition, serialize=lambda value: value.isoformat(timespec="microseconds")
)

MAX_ID_LENGTH = 200
_ID_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# The caches are keyed by the whole document text and filled before any auth
# check: only documents a real client would send are worth keeping.
CACHEABLE_DOCUMENT = 16 * 1024
_DOCUMENTS = 1000


@dataclasses.dataclass
class DocumentStats:
    """How often documents were really parsed and validated (cache misses), process-wide."""

    parses: int = 0
    validations: int = 0


STATS = DocumentStats()


@functools.lru_cache(maxsize=_DOCUMENTS)
def _parse_cached(text: str, max_tokens: int) -> DocumentNode:
    STATS.parses += 1
    return parse(text, max_tokens=max_tokens)


def parse_document(text: str, *, max_tokens: int) -> DocumentNode:
    """``graphql.parse(text, max_tokens=…)``, cached by document text: a client sends the
    same few documents over and over, and parsing one costs as much as running it.

    Raises GraphQLError as ``parse`` does (failures are not kept). The returned
    document is shared: never mutate it.
    """
    if len(text) > CACHEABLE_DOCUMENT:
        STATS.parses += 1
        return parse(text, max_tokens=max_tokens)
    return _parse_cached(text, max_tokens)


class _IdChecker(Visitor):
    """Finds ``ID`` literals no record can have, and every variable's declared type."""

    def __init__(self, schema: GraphQLSchema, type_info: TypeInfo) -> None:
        super().__init__()
        self.schema, self.type_info = schema, type_info
        self.bad: str | None = None
        self.variables: list[tuple[str, GraphQLInputType]] = []

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        if self.bad is None and get_named_type(self.type_info.get_input_type()) is GraphQLID:
            self.bad = _bad_id(node.value)

    def enter_variable_definition(self, node: VariableDefinitionNode, *_: Any) -> None:
        type_ = type_from_ast(self.schema, node.type)
        if type_ is not None:
            self.variables.append((node.variable.name.value, type_))  # type: ignore[arg-type]


def _bad_id(value: str) -> str | None:
    return value if len(value) > MAX_ID_LENGTH or _ID_CONTROL.search(value) else None


def _bad_id_in(type_: GraphQLInputType, value: Any) -> str | None:
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    if isinstance(type_, GraphQLList):
        for item in value if isinstance(value, list) else [value]:
            if (bad := _bad_id_in(type_.of_type, item)) is not None:
                return bad
    elif isinstance(type_, GraphQLInputObjectType) and isinstance(value, dict):
        for name, field in type_.fields.items():
            if name in value and (bad := _bad_id_in(field.type, value[name])) is not None:
                return bad
    elif type_ is GraphQLID and isinstance(value, str):
        return _bad_id(value)
    return None


@dataclasses.dataclass(frozen=True)
class _Checked:
    """What validation found in one document: kept, so the next request skips it."""

    errors: tuple[GraphQLError, ...]
    bad_literal_id: str | None
    variables: tuple[tuple[str, GraphQLInputType], ...]

    def bad_id(self, variables: dict[str, Any]) -> str | None:
        """An ID argument with control characters or over MAX_ID_LENGTH, if the call has one."""
        if self.bad_literal_id is not None:
            return self.bad_literal_id
        for name, type_ in self.variables:
            if name in variables and (bad := _bad_id_in(type_, variables[name])) is not None:
                return bad
        return None


class DocumentCheck:
    """Validation of one schema with its fixed rules, cached by document text.

    The rules (graphql-core's, strawberry's, depth and alias limits, and the
    introspection ban when configured) are built once here, so for a given
    schema the result depends on the document text alone. strawberry's own
    limiter extensions build new rule classes per request, and its validation
    cache keys on those classes: it never hit (issue #8).
    """

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        max_query_depth: int,
        max_aliases: int,
        introspection: bool,
        maxsize: int = _DOCUMENTS,
    ) -> None:
        self.schema = schema
        rules: list[type[ASTValidationRule]] = [
            *specified_rules,
            depth_validator(max_query_depth, None),
            alias_validator(max_aliases),
        ]
        if not introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        self.rules = tuple(rules)
        self._maxsize = maxsize
        self._checked: OrderedDict[str, _Checked] = OrderedDict()

    def check(self, text: str, document: DocumentNode) -> _Checked:
        found = self._checked.get(text)
        if found is not None:
            self._checked.move_to_end(text)
            return found
        found = self._check(document)
        if len(text) <= CACHEABLE_DOCUMENT:
            self._checked[text] = found
            if len(self._checked) > self._maxsize:
                self._checked.popitem(last=False)
        return found

    def _check(self, document: DocumentNode) -> _Checked:
        STATS.validations += 1
        errors = validate_document(self.schema, document, self.rules)
        type_info = TypeInfo(self.schema)
        ids = _IdChecker(self.schema, type_info)
        visit(document, TypeInfoVisitor(type_info, ids))
        return _Checked(tuple(errors), ids.bad, tuple(ids.variables))


class Documents(SchemaExtension):
    """Parse and validation from the caches, and the ID limit, as one extension.

    A document that cannot be parsed is left to strawberry, which parses it
    again (with the same ``max_tokens``) and reports the syntax error as an
    ordinary pre-execution error: the cache keeps only documents that parse.
    """

    def __init__(self, check: DocumentCheck, max_tokens: int) -> None:
        self._check = check
        self._max_tokens = max_tokens
        self._checked: _Checked | None = None

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        context.parse_options["max_tokens"] = self._max_tokens
        if context.query is not None and context.graphql_document is None:
            with contextlib.suppress(GraphQLError):
                context.graphql_document = parse_document(
                    context.query, max_tokens=self._max_tokens
                )
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None
        self._checked = self._check.check(context.query or "", context.graphql_document)
        context.pre_execution_errors = list(self._checked.errors)
        yield

    def on_execute(self) -> Iterator[None]:
        """Refuses IDs no record can have as BAD_USER_INPUT, before any resolver runs.

        Ids are looked up as given, and PostgreSQL cannot even compare a string holding
        a NUL byte: without this, ``task(id: "\\u0000")`` is an INTERNAL error.
        """
        checked = self._checked
        if checked is not None and checked.bad_id(self.execution_context.variables or {}):
            # strawberry turns an exception from on_execute into the operation's
            # error (HTTP and both socket protocols); it carries its code already.
            raise GraphQLError(
                f"An ID is at most {MAX_ID_LENGTH} characters, without control characters",
                extensions={"code": "BAD_USER_INPUT"},
            )
        yield


_Hook = Callable[..., Generator[None, None, None]]


class _InlineHooks:
    """One lifecycle phase's generator hooks, run as ``contextlib.ExitStack`` runs them
    wrapped in ``contextlib.contextmanager``, without building either per phase.

    Entered in order, exited in reverse; an exception from the phase is thrown into
    each hook in turn, a hook may swallow it (the phase then ends normally) or raise
    another, which the remaining hooks see instead. tests/http/test_extension_hooks.py
    compares it with strawberry's runner.
    """

    __slots__ = ("_args", "_hooks", "_running")

    def __init__(self, hooks: tuple[_Hook, ...], *args: Any) -> None:
        self._hooks = hooks
        self._args = args
        self._running: list[Generator[None, None, None]] = []

    def __enter__(self) -> None:
        # A hook failing on its way in propagates at once, and the hooks entered before
        # it are left as they are: what strawberry's exit stack does, being entered
        # inside its own ``__enter__``.
        for hook in self._hooks:
            running = hook(*self._args)
            next(running)
            self._running.append(running)

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        raised = exc
        for running in reversed(self._running):
            try:
                if raised is None:
                    next(running)
                else:
                    running.throw(raised)
            except StopIteration:
                raised = None  # finished; when something was thrown in, it was swallowed
                continue
            except BaseException as other:
                if other is not raised:
                    other.__context__ = raised
                raised = other
                continue
            raised = RuntimeError("a lifecycle hook did not stop after its one yield")
        self._running.clear()
        if raised is None:
            return True
        if raised is exc:
            return False
        raise raised

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        return self.__exit__(kind, exc, tb)


class _Runner(SchemaExtensionsRunner):
    """strawberry's runner, with each phase's hooks run inline.

    strawberry wraps each extension's hook in a new ``contextlib`` context manager
    and an exit stack for every phase of every operation (operation, parse,
    validate, execute) and for every streamed result, and awaits every extension's
    ``get_results``: a sixth of a request's CPU outside the database, and a tenth
    of the CPU per message with a document per subscriber (issue #8). Here a
    phase whose hooks are all plain generators (as this schema's are) runs them
    through ``_InlineHooks``; any other kind of hook takes strawberry's path.
    """

    # (extension classes, hook name) -> the hooks' functions, or None: not all generators.
    _found: ClassVar[dict[tuple[tuple[type, ...], str], tuple[Any, ...] | None]] = {}

    def __init__(
        self, execution_context: Any, extensions: list[SchemaExtension] | None = None
    ) -> None:
        super().__init__(execution_context, extensions)
        self._kinds = tuple(type(e) for e in self.extensions)
        self._reporting: list[SchemaExtension] | None = None

    def _inline(self, name: str, *args: Any) -> _InlineHooks | None:
        key = (self._kinds, name)
        try:
            functions = self._found[key]
        except KeyError:
            functions = self._found[key] = _generator_hooks(self._kinds, name)
        if functions is None:
            return None
        hooks = tuple(
            types.MethodType(f, e) for f, e in zip(functions, self.extensions, strict=True) if f
        )
        return _InlineHooks(hooks, *args)

    def operation(self) -> Any:
        return self._inline("on_operation") or super().operation()

    def validation(self) -> Any:
        return self._inline("on_validate") or super().validation()

    def parsing(self) -> Any:
        return self._inline("on_parse") or super().parsing()

    def executing(self) -> Any:
        return self._inline("on_execute") or super().executing()

    def on_stream_result(self, result: Any) -> Any:
        return self._inline("on_stream_result", result) or super().on_stream_result(result)

    async def get_extensions_results(self, ctx: Any) -> dict[str, Any]:
        reporting = self._reporting
        if reporting is None:
            reporting = self._reporting = [
                e for e in self.extensions if type(e).get_results is not SchemaExtension.get_results
            ]
        data: dict[str, Any] = {}
        for extension in reporting:
            data.update(await await_maybe(extension.get_results()))
        data.update(ctx.extensions_results)
        return data


def _generator_hooks(kinds: tuple[type, ...], name: str) -> tuple[Any, ...] | None:
    """Each extension class's own ``name`` hook (None where it keeps the default), or
    None when one of them is not a plain generator function."""
    default = getattr(SchemaExtension, name)
    found: list[Any] = []
    for kind in kinds:
        hook = getattr(kind, name)
        if hook is default:
            found.append(None)
        elif inspect.isgeneratorfunction(hook):
            found.append(hook)
        else:
            return None
    return tuple(found)


class Schema(strawberry.Schema):
    documents: DocumentCheck

    def create_extensions_runner(
        self, execution_context: Any, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        return _Runner(execution_context, extensions)

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Silence strawberry's own logging: ``ErrorCodes`` logs what is unexpected, and
        expected errors (bad input, auth) are the client's business, not the log's."""


def build_schema(
    *,
    max_query_depth: int = 12,
    max_aliases: int = 30,
    max_tokens: int = 2000,
    introspection: bool = True,
) -> Schema:
    # Factories, so each request gets fresh extension state (strawberry#4369); the
    # caches they use live in the schema, shared by every request.
    check: DocumentCheck | None = None

    def documents() -> Documents:
        assert check is not None
        return Documents(check, max_tokens)

    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        ErrorCodes,
        documents,
    ]
    schema = Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        scalar_overrides={datetime: DATETIME},
        execution_context_class=Executor,
    )
    check = DocumentCheck(
        schema._schema,
        max_query_depth=max_query_depth,
        max_aliases=max_aliases,
        introspection=introspection,
    )
    schema.documents = check
    return schema
