"""Library internals this code overrides, and the versions they were written for.

Overriding a library's private members is a debt (STYLE.md): the next release may
rename what we rely on, and nothing fails loudly. So the range of versions each
override was written against and tested with is stated once, here; pyproject.toml
bounds the dependency to the same range, and tests/ops/test_dependency_bounds.py fails
when the installed version, or pyproject.toml, leaves it. To move a bound: upgrade,
re-read the overridden code against the new release, run the suite, then change the
range here and in pyproject.toml together.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Override:
    """Private members of one distribution that we subclass, call or replace."""

    versions: str  # a PEP 440 specifier set, as pyproject.toml writes it
    where: tuple[str, ...]


OVERRIDES: dict[str, Override] = {
    "strawberry-graphql": Override(
        ">=0.341,<0.342",
        (
            "resolvers/transport/transport_ws.py: BaseGraphQLTransportWSHandler.run_operation, "
            "_send_result_stream, _reject_incremental_delivery",
            "resolvers/transport/legacy_ws.py: BaseGraphQLWSHandler.handle_async_results, "
            "handle_connection_init and its keep_alive_task",
            "resolvers/transport/policy.py: ASGIWebSocketAdapter.iter_json",
            "resolvers/errors.py: MaskErrors._process_errors, _process_result",
            "resolvers/schema.py: strawberry.extensions.max_aliases.create_validator, "
            "strawberry.extensions.query_depth_limiter.create_validator, "
            "strawberry.schema.schema.validate_document, Schema._schema, "
            "ExecutionContext.parse_options and pre_execution_errors",
            "resolvers/execution.py: StrawberryGraphQLCoreExecutionContext (subclassed)",
            "resolvers/schema.py: Schema.create_extensions_runner, SchemaExtensionsRunner "
            "(subclassed: on_stream_result, get_extensions_results, extensions), "
            "SchemaExtension.on_stream_result and get_results as the defaults, "
            "strawberry.utils.await_maybe",
            "resolvers/multiplex.py, resolvers/transport/legacy_ws.py: "
            "strawberry.utils.aio.aclosing",
        ),
    ),
    "graphql-core": Override(
        ">=3.3.2,<3.4",
        (
            "resolvers/execution.py: Executor.collect_subfields (memoised on the field "
            "nodes), FieldDetails.defer_usage and fragment_variable_values; "
            "Executor.build_per_event_executor (its instance attributes copied, root_value "
            "and collected_errors reset), graphql.execution.executor.CollectedErrors",
        ),
    ),
    "uvicorn": Override(
        ">=0.54,<0.55",
        (
            "resolvers/transport/frames.py: WebSocketsSansIOProtocol.transport, conn, "
            "writable, close_sent, and its send method as the ASGI send (frames written "
            "straight to the transport)",
        ),
    ),
    "prometheus-client": Override(
        ">=0.26,<0.27",
        (
            "api/metrics.py: CountedHistogram.observe_many (Histogram._sum, _buckets, "
            "_upper_bounds, _raise_if_not_observable)",
        ),
    ),
    "aiosqlite": Override(
        ">=0.22,<0.23",
        (
            "api/db/sqlite.py: Connection._execute, _connect, _tx, _connection, _running, "
            "__await__, stop (calls run on the event loop's thread, not the worker)",
        ),
    ),
    "broadcaster": Override(
        ">=0.3.1,<0.4",
        (
            "api/events/backends.py: RedisBackend.subscribe, _pubsub_listener, _ready, "
            "_listener, _pubsub, _conn; PostgresBackend._conn, _listener, _url; "
            "MemoryBackend._subscribed; the modules broadcaster._backends.* and "
            "broadcaster._base",
        ),
    ),
}
