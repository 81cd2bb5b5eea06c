"""Auth basics over HTTP: who may call what, and tenants that never meet."""

from __future__ import annotations

from datetime import timedelta

import pytest
from graphql import GraphQLObjectType

from resolvers.schema import build_schema
from tests.http.helpers import Api
from tests.support.graphql import error_code


async def test_no_token_is_unauthenticated(api: Api) -> None:
    for query in (
        "{ me { subject } }",
        "{ tasks { totalCount } }",
        'mutation { createTask(input: {title: "x"}) { id } }',
    ):
        body = await api.anonymous(query)
        assert error_code(body) == "UNAUTHENTICATED", query
        assert body["data"] is None


async def test_bad_or_expired_token_is_unauthenticated(api: Api) -> None:
    expired = api.server.token("ADMIN", tenant=api.tenant, ttl=timedelta(seconds=-60))
    forged = api.operator[:-4] + ("AAAA" if not api.operator.endswith("AAAA") else "BBBB")

    for token in ("not-a-jwt", expired, forged):
        body = await api.call("{ me { subject } }", token=token)
        assert error_code(body) == "UNAUTHENTICATED"


async def test_viewer_cannot_change_anything(api: Api) -> None:
    task = await api.create_task()
    viewer = api.viewer

    for mutation, variables in [
        ('mutation { createTask(input: {title: "x"}) { id } }', {}),
        ("mutation($id: ID!) { cancelTask(id: $id) { id } }", {"id": task["id"]}),
        ('mutation { registerAgent(input: {name: "a", capabilities: []}) { token } }', {}),
        ('mutation { startWorkflow(input: {name: "w", steps: [{name: "s"}]}) { id } }', {}),
        ('mutation { claimTask(agentId: "a") { id } }', {}),
    ]:
        body = await api.call(mutation, variables, token=viewer)
        assert error_code(body) == "FORBIDDEN", mutation
    assert error_code(await api.call("{ systemMetrics { connections } }", token=viewer)) == (
        "FORBIDDEN"
    )
    assert (await api.ok("{ tasks { edges { node { status } } } }"))["tasks"]["edges"] == [
        {"node": {"status": "PENDING"}}
    ]
    assert await api.event_count() == 1


async def test_operator_cannot_act_as_an_agent(api: Api) -> None:
    agent, _ = await api.register_agent()

    body = await api.call("mutation($a: ID!) { heartbeat(agentId: $a) { id } }", {"a": agent["id"]})

    assert error_code(body) == "FORBIDDEN"


async def test_another_tenants_ids_are_not_found(api: Api) -> None:
    async with Api(api.server, f"{api.tenant}-other") as theirs:
        await _meet_another_tenant(api, theirs)


async def _meet_another_tenant(api: Api, theirs: Api) -> None:
    their_agent, their_agent_token = await theirs.register_agent()
    their_task = await theirs.create_task()
    await theirs.claim(their_agent["id"], their_agent_token)
    their_wf = (
        await theirs.ok(
            'mutation { startWorkflow(input: {name: "w", steps: [{name: "s"}]}) { id } }'
        )
    )["startWorkflow"]
    before = await theirs.event_count()
    # Our own agent, with our own agent token and an admin token.
    our_agent, our_token = await api.register_agent()

    attempts = [
        ("mutation($id: ID!) { cancelTask(id: $id) { id } }", {"id": their_task["id"]}, api.admin),
        (
            "mutation($id: ID!) { cancelWorkflow(id: $id) { id } }",
            {"id": their_wf["id"]},
            api.admin,
        ),
        (
            "mutation($a: ID!) { heartbeat(agentId: $a) { id } }",
            {"a": their_agent["id"]},
            api.admin,
        ),
        (
            "mutation($a: ID!) { claimTask(agentId: $a) { id } }",
            {"a": their_agent["id"]},
            api.admin,
        ),
        (
            "mutation($t: ID!) { completeTask(taskId: $t) { id } }",
            {"t": their_task["id"]},
            our_token,
        ),
        (
            "mutation($t: ID!) { reportProgress(taskId: $t, progress: 0.1) { id } }",
            {"t": their_task["id"]},
            api.admin,
        ),
        (
            'mutation($t: ID!) { failTask(taskId: $t, error: "x") { id } }',
            {"t": their_task["id"]},
            api.admin,
        ),
    ]
    for query, variables, token in attempts:
        body = await api.call(query, variables, token=token)
        assert error_code(body) == "NOT_FOUND", query
    # Their agent's own token, carrying our tenant, cannot reach it either.
    spoofed = api.token("AGENT", sub=f"agent:{their_agent['id']}", agent_id=their_agent["id"])
    body = await api.call(
        "mutation($a: ID!) { heartbeat(agentId: $a) { id } }",
        {"a": their_agent["id"]},
        token=spoofed,
    )
    assert error_code(body) == "NOT_FOUND"

    for field, id in [
        ("task", their_task["id"]),
        ("agent", their_agent["id"]),
        ("workflow", their_wf["id"]),
    ]:
        assert (await api.ok(f'{{ {field}(id: "{id}") {{ id }} }}'))[field] is None
    assert (await api.ok("{ events { totalCount } }"))["events"]["totalCount"] == 1  # our agent
    assert await theirs.event_count() == before
    assert our_agent["status"] == "ONLINE"


async def test_agent_acts_only_as_itself_and_on_tasks_it_holds(api: Api) -> None:
    mine, my_token = await api.register_agent("mine")
    other, other_token = await api.register_agent("other")
    held = await api.create_task("held by other")
    await api.claim(other["id"], other_token)
    before = await api.event_count()

    as_other = [
        ("mutation($a: ID!) { heartbeat(agentId: $a) { id } }", {"a": other["id"]}),
        ("mutation($a: ID!) { claimTask(agentId: $a) { id } }", {"a": other["id"]}),
        ("mutation($t: ID!) { completeTask(taskId: $t) { id } }", {"t": held["id"]}),
        (
            "mutation($t: ID!) { reportProgress(taskId: $t, progress: 0.5) { id } }",
            {"t": held["id"]},
        ),
        ('mutation($t: ID!) { failTask(taskId: $t, error: "no") { id } }', {"t": held["id"]}),
    ]
    for query, variables in as_other:
        body = await api.call(query, variables, token=my_token)
        assert error_code(body) == "FORBIDDEN", query
        assert not any((body["data"] or {}).values())
    # An AGENT token may not do operator work either.
    body = await api.call('mutation { createTask(input: {title: "x"}) { id } }', token=my_token)
    assert error_code(body) == "FORBIDDEN"

    assert await api.event_count() == before
    task = await api.ok(
        "query($t: ID!) { task(id: $t) { status agent { id } } }", {"t": held["id"]}
    )
    assert task["task"] == {"status": "RUNNING", "agent": {"id": other["id"]}}
    assert mine["status"] == "ONLINE"


async def test_admin_may_act_for_any_agent_in_its_tenant(api: Api) -> None:
    agent, _ = await api.register_agent()
    task = await api.create_task()

    claimed = await api.ok(
        "mutation($a: ID!) { claimTask(agentId: $a) { id } }", {"a": agent["id"]}, token=api.admin
    )
    done = await api.ok(
        "mutation($t: ID!) { completeTask(taskId: $t, result: 1) { status } }",
        {"t": task["id"]},
        token=api.admin,
    )

    assert claimed["claimTask"] == {"id": task["id"]}
    assert done["completeTask"] == {"status": "SUCCEEDED"}


@pytest.mark.parametrize("root", ["Query", "Mutation", "Subscription"])
def test_every_root_field_carries_a_permission_class(root: str) -> None:
    schema = build_schema()
    definition = schema.get_type_by_name(root)
    assert definition is not None
    fields = definition.fields  # type: ignore[union-attr]

    unguarded = [f.python_name for f in fields if not f.permission_classes]

    assert fields and unguarded == []
    # The GraphQL schema exposes exactly these fields: nothing added around them.
    graphql_type = schema._schema.get_type(root)
    assert isinstance(graphql_type, GraphQLObjectType)
    assert sorted(graphql_type.fields) == sorted(
        f.graphql_name or _camel(f.python_name) for f in fields
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
