"""``totalCount`` costs a COUNT query only when the client selects it (issue #8)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from tests.http.helpers import Api
from tests.support.server import LiveServer

CONNECTIONS = {
    "tasks": "tasks(first: 2)",
    "agents": "agents(first: 2)",
    "workflows": "workflows(first: 2)",
    "events": "events(first: 2)",
}


@contextmanager
def counting(server: LiveServer) -> Iterator[list[str]]:
    """The COUNT statements the server's engine runs."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "count(" in statement.lower():
            seen.append(statement)

    engine = server.runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def _some_of_everything(api: Api) -> None:
    for title in ("a", "b", "c"):
        await api.ok(
            "mutation($t: String!) { createTask(input: {title: $t}) { id } }", {"t": title}
        )
    await api.ok('mutation { registerAgent(input: {name: "n", capabilities: []}) { token } }')
    await api.ok('mutation { startWorkflow(input: {name: "w", steps: [{name: "s"}]}) { id } }')


@pytest.mark.parametrize("field", list(CONNECTIONS))
async def test_a_page_without_total_count_runs_no_count(api: Api, field: str) -> None:
    await _some_of_everything(api)
    query = f"{{ {CONNECTIONS[field]} {{ edges {{ cursor }} pageInfo {{ hasNextPage }} }} }}"
    with counting(api.server) as counts:
        page = (await api.ok(query))[field]
    assert page["edges"]
    assert counts == []


@pytest.mark.parametrize("field", list(CONNECTIONS))
async def test_a_selected_total_count_is_counted(api: Api, field: str) -> None:
    await _some_of_everything(api)
    expected = {"tasks": 4, "agents": 1, "workflows": 1}  # the workflow's step is a task
    plain = f"{{ {CONNECTIONS[field]} {{ totalCount edges {{ cursor }} }} }}"
    in_fragment = (
        f"query {{ {CONNECTIONS[field]} {{ ...Counted }} }} "
        f"fragment Counted on {field[:-1].capitalize()}Connection {{ totalCount }}"
    )
    for query in (plain, in_fragment):
        with counting(api.server) as counts:
            total = (await api.ok(query))[field]["totalCount"]
        assert len(counts) == 1
        if field in expected:
            assert total == expected[field]
        else:
            assert total >= 6  # every change published an event
