"""Bad input gets a clear BAD_USER_INPUT (or NOT_FOUND for unknown ids) and writes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.http.helpers import Api

CREATE = "mutation($input: CreateTaskInput!) { createTask(input: $input) { id } }"
REGISTER = "mutation($input: RegisterAgentInput!) { registerAgent(input: $input) { token } }"
START = "mutation($input: StartWorkflowInput!) { startWorkflow(input: $input) { id } }"


async def _counts(api: Api) -> tuple[int, int, int, int]:
    body = await api.ok(
        "{ events(first: 0) { totalCount } tasks(first: 0) { totalCount }"
        " agents(first: 0) { totalCount } workflows(first: 0) { totalCount } }"
    )
    events, tasks, agents, workflows = (
        int(body[k]["totalCount"]) for k in ("events", "tasks", "agents", "workflows")
    )
    return events, tasks, agents, workflows


def _refused(body: dict[str, Any], code: str, *words: str) -> None:
    assert body.get("errors"), body
    error = body["errors"][0]
    assert error["extensions"]["code"] == code, error
    message = error["message"].lower()
    for word in words:
        assert word.lower() in message, (word, error["message"])
    assert not any((body.get("data") or {}).values())


async def test_bad_task_input_is_refused_and_writes_nothing(api: Api) -> None:
    before = await _counts(api)
    cases: list[tuple[dict[str, Any], tuple[str, ...]]] = [
        ({"title": ""}, ("title",)),
        ({"title": "   "}, ("title",)),
        ({"title": "x" * 201}, ("title", "200")),
        ({"title": "bell\x07"}, ("title",)),
        ({"title": "t", "priority": 1001}, ("priority", "-1000", "1000")),
        ({"title": "t", "priority": -1001}, ("priority",)),
        ({"title": "t", "maxAttempts": 0}, ("maxAttempts",)),
        ({"title": "t", "maxAttempts": 101}, ("maxAttempts",)),
        ({"title": "t", "capability": "has space"}, ("capability",)),
        ({"title": "t", "capability": ""}, ("capability",)),
        ({"title": "t", "input": {"blob": "x" * 270_000}}, ("input",)),
        ({"title": "t", "priority": 2**31}, ("priority",)),  # beyond GraphQL's Int
        ({"title": "t", "priority": "high"}, ("priority",)),
        ({"title": 5}, ("title",)),
        ({}, ("title",)),
    ]
    for input, words in cases:
        body = await api.call(CREATE, {"input": input})
        _refused(body, "BAD_USER_INPUT", *words)
    # Exactly at the limits is fine.
    ok = await api.ok(
        CREATE, {"input": {"title": "x" * 200, "priority": -1000, "maxAttempts": 100}}
    )

    after = await _counts(api)
    assert after == (before[0] + 1, before[1] + 1, before[2], before[3])
    assert ok["createTask"]["id"]


async def test_bad_agent_input_is_refused_and_writes_nothing(api: Api) -> None:
    before = await _counts(api)
    for input, words in [
        ({"name": "a", "capabilities": [], "metadata": [1, 2]}, ("metadata", "object")),
        ({"name": "a", "capabilities": [], "metadata": "text"}, ("metadata", "object")),
        ({"name": "a", "capabilities": [], "metadata": 5}, ("metadata", "object")),
        ({"name": "a", "capabilities": ["ok", "not ok"]}, ("capabilities",)),
        ({"name": "a", "capabilities": [f"c{i}" for i in range(51)]}, ("capabilities", "50")),
        ({"name": "", "capabilities": []}, ("name",)),
        ({"name": "a"}, ("capabilities",)),
    ]:
        body = await api.call(REGISTER, {"input": input})
        _refused(body, "BAD_USER_INPUT", *words)

    assert await _counts(api) == before


async def test_bad_workflow_input_is_refused_and_writes_nothing(api: Api) -> None:
    before = await _counts(api)
    for input, words in [
        ({"name": "w", "steps": []}, ("step",)),
        ({"name": "", "steps": [{"name": "s"}]}, ("name",)),
        ({"name": "w", "steps": [{"name": ""}]}, ("step name",)),
        ({"name": "w", "steps": [{"name": "s", "capability": "a b"}]}, ("capability",)),
        ({"name": "w", "steps": [{"name": f"s{i}"} for i in range(51)]}, ("50",)),
    ]:
        body = await api.call(START, {"input": input})
        _refused(body, "BAD_USER_INPUT", *words)

    assert await _counts(api) == before


async def test_progress_outside_zero_to_one_is_refused(api: Api) -> None:
    agent, token = await api.register_agent()
    task = await api.create_task()
    await api.claim(agent["id"], token)
    before = await _counts(api)
    query = (
        "mutation($t: ID!, $p: Float!) { reportProgress(taskId: $t, progress: $p) { progress } }"
    )

    for progress in (1.0001, -0.01, 1e300):
        body = await api.call(query, {"t": task["id"], "p": progress}, token=token)
        _refused(body, "BAD_USER_INPUT", "progress")
    literal = await api.call(
        f'mutation {{ reportProgress(taskId: "{task["id"]}", progress: 1e400) {{ progress }} }}',
        token=token,
    )
    _refused(literal, "BAD_USER_INPUT")
    # NaN and Infinity are not JSON, but Python's parser lets them through: refuse them.
    client = api.client
    for raw in ("NaN", "Infinity", "-Infinity"):
        response = await client.post(
            api.server.url,
            content=(
                f'{{"query": {json.dumps(query)}, '
                f'"variables": {{"t": {json.dumps(task["id"])}, "p": {raw}}}}}'
            ).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        if response.status_code == 200:
            _refused(response.json(), "BAD_USER_INPUT")
        else:
            assert response.status_code == 400

    long_message = await api.call(
        "mutation($t: ID!, $m: String) { reportProgress(taskId: $t, progress: 0.5, message: $m)"
        " { progress } }",
        {"t": task["id"], "m": "x" * 2001},
        token=token,
    )
    _refused(long_message, "BAD_USER_INPUT", "message")
    empty_error = await api.call(
        'mutation($t: ID!) { failTask(taskId: $t, error: "  ") { status } }',
        {"t": task["id"]},
        token=token,
    )
    _refused(empty_error, "BAD_USER_INPUT", "error")

    assert await _counts(api) == before
    for progress in (0.0, 1.0, 0.999):
        await api.ok(query, {"t": task["id"], "p": progress}, token=token)


async def test_bad_enum_values_are_refused(api: Api) -> None:
    for query, variables in [
        ("{ tasks(status: [DONE]) { totalCount } }", None),
        ("query($s: [TaskStatus!]) { tasks(status: $s) { totalCount } }", {"s": ["DONE"]}),
        ("query($s: [AgentStatus!]) { agents(status: $s) { totalCount } }", {"s": ["pending"]}),
        ("{ workflows(status: [RUNNING, NOPE]) { totalCount } }", None),
        ("{ events(filter: {types: [TASK_EXPLODED]}) { totalCount } }", None),
        ('{ events(filter: {types: ["TASK_CREATED"]}) { totalCount } }', None),
    ]:
        body = await api.call(query, variables)
        _refused(body, "BAD_USER_INPUT")


async def test_bad_event_filter_times_are_refused(api: Api) -> None:
    query = "query($f: EventFilter) { events(filter: $f) { totalCount } }"

    for filter in (
        {"since": "yesterday"},
        {"until": "2024-13-01T00:00:00+00:00"},
        {"since": "2024-01-01T00:00:00"},  # no zone: which instant would it be?
        {"since": "0001-01-01T00:00:00+01:00"},  # before year 1 in UTC
    ):
        body = await api.call(query, {"f": filter})
        _refused(body, "BAD_USER_INPUT")


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ('mutation { cancelTask(id: "nope") { id } }', None),
        ('mutation { cancelWorkflow(id: "nope") { id } }', None),
        ('mutation { completeTask(taskId: "nope") { id } }', None),
        ('mutation { failTask(taskId: "nope", error: "x") { id } }', None),
        ('mutation { reportProgress(taskId: "nope", progress: 0.5) { id } }', None),
        ('mutation { heartbeat(agentId: "nope") { id } }', None),
        ('mutation { claimTask(agentId: "nope") { id } }', None),
    ],
)
async def test_unknown_ids_are_not_found(api: Api, query: str, variables: None) -> None:
    before = await _counts(api)

    body = await api.call(query, variables, token=api.admin)

    _refused(body, "NOT_FOUND", "nope")
    assert await _counts(api) == before


async def test_unknown_fields_and_arguments_are_bad_user_input(api: Api) -> None:
    for query in (
        "{ tasks { nodes { id } } }",
        "{ task { id } }",
        '{ task(id: "x", extra: 1) { id } }',
        "mutation { createTask { id } }",
    ):
        _refused(await api.call(query), "BAD_USER_INPUT")


async def test_syntax_error_is_bad_user_input(api: Api) -> None:
    body = await api.call("{ tasks( { totalCount } }")

    _refused(body, "BAD_USER_INPUT", "syntax")
