"""GraphQL over HTTP: POST with JSON, GET for queries, and clear refusals that write nothing."""

from __future__ import annotations

import json

from tests.http.helpers import Api


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_get_runs_a_query(api: Api) -> None:
    task = await api.create_task("via get")
    client = api.client
    response = await client.get(
        api.server.url,
        params={
            "query": "query($id: ID!) { task(id: $id) { title } }",
            "variables": json.dumps({"id": task["id"]}),
        },
        headers=_auth(api.viewer),
    )

    assert response.status_code == 200
    assert response.json() == {"data": {"task": {"title": "via get"}}}


async def test_get_refuses_a_mutation_and_writes_nothing(api: Api) -> None:
    before = await api.event_count()
    client = api.client
    response = await client.get(
        api.server.url,
        params={"query": 'mutation { createTask(input: {title: "sneaky"}) { id } }'},
        headers=_auth(api.operator),
    )

    assert response.status_code in (400, 405)
    assert await api.event_count() == before
    assert (await api.ok("{ tasks { totalCount } }"))["tasks"]["totalCount"] == 0


async def test_post_json_with_operation_name(api: Api) -> None:
    document = """
      query Mine { me { subject } }
      query Count { tasks { totalCount } }
    """
    client = api.client
    response = await client.post(
        api.server.url,
        json={"query": document, "operationName": "Mine"},
        headers=_auth(api.viewer),
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"data": {"me": {"subject": "viewer"}}}


async def test_malformed_json_body_is_a_400_and_writes_nothing(api: Api) -> None:
    before = await api.event_count()
    client = api.client
    broken = await client.post(
        api.server.url,
        content=b'{"query": "mutation { createTask(input: {title: \\"x\\"}) { id } }"',
        headers={**_auth(api.operator), "Content-Type": "application/json"},
    )
    not_an_object = await client.post(
        api.server.url,
        content=b'["mutation { createTask(input: {title: \\"x\\"}) { id } }"]',
        headers={**_auth(api.operator), "Content-Type": "application/json"},
    )
    no_query = await client.post(
        api.server.url, json={"variables": {}}, headers=_auth(api.operator)
    )

    assert broken.status_code == 400
    assert "JSON" in broken.text
    assert not_an_object.status_code == 400
    assert no_query.status_code == 400
    assert "query" in no_query.text.lower()
    assert await api.event_count() == before


async def test_variables_must_be_an_object(api: Api) -> None:
    client = api.client
    response = await client.post(
        api.server.url,
        json={"query": "{ me { subject } }", "variables": [1, 2]},
        headers=_auth(api.viewer),
    )

    assert response.status_code == 400
