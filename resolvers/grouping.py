"""Which subscriptions may share one execution, and the cursor they replay from first.

Two operations compute the same result for every live event when their live
documents are the same, their *coerced* variables are the same (defaults
applied: ``S($after: ID = "0")`` sent without variables starts from the first
event, so it is not live-only), and their callers have the same tenant, roles
and agent id. ``events(after:)`` (a cursor given or defaulted) is grouped
with its live-only equivalent — the same document without ``after`` — and
replays on its own before it goes live on the group (resolvers/multiplex.py).

Only root fields whose result depends on nothing but the event are grouped:
``taskUpdates``, ``agentStatus`` and ``events``. ``workflowProgress`` sends a
per-subscriber initial state and ``systemMetrics`` is a ticker: they run on
their own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    VariableNode,
    Visitor,
    parse,
    print_ast,
    visit,
)
from graphql.execution.values import get_argument_values, get_variable_values

from api.errors import Mark1Error
from api.services.reads import parse_event_id
from resolvers.context import Context

_LIVE_ONLY = frozenset({"taskUpdates", "agentStatus", "events"})
_CURSOR = "after"

GroupKey = tuple[str, str, str | None, str, frozenset[str], str | None]


@dataclass(frozen=True)
class Shape:
    """What the document text alone decides: the operation and its live-only equivalent."""

    operation: OperationDefinitionNode
    field: FieldNode
    field_def: GraphQLField
    live_query: str
    # The variable only the cursor used: the live document no longer declares it.
    dropped: str | None


@dataclass(frozen=True)
class Plan:
    """How one operation runs multiplexed: its group, and the cursor it replays after."""

    key: GroupKey
    live_query: str
    live_variables: dict[str, Any]
    operation_name: str | None
    after: int | None


class _VariableUses(Visitor):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name, self.count = name, 0

    def enter_variable(self, node: VariableNode, *_: Any) -> None:
        self.count += node.name.value == self.name


def shape_of(
    schema: GraphQLSchema, query: str, operation_name: str | None, *, max_tokens: int
) -> Shape | None:
    """The shape of a groupable subscription document, or None when it runs on its own.

    Parsed with the same ``max_tokens`` as execution, before it: a huge document
    must not stall the event loop here first.
    """
    try:
        document = parse(query, max_tokens=max_tokens)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1 or operations[0].operation is not OperationType.SUBSCRIPTION:
        return None
    operation = operations[0]
    selections = operation.selection_set.selections
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        return None
    field = selections[0]
    subscription_type = schema.subscription_type
    field_def = subscription_type.fields.get(field.name.value) if subscription_type else None
    if field.name.value not in _LIVE_ONLY or field_def is None:
        return None

    # The live-only equivalent: the root field without its cursor argument, and the
    # variable declaration that only the cursor used (an unused variable is invalid).
    cursor = next((a for a in field.arguments or () if a.name.value == _CURSOR), None)
    live_operation = operation
    dropped = None
    if cursor is not None:
        live_field = dataclasses.replace(
            field, arguments=tuple(a for a in field.arguments or () if a is not cursor)
        )
        definitions = operation.variable_definitions or ()
        if isinstance(cursor.value, VariableNode):
            uses = _VariableUses(cursor.value.name.value)
            for node in (operation.selection_set, *(operation.directives or ())):
                visit(node, uses)  # uses, not the declaration
            if uses.count == 1:
                dropped = cursor.value.name.value
                definitions = tuple(d for d in definitions if d.variable.name.value != dropped)
        live_operation = dataclasses.replace(
            operation,
            variable_definitions=definitions,
            selection_set=dataclasses.replace(operation.selection_set, selections=(live_field,)),
        )
    live_document = DocumentNode(
        definitions=tuple(live_operation if d is operation else d for d in document.definitions)
    )
    return Shape(operation, field, field_def, print_ast(live_document), dropped)


def plan_for(
    schema: GraphQLSchema,
    shape: Shape,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    context: Context,
) -> Plan | None:
    """The plan of one operation, or None when it must run on its own (it then fails
    with strawberry's own errors: variables that do not coerce, a bad cursor)."""
    values = get_variable_values(
        schema, shape.operation.variable_definitions or (), variables or {}
    )
    if isinstance(values, list):
        return None
    try:
        arguments = get_argument_values(shape.field_def, shape.field, values)
        after = parse_event_id(arguments.get(_CURSOR))
    except (GraphQLError, Mark1Error, TypeError, AttributeError):
        return None
    coerced = {k: v for k, v in values.coerced.items() if k != shape.dropped}
    try:
        # As text: orjson's bytes keep their 4 KiB output buffer, for the operation's life.
        encoded = orjson.dumps(coerced, option=orjson.OPT_SORT_KEYS, default=repr).decode()
    except TypeError:
        return None
    principal = context.principal
    key: GroupKey = (
        shape.live_query,
        encoded,
        operation_name,
        principal.tenant,
        frozenset(r.value for r in principal.roles),
        principal.agent_id,
    )
    live_variables = {k: v for k, v in (variables or {}).items() if k != shape.dropped}
    return Plan(key, shape.live_query, live_variables, operation_name, after)
