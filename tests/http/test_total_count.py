"""``totalCount`` costs a COUNT query only when the client selects it (issue #8)."""

from __future__ import annotations

import pytest

from tests.http.helpers import Api
from tests.support.statements import recorded

CONNECTIONS = {
    "tasks": "tasks(first: 2)",
    "agents": "agents(first: 2)",
    "workflows": "workflows(first: 2)",
    "events": "events(first: 2)",
}


def _is_count(statement: str) -> bool:
    return "count(" in statement.lower()


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
    with recorded(api.server, _is_count) as counts:
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
        with recorded(api.server, _is_count) as counts:
            total = (await api.ok(query))[field]["totalCount"]
        assert len(counts) == 1
        if field in expected:
            assert total == expected[field]
        else:
            assert total >= 6  # every change published an event
