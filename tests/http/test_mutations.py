"""Every mutation over real HTTP, driven with the tokens a real deployment hands out."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from api.settings import Settings
from tests.http.helpers import TASK_FIELDS, Api
from tests.support.databases import fresh_database
from tests.support.graphql import data
from tests.support.server import live_server
from tests.support.waiting import PATIENCE


async def test_agent_lifecycle_through_every_task_mutation(api: Api) -> None:
    agent, token = await api.register_agent("crawler", ["web", "cpu"], {"region": "eu", "n": 2})
    assert (agent["name"], agent["capabilities"], agent["status"]) == (
        "crawler",
        ["cpu", "web"],
        "ONLINE",
    )
    assert agent["metadata"] == {"region": "eu", "n": 2}
    me = await api.ok("{ me { subject roles agentId tenant } }", token=token)
    assert me["me"] == {
        "subject": f"agent:{agent['id']}",
        "roles": ["AGENT"],
        "agentId": agent["id"],
        "tenant": api.tenant,
    }

    beat = await api.ok(
        "mutation($a: ID!) { heartbeat(agentId: $a) { id status lastHeartbeatAt } }",
        {"a": agent["id"]},
        token=token,
    )
    assert beat["heartbeat"]["status"] == "ONLINE"
    assert beat["heartbeat"]["lastHeartbeatAt"] > agent["lastHeartbeatAt"]

    assert await api.claim(agent["id"], token) is None
    task = await api.create_task(
        "crawl", capability="web", priority=5, input={"url": "x"}, maxAttempts=2
    )
    assert (task["status"], task["maxAttempts"], task["attempts"]) == ("PENDING", 2, 0)

    claimed = await api.claim(agent["id"], token)
    assert claimed is not None
    assert (claimed["id"], claimed["status"], claimed["attempts"]) == (task["id"], "RUNNING", 1)
    assert claimed["agent"] == {"id": agent["id"]}
    assert claimed["startedAt"] == claimed["updatedAt"]

    progress = await api.ok(
        f"""mutation($t: ID!) {{ reportProgress(taskId: $t, progress: 0.5, message: "half")
              {{ {TASK_FIELDS} }} }}""",
        {"t": task["id"]},
        token=token,
    )
    assert (progress["reportProgress"]["progress"], progress["reportProgress"]["message"]) == (
        0.5,
        "half",
    )

    failed = await api.ok(
        'mutation($t: ID!) { failTask(taskId: $t, error: "timeout") {'
        " status error attempts agent { id } } }",
        {"t": task["id"]},
        token=token,
    )
    assert failed["failTask"] == {
        "status": "PENDING",
        "error": "timeout",
        "attempts": 1,
        "agent": None,
    }

    await api.claim(agent["id"], token)
    done = await api.ok(
        "mutation($t: ID!, $r: JSON) { completeTask(taskId: $t, result: $r) {"
        " status result progress finishedAt } }",
        {"t": task["id"], "r": {"pages": [1, 2, 3]}},
        token=token,
    )
    assert done["completeTask"]["status"] == "SUCCEEDED"
    assert done["completeTask"]["result"] == {"pages": [1, 2, 3]}
    assert done["completeTask"]["progress"] == 1.0
    assert done["completeTask"]["finishedAt"] is not None

    after = await api.ok(
        "query($a: ID!) { agent(id: $a) { status currentTask { id } } }", {"a": agent["id"]}
    )
    assert after["agent"] == {"status": "ONLINE", "currentTask": None}


async def test_fail_task_without_retry_fails_for_good(api: Api) -> None:
    agent, token = await api.register_agent()
    task = await api.create_task("once", maxAttempts=5)
    await api.claim(agent["id"], token)

    body = await api.ok(
        'mutation($t: ID!) { failTask(taskId: $t, error: "bad input", retry: false) {'
        " status attempts finishedAt } }",
        {"t": task["id"]},
        token=token,
    )

    assert body["failTask"]["status"] == "FAILED"
    assert body["failTask"]["attempts"] == 1
    assert body["failTask"]["finishedAt"] is not None


async def test_create_task_defaults(api: Api) -> None:
    body = await api.ok(f'mutation {{ createTask(input: {{title: "plain"}}) {{ {TASK_FIELDS} }} }}')

    task = body["createTask"]
    assert (task["priority"], task["maxAttempts"], task["capability"], task["input"]) == (
        0,
        3,
        None,
        None,
    )
    # Explicit nulls for defaulted fields mean the defaults too.
    nulls = await api.ok(
        'mutation { createTask(input: {title: "n", priority: null, maxAttempts: null}) {'
        " priority maxAttempts } }"
    )
    assert nulls["createTask"] == {"priority": 0, "maxAttempts": 3}


async def test_cancel_task_pending_and_running(api: Api) -> None:
    agent, token = await api.register_agent()
    running = await api.create_task("r")
    await api.claim(agent["id"], token)
    pending = await api.create_task("p")

    for task in (pending, running):
        body = await api.ok(
            "mutation($id: ID!) { cancelTask(id: $id) { id status finishedAt } }",
            {"id": task["id"]},
        )
        assert body["cancelTask"]["status"] == "CANCELLED"

    again = await api.call(
        "mutation($id: ID!) { cancelTask(id: $id) { id } }", {"id": pending["id"]}
    )
    assert again["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert again["data"] is None


async def test_start_and_cancel_workflow(api: Api) -> None:
    agent, token = await api.register_agent()
    body = await api.ok(
        """mutation { startWorkflow(input: {name: "etl", steps: [
             {name: "extract", input: {source: "s3"}}, {name: "load", capability: "db"}]}) {
             id name status progress currentStep
             steps { index name status task { id input } } } }"""
    )
    wf = body["startWorkflow"]
    assert (wf["name"], wf["status"], wf["progress"], wf["currentStep"]) == (
        "etl",
        "RUNNING",
        0.0,
        0,
    )
    assert wf["steps"][0]["task"]["input"] == {"input": {"source": "s3"}, "previous": None}
    assert wf["steps"][1]["task"] is None
    claimed = await api.claim(agent["id"], token)
    assert claimed is not None and claimed["workflow"] == {"id": wf["id"]}

    cancelled = await api.ok(
        "mutation($id: ID!) { cancelWorkflow(id: $id) {"
        " status finishedAt steps { status task { status } } } }",
        {"id": wf["id"]},
    )

    assert cancelled["cancelWorkflow"]["status"] == "CANCELLED"
    assert cancelled["cancelWorkflow"]["steps"][0] == {
        "status": "CANCELLED",
        "task": {"status": "CANCELLED"},
    }
    again = await api.call(
        "mutation($id: ID!) { cancelWorkflow(id: $id) { id } }", {"id": wf["id"]}
    )
    assert again["errors"][0]["extensions"]["code"] == "CONFLICT"


async def test_workflow_runs_to_success_over_http(api: Api) -> None:
    agent, token = await api.register_agent()
    wf = (
        await api.ok(
            'mutation { startWorkflow(input: {name: "w",'
            ' steps: [{name: "a", input: 1}, {name: "b"}]}) { id } }'
        )
    )["startWorkflow"]
    for result in ("first", "second"):
        task = await api.claim(agent["id"], token)
        assert task is not None
        await api.ok(
            "mutation($t: ID!, $r: JSON) { completeTask(taskId: $t, result: $r) { id } }",
            {"t": task["id"], "r": result},
            token=token,
        )

    body = await api.ok(
        "query($id: ID!) { workflow(id: $id) {"
        " status progress steps { status task { input result } } } }",
        {"id": wf["id"]},
    )

    assert body["workflow"]["status"] == "SUCCEEDED"
    assert body["workflow"]["progress"] == 1.0
    assert [s["task"] for s in body["workflow"]["steps"]] == [
        {"input": {"input": 1, "previous": None}, "result": "first"},
        {"input": {"input": None, "previous": "first"}, "result": "second"},
    ]


async def test_background_sweeper_takes_silent_agent_offline_and_requeues(
    settings: Settings, tenant: str, tmp_path: Path
) -> None:
    async with fresh_database(settings.resolved_database_url, tmp_path) as url:
        quick = settings.model_copy(
            update={
                "database_url": url,
                # Seconds apart, so a stalled sweep cannot skip UNHEALTHY.
                "heartbeat_timeout": 1.5,
                "offline_after": 5.0,
                "sweep_interval": 0.1,
            }
        )
        with live_server(quick) as server:
            async with Api(server, tenant) as api:
                await _go_silent(api)


async def _go_silent(api: Api) -> None:
    """An agent holding a task stops beating: the server's own sweeper acts on it."""
    agent, token = await api.register_agent()
    task = await api.create_task()
    await api.claim(agent["id"], token)
    query = "query($a: ID!) { agent(id: $a) { status currentTask { id } } }"

    deadline = time.monotonic() + PATIENCE
    while (await api.ok(query, {"a": agent["id"]}))["agent"] != {
        "status": "OFFLINE",
        "currentTask": None,
    }:
        assert time.monotonic() < deadline, "the sweeper never took the agent offline"
        await asyncio.sleep(0.05)

    body = await api.ok(
        "query($t: ID!) { task(id: $t) { status attempts agent { id } } }", {"t": task["id"]}
    )
    assert body["task"] == {"status": "PENDING", "attempts": 1, "agent": None}
    changes = await api.ok(
        """query($a: ID!) { events(filter: {agentId: $a, types: [AGENT_STATUS_CHANGED]}) {
             edges { node { actor data } } } }""",
        {"a": agent["id"]},
    )
    # On a loaded machine the set-up itself can outlast HEARTBEAT_TIMEOUT, so the agent
    # may have gone UNHEALTHY once before its claim made it BUSY: judge what followed
    # the claim.
    edges = changes["events"]["edges"]
    transitions = [e["node"]["data"]["to"] for e in edges]
    assert "BUSY" in transitions, transitions
    claimed = len(transitions) - 1 - transitions[::-1].index("BUSY")
    assert transitions[claimed:] == ["BUSY", "UNHEALTHY", "OFFLINE"], transitions
    assert {e["node"]["actor"] for e in edges[claimed + 1 :]} == {"system:sweeper"}
    # A heartbeat brings it back.
    back = await api.ok(
        "mutation($a: ID!) { heartbeat(agentId: $a) { status } }",
        {"a": agent["id"]},
        token=token,
    )
    assert back["heartbeat"]["status"] == "ONLINE"


async def test_agent_token_works_where_issuer_and_audience_are_checked(
    settings: Settings, tenant: str
) -> None:
    checked = settings.model_copy(
        update={"jwt_issuer": "https://id.example", "jwt_audience": "mark1"}
    )
    with live_server(checked) as server:
        async with Api(server, tenant) as api:
            agent, token = await api.register_agent()
            body = await api.call(
                "mutation($a: ID!) { heartbeat(agentId: $a) { status } }",
                {"a": agent["id"]},
                token=token,
            )

    assert data(body)["heartbeat"] == {"status": "ONLINE"}
