"""The executor: strawberry's, with subfields collected once per operation, not per event.

graphql-core 3.3 memoises the subfields of a field on the identity of its
field list. A subscription builds a fresh root field list for every event, so
the memo never hits (a quarter of the CPU of a subscription with its own
document, in the fan-out profile) and keeps one entry per event for as long
as the subscription lives. Here the memo is keyed on the field nodes
themselves, which live as long as the document: one entry per selection,
however many events pass.

The per-event copy of the executor is made without ``copy.copy`` too.

Written for graphql-core 3.3 (``Executor.collect_subfields`` and
``FieldDetails``): api/overrides.py states the range.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLObjectType
from graphql.execution.collect_fields import CollectedFields, FieldDetailsList
from graphql.execution.executor import CollectedErrors
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

_Key = tuple[GraphQLObjectType, tuple[int, ...]]


class Executor(StrawberryGraphQLCoreExecutionContext):
    """Collects each selection's subfields once for the whole operation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Shared with every per-event copy (they are shallow copies of this one).
        self._subfields: dict[_Key, tuple[FieldDetailsList, CollectedFields]] = {}

    def collect_subfields(
        self, return_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> CollectedFields:
        if any(
            d.defer_usage is not None or d.fragment_variable_values is not None
            for d in field_details_list
        ):
            # @defer and fragment arguments vary the result beyond the nodes.
            return super().collect_subfields(return_type, field_details_list)
        key = (return_type, tuple(id(d.node) for d in field_details_list))
        cached = self._subfields.get(key)
        if cached is not None:
            return cached[1]
        collected = super().collect_subfields(return_type, field_details_list)
        # The list keeps its nodes alive, so their ids stay theirs while the entry lives.
        self._subfields[key] = (field_details_list, collected)
        return collected

    def build_per_event_executor(self, payload: Any) -> Executor:
        """graphql-core's per-event copy, without ``copy.copy``'s generic protocol.

        A thousand documents run each event a thousand times; ``copy`` (reduce,
        then rebuild) was most of the cost of making the copy.
        """
        executor = object.__new__(type(self))
        executor.__dict__.update(self.__dict__)
        executor.root_value = payload
        executor.collected_errors = CollectedErrors()
        return executor
