"""Every root field, for every role, in its own tenant and another: what DESIGN promises.

The cases are generated from ``resolvers.schema.build_schema()``, so a field
added to the schema gets cases at once, and they fail until EXPECTED says who
may call it.

Outcomes:
  OK     the call succeeds (for lists: and shows nothing of another tenant)
  U      UNAUTHENTICATED (no token; on a socket: closed with 4403)
  F      FORBIDDEN (the role does not allow it — decided before any id is looked up,
         so it never depends on whether an id exists)
  NF     NOT_FOUND (another tenant's id: indistinguishable from an unknown one; the
         nullable lookups ``task``/``agent``/``workflow`` answer null)

Callers: ``none`` (no token), VIEWER, OPERATOR, ADMIN, AGENT (a token for the agent
the call is about) and AGENT_OTHER (a token for a different agent of the caller's
tenant). ``own``: the caller is in tenant A, where the targets live; ``other``: the
caller is in tenant B with the same roles — its AGENT token even claims the id of
A's agent.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from graphql import GraphQLObjectType

from api.metrics import Metrics
from resolvers.schema import build_schema
from tests.security.support import closed_with
from tests.support.graphql import WSClient, data, gql
from tests.support.server import LiveServer
from tests.support.waiting import until

OK, U, F, NF = "OK", "UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND"
ROLES = ["none", "VIEWER", "OPERATOR", "AGENT", "AGENT_OTHER", "ADMIN"]
TENANTS = ["own", "other"]
NOBODY = "matrix-nobody"  # a capability no agent has: these tasks are never claimed


def _row(
    none: str, viewer: str, operator: str, agent: str, other_agent: str, admin: str
) -> dict[str, str]:
    return dict(zip(ROLES, [none, viewer, operator, agent, other_agent, admin], strict=True))


READ = _row(U, OK, OK, OK, OK, OK)
LOOKUP = (READ, _row(U, NF, NF, NF, NF, NF))
LIST = (READ, READ)
METRICS = (_row(U, F, OK, F, F, OK),) * 2
CREATE = (_row(U, F, OK, F, F, OK),) * 2
CANCEL = (_row(U, F, OK, F, F, OK), _row(U, F, NF, F, F, NF))
AGENT_ACT = (_row(U, F, F, OK, F, OK), _row(U, F, F, NF, NF, NF))

# (own tenant, other tenant) per root field.
EXPECTED: dict[tuple[str, str], tuple[dict[str, str], dict[str, str]]] = {
    ("Query", "me"): LIST,
    ("Query", "task"): LOOKUP,
    ("Query", "tasks"): LIST,
    ("Query", "agent"): LOOKUP,
    ("Query", "agents"): LIST,
    ("Query", "workflow"): LOOKUP,
    ("Query", "workflows"): LIST,
    ("Query", "events"): LIST,
    ("Query", "systemMetrics"): METRICS,
    ("Mutation", "createTask"): CREATE,
    ("Mutation", "cancelTask"): CANCEL,
    ("Mutation", "registerAgent"): CREATE,
    ("Mutation", "heartbeat"): AGENT_ACT,
    ("Mutation", "claimTask"): AGENT_ACT,
    ("Mutation", "reportProgress"): AGENT_ACT,
    ("Mutation", "completeTask"): AGENT_ACT,
    ("Mutation", "failTask"): AGENT_ACT,
    ("Mutation", "startWorkflow"): CREATE,
    ("Mutation", "cancelWorkflow"): CANCEL,
    ("Subscription", "taskUpdates"): LOOKUP,
    ("Subscription", "agentStatus"): LOOKUP,
    ("Subscription", "workflowProgress"): LOOKUP,
    ("Subscription", "events"): LIST,
    ("Subscription", "systemMetrics"): METRICS,
}


def root_fields() -> list[tuple[str, str]]:
    schema = build_schema()._schema
    roots: list[GraphQLObjectType | None] = [
        schema.query_type,
        schema.mutation_type,
        schema.subscription_type,
    ]
    return [(root.name, name) for root in roots if root is not None for name in root.fields]


FIELDS = root_fields()


def test_every_root_field_has_an_expectation_and_a_permission_check() -> None:
    assert set(FIELDS) == set(EXPECTED), "EXPECTED must list exactly the schema's root fields"
    schema = build_schema()._schema
    for kind, name in FIELDS:
        root = {"Query": schema.query_type, "Mutation": schema.mutation_type}.get(
            kind, schema.subscription_type
        )
        assert root is not None
        definition = root.fields[name].extensions["strawberry-definition"]
        assert definition.permission_classes, f"{kind}.{name} has no permission check"


# -- the world the calls act on ------------------------------------------------


@dataclass
class Tenant:
    name: str
    admin: str
    ids: set[str] = field(default_factory=set)  # every task, agent and workflow id
    agent: str = ""  # X: the agent AGENT tokens act as
    other_agent: str = ""  # Y: a second agent of the same tenant
    task: str = ""  # held by X
    pending: str = ""
    workflow: str = ""


@dataclass
class World:
    server: LiveServer
    a: Tenant
    b: Tenant

    async def call(self, tenant: Tenant, query: str, **variables: Any) -> dict[str, Any]:
        result: dict[str, Any] = data(
            await gql(self.server.url, query, variables, token=tenant.admin)
        )
        return result

    async def agent(self, tenant: Tenant, capability: str) -> str:
        reply = await self.call(
            tenant,
            'mutation($c: String!) { registerAgent(input: {name: "m", capabilities: [$c]})'
            " { agent { id } } }",
            c=capability,
        )
        agent_id: str = reply["registerAgent"]["agent"]["id"]
        tenant.ids.add(agent_id)
        return agent_id

    async def task(self, tenant: Tenant, capability: str, priority: int = 0) -> str:
        reply = await self.call(
            tenant,
            "mutation($c: String!, $p: Int!) { createTask(input: "
            '{title: "m", capability: $c, priority: $p}) { id } }',
            c=capability,
            p=priority,
        )
        task_id: str = reply["createTask"]["id"]
        tenant.ids.add(task_id)
        return task_id

    async def held_task(self, tenant: Tenant) -> tuple[str, str]:
        """A fresh agent holding a fresh RUNNING task."""
        capability = f"m-{secrets.token_hex(4)}"
        agent_id = await self.agent(tenant, capability)
        task_id = await self.task(tenant, capability, priority=1000)
        claimed = await gql(
            self.server.url,
            "mutation($a: ID!) { claimTask(agentId: $a) { id } }",
            {"a": agent_id},
            token=self.agent_token(tenant, agent_id),
        )
        assert data(claimed)["claimTask"]["id"] == task_id
        return agent_id, task_id

    async def workflow(self, tenant: Tenant) -> str:
        reply = await self.call(
            tenant,
            'mutation($c: String!) { startWorkflow(input: {name: "m", steps: '
            '[{name: "s", capability: $c}]}) { id steps { task { id } } } }',
            c=NOBODY,
        )
        workflow = reply["startWorkflow"]
        tenant.ids.update([workflow["id"], *(s["task"]["id"] for s in workflow["steps"])])
        return str(workflow["id"])

    def agent_token(self, tenant: Tenant, agent_id: str) -> str:
        return self.server.token(
            "AGENT", sub=f"agent:{agent_id}", tenant=tenant.name, agent_id=agent_id
        )

    def token(self, role: str, caller: Tenant, acting_agent: str) -> str | None:
        if role == "none":
            return None
        if role == "AGENT":
            # In the other tenant this token claims A's agent id: tenancy must still hold.
            return self.agent_token(caller, acting_agent)
        if role == "AGENT_OTHER":
            return self.agent_token(caller, caller.other_agent)
        return self.server.token(role, sub=f"matrix-{role.lower()}", tenant=caller.name)


@pytest.fixture(scope="module")
def world(module_server: LiveServer) -> World:
    suffix = secrets.token_hex(4)
    tenants = []
    for label in ("a", "b"):
        name = f"matrix-{label}-{suffix}"
        tenants.append(Tenant(name, module_server.token("ADMIN", sub="matrix-setup", tenant=name)))
    w = World(module_server, *tenants)

    async def populate() -> None:
        for t in tenants:
            t.agent, t.task = await w.held_task(t)
            t.other_agent = await w.agent(t, f"m-{secrets.token_hex(4)}")
            t.pending = await w.task(t, NOBODY)
            t.workflow = await w.workflow(t)

    asyncio.run(populate())
    return w


# -- one case -------------------------------------------------------------------


@dataclass
class Call:
    document: str
    variables: dict[str, Any]
    acting_agent: str  # who an AGENT token is for


# A call is prepared on fresh targets when it is expected to change them; calls that
# must be refused use the module's standing targets in tenant A.
Prepare = Callable[[World, bool], Awaitable[Call]]


def shared(document: str, var: str | None = None, of: str = "") -> Prepare:
    """A call on the module's standing targets in tenant A."""

    async def prepare(w: World, fresh: bool) -> Call:
        variables = {var: getattr(w.a, of)} if var else {}
        return Call(document, variables, w.a.agent)

    return prepare


async def _cancel_task(w: World, fresh: bool) -> Call:
    task_id = await w.task(w.a, NOBODY) if fresh else w.a.pending
    return Call(
        "mutation($id: ID!) { cancelTask(id: $id) { id status } }", {"id": task_id}, w.a.agent
    )


async def _cancel_workflow(w: World, fresh: bool) -> Call:
    workflow_id = await w.workflow(w.a) if fresh else w.a.workflow
    return Call(
        "mutation($id: ID!) { cancelWorkflow(id: $id) { id status } }",
        {"id": workflow_id},
        w.a.agent,
    )


async def _claim(w: World, fresh: bool) -> Call:
    agent_id = await w.agent(w.a, f"m-{secrets.token_hex(4)}") if fresh else w.a.agent
    return Call("mutation($id: ID!) { claimTask(agentId: $id) { id } }", {"id": agent_id}, agent_id)


def _on_held_task(selection: str) -> Prepare:
    async def prepare(w: World, fresh: bool) -> Call:
        agent_id, task_id = await w.held_task(w.a) if fresh else (w.a.agent, w.a.task)
        return Call(f"mutation($id: ID!) {{ {selection} }}", {"id": task_id}, agent_id)

    return prepare


CALLS: dict[tuple[str, str], Prepare] = {
    ("Query", "me"): shared("{ me { subject tenant } }"),
    ("Query", "task"): shared("query($id: ID!) { task(id: $id) { id } }", "id", "task"),
    ("Query", "tasks"): shared("{ tasks(first: 500) { edges { node { id } } } }"),
    ("Query", "agent"): shared("query($id: ID!) { agent(id: $id) { id } }", "id", "agent"),
    ("Query", "agents"): shared("{ agents(first: 500) { edges { node { id } } } }"),
    ("Query", "workflow"): shared("query($id: ID!) { workflow(id: $id) { id } }", "id", "workflow"),
    ("Query", "workflows"): shared("{ workflows(first: 500) { edges { node { id } } } }"),
    ("Query", "events"): shared(
        "{ events(first: 500) { edges { node { id taskId agentId workflowId } } } }"
    ),
    ("Query", "systemMetrics"): shared("{ systemMetrics { at tasksByStatus } }"),
    ("Mutation", "createTask"): shared(
        f'mutation {{ createTask(input: {{title: "m", capability: "{NOBODY}"}}) {{ id }} }}'
    ),
    ("Mutation", "cancelTask"): _cancel_task,
    ("Mutation", "registerAgent"): shared(
        'mutation { registerAgent(input: {name: "m", capabilities: []}) { agent { id } token } }'
    ),
    ("Mutation", "heartbeat"): shared(
        "mutation($id: ID!) { heartbeat(agentId: $id) { id } }", "id", "agent"
    ),
    ("Mutation", "claimTask"): _claim,
    ("Mutation", "reportProgress"): _on_held_task(
        "reportProgress(taskId: $id, progress: 0.5) { id progress }"
    ),
    ("Mutation", "completeTask"): _on_held_task(
        "completeTask(taskId: $id, result: {ok: true}) { id status }"
    ),
    ("Mutation", "failTask"): _on_held_task('failTask(taskId: $id, error: "boom") { id status }'),
    ("Mutation", "startWorkflow"): shared(
        "mutation { startWorkflow(input: "
        f'{{name: "m", steps: [{{name: "s", capability: "{NOBODY}"}}]}}) {{ id }} }}'
    ),
    ("Mutation", "cancelWorkflow"): _cancel_workflow,
    ("Subscription", "taskUpdates"): shared(
        "subscription($id: ID!) { taskUpdates(taskId: $id) { id } }", "id", "task"
    ),
    ("Subscription", "agentStatus"): shared(
        "subscription($id: ID!) { agentStatus(agentId: $id) { id } }", "id", "agent"
    ),
    ("Subscription", "workflowProgress"): shared(
        "subscription($id: ID!) { workflowProgress(workflowId: $id) { workflow { id } } }",
        "id",
        "workflow",
    ),
    ("Subscription", "events"): shared(
        'subscription { events(after: "0") { id taskId agentId workflowId } }'
    ),
    ("Subscription", "systemMetrics"): shared(
        "subscription { systemMetrics(intervalSeconds: 1) { at } }"
    ),
}

NULLABLE_LOOKUPS = {"task", "agent", "workflow"}


def _mentioned_ids(value: Any) -> set[str]:
    """Every string under an ``id``-like key of a response."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("id", "taskId", "agentId", "workflowId") and isinstance(item, str):
                found.add(item)
            else:
                found |= _mentioned_ids(item)
    elif isinstance(value, list):
        for item in value:
            found |= _mentioned_ids(item)
    return found


def _outcome_of(name: str, body: dict[str, Any]) -> tuple[str, Any]:
    errors = body.get("errors")
    if errors:
        assert len(errors) == 1, errors
        return str(errors[0]["extensions"]["code"]), None
    value = body["data"][name]
    if value is None and name in NULLABLE_LOOKUPS:
        return NF, None
    return OK, value


async def _http(w: World, name: str, call: Call, token: str | None) -> tuple[str, Any]:
    return _outcome_of(name, await gql(w.server.url, call.document, call.variables, token=token))


async def _ws(w: World, name: str, call: Call, token: str | None) -> tuple[str, Any]:
    metrics = w.server.runtime.metrics
    if token is None:
        ws = await WSClient.connect(w.server.ws_url, init=False)
        await ws.send({"type": "connection_init", "payload": {}})
        assert await closed_with(ws.ws) == 4403
        return U, None
    before = Metrics.value(metrics.subscriptions)
    # max_queue=None: closing must not wait behind a replay this client never reads.
    async with await WSClient.connect(w.server.ws_url, token, max_queue=None) as ws:
        await ws.subscribe("op", call.document, call.variables)
        # Either a first message arrives, or the operation joins the live stream
        # (taskUpdates and agentStatus send nothing until something changes).
        joined = False
        message: dict[str, Any] | None = None
        while message is None and not joined:
            try:
                message = await ws.next_for("op", within=0.05)
            except TimeoutError:
                joined = Metrics.value(metrics.subscriptions) > before
    await until(lambda: Metrics.value(metrics.subscriptions) == before, what="subscription cleanup")
    if message is None:
        return OK, None
    if message["type"] == "error":
        return _outcome_of(name, {"errors": message["payload"]})
    assert message["type"] == "next", message
    return _outcome_of(name, message["payload"])


@pytest.mark.parametrize("where", TENANTS)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("kind", "name"), FIELDS, ids=[f"{k}.{n}" for k, n in FIELDS])
async def test_a_role_gets_what_design_promises(
    world: World, kind: str, name: str, role: str, where: str
) -> None:
    expected_by_tenant = EXPECTED.get((kind, name))
    assert expected_by_tenant is not None, f"add {kind}.{name} to EXPECTED (and CALLS)"
    expected = expected_by_tenant[TENANTS.index(where)][role]
    caller = world.a if where == "own" else world.b
    call = await CALLS[(kind, name)](world, expected == OK)
    token = world.token(role, caller, call.acting_agent)
    run = _ws if kind == "Subscription" else _http
    outcome, value = await run(world, name, call, token)
    assert outcome == expected, f"{role} in {where} tenant: {kind}.{name} gave {outcome}"
    if outcome == OK and value is not None:
        mentioned = _mentioned_ids(value)
        foreign = world.b.ids if where == "own" else world.a.ids
        assert not mentioned & foreign, f"{kind}.{name} showed another tenant's ids"
        if call.variables.get("id") and kind != "Mutation":
            assert call.variables["id"] in mentioned


async def test_an_agent_acts_only_as_itself_and_on_tasks_it_holds(world: World) -> None:
    """Beyond the matrix: agent X may not report on a task Y holds, even within its tenant."""
    x, _ = await world.held_task(world.a)
    y, y_task = await world.held_task(world.a)
    as_x = world.agent_token(world.a, x)
    for document in (
        "mutation($id: ID!) { reportProgress(taskId: $id, progress: 0.9) { id } }",
        "mutation($id: ID!) { completeTask(taskId: $id) { id } }",
        'mutation($id: ID!) { failTask(taskId: $id, error: "x", retry: false) { id } }',
    ):
        body = await gql(world.server.url, document, {"id": y_task}, token=as_x)
        assert body["errors"][0]["extensions"]["code"] == F
    for document in (
        "mutation($id: ID!) { heartbeat(agentId: $id) { id } }",
        "mutation($id: ID!) { claimTask(agentId: $id) { id } }",
    ):
        body = await gql(world.server.url, document, {"id": y}, token=as_x)
        assert body["errors"][0]["extensions"]["code"] == F
    # Y's task is untouched.
    task = await world.call(
        world.a, "query($id: ID!) { task(id: $id) { status progress } }", id=y_task
    )
    assert task["task"] == {"status": "RUNNING", "progress": 0.0}


async def test_a_token_without_roles_reads_nothing(world: World) -> None:
    token = world.server.token(sub="nobody", tenant=world.a.name)
    assert (await gql(world.server.url, "{ tasks { totalCount } }", token=token))["errors"][0][
        "extensions"
    ]["code"] == F


async def test_unknown_and_foreign_ids_look_the_same(world: World) -> None:
    """NOT_FOUND for another tenant's id carries no hint that the id exists."""
    operator = world.server.token("OPERATOR", tenant=world.b.name)
    document = "mutation($id: ID!) { cancelTask(id: $id) { id } }"
    foreign = await gql(world.server.url, document, {"id": world.a.task}, token=operator)
    unknown = await gql(
        world.server.url, document, {"id": world.a.task[:-4] + "0000"}, token=operator
    )
    for body in (foreign, unknown):
        assert body["errors"][0]["extensions"] == {"code": NF}
    assert foreign["errors"][0]["message"].replace(world.a.task, "ID") == unknown["errors"][0][
        "message"
    ].replace(world.a.task[:-4] + "0000", "ID")
