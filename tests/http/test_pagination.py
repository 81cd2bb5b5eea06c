"""Relay pagination: opaque cursors, stable while rows are inserted between pages."""

from __future__ import annotations

import base64

import pytest

from tests.http.helpers import Api

PAGE = """query($first: Int, $after: String) {{
  {field}(first: $first, after: $after) {{
    totalCount pageInfo {{ hasNextPage endCursor }} edges {{ cursor node {{ id }} }}
  }}
}}"""


async def _page(api: Api, field: str, first: int | None, after: str | None) -> dict:  # type: ignore[type-arg]
    variables: dict[str, object] = {"after": after}
    if first is not None:
        variables["first"] = first
    body = await api.ok(PAGE.format(field=field), variables, token=api.viewer)
    page: dict = body[field]  # type: ignore[type-arg]
    return page


def _ids(page: dict) -> list[str]:  # type: ignore[type-arg]
    return [e["node"]["id"] for e in page["edges"]]


async def _make(api: Api, field: str, n: int, tag: str) -> None:
    for i in range(n):
        if field == "tasks":
            await api.create_task(f"{tag}{i}")
        elif field == "agents":
            await api.register_agent(f"{tag}{i}")
        else:
            await api.ok(
                "mutation($n: String!) {"
                ' startWorkflow(input: {name: $n, steps: [{name: "s"}]}) { id } }',
                {"n": f"{tag}{i}"},
            )


@pytest.mark.parametrize("field", ["tasks", "agents", "workflows"])
async def test_pages_cover_everything_once_with_inserts_between_pages(api: Api, field: str) -> None:
    await _make(api, field, 5, "old")
    everything = _ids(await _page(api, field, 50, None))
    assert len(everything) == 5

    first = await _page(api, field, 2, None)
    assert first["totalCount"] == 5
    assert first["pageInfo"] == {"hasNextPage": True, "endCursor": first["edges"][-1]["cursor"]}
    await _make(api, field, 3, "new")  # rows arrive while the client pages
    second = await _page(api, field, 2, first["pageInfo"]["endCursor"])
    third = await _page(api, field, 10, second["pageInfo"]["endCursor"])

    seen = _ids(first) + _ids(second) + _ids(third)
    assert len(seen) == len(set(seen))  # no duplicates
    assert [i for i in seen if i in everything] == everything  # no skips, same order
    assert third["pageInfo"]["hasNextPage"] is False
    assert third["totalCount"] == 8
    # Cursors are opaque, not the bare id.
    assert all(e["cursor"] != e["node"]["id"] for e in first["edges"])


async def test_tasks_newest_first_and_agents_oldest_first(api: Api) -> None:
    await _make(api, "tasks", 3, "t")
    await _make(api, "agents", 3, "a")

    tasks = await api.ok("{ tasks { edges { node { title } } } }")
    agents = await api.ok("{ agents { edges { node { name } } } }")

    assert [e["node"]["title"] for e in tasks["tasks"]["edges"]] == ["t2", "t1", "t0"]
    assert [e["node"]["name"] for e in agents["agents"]["edges"]] == ["a0", "a1", "a2"]


async def test_events_cursor_is_the_event_id_and_pages_oldest_first(api: Api) -> None:
    await _make(api, "tasks", 5, "t")

    first = await _page(api, "events", 2, None)
    assert [e["cursor"] for e in first["edges"]] == ["1", "2"] == _ids(first)
    assert first["pageInfo"] == {"hasNextPage": True, "endCursor": "2"}
    await _make(api, "tasks", 2, "late")
    rest = await _page(api, "events", 100, "2")
    assert _ids(rest) == ["3", "4", "5", "6", "7"]
    assert rest["pageInfo"] == {"hasNextPage": False, "endCursor": "7"}
    assert rest["totalCount"] == 7
    # Any id works as a cursor, even of an event the filter left out.
    filtered = await api.ok(
        '{ events(filter: {types: [TASK_CREATED]}, after: "6", first: 1)'
        " { edges { node { id } } } }"
    )
    assert [e["node"]["id"] for e in filtered["events"]["edges"]] == ["7"]
    # Past the end: an empty page, and no endCursor.
    empty = await _page(api, "events", 10, "7")
    assert empty["edges"] == [] and empty["pageInfo"] == {"hasNextPage": False, "endCursor": None}


@pytest.mark.parametrize("field", ["tasks", "agents", "workflows", "events"])
async def test_after_null_is_the_same_as_omitted(api: Api, field: str) -> None:
    await _make(api, "workflows", 2, "w")
    await _make(api, "agents", 2, "a")

    omitted = await api.ok(f"{{ {field}(first: 3) {{ totalCount edges {{ cursor }} }} }}")
    null = await api.ok(f"{{ {field}(first: 3, after: null) {{ totalCount edges {{ cursor }} }} }}")
    variable = await _page(api, field, 3, None)

    assert omitted == null
    assert omitted[field]["edges"] == [{"cursor": e["cursor"]} for e in variable["edges"]]
    assert len(omitted[field]["edges"]) in (2, 3)


async def test_first_defaults_and_bounds(api: Api) -> None:
    await _make(api, "tasks", 3, "t")

    zero = await _page(api, "tasks", 0, None)
    default = await _page(api, "tasks", None, None)
    too_many = await api.call("{ tasks(first: 501) { totalCount } }")
    negative = await api.call("{ events(first: -1) { totalCount } }")

    assert zero["edges"] == [] and zero["totalCount"] == 3 and zero["pageInfo"]["hasNextPage"]
    assert len(default["edges"]) == 3 and default["pageInfo"]["hasNextPage"] is False
    for body in (too_many, negative):
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert "first" in body["errors"][0]["message"]


INVALID_CURSORS = [
    ("tasks", "not-a-cursor"),
    ("tasks", ""),
    ("tasks", base64.urlsafe_b64encode(b'["2024-01-01T00:00:00", "x"]').decode()),  # no zone
    ("tasks", base64.urlsafe_b64encode(b'["0001-01-01T00:00:00+01:00", "x"]').decode()),
    ("tasks", base64.urlsafe_b64encode(b'["2024-01-01T00:00:00+00:00", 7]').decode()),
    ("agents", base64.urlsafe_b64encode(b'{"a": 1}').decode()),
    ("workflows", base64.urlsafe_b64encode(b'["yesterday", "x"]').decode()),
    ("workflows", "!!!"),
    ("events", "abc"),
    ("events", ""),
    ("events", "-1"),
    ("events", "1.5"),
    ("events", "\u00b2"),  # a digit to str.isdigit(), not to int()
    ("events", "9" * 40),
]


async def test_invalid_cursor_is_bad_user_input(api: Api) -> None:
    for field, cursor in INVALID_CURSORS:
        body = await api.call(
            f"query($c: String) {{ {field}(after: $c) {{ totalCount }} }}", {"c": cursor}
        )

        assert body["data"] is None, (field, cursor)
        error = body["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", (field, cursor, error)
        assert "cursor" in error["message"]
