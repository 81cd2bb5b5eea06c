"""Every query over real HTTP, with its filters."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import update

from api.db.engine import Database
from api.db.models import TaskRow
from tests.http.helpers import TASK_FIELDS, Api

ISO_MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")


async def test_me_reports_the_token_claims(api: Api) -> None:
    viewer = await api.ok("{ me { subject roles tenant agentId } }", token=api.viewer)
    agent = await api.ok(
        "{ me { subject roles tenant agentId } }",
        token=api.token("AGENT", "VIEWER", sub="agent:7", agent_id="7"),
    )

    assert viewer["me"] == {
        "subject": "viewer",
        "roles": ["VIEWER"],
        "tenant": api.tenant,
        "agentId": None,
    }
    assert agent["me"] == {
        "subject": "agent:7",
        "roles": ["AGENT", "VIEWER"],
        "tenant": api.tenant,
        "agentId": "7",
    }


async def test_task_by_id_with_its_agent_and_workflow(api: Api) -> None:
    agent, agent_token = await api.register_agent("w1", ["cpu.x"])
    created = await api.create_task("one", priority=3, input={"k": [1, 2]}, capability="cpu.x")
    await api.create_task("other")
    wf = (
        await api.ok(
            'mutation { startWorkflow(input: {name: "wf", steps: [{name: "s"}]})'
            " { id steps { task { id } } } }"
        )
    )["startWorkflow"]

    body = await api.ok(
        f"query($id: ID!) {{ task(id: $id) {{ {TASK_FIELDS} }} }}",
        {"id": created["id"]},
        token=api.viewer,
    )
    assert body["task"] == created
    assert body["task"]["input"] == {"k": [1, 2]}
    assert (body["task"]["priority"], body["task"]["capability"]) == (3, "cpu.x")
    assert body["task"]["agent"] is None and body["task"]["workflow"] is None

    # The step task leads to its workflow; a claimed task to its agent, and back.
    step_id = wf["steps"][0]["task"]["id"]
    await api.claim(agent["id"], agent_token)
    linked = await api.ok(
        """query($id: ID!) { task(id: $id) {
             workflow { id name } agent { id name currentTask { id } } } }""",
        {"id": step_id},
        token=api.viewer,
    )
    assert linked["task"]["workflow"] == {"id": wf["id"], "name": "wf"}
    # The highest-priority task was claimed, not the step task.
    assert linked["task"]["agent"] is None
    holder = await api.ok(
        "query($id: ID!) { agent(id: $id) { currentTask { id title agent { id } } } }",
        {"id": agent["id"]},
    )
    assert holder["agent"]["currentTask"] == {
        "id": created["id"],
        "title": "one",
        "agent": {"id": agent["id"]},
    }


async def test_unknown_or_foreign_task_is_null(api: Api) -> None:
    created = await api.create_task("mine")
    stranger = api.server.token("VIEWER", tenant=f"{api.tenant}-other")

    unknown = await api.ok('{ task(id: "nope") { id } }')
    foreign = await api.ok(
        "query($id: ID!) { task(id: $id) { id } }", {"id": created["id"]}, token=stranger
    )

    assert unknown == {"task": None}
    assert foreign == {"task": None}


async def test_tasks_filter_by_status_agent_and_workflow(api: Api) -> None:
    agent, token = await api.register_agent()
    running = await api.create_task("running")
    pending = await api.create_task("pending")
    cancelled = await api.create_task("cancelled")
    await api.claim(agent["id"], token)
    await api.ok("mutation($id: ID!) { cancelTask(id: $id) { id } }", {"id": cancelled["id"]})
    wf = (
        await api.ok('mutation { startWorkflow(input: {name: "w", steps: [{name: "a"}]}) { id } }')
    )["startWorkflow"]

    async def ids(args: str = "", variables: dict[str, object] | None = None) -> list[str]:
        body = await api.ok(
            f"query($a: ID, $w: ID) {{ tasks(agentId: $a, workflowId: $w, {args}) "
            "{ totalCount edges { node { id } } } }",
            variables,
            token=api.viewer,
        )
        found = [e["node"]["id"] for e in body["tasks"]["edges"]]
        assert body["tasks"]["totalCount"] == len(found)
        return found

    step_ids = await ids(variables={"w": wf["id"]})
    assert len(step_ids) == 1
    assert await ids() == [step_ids[0], cancelled["id"], pending["id"], running["id"]]
    assert await ids("status: [RUNNING]") == [running["id"]]
    assert await ids("status: [PENDING, CANCELLED]") == [
        step_ids[0],
        cancelled["id"],
        pending["id"],
    ]
    assert await ids(variables={"a": agent["id"]}) == [running["id"]]
    assert await ids("status: [SUCCEEDED]", {"a": agent["id"]}) == []
    assert await ids("status: [RUNNING]", {"w": wf["id"]}) == []


async def test_agents_filter_by_status_and_capability(api: Api) -> None:
    gpu, gpu_token = await api.register_agent("gpu", ["gpu", "cpu"])
    cpu, _ = await api.register_agent("cpu", ["cpu"])
    bare, _ = await api.register_agent("bare", [])
    await api.create_task("t", capability="gpu")
    await api.claim(gpu["id"], gpu_token)

    async def names(args: str) -> list[str]:
        body = await api.ok(
            f"{{ agents(first: 10 {args}) {{ totalCount edges {{ node {{ name status }} }} }} }}",
            token=api.viewer,
        )
        found = [e["node"]["name"] for e in body["agents"]["edges"]]
        assert body["agents"]["totalCount"] == len(found)
        return found

    assert await names("") == ["gpu", "cpu", "bare"]
    assert await names('capability: "cpu"') == ["gpu", "cpu"]
    assert await names('capability: "gpu"') == ["gpu"]
    assert await names('capability: "gp"') == []
    assert await names("status: [BUSY]") == ["gpu"]
    assert await names("status: [ONLINE]") == ["cpu", "bare"]
    assert await names('status: [ONLINE], capability: "cpu"') == ["cpu"]
    one = await api.ok(
        "query($id: ID!) { agent(id: $id) { id name capabilities status metadata } }",
        {"id": bare["id"]},
    )
    assert one["agent"] == {
        "id": bare["id"],
        "name": "bare",
        "capabilities": [],
        "status": "ONLINE",
        "metadata": None,
    }
    assert (await api.ok('{ agent(id: "nope") { id } }'))["agent"] is None
    assert cpu["status"] == "ONLINE"


async def test_workflow_and_workflows(api: Api) -> None:
    first = (
        await api.ok(
            """mutation { startWorkflow(input: {name: "first", steps: [
                 {name: "a", input: {x: 1}}, {name: "b", capability: "gpu"}]}) { id } }"""
        )
    )["startWorkflow"]
    second = (
        await api.ok(
            'mutation { startWorkflow(input: {name: "second", steps: [{name: "z"}]}) { id } }'
        )
    )["startWorkflow"]
    await api.ok("mutation($id: ID!) { cancelWorkflow(id: $id) { id } }", {"id": second["id"]})

    body = await api.ok(
        """query($id: ID!) { workflow(id: $id) {
             id name status progress currentStep createdAt updatedAt finishedAt
             steps { index name capability status task { title input } } } }""",
        {"id": first["id"]},
        token=api.viewer,
    )
    wf = body["workflow"]
    assert (wf["name"], wf["status"], wf["progress"], wf["currentStep"]) == (
        "first",
        "RUNNING",
        0.0,
        0,
    )
    assert wf["finishedAt"] is None
    assert wf["steps"] == [
        {
            "index": 0,
            "name": "a",
            "capability": None,
            "status": "PENDING",
            "task": {"title": "first / a", "input": {"input": {"x": 1}, "previous": None}},
        },
        {"index": 1, "name": "b", "capability": "gpu", "status": "PENDING", "task": None},
    ]

    async def names(args: str) -> list[str]:
        page = await api.ok(f"{{ workflows(first: 10 {args}) {{ edges {{ node {{ name }} }} }} }}")
        return [e["node"]["name"] for e in page["workflows"]["edges"]]

    assert await names("") == ["second", "first"]
    assert await names("status: [RUNNING]") == ["first"]
    assert await names("status: [CANCELLED, SUCCEEDED]") == ["second"]
    assert (await api.ok('{ workflow(id: "nope") { id } }'))["workflow"] is None


async def test_events_filters(api: Api) -> None:
    agent, token = await api.register_agent()
    task = await api.create_task("t")
    await api.claim(agent["id"], token)
    wf = (
        await api.ok('mutation { startWorkflow(input: {name: "w", steps: [{name: "a"}]}) { id } }')
    )["startWorkflow"]

    async def types(filter: dict[str, object]) -> list[str]:
        body = await api.ok(
            "query($f: EventFilter) { events(filter: $f) { totalCount edges { node { type } } } }",
            {"f": filter},
            token=api.viewer,
        )
        found = [e["node"]["type"] for e in body["events"]["edges"]]
        assert body["events"]["totalCount"] == len(found)
        return found

    everything = await types({})
    assert everything == [
        "AGENT_REGISTERED",
        "TASK_CREATED",
        "AGENT_STATUS_CHANGED",
        "TASK_STARTED",
        "WORKFLOW_STARTED",
        "TASK_CREATED",
        "WORKFLOW_STEP_STARTED",
    ]
    assert await types({"types": ["TASK_CREATED"]}) == ["TASK_CREATED", "TASK_CREATED"]
    assert await types({"types": ["TASK_STARTED", "AGENT_REGISTERED"]}) == [
        "AGENT_REGISTERED",
        "TASK_STARTED",
    ]
    assert await types({"taskId": task["id"]}) == ["TASK_CREATED", "TASK_STARTED"]
    assert await types({"agentId": agent["id"]}) == [
        "AGENT_REGISTERED",
        "AGENT_STATUS_CHANGED",
        "TASK_STARTED",
    ]
    assert await types({"workflowId": wf["id"]}) == [
        "WORKFLOW_STARTED",
        "TASK_CREATED",
        "WORKFLOW_STEP_STARTED",
    ]
    assert await types({"workflowId": wf["id"], "types": ["TASK_CREATED"]}) == ["TASK_CREATED"]

    stamps = await api.ok("{ events { edges { node { type occurredAt } } } }")
    times = [e["node"]["occurredAt"] for e in stamps["events"]["edges"]]
    # Events of one transaction share their time: the claim's AGENT_STATUS_CHANGED and
    # TASK_STARTED, and the workflow's WORKFLOW_STARTED, TASK_CREATED, WORKFLOW_STEP_STARTED.
    assert times[2] == times[3] and times[4] == times[5] == times[6]
    assert len({times[0], times[1], times[3], times[4]}) == 4
    started_at = times[3]
    assert await types({"since": started_at}) == everything[2:]
    assert await types({"until": started_at}) == everything[:4]
    assert await types({"since": times[1], "until": times[3]}) == everything[1:4]
    assert await types({"since": times[4], "types": ["TASK_CREATED"]}) == ["TASK_CREATED"]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await types({"since": later}) == []
    # Another zone, same instant.
    shifted = datetime.fromisoformat(started_at).astimezone(
        timezone(timedelta(hours=5, minutes=30))
    )
    assert await types({"since": shifted.isoformat()}) == everything[2:]


async def test_event_fields_carry_ids_actor_data_and_snapshots(api: Api) -> None:
    agent, token = await api.register_agent("w")
    task = await api.create_task("t")
    claimed = await api.claim(agent["id"], token)
    assert claimed is not None

    body = await api.ok(
        """query($f: EventFilter) { events(filter: $f) { edges { cursor node {
             id type occurredAt actor taskId agentId workflowId data
             task { id status updatedAt agent { id status } }
             agent { id status } workflow { id } } } } }""",
        {"f": {"taskId": task["id"]}},
    )
    created, started = (e["node"] for e in body["events"]["edges"])

    assert created["actor"] == "operator"
    assert started["actor"] == f"agent:{agent['id']}"
    assert (created["taskId"], created["agentId"], created["workflowId"]) == (
        task["id"],
        None,
        None,
    )
    assert (started["taskId"], started["agentId"]) == (task["id"], agent["id"])
    # Each event shows the state as of that event, not as of now.
    assert created["task"]["status"] == "PENDING"
    assert created["agent"] is None
    assert started["task"]["status"] == "RUNNING"
    assert started["agent"] == {"id": agent["id"], "status": "BUSY"}
    assert started["task"]["agent"] == {"id": agent["id"], "status": "BUSY"}
    assert started["task"]["updatedAt"] == started["occurredAt"] == claimed["updatedAt"]
    assert created["task"]["updatedAt"] == created["occurredAt"] == task["updatedAt"]
    for edge in body["events"]["edges"]:
        assert edge["cursor"] == edge["node"]["id"]
        assert ISO_MICRO.match(edge["node"]["occurredAt"]), edge["node"]["occurredAt"]


async def test_timestamps_are_iso_8601_utc_with_microseconds(api: Api) -> None:
    agent, _ = await api.register_agent()
    task = await api.create_task()

    for value in (
        task["createdAt"],
        task["updatedAt"],
        agent["registeredAt"],
        agent["lastHeartbeatAt"],
    ):
        assert ISO_MICRO.match(value), value
    assert task["createdAt"] == task["updatedAt"]
    assert task["startedAt"] is None and task["finishedAt"] is None


async def test_system_metrics_counts_the_callers_tenant(api: Api) -> None:
    agent, token = await api.register_agent()
    await api.register_agent("idle")
    await api.create_task("a")
    await api.create_task("b")
    await api.claim(agent["id"], token)
    query = """{ systemMetrics { at connections subscriptions eventsPublished eventsDelivered
                 tasksByStatus agentsByStatus } }"""

    body = await api.ok(query)
    admin = await api.ok(query, token=api.admin)

    m = body["systemMetrics"]
    assert m["tasksByStatus"] == {
        "PENDING": 1,
        "RUNNING": 1,
        "SUCCEEDED": 0,
        "FAILED": 0,
        "CANCELLED": 0,
    }
    assert m["agentsByStatus"] == {"ONLINE": 1, "BUSY": 1, "UNHEALTHY": 0, "OFFLINE": 0}
    assert m["eventsPublished"] >= 6
    assert ISO_MICRO.match(m["at"]) or m["at"].endswith("+00:00")
    assert admin["systemMetrics"]["tasksByStatus"] == m["tasksByStatus"]


async def test_timestamps_keep_microseconds_even_when_zero(api: Api, database_url: str) -> None:
    task = await api.create_task()
    whole_second = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    db = Database(database_url)
    try:
        async with db.sessions() as session, session.begin():
            await session.execute(
                update(TaskRow).where(TaskRow.id == task["id"]).values(updated_at=whole_second)
            )
    finally:
        await db.close()

    body = await api.ok("query($id: ID!) { task(id: $id) { updatedAt } }", {"id": task["id"]})

    assert body["task"]["updatedAt"] == "2024-01-02T03:04:05.000000+00:00"
